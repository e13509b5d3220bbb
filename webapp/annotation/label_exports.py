"""A painted campaign's approved ground truth in the form ``pipeline`` training reads, and the
morphometrics of painted objects measured by the pipeline's own code.

Ground truth of a box: the label volume a manager accepted for it (``BoxLabelTruth``: the
consensus of its annotators' volumes at a quorum, or one approved annotator's volume, as it was
when accepted); when none was accepted, the painted labels of its first approved assignment by
slot that has any, at its approved version (an approved task is no longer edited, so its current
version). An accepted point consensus does not choose labels. Boxes with neither are left out of
every file.

``labels.zip`` (:func:`iter_labels_zip`) holds:

- ``labels.ome.zarr``: one sparse uint32 OME-Zarr label image (NGFF 0.5) over the dataset's
  image grid (its shape, voxel size and origin), the boxes' labels at their voxels, 0 elsewhere;
  only chunks holding labels are written (``data.labels``);
- ``boxes.csv``: ``name, x, y, z, w, h, d`` in voxels (``data.boxes``;
  ``pipeline.evaluation.boxes_read_csv`` reads it); for a 2D image the label and mask images
  are 2D and the table ``name, x, y, w, h``, so that training on the 2D image reads them
  (``boxes/`` and the morphometrics keep the campaign's depth of one voxel);
- ``mask.ome.zarr``: uint8 label image on the same grid, 1 on the exported boxes' voxels (where
  0 in the labels means background), 0 elsewhere (where nothing is known): for readers that
  take a mask of annotated regions rather than a boxes table;
- ``boxes/<box id>.ome.zarr``: each box's labels alone at its physical position;
- ``sources.csv``: per box, whose labels at which version (:data:`SOURCE_COLUMNS`): ``source``
  ``consensus`` (``annotator`` "consensus", its ``quorum`` and ``members`` annotator@vN),
  ``assignment`` (accepted: one annotator's volume) or ``approved`` (none accepted), who
  accepted it and when;
- ``labels_objects.csv``: every painted object's morphometrics (:data:`OBJECT_COLUMNS`).

Files are written by :func:`pipeline.label_export.export_training_labels` and
:func:`pipeline.label_export.export_ome_zarr` into a temporary directory, then streamed as a zip
file by file and removed.
"""

from __future__ import annotations

import csv
import math
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipeline.archives import iter_directory_zip
from pipeline.detections import Geometry, measure_objects
from pipeline.errors import InvalidInputError
from pipeline.label_export import GroundTruthBox, export_ome_zarr, export_training_labels
from pipeline.label_store import labels_read
from webapp.annotation import painted_agreement, selectors
from webapp.annotation.models import (
    AnnotationCampaign,
    Assignment,
    AssignmentState,
    BoxLabelTruth,
    LabelTruthSource,
    TaskBox,
)
from webapp.core.errors import InvalidRequest

NOT_PAINTED = (
    "This campaign's objects are not painted, so it has no label volumes to export: its "
    "ground truth is in export.csv, export.json and boxes.csv."
)
NOTHING_APPROVED = "No box has approved painted labels yet: approve painted tasks first."
OBJECTS_CSV = "labels_objects.csv"
SOURCES_CSV = "sources.csv"
SOURCE_COLUMNS = (
    "box",
    "box_id",
    "assignment_id",
    "annotator",
    "slot",
    "version",
    "objects",
    "source",
    "quorum",
    "members",
    "accepted_by",
    "accepted_at",
)
#: One painted object's figures: ids, voxels, um^3, um^2, sphericity, centroid (image voxels
#: and um, z y x); an object of a 2D image has its area (um^2) instead of the three 3D figures.
OBJECT_FIELDS = (
    "segment_id",
    "voxels",
    "volume_um3",
    "surface_area_um2",
    "sphericity",
    "area_um2",
    "centroid_z",
    "centroid_y",
    "centroid_x",
    "centroid_z_um",
    "centroid_y_um",
    "centroid_x_um",
)
OBJECT_COLUMNS = ("box", "box_id", "assignment_id", "annotator", "version", *OBJECT_FIELDS)


