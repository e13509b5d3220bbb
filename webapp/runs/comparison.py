"""The model versions of a dataset side by side (``/datasets/<slug>/models/``): one row per
version from its stored metrics (training, detections, held-out scores) and, for the page's
plots, the held-out scores per box. Metrics are read defensively: a version published before a
step recorded a figure, or a run with no held-out box, shows a blank."""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any
from urllib.parse import quote

from django.urls import reverse

from webapp.runs.models import ModelVersion

#: The held-out evaluation's variants: every segmented object, and those the filter kept.
VARIANTS = ("all", "filtered")
SCORES = ("precision", "recall", "f1")
#: What the plots and their captions need of each held-out box.
BOX_FIELDS = ("box", "precision", "recall", "f1", "n_gt", "n_pred", "tp", "fp", "fn")


def _number(value: object) -> float | None:
    """A finite number, else None (NaN and missing figures alike)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) else None


def _section(metrics: dict[str, Any], *keys: str) -> dict[str, Any]:
    node: object = metrics
    for key in keys:
        node = node.get(key) if isinstance(node, dict) else None
    return node if isinstance(node, dict) else {}


def _per_box(summary: dict[str, Any]) -> list[dict[str, Any]]:
    rows = summary.get("per_box")
    if not isinstance(rows, list):
        return []
    out = []
    for row in rows:
        if not isinstance(row, dict) or row.get("box") in (None, ""):
            continue
        entry: dict[str, Any] = {k: _number(row.get(k)) for k in BOX_FIELDS[1:]}
        entry["box"] = str(row["box"])
        out.append(entry)
    return out


def origin_text(mode: str, parent: dict[str, Any] | None, slug: str) -> str:
    """How a version was made, in words: trained, fine-tuned from v2, v3 of another dataset."""
    if mode == "train" or parent is None:
        return "trained"
    name = f"v{parent.get('number')}"
    if parent.get("dataset") != slug:
        name += f" of {parent.get('dataset')}"
    return f"fine-tuned from {name}" if mode == "fine-tune" else f"{name}, applied here"


def version_row(version: ModelVersion, viewer_url: str) -> dict[str, Any]:
    """One version's row (the table) and plot data (the script), JSON-ready."""
    metrics = version.metrics if isinstance(version.metrics, dict) else {}
    params = version.params if isinstance(version.params, dict) else {}
    train = _section(metrics, "train")
    scores: dict[str, dict[str, float | None]] = {}
    per_box: dict[str, list[dict[str, Any]]] = {}
    for variant in VARIANTS:
        summary = _section(metrics, "evaluation", variant)
        scores[variant] = {k: _number(summary.get(k)) for k in SCORES}
        per_box[variant] = _per_box(summary)
    layer = version.layer.name if version.layer is not None else None
    run = version.run
    parent = params.get("parent") if isinstance(params.get("parent"), dict) else None
    return {
        "id": version.pk,
        "number": version.number,
        "current": version.current,
        "mode": str(params.get("mode") or "train"),
        "origin": origin_text(str(params.get("mode") or "train"), parent, version.dataset.slug),
        "created": version.created,
        "run": version.run_id,
        "runUrl": reverse("runs:run", args=[version.run_id]) if version.run_id else None,
        "preset": str(params.get("preset") or (run.preset if run is not None else "") or ""),
        "epochs": _number(train.get("epochs")),
        "bestValLoss": _number(train.get("best_val_loss")),
        "scores": scores,
        "evaluated": bool(_section(metrics, "evaluation")),
        "detections": _number(_section(metrics, "measure").get("objects")),
        "kept": _number(_section(metrics, "filter").get("kept")),
        "layer": layer,
        "viewerUrl": f"{viewer_url}?show={quote(layer, safe='')}" if layer else None,
        "downloadUrl": reverse("api-model-download", args=[version.pk]),
        "perBox": per_box,
    }


def version_rows(versions: Iterable[ModelVersion], viewer_url: str) -> list[dict[str, Any]]:
    """Rows newest first."""
    rows = [version_row(v, viewer_url) for v in versions]
    return sorted(rows, key=lambda r: -int(r["number"]))
