"""Reads of the runs app: a run's live per-stage progress and curves, runs and models a user
may see."""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Iterable
from typing import Any

from django.db.models import QuerySet
from django.utils import timezone

from pipeline.plan import PlanState, plan_state
from webapp.core.users import AnyUser
from webapp.detections.filters import filter_values_of, layer_filter
from webapp.detections.models import Detection, DetectionFilter
from webapp.runs import layout
from webapp.runs.models import STAGES, ModelVersion, PipelineRun
from webapp.runs.stages import SUBSTEP

RUNS = PipelineRun.objects.select_related(
    "dataset", "image_layer", "campaign", "owner", "result_layer", "parent__dataset"
)
MODELS = ModelVersion.objects.select_related("dataset", "run", "layer")


def runs_for(user: AnyUser) -> QuerySet[PipelineRun]:
    return RUNS.restrict(user, "view")


def models_for(user: AnyUser) -> QuerySet[ModelVersion]:
    return MODELS.restrict(user, "view")


FITTED_PREFIX = "fitted by run "


def fitted_source(run_id: int | None) -> str:
    """The ``source`` of the layer filter a run fitted and published with its layer."""
    return f"{FITTED_PREFIX}{run_id}"


def kept_now(versions: Iterable[ModelVersion]) -> dict[int, dict[str, Any]]:
    """For each version whose layer's filter changed after publication (a filter row after the
    one its run fitted, or any row when the run fitted none), e.g. saved from the thresholds
    page: how many of its detections that filter keeps (all of them once cleared), and where
    it came from. The run's own "kept" stays the figure its held-out scores were measured with.
    """
    out: dict[int, dict[str, Any]] = {}
    for version in versions:
        layer = version.layer
        if layer is None:
            continue
        rows = list(DetectionFilter.objects.filter(layer=layer).order_by("id")[:2])
        fitted = bool(rows) and rows[0].source.startswith(FITTED_PREFIX)
        if not rows or (fitted and len(rows) == 1):
            continue  # unchanged since publication
        current = layer_filter(layer)
        detections = Detection.objects.filter(layer=layer)
        if current is None or not detections.exists():  # no table yet: nothing to count
            continue
        values = filter_values_of(current)
        out[version.pk] = {
            "count": detections.filter(values.q()).count(),
            "source": ("cleared: " if values.is_empty else "") + (current.source or "set later"),
        }
    return out


def _eta(since: str | None, done: int, total: int, first: int = 0) -> str | None:
    """When the stage (or its part) should end at its pace since ``since``, when ``first``
    were done (the stage's start and 0, or its recorded pace)."""
    if not since or total <= 0 or done <= first or done >= total:
        return None
    now = timezone.now()
    elapsed = now - dt.datetime.fromisoformat(since)
    if elapsed <= dt.timedelta(0):  # a clock ahead of this one (a shared folder's server)
        return None
    return (now + elapsed * ((total - done) / (done - first))).isoformat()


def _plan_counts(plan: PlanState) -> dict[str, Any]:
    """A plan's counts as a stage row shows them. With several steps (segmentation's
    watershed, merge, relabel) the step under way is named with its own counts: summing them
    would give a bar whose pace changes at each step (a merge item costs more than a block's
    watershed) and an ETA that lies. The step's pace runs from its first finished item."""
    steps = plan.steps
    running = next((s for s, (d, t) in steps.items() if d < t), list(steps)[-1])
    done, total = steps[running]
    out: dict[str, Any] = {"done": done, "total": total}
    if len(steps) > 1:
        out["part"] = running
    if running in plan.first_done and running in plan.first_started:
        at, first = plan.first_done[running]
        # Workers that started together end their first items together: until one item's
        # time has passed since, those would count as done in no time and the ETA as ~0.
        if time.time() - at >= at - plan.first_started[running]:
            when = dt.datetime.fromtimestamp(at, tz=dt.UTC).isoformat()
            out["pace"] = {"part": out.get("part", ""), "at": when, "done": first}
    return out


def run_stages(run: PipelineRun) -> list[dict[str, Any]]:
    """Each stage in order: state, done, total, seconds, ETA. The running stage's counts come
    from the row (its process writes them) or, while workers run its plan, from the plan's
    markers."""
    rows = []
    for name in STAGES:
        entry = dict(run.stages.get(name) or {"state": "pending"})
        state = entry.get("state", "pending")
        if state == "running" and run.is_active:
            if run.waits_on_workers and name in layout.PLAN_OF_STAGE:
                folder = layout.saved_plan(run.pk, name)
                if folder is not None:
                    entry.update(_plan_counts(plan_state(folder)))
            elif run.stage == name:
                entry["done"], entry["total"] = run.done, run.total
            elif run.stage.startswith(name + SUBSTEP):
                # A part of the stage with counts of its own: no ETA from the stage's start.
                entry["done"], entry["total"] = run.done, run.total
                entry["part"] = run.stage[len(name + SUBSTEP) :]
            pace = entry.get("pace") or {}
            done, total = entry.get("done", 0), entry.get("total", 0)
            if pace.get("part") == (entry.get("part") or "") and "at" in pace:
                entry["eta"] = _eta(pace["at"], done, total, int(pace.get("done") or 0))
            elif "part" not in entry:
                entry["eta"] = _eta(entry.get("started"), done, total)
        elif state == "running":
            entry["state"] = "stopped"
        rows.append(
            {
                "name": name,
                "state": entry.get("state", "pending"),
                "done": int(entry.get("done") or 0),
                "total": int(entry.get("total") or 0),
                "seconds": entry.get("seconds"),
                "started": entry.get("started"),
                "eta": entry.get("eta"),
                "part": entry.get("part"),
            }
        )
    return rows


def run_history(run: PipelineRun) -> list[dict[str, Any]]:
    """The training curves: the row's once training ended, else read from the running
    pipeline's manifest (one row per epoch, written as each ends)."""
    if run.history or not run.is_active:
        return list(run.history)
    return layout.training_history(run.pk)
