"""Workers die, jobs don't: SIGKILL a pool child or the whole worker, idle or mid-import.

Real worker processes on the real broker (the file-system spool, or Redis when
CELERY_BROKER_URL names it). Each job must end exactly once (one attempt publishes, one
dataset), its store must be byte-for-byte the store of an undisturbed import of the same input,
and nothing may be left under DATA_ROOT/tmp. While the killed job waits for its redelivery, or
restarts, the API shows it as ``retrying``.
"""

from __future__ import annotations

import hashlib
import os
import signal
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import tifffile
from celery_harness import LiveWorker, wait_for
from django.conf import settings as django_settings
from django.contrib.auth import get_user_model

from webapp.datasets import services
from webapp.datasets.models import Dataset, DatasetJob, JobStatus

pytestmark = [pytest.mark.integration, pytest.mark.slow]

# Short enough that Redis redelivers a dead worker's message within seconds (it is also the
# broker's visibility timeout there); the worker's heartbeat runs every quarter of it.
LEASE_SECONDS = "4"
# While this file exists, a job's progress reports wait (after writing): the test kills a
# worker at a known point of a running import, then lets the next attempt go on.
PAUSE = "{tmp_path}/pause-progress"
# No detections builds after an import: the worker (one process) must be free for the next
# import the test queues, which it pauses and kills at a known point.
PAUSABLE_JOB = {
    "ANNOTOME_TEST_PROGRESS_PAUSE": PAUSE,
    "ANNOTOME_JOB_LEASE_SECONDS": LEASE_SECONDS,
    "ANNOTOME_DETECTIONS_AUTO_BUILD": "0",
}


@pytest.fixture
def volume(tmp_path: Path) -> tuple[Path, Path]:
    """A 48x64x64 uint16 TIFF with three bright balls, and their labels."""
    shape = (48, 64, 64)
    z, y, x = np.indices(shape)
    labels = np.zeros(shape, dtype=np.uint16)
    for label, (cz, cy, cx, r) in enumerate([(14, 20, 18, 7), (30, 40, 44, 10), (24, 48, 16, 6)]):
        labels[(z - cz) ** 2 + (y - cy) ** 2 + (x - cx) ** 2 <= r * r] = label + 1
    image = np.random.default_rng(3).normal(400, 40, shape) + (labels > 0) * 2000
    image_path, labels_path = tmp_path / "volume.tif", tmp_path / "nuclei.tif"
    tifffile.imwrite(image_path, image.clip(0, 65535).astype(np.uint16))
    tifffile.imwrite(labels_path, labels)
    return image_path, labels_path


@pytest.fixture
def owner(transactional_db: None) -> Any:
    return get_user_model().objects.create_user("survivor", password="not-used-here")


@pytest.fixture
def short_lease(settings: Any) -> None:
    """This process reads job states with the workers' lease."""
    settings.JOB_LEASE_SECONDS = float(LEASE_SECONDS)


def _queue_import(owner: Any, volume: tuple[Path, Path], name: str) -> int:
    job = services.import_job_create(
        owner,
        name=name,
        source_path=volume[0],
        labels={"nuclei": volume[1]},
        voxel_size=(400, 200, 200),
        unit="nanometer",
    )  # commits, so the task is sent to this test's worker
    return job.id


def _job(job_id: int) -> DatasetJob:
    return DatasetJob.objects.get(id=job_id)


def _wait_until_paused(job_id: int) -> DatasetJob:
    """Until the job's first progress report (it then waits while the pause file exists)."""

    def working() -> DatasetJob | None:
        job = _job(job_id)
        assert job.status in (JobStatus.QUEUED, JobStatus.RUNNING), (job.status, job.error)
        paused = job.status == JobStatus.RUNNING and job.stage not in ("starting", "restarting")
        return job if paused else None

    return wait_for(working, 90, f"job {job_id} to report progress")


def _pause_file(tmp_path: Path) -> Path:
    return Path(PAUSE.format(tmp_path=tmp_path))


def _wait_until_ended(job_id: int, states: list[str], timeout: float = 120) -> DatasetJob:
    """Until the job ends; ``states`` collects every state seen on the way (polled at 50 ms)."""

    def ended() -> DatasetJob | None:
        job = _job(job_id)
        if not states or states[-1] != job.state:
            states.append(job.state)
        return job if job.status not in (JobStatus.QUEUED, JobStatus.RUNNING) else None

    try:
        return wait_for(ended, timeout, f"job {job_id} to end")
    except AssertionError as error:  # the states seen say where it stuck
        raise AssertionError(f"{error} (states seen: {states})") from None


def _store_digest(dataset: Dataset) -> dict[str, str]:
    """Every file of the dataset directory (relative path -> SHA-256).

    The task draws the thumbnail right after the row says succeeded: wait for it.
    """
    root = dataset.root
    wait_for(lambda: (root / "thumbnail.png").is_file(), 60, "the dataset's thumbnail")
    return {
        str(path.relative_to(root)): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(root.rglob("*"))
        if path.is_file()
    }


