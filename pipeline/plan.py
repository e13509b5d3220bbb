"""Plan, then execute: a whole-volume step as a persisted list of idempotent block tasks.

:func:`pipeline.predict.predict_volume` and :func:`pipeline.segment.segment_volume` first build a
plan (a :class:`BlockPlan`: the block grid, the parameters, the inputs and outputs) and then
execute it. A plan has named steps run in order; a step's items (blocks, or batches of blocks) are
independent of each other, write their results to disk, and leave a marker when done, so that
running an item again after a crash or a duplicate delivery skips it or rewrites the same bytes;
``finish_step`` reduces the items' results (on disk) before the next step starts.

A plan whose inputs are files is written to ``plan.json`` in its work directory (:func:`save_plan`)
and any process can load it (:func:`load_plan`) and run one item by its step and index. So the
same plan runs in-process or on a process pool (:class:`LocalExecutor`, the CLI) and as Celery
groups and chords (the site), with the same code per block: that is the executor protocol
(:class:`PlanExecutor`), as igneous separates task creation from execution.
"""

from __future__ import annotations

import importlib
import json
import os
from abc import ABC, abstractmethod
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, ClassVar, Protocol

from pipeline.blocks import run_blocks
from pipeline.errors import InvalidInputError
from pipeline.progress import ProgressCallback, no_progress

PLAN_FILE = "plan.json"

#: Plan kinds and the classes that load them (imported on demand: segmenting needs no torch).
PLAN_CLASSES: dict[str, str] = {
    "predict": "pipeline.predict:PredictPlan",
    "segment": "pipeline.segment:SegmentPlan",
}


@dataclass(frozen=True)
class ArrayRef:
    """An array another process can open: a volume file read through
    :func:`pipeline.volumes.open_volume`, or (``writable``) a Zarr array opened for writing."""

    path: str
    level: int = 0
    channels: int = 1
    writable: bool = False

    def open(self) -> Any:
        opened = _OPENED.get(self)
        if opened is None:
            if self.writable:
                import zarr

                opened = zarr.open_array(self.path, mode="r+")
            else:
                from pipeline.volumes import open_volume

                opened = open_volume(Path(self.path), self.level, channels=self.channels).array
            _OPENED[self] = opened
        return opened

    def to_dict(self) -> dict[str, Any]:
        return {
            "path": self.path,
            "level": self.level,
            "channels": self.channels,
            "writable": self.writable,
        }


_OPENED: dict[ArrayRef, Any] = {}  # per process: a worker running many blocks opens each once


def resolve(array: Any) -> Any:
    """The array itself, or the opened array an :class:`ArrayRef` names."""
    return array.open() if isinstance(array, ArrayRef) else array


def ref_to_dict(array: Any, what: str) -> dict[str, Any]:
    if not isinstance(array, ArrayRef):
        raise InvalidInputError(
            f"the {what} is an in-memory array: a plan for other processes needs it as a file"
        )
    return array.to_dict()


def ref_from_dict(data: dict[str, Any]) -> ArrayRef:
    return ArrayRef(str(data["path"]), int(data["level"]), int(data["channels"]), data["writable"])


class BlockPlan(ABC):
    """A whole-volume step planned as items per named step (see the module docstring)."""

    kind: ClassVar[str]
    steps: ClassVar[tuple[str, ...]]

    @property
    @abstractmethod
    def work_dir(self) -> Path:
        """Where the plan keeps its markers and scratch files (and ``plan.json`` when saved)."""

    @abstractmethod
    def items(self, step: str) -> int:
        """How many items ``step`` has (they are numbered from 0)."""

    @abstractmethod
    def is_done(self, step: str, item: int) -> bool: ...

    @abstractmethod
    def run_item(self, step: str, item: int) -> None:
        """Run one item; running it again rewrites the same output."""

    def finish_step(self, step: str) -> None:  # noqa: B027 (most steps reduce nothing)
        """Reduce the step's item results once all are done (idempotent)."""

    @abstractmethod
    def to_dict(self) -> dict[str, Any]:
        """The plan as JSON; raises :class:`InvalidInputError` when it holds in-memory data."""

    @classmethod
    @abstractmethod
    def from_dict(cls, data: dict[str, Any]) -> BlockPlan: ...

    def pending(self, step: str) -> list[int]:
        """The items of ``step`` not finished yet."""
        if step not in self.steps:
            raise KeyError(f"{self.kind} plan has no step {step!r}; steps: {self.steps}")
        return [i for i in range(self.items(step)) if not self.is_done(step, i)]


def save_plan(plan: BlockPlan) -> Path:
    """Write ``plan.json`` into the plan's work directory (atomically) and return its path."""
    work_dir = plan.work_dir
    work_dir.mkdir(parents=True, exist_ok=True)
    path = work_dir / PLAN_FILE
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps({"kind": plan.kind, "plan": plan.to_dict()}, indent=1))
    os.replace(tmp, path)
    return path


