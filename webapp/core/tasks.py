"""Celery tasks of the shared machinery: thin wrappers around :mod:`webapp.core.jobs.plans`."""

from __future__ import annotations

import logging
from typing import Any

from celery import shared_task

from pipeline.plan import run_saved_item
from webapp.core.jobs.plans import step_done

logger = logging.getLogger(__name__)


@shared_task(name="core.plan_item", acks_late=True)
def plan_item_task(work_dir: str, step: str, item: int) -> bool:
    """Run one item of a saved plan; False when it was done already, the plan stopped, or the
    item failed: its failure is in the plan's state, and the step's chord callback must still
    run (a failed header task would skip it) to tell the plan's owner."""
    try:
        return run_saved_item(work_dir, step, item)
    except Exception:
        logger.exception("plan %s: %s item %d failed", work_dir, step, item)
        return False


@shared_task(name="core.plan_step_done", acks_late=True)
def plan_step_done_task(
    work_dir: str, index: int, on_done: dict[str, Any] | None = None, round_: int = 0
) -> None:
    """Reduce a finished step and queue the next."""
    step_done(work_dir, index, on_done, round_)
