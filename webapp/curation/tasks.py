"""Celery tasks of the curation app: thin wrappers that take a job id and call a runner."""

from __future__ import annotations

from celery import shared_task

from webapp.curation.runners import publish_run, verdict_properties_run


@shared_task(name="curation.verdict_properties")
def verdict_properties_task(job_id: int) -> str:
    """Rewrite a layer's verdict segment properties (job ``job_id``); returns its status."""
    return verdict_properties_run(job_id).status


@shared_task(name="curation.publish")
def publish_task(job_id: int) -> str:
    """Publish a curated layer (job ``job_id``); returns its final status."""
    return publish_run(job_id).status
