"""The thresholds page's data: a campaign's decided detections as compact columns, the fit of
``pipeline.thresholds`` on their verdicts, and storing a pair as the layer's filter.

Positives and negatives come from the verdict set's kinds (``verdict_sets.threshold_classes``:
true positive and true positive with distortion are positive, false positive negative,
uncertain left out). Only decided items count (their consensus or expert verdict is final);
detections whose sphericity is unknown are left out of both the plot and the fit, since the
filter could not judge them.

The plot's data goes out as parallel arrays (one list per column) so that 100,000 detections
are a few JSON arrays of numbers rather than 100,000 objects with keys.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from django.contrib.auth.models import User
from django.db import connection

from pipeline.errors import InvalidInputError
from pipeline.thresholds import fit_thresholds_from_verdicts
from webapp.core.errors import InvalidRequest, NotAllowed
from webapp.datasets.models import Dataset
from webapp.detections.filters import (
    FilterValues,
    filter_values_check,
    layer_filter_set,
    layer_filter_values,
)
from webapp.detections.models import DetectionFilter
from webapp.proofreading.models import (
    CampaignItem,
    CampaignMember,
    ItemStatus,
    ProofreadingCampaign,
    Role,
)
from webapp.proofreading.selectors import item_status_counts
from webapp.proofreading.verdict_sets import threshold_classes, verdict_classes

#: ``pipeline.thresholds.fit_thresholds_from_verdicts``' defaults, shown on the page.
DEFAULT_MIN_RECALL = 0.8
DEFAULT_FOLDS = 5
MAX_FOLDS = 20


def _decided(campaign: ProofreadingCampaign, *columns: str) -> list[tuple[Any, ...]]:
    """Rows of ``columns`` (of the detection, joined) for the decided items whose detection
    still exists and has a sphericity."""
    queryset = (
        CampaignItem.objects.filter(
            campaign=campaign,
            status=ItemStatus.DECIDED,
            detection__sphericity__isnull=False,
        )
        .order_by("id")
        .values_list(*columns)
    )
    # The ORM's SQL, run on a plain cursor: the rows are numbers and strings already, and
    # skipping the ORM's per-row work makes 100,000 rows about three times faster.
    sql, params = queryset.query.sql_with_params()
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return list(cursor.fetchall())


def threshold_data(campaign: ProofreadingCampaign) -> dict[str, Any]:
    """The scatter's points (volume, sphericity, verdict index into ``classes``), the classes
    with their colours and kinds, the layer's current filter and how many items are left out."""
    classes = verdict_classes(campaign.verdict_set)
    index = {c.name: i for i, c in enumerate(classes)}
    rows = _decided(
        campaign, "detection__segment_id", "detection__volume", "detection__sphericity", "verdict"
    )
    rows = [r for r in rows if r[3] in index]
    counts = item_status_counts(campaign)
    decided = counts[ItemStatus.DECIDED]
    current = layer_filter_values(campaign.layer)
    return {
        "classes": [
            {"name": c.name, "label": c.label, "colour": c.colour, "kind": c.kind} for c in classes
        ],
        "segment_id": [int(r[0]) for r in rows],
        "volume": [float(r[1]) for r in rows],
        "sphericity": [float(r[2]) for r in rows],
        "verdict": [index[r[3]] for r in rows],
        "items": campaign.n_items,
        "decided": decided,
        "second_round": counts[ItemStatus.SECOND_ROUND],
        "left_out": decided - len(rows),
        "filter": {
            "volume_min": current.volume_min,
            "volume_max": current.volume_max,
            "sphericity_min": current.sphericity_min,
        },
        "min_recall_default": DEFAULT_MIN_RECALL,
        "n_folds_default": DEFAULT_FOLDS,
    }


def verdict_table(campaign: ProofreadingCampaign) -> pd.DataFrame:
    """What ``pipeline.thresholds.verdict_labelled_table`` reads: volume, sphericity, verdict
    and the centroid (voxels) of each decided detection (its k-fold boxes are grid cells)."""
    columns = ["volume", "sphericity", "verdict", "centroid_z", "centroid_y", "centroid_x"]
    rows = _decided(
        campaign,
        "detection__volume",
        "detection__sphericity",
        "verdict",
        "detection__centroid_z",
        "detection__centroid_y",
        "detection__centroid_x",
    )
    frame = pd.DataFrame.from_records(rows, columns=columns)
    floats = [c for c in columns if c != "verdict"]
    return frame.astype({c: np.float64 for c in floats})