def _number(value: float) -> float | None:
    return None if not math.isfinite(value) else round(float(value), 6)


def label_objects(labels: selectors.Labels, planar: bool = False) -> list[dict[str, Any]]:
    """Each object of one version's labels measured with the pipeline's own code
    (:func:`pipeline.detections.measure_objects`: voxel counts and centroids from
    ``label_stats``, surface areas from smoothed meshes as ``build_meshes`` measures them):
    volume um^3, surface area um^2, sphericity, centroid in image voxels and um. Objects of a 2D
    image (``planar``: the campaign's depth of one voxel is not a thickness) have their area in
    um^2 instead of a volume, a surface and a sphericity."""
    g = labels.geometry
    array = labels_read(labels.blobs, g, labels.chunks)
    geometry = Geometry(g.voxel_size_nm, g.origin_nm)
    table = measure_objects(array, geometry)
    objects = []
    for row in table.itertuples(index=False):
        objects.append(
            {
                "segment_id": int(row.segment_id),
                "voxels": int(row.voxels),
                "volume_um3": None if planar else _number(row.volume),
                "surface_area_um2": None if planar else _number(row.surface_area),
                "sphericity": None if planar else _number(row.sphericity),
                "area_um2": _number(row.voxels * geometry.pixel_area_um2) if planar else None,
                # In the image grid, where the box's voxel 0 is its start.
                "centroid_z": _number(row.centroid_z + g.start[0]),
                "centroid_y": _number(row.centroid_y + g.start[1]),
                "centroid_x": _number(row.centroid_x + g.start[2]),
                "centroid_z_um": _number(row.centroid_z_um),
                "centroid_y_um": _number(row.centroid_y_um),
                "centroid_x_um": _number(row.centroid_x_um),
            }
        )
    return objects


@dataclass(frozen=True)
class PaintedTruth:
    """One box's ground-truth labels and where they come from: ``source`` is ``consensus`` or
    ``assignment`` (a manager accepted it: ``truth``) or ``approved`` (none accepted: the first
    approved assignment by slot with labels, ``assignment``)."""

    box: TaskBox
    source: str
    labels: selectors.Labels
    assignment: Assignment | None = None
    truth: BoxLabelTruth | None = None


def painted_ground_truth(campaign: AnnotationCampaign) -> list[PaintedTruth]:
    """Every box with painted ground truth, in box order (module docstring): its accepted
    truth, else its first approved assignment by slot that has labels."""
    if not campaign.painted:
        raise InvalidRequest(NOT_PAINTED)
    truths: dict[int, PaintedTruth] = {}
    accepted = (
        BoxLabelTruth.objects.filter(box__campaign=campaign)
        .select_related("box", "assignment__annotator", "accepted_by")
        .order_by("box_id")
    )
    for truth in accepted:
        truth.box.campaign = campaign
        labels = painted_agreement.truth_labels(truth.box, truth)
        assignment = truth.assignment if truth.source == LabelTruthSource.ASSIGNMENT else None
        truths[truth.box_id] = PaintedTruth(truth.box, truth.source, labels, assignment, truth)
    approved = (
        Assignment.objects.filter(box__campaign=campaign, state=AssignmentState.APPROVED)
        .exclude(box_id__in=list(truths))
        .select_related("box", "annotator")
        .order_by("box_id", "slot")
    )
    for row in approved:
        if row.box_id in truths:
            continue
        row.box.campaign = campaign
        labels = selectors.labels_at(row, row.version)
        if labels.chunks:
            truths[row.box_id] = PaintedTruth(row.box, "approved", labels, row)
    return [truths[k] for k in sorted(truths)]


