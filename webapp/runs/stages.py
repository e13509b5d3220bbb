"""A run's per-stage record (``PipelineRun.stages``): pure helpers the driver and the publication
share, so both write the same shape."""

from __future__ import annotations

import datetime as dt
from typing import Any

from django.utils import timezone

#: Between a stage and a part of it with counts of its own, in the row's ``stage``.
SUBSTEP = " · "


def part_stage(stage: str, part: str) -> str:
    """The row's ``stage`` while a part of ``stage`` counts: "train · training steps"."""
    return f"{stage}{SUBSTEP}{part}"


def seconds_since(started: str | None) -> float | None:
    """Seconds from ``started`` (ISO) until now: a stage's wall time, workers' included."""
    if not started:
        return None
    return round((timezone.now() - dt.datetime.fromisoformat(started)).total_seconds(), 3)


def with_stage(stages: dict[str, Any], name: str, **fields: Any) -> dict[str, Any]:
    """``stages`` with stage ``name``'s entry updated by ``fields``."""
    return {**stages, name: {**(stages.get(name) or {}), **fields}}


def done(stages: dict[str, Any], name: str, state: str = "done", **fields: Any) -> dict[str, Any]:
    """``stages`` with ``name`` ended (``done``, or ``skipped``), timed from its start."""
    started = (stages.get(name) or {}).get("started")
    return with_stage(stages, name, state=state, seconds=seconds_since(started), **fields)