@dataclass(frozen=True)
class FitResult:
    volume_min: float
    sphericity_min: float
    min_recall: float
    n_folds: int
    precision: float
    recall: float
    f1: float
    tp_kept: int
    fp_kept: int
    tp_total: int
    n_labelled: int
    folds: list[dict[str, Any]]


def thresholds_fit(
    campaign: ProofreadingCampaign,
    *,
    min_recall: float = DEFAULT_MIN_RECALL,
    n_folds: int = DEFAULT_FOLDS,
) -> FitResult:
    """``pipeline.thresholds.fit_thresholds_from_verdicts`` on the campaign's final verdicts
    (maximise F1 subject to recall >= ``min_recall``, k-fold by box, minimum over the folds).
    Too few verdicts (no positive, nothing decided) is a 400 that says so."""
    if not 0 <= min_recall <= 1:
        raise InvalidRequest("min_recall must be between 0 and 1.")
    if not 1 <= n_folds <= MAX_FOLDS:
        raise InvalidRequest(f"n_folds must be between 1 and {MAX_FOLDS}.")
    table = verdict_table(campaign)
    if table.empty:
        raise InvalidRequest("No decided detection yet: there are no verdicts to fit on.")
    classes = threshold_classes(campaign.verdict_set)
    try:
        fit = fit_thresholds_from_verdicts(
            table, classes=classes, n_folds=n_folds, min_recall=min_recall
        )
    except InvalidInputError as exc:
        raise InvalidRequest(f"Cannot fit thresholds on these verdicts: {exc}.")
    scores = fit.scores
    assert scores is not None
    labelled = table["verdict"].map(lambda v: classes.get(str(v))).notna()
    return FitResult(
        volume_min=fit.t_volume,
        sphericity_min=fit.t_sphericity,
        min_recall=min_recall,
        n_folds=max(1, len(fit.folds)),
        precision=scores.precision,
        recall=scores.recall,
        f1=scores.f1,
        tp_kept=scores.tp_kept,
        fp_kept=scores.fp_kept,
        tp_total=scores.tp_total,
        n_labelled=int(labelled.sum()),
        folds=[
            {
                "held_out": [str(b) for b in fold.held_out],
                "volume_min": fold.fit.t_volume,
                "sphericity_min": fold.fit.t_sphericity,
                "held_out_precision": (
                    fold.held_out_scores.precision if fold.held_out_scores else None
                ),
                "held_out_recall": fold.held_out_scores.recall if fold.held_out_scores else None,
            }
            for fold in fit.folds
        ],
    )


def may_save_filter(campaign: ProofreadingCampaign, user: User) -> bool:
    """Managers of the campaign and the dataset's owner (who may change the dataset)."""
    if user.is_superuser:
        return True
    if CampaignMember.objects.filter(campaign=campaign, user=user, role=Role.MANAGER).exists():
        return True
    return Dataset.objects.allows(user, "change", campaign.layer.dataset)


def filter_save(
    campaign: ProofreadingCampaign, user: User, values: FilterValues, *, source: str = ""
) -> DetectionFilter:
    """Store ``values`` as the campaign's layer's filter (managers, dataset owners: 403 for
    reviewers and experts)."""
    if not may_save_filter(campaign, user):
        raise NotAllowed(
            "Only the campaign's managers and the dataset's owner can set the layer's filter."
        )
    checked = filter_values_check(values.volume_min, values.volume_max, values.sphericity_min)
    return layer_filter_set(
        campaign.layer,
        user,
        checked,
        source=source or f"proofreading campaign {campaign.id} ({campaign.name})",
        check_permission=False,
    )


__all__ = [
    "DEFAULT_FOLDS",
    "DEFAULT_MIN_RECALL",
    "FitResult",
    "filter_save",
    "threshold_data",
    "thresholds_fit",
    "verdict_table",
]