def _provenance(t: PaintedTruth) -> dict[str, Any]:
    """Who a box's truth is from: the assignment's columns, or ``consensus`` and its members."""
    row, truth = t.assignment, t.truth
    members = ""
    if truth is not None:
        members = ";".join(f"{m['annotator']}@v{m['version']}" for m in truth.members)
    accepted_by = ""
    if truth is not None and truth.accepted_by is not None:
        accepted_by = truth.accepted_by.username
    return {
        "box": t.box.name,
        "box_id": t.box.pk,
        "assignment_id": "" if row is None else row.pk,
        "annotator": "consensus" if row is None else _annotator(row),
        "slot": "" if row is None else row.slot,
        "version": "" if row is None else t.labels.version,
        "source": t.source,
        "quorum": "" if truth is None or truth.quorum is None else truth.quorum,
        "members": members,
        "accepted_by": accepted_by,
        "accepted_at": "" if truth is None else truth.accepted_at.isoformat(),
    }


def _annotator(row: Assignment) -> str:
    return row.annotator.username if row.annotator else ""


def write_labels_export(campaign: AnnotationCampaign, out_dir: Path) -> Path:
    """Write the export's files (module docstring) into ``out_dir`` (new); 400 when the campaign
    is not painted or no box has approved painted labels."""
    truths = painted_ground_truth(campaign)
    if not truths:
        raise InvalidRequest(NOTHING_APPROVED)
    boxes = [
        GroundTruthBox(t.box.name, t.labels.geometry, t.labels.chunks, t.labels.blobs)
        for t in truths
    ]
    try:
        export_training_labels(
            out_dir,
            campaign.geometry["shape"],
            boxes,
            mask=True,
            dims=campaign.image_layer.spatial_dims,
        )
        for t in truths:
            labels = t.labels
            export_ome_zarr(
                labels.blobs,
                labels.geometry,
                labels.chunks,
                out_dir / "boxes" / f"{t.box.pk}.ome.zarr",
                name=t.box.name,
            )
    except InvalidInputError as exc:
        raise InvalidRequest(f"The ground truth cannot be exported: {exc}.") from None
    with (
        open(out_dir / OBJECTS_CSV, "w", newline="") as objects_file,
        open(out_dir / SOURCES_CSV, "w", newline="") as sources_file,
    ):
        objects = csv.writer(objects_file, lineterminator="\n")
        objects.writerow(OBJECT_COLUMNS)
        sources = csv.writer(sources_file, lineterminator="\n")
        sources.writerow(SOURCE_COLUMNS)
        for t in truths:
            provenance = _provenance(t)
            measured = label_objects(t.labels, campaign.image_layer.spatial_dims == 2)
            who = [provenance[k] for k in OBJECT_COLUMNS[:5]]
            for entry in measured:
                objects.writerow(
                    [*who, *("" if entry[k] is None else entry[k] for k in OBJECT_FIELDS)]
                )
            sources.writerow(
                [len(measured) if k == "objects" else provenance[k] for k in SOURCE_COLUMNS]
            )
    return out_dir


def _stored(name: str) -> bool:
    """Zarr chunk files are zstd already: stored, not deflated again."""
    leaf = name.rsplit("/", 1)[-1]
    return ".ome.zarr/" in name and leaf.isdigit()


class _ZipStream:
    """The zip's bytes; closing it (Django closes a streaming response's content when the
    response ends, sent or not) removes the files it was made of."""

    def __init__(self, work: Path, export: Path) -> None:
        self.work = work
        self.chunks = iter_directory_zip(export, stored=_stored)

    def __iter__(self) -> Iterator[bytes]:
        return self

    def __next__(self) -> bytes:
        return next(self.chunks)

    def close(self) -> None:
        self.chunks.close()
        shutil.rmtree(self.work, ignore_errors=True)


def iter_labels_zip(campaign: AnnotationCampaign) -> Iterator[bytes]:
    """The export as a zip streamed file by file. The files are written before the first byte
    is returned (so a refusal is still an HTTP error) and removed when the stream is closed."""
    work = Path(tempfile.mkdtemp(prefix=f"annotation{campaign.pk}-labels-"))
    try:
        write_labels_export(campaign, work / "export")
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise
    return _ZipStream(work, work / "export")
