"""Celery tasks of the detections app: thin wrappers that take a job id and call a service."""

from __future__ import annotations

from celery import shared_task

from webapp.detections.builds import detections_build_run


@shared_task(name="detections.build")
def detections_build_task(job_id: int) -> str:
    """Run detections table build ``job_id``; returns its final status."""
    return detections_build_run(job_id).status


@shared_task(name="detections.cards")
def cards_build_task(job_id: int) -> str:
    """Render the gallery cards of card build ``job_id``; returns its final status."""
    from webapp.detections.cards import cards_build_run

    return cards_build_run(job_id).status