def load_plan(work_dir: Path) -> BlockPlan:
    """The plan :func:`save_plan` wrote into ``work_dir``."""
    path = Path(work_dir) / PLAN_FILE
    try:
        data = json.loads(path.read_text())
        module_name, _, class_name = PLAN_CLASSES[data["kind"]].partition(":")
    except (OSError, ValueError, KeyError) as error:
        raise InvalidInputError(f"{path}: not a readable plan ({error})") from error
    cls = getattr(importlib.import_module(module_name), class_name)
    plan: BlockPlan = cls.from_dict(data["plan"])
    return plan


def run_item(plan: BlockPlan, step: str, item: int) -> None:
    """Run one item of a plan: the unit of work every executor hands out."""
    plan.run_item(step, item)


FINISHED_FILE = "plan-finished"
CANCELLED_FILE = "plan-cancelled"
FAILED_FILE = "plan-failed.json"


@dataclass(frozen=True)
class PlanState:
    """Where a saved plan stands, read from its files: what the site shows while workers run it.

    ``state`` is ``running`` (or not started), ``finished``, ``cancelled`` or ``failed``;
    ``steps`` maps each step to (items done, items in all); ``error`` says what failed.
    """

    state: str
    steps: dict[str, tuple[int, int]]
    error: str = ""


def plan_state(work_dir: Path) -> PlanState:
    work_dir = Path(work_dir)
    plan = load_plan(work_dir)
    error = ""
    if (work_dir / FAILED_FILE).exists():
        state, error = "failed", json.loads((work_dir / FAILED_FILE).read_text())["error"]
    elif (work_dir / CANCELLED_FILE).exists():
        state = "cancelled"
    elif (work_dir / FINISHED_FILE).exists():
        state = "finished"
    else:
        state = "running"
    return PlanState(state, pending_counts(plan), error)


def cancel_plan(work_dir: Path) -> None:
    """Stop a saved plan: items not started yet skip, and no further step starts."""
    write_atomic(Path(work_dir) / CANCELLED_FILE, "")


def plan_stopped(work_dir: Path) -> bool:
    """Cancelled, or an item failed: nothing more should run."""
    return (Path(work_dir) / CANCELLED_FILE).exists() or (Path(work_dir) / FAILED_FILE).exists()


def run_saved_item(work_dir: str, step: str, item: int) -> bool:
    """Run one item of the plan saved in ``work_dir`` (what a remote worker is given).

    Skips an item already done (a redelivered task) and every item of a stopped plan; returns
    whether it ran. A failure is recorded in the plan's files (:func:`plan_state`) and re-raised.
    """
    folder = Path(work_dir)
    if plan_stopped(folder):
        return False
    plan = load_plan(folder)
    if plan.is_done(step, item):
        return False
    try:
        plan.run_item(step, item)
    except Exception as error:
        detail = {"step": step, "item": item, "error": f"{step} {item}: {error}"}
        write_atomic(folder / FAILED_FILE, json.dumps(detail))
        raise
    return True


def finish_saved_step(work_dir: str, step: str) -> bool:
    """Reduce ``step`` of a saved plan after its last item; after the last step, mark the plan
    finished. Returns False (and does nothing) when the plan is stopped or items are missing."""
    folder = Path(work_dir)
    if plan_stopped(folder):
        return False
    plan = load_plan(folder)
    if plan.pending(step):
        return False
    plan.finish_step(step)
    if step == plan.steps[-1]:
        write_atomic(folder / FINISHED_FILE, "")
    return True


def write_atomic(path: Path, text: str) -> None:
    """Write a small marker or result so that a reader sees all of it or nothing."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


class PlanExecutor(Protocol):
    """Runs every step of a plan in order, each step's pending items in any order or at once,
    and ``finish_step`` after a step's last item: in-process, on a pool, or as Celery chords."""

    def execute(self, plan: BlockPlan, progress: ProgressCallback = no_progress) -> Any: ...


def _offset_progress(
    progress: ProgressCallback, stage: str, base: int, total: int, _: str, done: int, __: int
) -> None:
    """Report a step's items finished by an earlier run as done too."""
    progress(stage, base + done, total)


class LocalExecutor:
    """Runs a plan here: sequentially, or on ``pool`` (anything with ``map(fn, items)`` or
    ``submit(fn, item)``, see :func:`pipeline.blocks.run_blocks`); returns when it is done."""

    def __init__(self, pool: Any = None, stage_names: dict[str, str] | None = None) -> None:
        self.pool = pool
        self.stage_names = stage_names or {}

    def execute(self, plan: BlockPlan, progress: ProgressCallback = no_progress) -> None:
        for step in plan.steps:
            stage = self.stage_names.get(step, step)
            total = plan.items(step)
            todo = plan.pending(step)
            report = partial(_offset_progress, progress, stage, total - len(todo), total)
            run_blocks(partial(run_item, plan, step), todo, self.pool, progress=report, stage=stage)
            plan.finish_step(step)


def pending_counts(plan: BlockPlan) -> dict[str, tuple[int, int]]:
    """Per step, (items done, items in all): what a resumed run still has to do."""
    out: dict[str, tuple[int, int]] = {}
    for step in plan.steps:
        total = plan.items(step)
        out[step] = (total - len(plan.pending(step)), total)
    return out
