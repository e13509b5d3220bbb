"""Celery tasks of the runs app: thin, taking a run id."""

from __future__ import annotations

from celery import shared_task

from webapp.runs.driver import advance


@shared_task(name="runs.advance", acks_late=True)
def advance_task(run_id: int) -> None:
    """Take run ``run_id`` as far as it goes now (``driver.advance``): queued again by each of
    its plans' last callback."""
    advance(run_id)
