"""Reads of the stereology app: studies a user may see, marks, the detections that count as
"the segmentation", and the estimate (``pipeline.stereology.disector_estimates``, never
recomputed here)."""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from django.db.models import QuerySet

from pipeline.errors import PipelineError
from pipeline.stereology import (
    DisectorPlan,
    counts_from_marks,
    detections_in_region,
    disector_estimates,
)
from pipeline.units import nanometres_per_unit
from webapp.core.errors import InvalidRequest
from webapp.core.users import AnyUser
from webapp.datasets.models import Layer
from webapp.detections.filters import FilterValues
from webapp.detections.models import Detection
from webapp.proofreading.models import ProofreadingCampaign, Role
from webapp.stereology.models import DisectorMark, DisectorStudy, PairCount

log = logging.getLogger(__name__)
REPORT = "report"
# Below this many counted objects (sum of Q-) the N-based detected fraction D / N and miss rate
# 1 - D / N are not shown: with a handful of objects N's relative error is of the order of
# 1 / sqrt(sum Q-) (30 % at 10) and D / N swings far beyond 100 % (one object in a thin pair
# gave 1172 % on the demo). The miss rate of the counted objects stays: it is bounded.
MIN_COUNTED_OBJECTS = 10
_N_BASED = ("detected_fraction", "miss_rate")


def studies_visible(user: AnyUser) -> QuerySet[DisectorStudy]:
    return DisectorStudy.objects.restrict(user, "view").select_related(
        "campaign__layer__dataset", "mask_layer", "created_by"
    )


def may_report(study: DisectorStudy, user: AnyUser) -> bool:
    """Managers and experts see every reviewer's marks and estimates; reviewers their own."""
    return ProofreadingCampaign.objects.allows(user, REPORT, study.campaign)


def may_mark(study: DisectorStudy, user: AnyUser) -> bool:
    if not user.is_authenticated:
        return False
    if user.is_superuser:
        return True
    return study.campaign.members.filter(
        user_id=user.pk, role__in=(Role.REVIEWER, Role.EXPERT)
    ).exists()


def marks_visible(study: DisectorStudy, user: AnyUser) -> QuerySet[DisectorMark]:
    marks = DisectorMark.objects.filter(study=study).select_related("reviewer")
    if may_report(study, user):
        return marks
    return marks.filter(reviewer_id=int(user.pk or 0))


def counted_pairs(study: DisectorStudy, user: AnyUser) -> list[int]:
    """The pairs ``user`` has counted (marked in, or finished)."""
    rows = PairCount.objects.filter(study=study, reviewer_id=int(user.pk or 0))
    return sorted(rows.values_list("pair", flat=True))


# --- geometry -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class LayerGeometry:
    """A layer's full-resolution spatial shape (z, y, x) and voxel size in nm."""

    shape: tuple[int, int, int]
    voxel_size_nm: tuple[float, float, float]


def layer_geometry(layer: Layer) -> LayerGeometry:
    """From the layer's metadata; 400 when it has no 3D geometry."""
    try:
        sizes = dict(zip(layer.axes, layer.shape, strict=True))
        shape = tuple(int(sizes[a]) for a in "zyx")
        per_unit = nanometres_per_unit(layer.unit)
        voxel = tuple(float(v) * per_unit for v in list(layer.voxel_size)[-3:])
    except (KeyError, TypeError, ValueError) as exc:
        raise InvalidRequest(f"Layer {layer.name!r} has no 3D shape and voxel size: {exc}") from exc
    if len(voxel) != 3 or not all(math.isfinite(v) and v > 0 for v in voxel):
        raise InvalidRequest(f"Layer {layer.name!r} has no positive voxel size.")
    return LayerGeometry((shape[0], shape[1], shape[2]), (voxel[0], voxel[1], voxel[2]))


def open_layer_array(layer: Layer, geometry: LayerGeometry) -> Any | None:
    """The layer's full-resolution array (z y x), or None when its store cannot be read or does
    not have the layer's shape (matching then falls back to the detections' boxes)."""
    try:
        from pipeline.ome_zarr_io import open_spatial_level

        level = open_spatial_level(Path(layer.dataset.root) / layer.path, 0, what="layer")
    except (PipelineError, OSError, ValueError, KeyError) as exc:
        log.info("layer %s: store not readable (%s)", layer.pk, exc)
        return None
    if tuple(int(n) for n in level.array.shape) != geometry.shape:
        return None
    return level.array


