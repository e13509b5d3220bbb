"""Cancelling jobs on a real worker: a running import stops and leaves nothing; a queued one
is revoked and never starts."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import tifffile
from celery_harness import LiveWorker, wait_for
from django.conf import settings as django_settings
from django.contrib.auth import get_user_model

from webapp.datasets import services
from webapp.datasets.models import Dataset, DatasetJob, JobStatus

pytestmark = [pytest.mark.integration, pytest.mark.slow]


@pytest.fixture
def volume(tmp_path: Path) -> Path:
    shape = (32, 64, 64)
    image = np.random.default_rng(1).integers(0, 4000, shape, dtype=np.uint16)
    path = tmp_path / "volume.tif"
    tifffile.imwrite(path, image)
    return path


@pytest.mark.worker_env(ANNOTOME_TEST_PROGRESS_DELAY="0.3")
def test_cancel_a_running_and_a_queued_import(
    celery_worker: LiveWorker, transactional_db: None, volume: Path
) -> None:
    owner = get_user_model().objects.create_user("canceller", password="not-used-here")

    def queue(name: str) -> DatasetJob:
        return services.import_job_create(
            owner, name=name, source_path=volume, voxel_size=(1, 1, 1)
        )

    running, waiting = queue("Running"), queue("Waiting")  # one pool process: B waits for A
    wait_for(
        lambda: DatasetJob.objects.filter(id=running.id, status=JobStatus.RUNNING).exists(),
        90,
        "the first import to start",
    )
    services.job_cancel(waiting, owner)
    services.job_cancel(DatasetJob.objects.get(id=running.id), owner)

    def ended(job_id: int) -> DatasetJob | None:
        job = DatasetJob.objects.get(id=job_id)
        return job if job.stage == "cancelled" or job.started is None else None

    stopped = wait_for(lambda: ended(running.id), 60, "the running import to stop")
    assert stopped.status == JobStatus.CANCELLED and stopped.finished is not None
    discarded = f"Discarding revoked task: datasets.import[{waiting.celery_task_id}]"
    wait_for(
        lambda: discarded in celery_worker.process.log_text(),
        60,
        "the worker to discard the revoked task",
    )
    never = DatasetJob.objects.get(id=waiting.id)
    assert never.status == JobStatus.CANCELLED and never.started is None and never.attempts == 0
    assert not Dataset.objects.exists()
    tmp = Path(django_settings.DATA_ROOT) / "tmp"
    assert not tmp.exists() or list(tmp.iterdir()) == []
