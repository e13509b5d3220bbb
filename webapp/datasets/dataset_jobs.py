"""What every dataset job (import, mesh build) shares on top of ``webapp.core.jobs``."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from django.conf import settings

from pipeline.progress import ProgressCallback
from webapp.core.jobs.lifecycle import job_create_queued
from webapp.core.jobs.runner import JobRunner
from webapp.datasets.models import DatasetJob


def dataset_job_create(*, enqueue: bool, **fields: Any) -> DatasetJob:
    """Record a queued dataset job; with ``enqueue`` its task is sent when the row commits."""
    task = _task_for(fields["kind"]) if enqueue else None
    return job_create_queued(DatasetJob, task=task, **fields)


def _task_for(kind: str) -> Any:
    from webapp.datasets import tasks  # tasks import the services: import on use

    return tasks.dataset_import_task if kind == "import" else tasks.meshes_build_task


class DatasetJobRunner(JobRunner[DatasetJob]):
    """A dataset job's runner (bad input is the base's PipelineError or domain error); the job's
    upload directory is removed once the job ended."""

    model = DatasetJob

    def load(self) -> DatasetJob:
        return DatasetJob.objects.select_related("owner", "dataset").get(id=self.job_id)

    def cleanup(self, job: DatasetJob) -> None:
        upload_dir = (job.params or {}).get("upload_dir")
        if upload_dir:
            upload_remove(Path(upload_dir))


def upload_remove(path: Path) -> None:
    """Delete an upload directory, but only one inside UPLOAD_ROOT."""
    root = Path(settings.UPLOAD_ROOT).resolve()
    path = path.resolve()
    if path != root and root in path.parents:
        shutil.rmtree(path, ignore_errors=True)


def stage_prefixed(progress: ProgressCallback, prefix: str) -> ProgressCallback:
    """Progress reports of a sub-step, shown as ``<prefix>: <stage>``."""

    def report(stage: str, done: int, total: int) -> None:
        progress(f"{prefix}: {stage}" if stage else prefix, done, total)

    return report