def _assert_tmp_is_empty() -> None:
    """The task removes its work directory after the thumbnail (its last step): wait for that."""
    tmp = Path(django_settings.DATA_ROOT) / "tmp"

    def left() -> list[str]:
        return sorted(str(p.relative_to(tmp)) for p in tmp.rglob("*")) if tmp.exists() else []

    try:
        wait_for(lambda: not left(), 30, "the work directories to be removed")
    except AssertionError:
        raise AssertionError(f"left under DATA_ROOT/tmp: {left()}") from None


def _assert_published_once(job: DatasetJob, attempts: int) -> None:
    assert job.status == JobStatus.SUCCEEDED, (job.status, job.error, job.log)
    assert job.attempts == attempts, job.attempts
    assert Dataset.objects.filter(name=job.params["name"]).count() == 1
    folders = [p.name for p in (Path(django_settings.DATA_ROOT) / "datasets").iterdir()]
    assert folders.count(job.dataset.slug) == 1 and len(folders) == Dataset.objects.count()


@pytest.mark.worker_env(**PAUSABLE_JOB)
def test_pool_child_killed_when_idle_and_mid_import(
    celery_worker: LiveWorker,
    owner: Any,
    volume: tuple[Path, Path],
    short_lease: None,
    tmp_path: Path,
) -> None:
    worker = celery_worker.process
    # Idle: the child waiting for work is killed; the next job must still start.
    [idle_child] = worker.pool_children()
    os.kill(idle_child, signal.SIGKILL)
    wait_for(lambda: worker.pool_children() not in ([], [idle_child]), 30, "a new pool child")
    first = _wait_until_ended(_queue_import(owner, volume, "Undisturbed"), [])
    _assert_published_once(first, attempts=1)

    # Mid-import: the child running the job is killed; Celery requeues its task (acks_late,
    # reject_on_worker_lost) and a new child takes the job over from the dead attempt.
    _pause_file(tmp_path).touch()
    job_id = _queue_import(owner, volume, "Child killed")
    _wait_until_paused(job_id)
    [busy_child] = worker.pool_children()
    os.kill(busy_child, signal.SIGKILL)
    wait_for(lambda: _job(job_id).state == "retrying", 10, "the job to show as retrying")
    _pause_file(tmp_path).unlink()
    second = _wait_until_ended(job_id, [])
    _assert_published_once(second, attempts=2)
    assert _store_digest(second.dataset) == _store_digest(first.dataset)
    _assert_tmp_is_empty()


@pytest.mark.worker_env(**PAUSABLE_JOB)
def test_whole_worker_killed_when_idle_and_mid_import(
    celery_worker: LiveWorker,
    owner: Any,
    volume: tuple[Path, Path],
    short_lease: None,
    tmp_path: Path,
) -> None:
    # Idle: a job queued while no worker runs waits, and runs once one is back.
    celery_worker.process.kill()
    job_id = _queue_import(owner, volume, "Undisturbed")
    time.sleep(1)
    assert _job(job_id).state == "queued"
    celery_worker.restart()
    first = _wait_until_ended(job_id, [])
    _assert_published_once(first, attempts=1)

    # Mid-import: the whole worker (main process and pool) is SIGKILLed. The job shows as
    # retrying at once (its worker process is gone), the broker redelivers the task to the
    # restarted worker (the spool requeues what the dead worker held; Redis restores it once
    # its keep-alive stopped for a lease) and a new attempt takes over.
    _pause_file(tmp_path).touch()
    job_id = _queue_import(owner, volume, "Worker killed")
    _wait_until_paused(job_id)
    celery_worker.process.kill()
    # (within moments: the SIGKILLed pool child may take a little while to be gone)
    wait_for(lambda: _job(job_id).state == "retrying", 10, "the job to show as retrying")
    assert _job(job_id).status == JobStatus.RUNNING
    _pause_file(tmp_path).unlink()
    celery_worker.restart()
    states: list[str] = []
    second = _wait_until_ended(job_id, states)
    _assert_published_once(second, attempts=2)
    assert states[0] == "retrying", states
    assert _store_digest(second.dataset) == _store_digest(first.dataset)
    _assert_tmp_is_empty()


@pytest.mark.worker_env(ANNOTOME_JOB_LEASE_SECONDS="2")
def test_a_task_running_for_several_leases_is_not_delivered_twice(
    celery_worker: LiveWorker, tmp_path: Path
) -> None:
    """On Redis the lease is the visibility timeout: a live worker keeps its message unseen."""
    from webapp.celery import app

    markers = tmp_path / "markers"
    markers.mkdir()
    app.send_task("annotome_test.block_until_released", args=[str(markers)])
    wait_for(lambda: list(markers.glob("started-*")), 60, "the task to start")
    time.sleep(4 * 2)  # four leases; Redis checks for expired messages every second here
    (markers / "release").touch()
    wait_for(lambda: (markers / "done").exists(), 30, "the task to finish")
    time.sleep(3)  # a redelivered copy would start now that the worker is free
    assert len(list(markers.glob("started-*"))) == 1
    assert (markers / "done").read_text().count("\n") == 1
