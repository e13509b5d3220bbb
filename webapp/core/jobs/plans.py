"""Run a pipeline plan (:mod:`pipeline.plan`) on Celery workers: one task per item, a chord per
step, so adding worker processes or machines that share ``DATA_ROOT`` makes a step faster.

Tasks carry only the plan's work directory, the step and the item: a worker loads the saved plan
and runs the same code per block as the command line. A step's chord callback reduces the step and
starts the next one. State lives in the plan's files (:func:`pipeline.plan.plan_state`): items
done per step, finished, cancelled, failed and why; a redelivered task skips a finished item.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from celery import chord, current_app, signature

from pipeline.plan import BlockPlan, finish_saved_step, load_plan, plan_stopped, save_plan
from pipeline.progress import ProgressCallback, no_progress

ITEM_TASK = "core.plan_item"
STEP_DONE_TASK = "core.plan_step_done"


def dispatch_step(work_dir: str, index: int, on_done: dict[str, Any] | None = None) -> None:
    """Queue step ``index`` of the saved plan (its pending items as a chord); steps with nothing
    pending are reduced here. After the last step, queue ``on_done`` (a signature as a dict)."""
    plan = load_plan(Path(work_dir))
    while index < len(plan.steps):
        if plan_stopped(Path(work_dir)):
            return
        step = plan.steps[index]
        items = plan.pending(step)
        if items:
            header = [signature(ITEM_TASK, args=(work_dir, step, i), immutable=True) for i in items]
            body = signature(STEP_DONE_TASK, args=(work_dir, index, on_done), immutable=True)
            chord(header, app=current_app)(body)
            return
        finish_saved_step(work_dir, step)
        index += 1
    if on_done is not None and not plan_stopped(Path(work_dir)):
        signature(on_done, app=current_app).apply_async()


def step_done(work_dir: str, index: int, on_done: dict[str, Any] | None = None) -> None:
    """The chord callback of step ``index``: reduce it, then queue the next step."""
    plan = load_plan(Path(work_dir))
    if finish_saved_step(work_dir, plan.steps[index]):
        dispatch_step(work_dir, index + 1, on_done)


class CeleryPlanExecutor:
    """The site's :class:`pipeline.plan.PlanExecutor`: saves the plan and queues its first step;
    returns at once. ``on_done`` is queued after the last step (e.g. the run's next stage)."""

    def __init__(self, on_done: Any = None) -> None:
        self.on_done = None if on_done is None else dict(on_done)

    def execute(self, plan: BlockPlan, progress: ProgressCallback = no_progress) -> None:
        save_plan(plan)
        dispatch_step(str(plan.work_dir), 0, self.on_done)
