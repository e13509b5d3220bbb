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

import contextlib
import importlib
import json
import os
import shutil
import uuid
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, ClassVar, Protocol

from pipeline.blocks import run_blocks
from pipeline.errors import InvalidInputError
from pipeline.manifest import StepPending
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
        key = (self, file_identity(Path(self.path)))
        opened = _OPENED.get(key)
        if opened is None:
            if self.writable:
                import zarr

                opened = zarr.open_array(self.path, mode="r+")
            else:
                from pipeline.volumes import open_volume

                opened = open_volume(Path(self.path), self.level, channels=self.channels).array
            _remember(_OPENED, key, opened)
        return opened

    def to_dict(self) -> dict[str, Any]:
        return {
            "path": self.path,
            "level": self.level,
            "channels": self.channels,
            "writable": self.writable,
        }


# Per process: a worker running many blocks opens each array once. Keyed by the file's identity
# too, so an array deleted and created again at the same path (a rerun) is opened afresh.
_OPENED: dict[tuple[ArrayRef, tuple[int, ...]], Any] = {}
_CACHE_SIZE = 16


def _remember(cache: dict[Any, Any], key: Any, value: Any) -> None:
    """Add to a per-process cache, dropping the oldest entries beyond :data:`_CACHE_SIZE`."""
    cache[key] = value
    while len(cache) > _CACHE_SIZE:
        del cache[next(iter(cache))]


def file_identity(path: Path) -> tuple[int, ...]:
    """Inode and modification time of ``path`` and of its Zarr metadata file, if any: what
    changes when a file or array is replaced at the same path."""
    out: list[int] = []
    for candidate in (path, path / "zarr.json", path / ".zarray"):
        try:
            stat = candidate.stat()
        except OSError:
            continue
        out += [stat.st_ino, stat.st_mtime_ns, stat.st_size]
    return tuple(out)


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
    write_atomic(path, json.dumps({"kind": plan.kind, "plan": plan.to_dict()}, indent=1))
    return path


def load_plan(work_dir: Path) -> BlockPlan:
    """The plan :func:`save_plan` wrote into ``work_dir`` (parsed once per process and version of
    the file: a worker runs many items of one plan)."""
    path = Path(work_dir) / PLAN_FILE
    key = (str(path.resolve()), file_identity(path))
    cached = _PLANS.get(key)
    if cached is not None:
        return cached
    try:
        data = json.loads(path.read_text())
        module_name, _, class_name = PLAN_CLASSES[data["kind"]].partition(":")
    except (OSError, ValueError, KeyError) as error:
        raise InvalidInputError(f"{path}: not a readable plan ({error})") from error
    cls = getattr(importlib.import_module(module_name), class_name)
    plan: BlockPlan = cls.from_dict(data["plan"])
    _remember(_PLANS, key, plan)
    return plan


_PLANS: dict[tuple[str, tuple[int, ...]], BlockPlan] = {}


def run_item(plan: BlockPlan, step: str, item: int) -> None:
    """Run one item of a plan: the unit of work every executor hands out."""
    plan.run_item(step, item)


FINISHED_FILE = "plan-finished"
CANCELLED_FILE = "plan-cancelled"
FAILED_FILE = "plan-failed.json"
#: Per step, ``<step>.started`` (when a worker started its first item) and ``<step>.done`` (when
#: one first finished an item, holding how many were done then): the step's pace for the site's
#: ETA, which counts from the first finished item, not from the step's set-up (model loading,
#: queueing).
PACE_DIR = "pace"


@dataclass(frozen=True)
class PlanState:
    """Where a saved plan stands, read from its files: what the site shows while workers run it.

    ``state`` is ``running`` (or not started), ``finished``, ``cancelled`` or ``failed``;
    ``steps`` maps each step to (items done, items in all); ``error`` says what failed;
    ``first_started`` maps a step to the POSIX time a worker started its first item,
    ``first_done`` to when one first finished an item and how many were done then.
    """

    state: str
    steps: dict[str, tuple[int, int]]
    error: str = ""
    first_started: dict[str, float] = field(default_factory=dict)
    first_done: dict[str, tuple[float, int]] = field(default_factory=dict)


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
    state_now = PlanState(state, pending_counts(plan), error)
    try:  # the folder goes when the run is cleaned up: no pace then
        with os.scandir(work_dir / PACE_DIR) as entries:
            marks = [(e.name, e.path, e.stat().st_mtime) for e in entries if e.is_file()]
    except FileNotFoundError:
        return state_now
    for name, path, mtime in marks:
        step, _, kind = name.rpartition(".")
        if kind == "started":
            state_now.first_started[step] = mtime
        elif kind == "done":
            try:
                text = Path(path).read_text().strip()
            except FileNotFoundError:
                continue
            state_now.first_done[step] = (mtime, int(text) if text.isdigit() else 1)
    return state_now


