"""Run a pipeline plan (:mod:`pipeline.plan`) on Celery workers: one task per item, a chord per
step, so adding worker processes or machines that share ``DATA_ROOT`` makes a step faster.

Tasks carry only the plan's work directory, the step and the item: a worker loads the saved plan
and runs the same code per block as the command line. A step's chord callback reduces the step and
queues the next one; after the last step, or once the plan stopped, it queues the owner's
``on_done`` (once). State lives in the plan's files (:func:`pipeline.plan.plan_state`): items
done per step, finished, cancelled, failed and why.

Deliveries happen more than once (``acks_late``: a worker killed after a task finished gets it
again), so every queueing is claimed first by creating a file that must not exist yet
(``dispatch/<step>-<round>``, ``dispatch/on-done``): a duplicate callback queues nothing. A
callback that finds items of its step unfinished (a chord whose counter was thrown off by a
redelivery) queues them again, up to :data:`MAX_ROUNDS` times, then fails the plan.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from celery import chord, current_app, signature

from pipeline.plan import (
    BlockPlan,
    finish_saved_step,
    load_plan,
    plan_stopped,
    record_failure,
    restart_plan,
    save_plan,
)
from pipeline.progress import ProgressCallback, no_progress

ITEM_TASK = "core.plan_item"
STEP_DONE_TASK = "core.plan_step_done"
MAX_ROUNDS = 3
# In a plan's folder: the Celery queue its items go to (absent: the default queue).
QUEUE_FILE = "queue"


def _claim(work_dir: str, name: str) -> bool:
    """True once per ``name``: whoever creates the marker queues the work it names."""
    folder = Path(work_dir) / "dispatch"
    folder.mkdir(exist_ok=True)
    try:
        os.close(os.open(folder / name, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
    except FileExistsError:
        return False
    return True


def dispatch_step(
    work_dir: str, index: int, on_done: dict[str, Any] | None = None, round_: int = 0
) -> None:
    """Queue step ``index`` of the saved plan (its pending items as a chord); steps with nothing
    pending are reduced here. After the last step, queue ``on_done`` (a signature as a dict)."""
    folder = Path(work_dir)
    plan = load_plan(folder)
    while index < len(plan.steps):
        if plan_stopped(folder):
            _notify(work_dir, on_done)
            return
        step = plan.steps[index]
        items = plan.pending(step)
        if items:
            if round_ >= MAX_ROUNDS:
                record_failure(
                    folder, step, f"{len(items)} items still unfinished after {round_} rounds"
                )
                _notify(work_dir, on_done)
                return
            if not _claim(work_dir, f"{step}-{round_}"):
                return  # a duplicate delivery: the first one queued this round
            queue = _item_queue(folder)
            routing = {"queue": queue} if queue else {}
            header = [
                signature(ITEM_TASK, args=(work_dir, step, i), immutable=True, **routing)
                for i in items
            ]
            body = signature(
                STEP_DONE_TASK, args=(work_dir, index, on_done, round_), immutable=True
            )
            chord(header, app=current_app)(body)
            return
        finish_saved_step(work_dir, step)
        index, round_ = index + 1, 0
    _notify(work_dir, on_done)


def _item_queue(folder: Path) -> str | None:
    path = folder / QUEUE_FILE
    return path.read_text().strip() or None if path.is_file() else None


def _notify(work_dir: str, on_done: dict[str, Any] | None) -> None:
    """Queue ``on_done`` once: after the last step, or when the plan stopped (its owner reads
    why from the plan's state)."""
    if on_done is not None and _claim(work_dir, "on-done"):
        signature(on_done, app=current_app).apply_async()


def step_done(
    work_dir: str, index: int, on_done: dict[str, Any] | None = None, round_: int = 0
) -> None:
    """The chord callback of step ``index``: reduce it and queue the next step, or queue the
    step's unfinished items again."""
    folder = Path(work_dir)
    try:
        plan = load_plan(folder)
        step = plan.steps[index]
        if plan_stopped(folder):
            _notify(work_dir, on_done)
            return
        if plan.pending(step):
            dispatch_step(work_dir, index, on_done, round_ + 1)
        elif finish_saved_step(work_dir, step):
            dispatch_step(work_dir, index + 1, on_done)
    except Exception as error:
        if not plan_stopped(folder):
            record_failure(folder, f"after step {index}", error)
        _notify(work_dir, on_done)
        raise


class CeleryPlanExecutor:
    """The site's :class:`pipeline.plan.PlanExecutor`: saves the plan, clears what stopped an
    earlier run of it (finished items stay done) and queues its first step; returns at once.
    ``on_done`` is queued after the last step (e.g. the run's next stage), also when the plan
    stopped (cancelled, failed), so that its owner learns it. Executing a plan whose steps are
    already queued (a duplicate delivery of the owner's task) queues nothing. ``queue``: where
    the plan's items go (e.g. the GPU queue, ``queues.gpu_queue``), else the default queue."""

    waits = False

    def __init__(self, on_done: Any = None, queue: str | None = None) -> None:
        self.on_done = None if on_done is None else dict(on_done)
        self.queue = queue

    def execute(self, plan: BlockPlan, progress: ProgressCallback = no_progress) -> None:
        dispatched = plan.work_dir / "dispatch"
        if dispatched.is_dir() and any(dispatched.iterdir()) and not plan_stopped(plan.work_dir):
            return
        save_plan(plan)
        restart_plan(plan.work_dir)
        (plan.work_dir / QUEUE_FILE).write_text(self.queue or "")
        dispatch_step(str(plan.work_dir), 0, self.on_done)
