"""Celery tasks of the annotation app: thin wrappers that take a job id and call a service."""

from __future__ import annotations

from celery import shared_task

from webapp.annotation.assist import proposals_run


@shared_task(name="annotation.assist_proposals")
def assist_proposals_task(job_id: int) -> str:
    """Run propose-all job ``job_id``; returns its final status."""
    return str(proposals_run(job_id).status)