# --- the segmentation's detections --------------------------------------------------------------


def population(campaign: ProofreadingCampaign) -> QuerySet[Detection]:
    """The layer's detections that count as found: those the campaign's filter keeps (volume
    bounds and sphericity minimum; the population of a sample campaign too; all without one),
    by the same condition that chose the campaign's items."""
    params = campaign.selection_params or {}
    bounds = FilterValues(
        params.get("volume_min"), params.get("volume_max"), params.get("sphericity_min")
    )
    return Detection.objects.filter(bounds.q(), layer_id=campaign.layer_id)


def detections_in_study_region(study: DisectorStudy) -> int:
    """D: detections of the population whose centroid lies in the study's region."""
    detections = population(study.campaign)
    plan = DisectorPlan.from_dict(study.plan)
    if study.mask_layer is None or not plan.masked:
        return int(detections.count())
    mask = open_layer_array(study.mask_layer, layer_geometry(study.mask_layer))
    if mask is None:
        raise InvalidRequest(f"The mask layer {study.mask_layer.name!r} can no longer be read.")
    centroids = np.asarray(
        list(detections.values_list("centroid_z", "centroid_y", "centroid_x")), dtype=np.float64
    )
    return detections_in_region(centroids, plan.shape, mask)


# --- the estimate -------------------------------------------------------------------------------


def estimate(study: DisectorStudy, user: AnyUser) -> dict[str, Any]:
    """Per reviewer (every reviewer for managers and experts, one's own otherwise) and pooled
    over every reviewer's counted pairs, from ``pipeline.stereology.disector_estimates``."""
    plan = DisectorPlan.from_dict(study.plan)
    counted = list(PairCount.objects.filter(study=study).values_list("pair", "reviewer__username"))
    marks = [
        {"pair": pair, "reviewer": name, "matched": segment is not None and how != "filtered"}
        for pair, name, segment, how in DisectorMark.objects.filter(study=study).values_list(
            "pair", "reviewer__username", "segment_id", "match"
        )
    ]
    detections = detections_in_study_region(study)
    base: dict[str, Any] = {
        "detections": detections,
        "n_pairs": len(plan.pairs),
        "h_um": plan.h_um,
        "region_volume_um3": plan.region_volume_um3,
        "reviewers": [],
        "pooled": None,
    }
    if not counted:
        return base
    counts = counts_from_marks(marks, counted)
    results = disector_estimates(plan, counts, detections=detections)
    own = getattr(user, "username", None)
    everyone = may_report(study, user)
    base["reviewers"] = [
        _shown(_finite(r.as_dict())) for r in results[:-1] if everyone or r.reviewer == own
    ]
    base["pooled"] = _shown(_finite(results[-1].as_dict()))
    return base


def _shown(row: dict[str, Any]) -> dict[str, Any]:
    """Flag (and null) the N-based detected fraction and miss rate when they cannot be told yet:
    fewer than ``MIN_COUNTED_OBJECTS`` counted objects, or D / N above 1 (D exceeds the
    estimate of N). Otherwise clip their interval bounds to [0, 1] (a fraction of objects):
    an open bound (null) of D / N becomes 1, of the miss rate 0."""
    fraction = row.get("detected_fraction")
    if row["q_minus"] < MIN_COUNTED_OBJECTS:
        reason: str | None = "few_objects"
    elif fraction is not None and fraction > 1:
        reason = "exceeds_one"
    else:
        reason = None
    row["min_counted_objects"] = MIN_COUNTED_OBJECTS
    row["n_based_shown"] = reason is None and fraction is not None
    row["n_based_withheld"] = reason
    for key in _N_BASED:
        if reason is not None:
            row[key] = row[f"{key}_low"] = row[f"{key}_high"] = None
            continue
        if row[key] is None:
            continue
        low, high = row[f"{key}_low"], row[f"{key}_high"]
        row[f"{key}_low"] = 0.0 if low is None else min(max(low, 0.0), 1.0)
        row[f"{key}_high"] = 1.0 if high is None else min(max(high, 0.0), 1.0)
    return row


def _finite(values: dict[str, Any]) -> dict[str, Any]:
    """JSON has no infinity or NaN: those become null (an unbounded or undefined end)."""
    return {
        k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in values.items()
    }
