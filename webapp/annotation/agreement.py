"""Reads of the review: point agreement between a box's annotators, and their consensus.

The points compared are each annotator's point annotations at the version they submitted: the
current version of the box's assignments that are submitted or approved (a submitted task can
no longer be edited, so its current version is the one handed in; a rejected one is being
fixed and waits for its next submission). Other kinds of annotation are not compared.

The figures are :mod:`pipeline.point_agreement`'s (Hungarian matching within the tolerance in
um, per class; precision, recall and F1 per pair of annotators, the first of a pair by slot as
the reference). The consensus a manager may accept as the box's ground truth is computed from
the *approved* assignments only; the default tolerance is the campaign's
``match_tolerance_um`` and the default quorum a strict majority of the campaign's N.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from pipeline import point_agreement as pa
from webapp.annotation.models import (
    Annotation,
    AnnotationCampaign,
    AnnotationKind,
    Assignment,
    AssignmentState,
    BoxGroundTruth,
    TaskBox,
)
from webapp.core.errors import InvalidRequest

COMPARED = (AssignmentState.SUBMITTED, AssignmentState.APPROVED)


@dataclass(frozen=True)
class Work:
    """One annotator's handed-in points of one box."""

    assignment_id: int
    annotator: str
    state: str
    version: int
    points: list[pa.Point]


def _voxel(campaign: AnnotationCampaign) -> list[float]:
    return [float(v) for v in campaign.geometry["voxel_size_um"]]


def to_um(campaign: AnnotationCampaign, zyx: Sequence[float]) -> list[float]:
    """A voxel position in um: origin + position * voxel size."""
    geometry = campaign.geometry
    origin = geometry.get("origin_um") or [0.0, 0.0, 0.0]
    return [
        float(o) + float(v) * float(s)
        for o, v, s in zip(origin, zyx, geometry["voxel_size_um"], strict=True)
    ]


def _rows(campaign: AnnotationCampaign, states: Iterable[str], box_ids: list[int] | None) -> Any:
    rows = Annotation.objects.filter(
        assignment__box__campaign=campaign,
        assignment__state__in=list(states),
        assignment__annotator__isnull=False,
        valid_to__isnull=True,
        kind=AnnotationKind.POINT,
    )
    if box_ids is not None:
        rows = rows.filter(assignment__box_id__in=box_ids)
    return rows.values_list("assignment_id", "uid", "label", "coords").order_by("id")


def works_of(
    campaign: AnnotationCampaign,
    *,
    box_ids: list[int] | None = None,
    states: Iterable[str] = COMPARED,
) -> dict[int, list[Work]]:
    """Per box id, each annotator's handed-in points (by slot)."""
    states = list(states)
    assignments = Assignment.objects.filter(
        box__campaign=campaign, state__in=states, annotator__isnull=False
    )
    if box_ids is not None:
        assignments = assignments.filter(box_id__in=box_ids)
    points: dict[int, list[pa.Point]] = defaultdict(list)
    for assignment_id, uid, label, coords in _rows(campaign, states, box_ids):
        z, y, x = coords[0]
        points[assignment_id].append(pa.Point(label, (float(z), float(y), float(x)), uid))
    out: dict[int, list[Work]] = defaultdict(list)
    for a in assignments.select_related("annotator").order_by("box_id", "slot"):
        assert a.annotator is not None
        out[a.box_id].append(
            Work(a.pk, a.annotator.username, a.state, a.version, points.get(a.pk, []))
        )
    return out


def _figure(value: float | None) -> float | None:
    return None if value is None else round(value, 4)


def _pair_body(pair: pa.PairAgreement) -> dict[str, Any]:
    return {
        "reference": pair.reference,
        "other": pair.other,
        "n_reference": pair.n_reference,
        "n_other": pair.n_other,
        "matched": pair.matched,
        "precision": _figure(pair.precision),
        "recall": _figure(pair.recall),
        "f1": _figure(pair.f1),
        "mean_distance_um": _figure(pair.mean_distance_um),
    }


def _summary_body(summary: pa.AnnotatorSummary) -> dict[str, Any]:
    return {
        "annotator": summary.annotator,
        "n_points": summary.n_points,
        "precision": _figure(summary.precision),
        "recall": _figure(summary.recall),
        "mean_f1": _figure(summary.mean_f1),
    }


def check_tolerance(value: float | None, campaign: AnnotationCampaign) -> float:
    tolerance = campaign.match_tolerance_um if value is None else float(value)
    if not (math.isfinite(tolerance) and 0 < tolerance <= 1000):
        raise InvalidRequest("tolerance_um must be a distance of 0-1000 um.")
    return tolerance


def box_agreement(
    box: TaskBox, tolerance_um: float | None = None, works: list[Work] | None = None
) -> dict[str, Any]:
    """A box's agreement: its annotators (with state and point count), each pair's figures,
    each annotator's summary (no pairs with fewer than two annotators)."""
    campaign = box.campaign
    tolerance = check_tolerance(tolerance_um, campaign)
    if works is None:
        works = works_of(campaign, box_ids=[box.pk]).get(box.pk, [])
    result = pa.box_agreement({w.annotator: w.points for w in works}, tolerance, _voxel(campaign))
    return {
        "box": box.pk,
        "name": box.name,
        "tolerance_um": tolerance,
        "annotators": [
            {
                "annotator": w.annotator,
                "assignment": w.assignment_id,
                "state": w.state,
                "version": w.version,
                "n_points": len(w.points),
            }
            for w in works
        ],
        "mean_f1": _figure(result.mean_f1),
        "pairs": [_pair_body(p) for p in result.pairs],
        "summaries": [_summary_body(s) for s in result.summaries],
    }