def cancel_plan(work_dir: Path) -> None:
    """Stop a saved plan: items not started yet skip, and no further step starts."""
    write_atomic(Path(work_dir) / CANCELLED_FILE, "")


def plan_stopped(work_dir: Path) -> bool:
    """Cancelled, or an item failed: nothing more should run."""
    return (Path(work_dir) / CANCELLED_FILE).exists() or (Path(work_dir) / FAILED_FILE).exists()


#: Starts of one item before the plan fails: a task whose process is killed (out of memory, a
#: hard time limit) is delivered again, and would be forever.
MAX_ITEM_STARTS = 3


def record_failure(work_dir: Path, where: str, error: BaseException | str) -> None:
    """Fail the plan: its state becomes ``failed`` with ``where: error`` as the message."""
    detail = {"where": where, "error": f"{where}: {error}"}
    write_atomic(Path(work_dir) / FAILED_FILE, json.dumps(detail))


def _count_start(folder: Path, step: str, item: int) -> int:
    """Record one more start of an item; returns how many there have been."""
    starts = folder / "starts"
    starts.mkdir(exist_ok=True)
    (starts / f"{step}-{item}.{uuid.uuid4().hex}").touch()
    return sum(1 for _ in starts.glob(f"{step}-{item}.*"))


def run_saved_item(work_dir: str, step: str, item: int) -> bool:
    """Run one item of the plan saved in ``work_dir`` (what a remote worker is given).

    Skips an item already done (a redelivered task) and every item of a stopped plan; returns
    whether it ran. A failure, or a :data:`MAX_ITEM_STARTS`-th start of an item that never
    finished, is recorded in the plan's files (:func:`plan_state`); a failure is re-raised.
    """
    folder = Path(work_dir)
    if plan_stopped(folder):
        return False
    try:
        plan = load_plan(folder)
        if plan.is_done(step, item):
            return False
        if _count_start(folder, step, item) > MAX_ITEM_STARTS:
            record_failure(
                folder, f"{step} {item}",
                f"started {MAX_ITEM_STARTS} times without finishing (was its process killed, "
                "e.g. out of memory?)",
            )  # fmt: skip
            return False
        _mark_pace(folder, f"{step}.started", lambda: "")
        plan.run_item(step, item)
    except Exception as error:
        record_failure(folder, f"{step} {item}", error)
        raise
    _mark_pace(folder, f"{step}.done", lambda: str(plan.items(step) - len(plan.pending(step))))
    return True


def _mark_pace(folder: Path, name: str, text: Callable[[], str]) -> None:
    """Write a pace mark (:data:`PACE_DIR`) unless one is there: the first worker to get here
    writes it (two at once write nearly the same). Only the ETA depends on it: a mark that
    cannot be written fails nothing."""
    path = folder / PACE_DIR / name
    with contextlib.suppress(OSError):
        if not path.exists():
            path.parent.mkdir(exist_ok=True)
            write_atomic(path, text())


def finish_saved_step(work_dir: str, step: str) -> bool:
    """Reduce ``step`` of a saved plan after its last item; after the last step, mark the plan
    finished. Returns False (and does nothing) when the plan is stopped or items are missing;
    a failure is recorded (:func:`plan_state`) and re-raised."""
    folder = Path(work_dir)
    if plan_stopped(folder):
        return False
    try:
        plan = load_plan(folder)
        if plan.pending(step):
            return False
        plan.finish_step(step)
    except Exception as error:
        record_failure(folder, f"finishing {step}", error)
        raise
    if step == plan.steps[-1]:
        mark_finished(folder)
    return True


