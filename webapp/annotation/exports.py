"""Export of a campaign's approved ground truth: the annotations as CSV or per box as JSON, and
the boxes table in the published form the pipeline's training reads.

A box's ground truth is the consensus a manager accepted for it (``BoxGroundTruth``: points,
annotator ``consensus``, author the manager who accepted it), else the current annotations of
its approved assignments (each with its annotator, version and the author of the revision that
wrote it). Boxes with neither are left out of every file, so the boxes table lists exactly the
boxes whose annotations are complete.

Positions: voxel z y x (voxel i's centre at i) and um (``origin_um + voxel * voxel_size_um``).
The CSV has one row per position of an annotation, ``point`` numbering them (0 for a point; 0
and 1 for a line's or box's corners; a polyline's vertices in order); an ellipsoid's row 1 holds
its radii, in voxels and um (lengths: no origin added).

``boxes.csv``: ``id, x, y, z, w, h, d`` in voxels (``pipeline.evaluation.boxes_read_csv`` and the
campaign's box import read it as is).
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from webapp.annotation.agreement import to_um
from webapp.annotation.models import (
    Annotation,
    AnnotationCampaign,
    AnnotationKind,
    Assignment,
    AssignmentState,
    BoxGroundTruth,
    Revision,
    TaskBox,
)

CONSENSUS = "consensus"
CSV_COLUMNS = (
    "box",
    "box_id",
    "annotator",
    "version",
    "uid",
    "kind",
    "class",
    "object_id",
    "point",
    "z",
    "y",
    "x",
    "z_um",
    "y_um",
    "x_um",
    "author",
)
BOX_COLUMNS = ("id", "x", "y", "z", "w", "h", "d")


@dataclass
class Truth:
    box: TaskBox
    source: str  # "consensus" or "approved"
    annotations: list[dict[str, Any]] = field(default_factory=list)


def _length_um(campaign: AnnotationCampaign, zyx: list[float]) -> list[float]:
    return [
        float(v) * float(s) for v, s in zip(zyx, campaign.geometry["voxel_size_um"], strict=True)
    ]


def positions_um(
    campaign: AnnotationCampaign, kind: str, coords: list[list[float]]
) -> list[list[float]]:
    """Each position in um (an ellipsoid's radii as lengths)."""
    out = []
    for k, zyx in enumerate(coords):
        if kind == AnnotationKind.ELLIPSOID and k == 1:
            out.append(_length_um(campaign, zyx))
        else:
            out.append(to_um(campaign, zyx))
    return out


def ground_truth(campaign: AnnotationCampaign) -> list[Truth]:
    """Every box with ground truth, in box order (module docstring)."""
    boxes = {b.pk: b for b in TaskBox.objects.filter(campaign=campaign).order_by("id")}
    accepted = {
        g.box_id: g
        for g in BoxGroundTruth.objects.filter(box__campaign=campaign).select_related("accepted_by")
    }
    approved = list(
        Assignment.objects.filter(box__campaign=campaign, state=AssignmentState.APPROVED)
        .exclude(box_id__in=list(accepted))
        .select_related("annotator")
        .order_by("box_id", "slot")
    )
    authors = {
        (r[0], r[1]): r[2] or ""
        for r in Revision.objects.filter(assignment__in=[a.pk for a in approved]).values_list(
            "assignment_id", "number", "author__username"
        )
    }
    rows_of: dict[int, list[Annotation]] = {}
    for row in Annotation.objects.filter(
        assignment__in=[a.pk for a in approved], valid_to__isnull=True
    ).order_by("id"):
        rows_of.setdefault(row.assignment_id, []).append(row)
    truths: dict[int, Truth] = {}
    for box_id, gt in accepted.items():
        author = gt.accepted_by.username if gt.accepted_by else ""
        truth = Truth(boxes[box_id], CONSENSUS)
        for k, point in enumerate(gt.points):
            truth.annotations.append(
                {
                    "annotator": CONSENSUS,
                    "version": None,
                    "uid": f"consensus-{k + 1}",
                    "kind": AnnotationKind.POINT.value,
                    "class": point["label"],
                    "object_id": 0,
                    "coords": point["coords"],
                    "author": author,
                    "support": point.get("support"),
                }
            )
        truths[box_id] = truth
    for a in approved:
        truth = truths.setdefault(a.box_id, Truth(boxes[a.box_id], "approved"))
        annotator = a.annotator.username if a.annotator else ""
        for row in rows_of.get(a.pk, []):
            truth.annotations.append(
                {
                    "annotator": annotator,
                    "version": a.version,
                    "uid": row.uid,
                    "kind": row.kind,
                    "class": row.label,
                    "object_id": row.object_id,
                    "coords": row.coords,
                    "author": authors.get((a.pk, row.valid_from), ""),
                }
            )
    return [truths[k] for k in sorted(truths)]


def _number(value: float) -> str:
    v = round(float(value), 6)
    return str(int(v)) if v.is_integer() else repr(v)


def csv_rows(campaign: AnnotationCampaign) -> Iterator[list[Any]]:
    for truth in ground_truth(campaign):
        for a in truth.annotations:
            physical = positions_um(campaign, a["kind"], a["coords"])
            for k, (zyx, um) in enumerate(zip(a["coords"], physical, strict=True)):
                yield [
                    truth.box.name,
                    truth.box.pk,
                    a["annotator"],
                    "" if a["version"] is None else a["version"],
                    a["uid"],
                    a["kind"],
                    a["class"],
                    a["object_id"],
                    k,
                    *(_number(v) for v in zyx),
                    *(_number(v) for v in um),
                    a["author"],
                ]


def export_csv(campaign: AnnotationCampaign) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    writer.writerows(csv_rows(campaign))
    return out.getvalue()


def export_json(campaign: AnnotationCampaign) -> dict[str, Any]:
    geometry = campaign.geometry
    boxes = []
    for truth in ground_truth(campaign):
        box = truth.box
        annotations = []
        for a in truth.annotations:
            entry = {k: v for k, v in a.items() if k != "support" or v is not None}
            entry["coords_um"] = positions_um(campaign, a["kind"], a["coords"])
            annotations.append(entry)
        boxes.append(
            {
                "id": box.pk,
                "name": box.name,
                "start": list(box.start),
                "size": list(box.size),
                "start_um": to_um(campaign, [float(v) for v in box.start]),
                "size_um": _length_um(campaign, [float(v) for v in box.size]),
                "source": truth.source,
                "annotations": annotations,
            }
        )
    return {
        "campaign": {
            "id": campaign.pk,
            "name": campaign.name,
            "dataset": campaign.dataset.slug,
            "image_layer": campaign.image_layer.name,
            "shape": [int(v) for v in geometry["shape"]],
            "voxel_size_um": geometry["voxel_size_um"],
            "origin_um": geometry.get("origin_um") or [0.0, 0.0, 0.0],
            "label_schema": campaign.label_schema,
        },
        "boxes": boxes,
    }


def boxes_csv(campaign: AnnotationCampaign) -> str:
    """The boxes with ground truth: ``id, x, y, z, w, h, d`` (voxels)."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(BOX_COLUMNS)
    for truth in ground_truth(campaign):
        b = truth.box
        writer.writerow([b.name, b.x0, b.y0, b.z0, b.width, b.height, b.depth])
    return out.getvalue()
