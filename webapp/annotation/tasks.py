"""Celery tasks of the annotation app: thin wrappers that take a job id and call a service."""

from __future__ import annotations

from celery import shared_task

from webapp.annotation.assist import proposals_run


@shared_task(name="annotation.assist_proposals")
def assist_proposals_task(job_id: int) -> str:
    """Run propose-all job ``job_id``; returns its final status."""
    return str(proposals_run(job_id).status)


@shared_task(name="annotation.labels_gc")
def labels_gc_task(campaign_id: int) -> int:
    """Remove the campaign's unreferenced label blobs; returns how many went."""
    from webapp.annotation.label_gc import labels_gc

    return labels_gc(campaign_id).blobs_removed