def campaign_agreement(
    campaign: AnnotationCampaign, tolerance_um: float | None = None
) -> dict[str, Any]:
    """Every box with two or more handed-in assignments, and per annotator pooled over those
    boxes: points, precision and recall (pooled counts as in the pipeline's summary), mean F1
    over their pairs, boxes compared."""
    tolerance = check_tolerance(tolerance_um, campaign)
    works = works_of(campaign)
    boxes = {b.pk: b for b in TaskBox.objects.filter(pk__in=list(works)).order_by("id")}
    rows = []
    pooled: dict[str, dict[str, Any]] = {}
    voxel = _voxel(campaign)
    for box_id, box in boxes.items():
        box_works = works[box_id]
        if len(box_works) < 2:
            continue
        row = box_agreement(box, tolerance, box_works)
        rows.append(row)
        result = pa.box_agreement({w.annotator: w.points for w in box_works}, tolerance, voxel)
        for name in result.annotators:
            entry = pooled.setdefault(
                name, {"own": 0, "theirs": 0, "matched": 0, "f1": [], "boxes": 0, "points": 0}
            )
            entry["boxes"] += 1
            entry["points"] += len(next(w for w in box_works if w.annotator == name).points)
            for pair in result.pairs:
                if name == pair.reference:
                    entry["own"] += pair.n_reference
                    entry["theirs"] += pair.n_other
                elif name == pair.other:
                    entry["own"] += pair.n_other
                    entry["theirs"] += pair.n_reference
                else:
                    continue
                entry["matched"] += pair.matched
                if pair.f1 is not None:
                    entry["f1"].append(pair.f1)
    annotators = [
        {
            "annotator": name,
            "boxes": e["boxes"],
            "n_points": e["points"],
            "precision": _figure(e["matched"] / e["own"] if e["own"] else None),
            "recall": _figure(e["matched"] / e["theirs"] if e["theirs"] else None),
            "mean_f1": _figure(sum(e["f1"]) / len(e["f1"]) if e["f1"] else None),
        }
        for name, e in sorted(pooled.items())
    ]
    f1s = [r["mean_f1"] for r in rows if r["mean_f1"] is not None]
    return {
        "campaign": campaign.pk,
        "tolerance_um": tolerance,
        "boxes_compared": len(rows),
        "mean_f1": _figure(sum(f1s) / len(f1s) if f1s else None),
        "boxes": rows,
        "annotators": annotators,
    }


def default_quorum(campaign: AnnotationCampaign) -> int:
    return pa.default_quorum(campaign.redundancy)


def check_quorum(value: int | None, campaign: AnnotationCampaign) -> int:
    quorum = default_quorum(campaign) if value is None else int(value)
    if not 1 <= quorum <= campaign.redundancy:
        raise InvalidRequest(f"quorum must be 1-{campaign.redundancy} (the campaign's N).")
    return quorum


def consensus_of(
    box: TaskBox, tolerance_um: float, quorum: int
) -> tuple[list[Work], list[pa.ConsensusPoint]]:
    """The box's approved work and its consensus points (none with fewer approved assignments
    than the quorum)."""
    campaign = box.campaign
    works = works_of(campaign, box_ids=[box.pk], states=(AssignmentState.APPROVED,)).get(box.pk, [])
    if len(works) < quorum:
        return works, []
    found = pa.consensus(
        {w.annotator: w.points for w in works}, tolerance_um, _voxel(campaign), quorum
    )
    return works, found


def box_consensus(
    box: TaskBox, tolerance_um: float | None = None, quorum: int | None = None
) -> dict[str, Any]:
    """The consensus of the box's approved assignments: points found by at least ``quorum``
    of them, positions in voxels and um, support and who found each; ``pending`` counts the
    submitted assignments not yet reviewed (not used); ``accepted`` describes the ground truth
    a manager accepted, if any."""
    campaign = box.campaign
    tolerance = check_tolerance(tolerance_um, campaign)
    q = check_quorum(quorum, campaign)
    works, found = consensus_of(box, tolerance, q)
    pending = box.assignments.filter(state=AssignmentState.SUBMITTED).count()
    points = [
        {
            "label": c.label,
            "zyx": list(c.zyx),
            "zyx_um": to_um(campaign, c.zyx),
            "support": c.support,
            "annotators": [name for name, _ in c.members],
        }
        for c in found
    ]
    ground_truth = BoxGroundTruth.objects.filter(box=box).select_related("accepted_by").first()
    return {
        "box": box.pk,
        "name": box.name,
        "tolerance_um": tolerance,
        "quorum": q,
        "annotators": [w.annotator for w in works],
        "pending": pending,
        "points": points,
        "accepted": None
        if ground_truth is None
        else {
            "tolerance_um": ground_truth.tolerance_um,
            "quorum": ground_truth.quorum,
            "count": len(ground_truth.points),
            "accepted_by": ground_truth.accepted_by.username if ground_truth.accepted_by else None,
            "accepted": ground_truth.accepted.isoformat(),
        },
    }
