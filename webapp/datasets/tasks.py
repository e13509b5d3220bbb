"""Celery tasks for dataset jobs: thin wrappers that take a job id and call a service."""

from __future__ import annotations

from celery import shared_task

from webapp.datasets.services import import_job_run, meshes_build_run


@shared_task(name="datasets.import")
def dataset_import_task(job_id: int) -> str:
    """Run import job ``job_id``; returns its final status."""
    return import_job_run(job_id).status


@shared_task(name="datasets.meshes_build")
def meshes_build_task(job_id: int) -> str:
    """Run mesh (re)build job ``job_id``; returns its final status."""
    return meshes_build_run(job_id).status