def mark_finished(work_dir: Path) -> None:
    """Record that every step of the saved plan in ``work_dir`` ran (a local run's end)."""
    write_atomic(Path(work_dir) / FINISHED_FILE, "")


def restart_plan(work_dir: Path) -> None:
    """Clear a saved plan's stop marks and start counts so that it can run again; finished
    items stay finished."""
    folder = Path(work_dir)
    for name in (FAILED_FILE, CANCELLED_FILE, FINISHED_FILE):
        (folder / name).unlink(missing_ok=True)
    for folder_name in ("starts", "dispatch", PACE_DIR):
        shutil.rmtree(folder / folder_name, ignore_errors=True)


def write_atomic(path: Path, text: str) -> None:
    """Write a small marker or result so that a reader sees all of it or nothing."""
    tmp = temp_name(path)
    tmp.write_text(text)
    os.replace(tmp, path)


def temp_name(path: Path, suffix: str = ".tmp") -> Path:
    """A hidden, unique sibling of ``path`` to write before renaming (unique across hosts that
    share the directory: two deliveries of one item may run at once)."""
    return path.with_name(f".{path.name}.{uuid.uuid4().hex}{suffix}")


class PlanPending(StepPending):
    """The plan runs in other processes (an executor that returns at once): call the step again
    when it has finished (the executor's callback does)."""

    def __init__(self, work_dir: Path) -> None:
        super().__init__(f"plan {work_dir} runs on workers")
        self.work_dir = Path(work_dir)


class PlanFailed(RuntimeError):
    """A saved plan that an item, or a step's reduction, failed (its recorded message)."""


def execute_plan(
    executor: PlanExecutor, plan: BlockPlan, progress: ProgressCallback = no_progress
) -> None:
    """Run ``plan`` with ``executor`` to its end, once.

    A saved plan that finished is not run again and one that failed raises :class:`PlanFailed`.
    An executor that returns before the plan finished (``waits`` false: Celery) makes this raise
    :class:`PlanPending`; calling again after the executor's callback finds the plan finished.
    """
    work = plan.work_dir
    if (work / PLAN_FILE).exists():
        state = plan_state(work)
        if state.state == "finished":
            return
        if state.state == "failed":
            raise PlanFailed(state.error)
    executor.execute(plan, progress)
    if executor.waits:
        mark_finished(work)
        return
    state = plan_state(work)
    if state.state == "failed":
        raise PlanFailed(state.error)
    if state.state != "finished":
        raise PlanPending(work)


class PlanExecutor(Protocol):
    """Runs every step of a plan in order, each step's pending items in any order or at once,
    and ``finish_step`` after a step's last item: in-process, on a pool, or as Celery chords.
    ``waits``: whether ``execute`` returns only once the plan ran (see :func:`execute_plan`)."""

    waits: bool

    def execute(self, plan: BlockPlan, progress: ProgressCallback = no_progress) -> Any: ...


def _offset_progress(
    progress: ProgressCallback, stage: str, base: int, total: int, _: str, done: int, __: int
) -> None:
    """Report a step's items finished by an earlier run as done too."""
    progress(stage, base + done, total)


class LocalExecutor:
    """Runs a plan here: sequentially, or on ``pool`` (anything with ``map(fn, items)`` or
    ``submit(fn, item)``, see :func:`pipeline.blocks.run_blocks`); returns when it is done."""

    waits = True

    def __init__(self, pool: Any = None) -> None:
        self.pool = pool

    def execute(self, plan: BlockPlan, progress: ProgressCallback = no_progress) -> None:
        for step in plan.steps:
            total = plan.items(step)
            todo = plan.pending(step)
            report = partial(_offset_progress, progress, step, total - len(todo), total)
            run_blocks(partial(run_item, plan, step), todo, self.pool, progress=report, stage=step)
            plan.finish_step(step)


def pending_counts(plan: BlockPlan) -> dict[str, tuple[int, int]]:
    """Per step, (items done, items in all): what a resumed run still has to do."""
    out: dict[str, tuple[int, int]] = {}
    for step in plan.steps:
        total = plan.items(step)
        out[step] = (total - len(plan.pending(step)), total)
    return out
