"""The detections table of every segmentation layer, and the jobs that build it.

One ``Detection`` row per object (segment id) of a segmentation layer: where it is (centroid and
bounding box, in voxels of the layer's full resolution and in micrometres), how big and how
round it is (voxels, volume, surface area, sphericity), and what the image and a pipeline run
say about it (mean image intensity, mean probability). Proofreading puts foreign keys to these
rows, so a rebuild keeps a segment's row (and its id) and only updates its values: rows are
upserted by ``(layer, segment_id)`` and those of segments that vanished are deleted, all in one
transaction.

Physical units are fixed, whatever the layer's unit: micrometres (um, um^2, um^3), the units of
the meshes' segment properties and of ``pipeline.morphometrics``. Positions follow NGFF's
pixel-centre convention: voxel ``i`` has its centre at ``translation + i * voxel_size``, so a
box of voxels ``[lo, hi)`` spans ``translation + (lo - 0.5) * voxel_size`` to
``translation + (hi - 0.5) * voxel_size`` (where the layer's meshes lie).
"""

from __future__ import annotations

from typing import ClassVar

from django.conf import settings
from django.db import models

from pipeline.detections import DETECTION_COLUMNS
from webapp.core.jobs.models import Job, JobState, JobStatus
from webapp.core.permissions import RestrictedByParent

__all__ = [
    "BBOX_COLUMNS",
    "CENTROID_COLUMNS",
    "INDEXED_COLUMNS",
    "NUMERIC_COLUMNS",
    "ORDERING_PROXY",
    "CardBuild",
    "Detection",
    "DetectionBuild",
    "JobState",
    "JobStatus",
]

# One source for the table's columns: pipeline.detections writes the table in this order.
CENTROID_COLUMNS: tuple[str, ...] = tuple(c for c in DETECTION_COLUMNS if c.startswith("centroid_"))
BBOX_COLUMNS: tuple[str, ...] = tuple(c for c in DETECTION_COLUMNS if c.startswith("bbox_"))
#: Every numeric column, in the order of the API and of the exported tables.
NUMERIC_COLUMNS: tuple[str, ...] = DETECTION_COLUMNS
#: Columns with an index ``(layer, column, segment_id)``: sorting a layer's rows by one of them
#: (either direction) walks the index, and a range on it is an index range.
INDEXED_COLUMNS: tuple[str, ...] = (
    "volume",
    "surface_area",
    "sphericity",
    "mean_intensity",
    "mean_probability",
    "centroid_z",
    "centroid_y",
    "centroid_x",
    "bbox_z0",
    "bbox_y0",
    "bbox_x0",
    "bbox_z1",
    "bbox_y1",
    "bbox_x1",
)
#: Columns sorted through another one they are a positive multiple of (plus a constant), so that
#: they need no index of their own: voxels -> volume, physical positions -> voxel positions.
ORDERING_PROXY: dict[str, str] = {
    "voxels": "volume",
    **{f"centroid_{a}_um": f"centroid_{a}" for a in "zyx"},
    **{f"bbox_{a}{e}_um": f"bbox_{a}{e}" for a in "zyx" for e in "01"},
}


def _index_name(column: str) -> str:
    short = column.replace("mean_", "m").replace("centroid_", "c").replace("surface_area", "area")
    return f"detection_{short}"[:30]


class DetectionQuerySet(RestrictedByParent["Detection"]):
    """A detection is visible to whoever may view its layer's dataset."""

    parent_field = "layer__dataset"
    parent_actions = {"view": "view"}


class Detection(models.Model):
    """One object of a segmentation layer with its measurements (see the module docstring)."""

    layer = models.ForeignKey("datasets.Layer", on_delete=models.CASCADE, related_name="detections")
    segment_id = models.BigIntegerField()
    # Id of the DetectionBuild that wrote this row's values last: at the end of a build, rows of
    # older builds are deleted (their segments no longer exist). A number, not a foreign key:
    # deleting a build must not touch (SET NULL) 100,000 rows, nor block deleting a layer.
    build_number = models.BigIntegerField(default=0)

    voxels = models.BigIntegerField()
    volume = models.FloatField(help_text="um^3")
    surface_area = models.FloatField(null=True, blank=True, help_text="um^2, from the mesh")
    sphericity = models.FloatField(null=True, blank=True)
    mean_intensity = models.FloatField(null=True, blank=True)
    mean_probability = models.FloatField(null=True, blank=True)

    centroid_z = models.FloatField(help_text="voxels")
    centroid_y = models.FloatField(help_text="voxels")
    centroid_x = models.FloatField(help_text="voxels")
    centroid_z_um = models.FloatField()
    centroid_y_um = models.FloatField()
    centroid_x_um = models.FloatField()

    # Voxel box, half-open: [bbox_z0, bbox_z1) etc.
    bbox_z0 = models.IntegerField()
    bbox_y0 = models.IntegerField()
    bbox_x0 = models.IntegerField()
    bbox_z1 = models.IntegerField()
    bbox_y1 = models.IntegerField()
    bbox_x1 = models.IntegerField()
    # The same box in micrometres (voxel edges, see the module docstring).
    bbox_z0_um = models.FloatField()
    bbox_y0_um = models.FloatField()
    bbox_x0_um = models.FloatField()
    bbox_z1_um = models.FloatField()
    bbox_y1_um = models.FloatField()
    bbox_x1_um = models.FloatField()

    objects = DetectionQuerySet.as_manager()

    class Meta:
        ordering = ["layer", "segment_id"]
        constraints = [
            models.UniqueConstraint(
                fields=["layer", "segment_id"], name="unique_detection_segment_per_layer"
            )
        ]
        indexes: ClassVar[list[models.Index]] = [
            models.Index(fields=["layer", column, "segment_id"], name=_index_name(column))
            for column in INDEXED_COLUMNS
        ]

    def __str__(self) -> str:
        return f"{self.layer_id}:{self.segment_id}"


class DetectionBuildQuerySet(RestrictedByParent["DetectionBuild"]):
    """A layer's builds are visible with its dataset; starting one is changing the dataset."""

    parent_field = "layer__dataset"
    parent_actions = {"view": "view", "change": "change"}


class DetectionBuild(Job):
    """A (re)build of one layer's detections table (see ``webapp.core.jobs``)."""

    layer = models.ForeignKey(
        "datasets.Layer", on_delete=models.CASCADE, related_name="detection_builds"
    )
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="detection_builds"
    )
    # Why it was started: "import" (layers_changed), "rebuild" (API), "command".
    reason = models.CharField(max_length=20, blank=True)
    # Set when it succeeded: how many rows the table holds.
    n_detections = models.PositiveIntegerField(null=True, blank=True)
    params = models.JSONField(default=dict)

    objects = DetectionBuildQuerySet.as_manager()

    class Meta(Job.Meta):
        indexes: ClassVar[list[models.Index]] = [
            models.Index(fields=["layer", "-created"], name="detection_build_latest")
        ]


class CardBuildQuerySet(RestrictedByParent["CardBuild"]):
    """A layer's card builds are visible with its dataset; starting one is changing it."""

    parent_field = "layer__dataset"
    parent_actions = {"view": "view", "change": "change"}


class CardBuild(Job):
    """Rendering of one layer's proofreading gallery cards (``webapp.detections.cards``).

    ``key`` names the card set (``pipeline.gallery.card_set_key``: renderer, style, the layer's
    stores and detections build): the cards live in ``cards_dir(layer) / key`` and a change of
    any input gives a new key, so a stale card is never served.
    """

    layer = models.ForeignKey(
        "datasets.Layer", on_delete=models.CASCADE, related_name="card_builds"
    )
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="card_builds"
    )
    # Why it was started: "detections" (after a table build), "gallery" (a gallery was
    # opened), "rebuild" (API).
    reason = models.CharField(max_length=20, blank=True)
    key = models.CharField(max_length=32)
    # {"priority": [segment ids rendered first]}: the first pages of a gallery.
    params = models.JSONField(default=dict)
    # Set when it ended: cards the set holds (drawn by this build or already there, e.g. on
    # demand), detections whose card could not be drawn.
    n_cards = models.PositiveIntegerField(null=True, blank=True)
    n_failed = models.PositiveIntegerField(null=True, blank=True)

    objects = CardBuildQuerySet.as_manager()

    class Meta(Job.Meta):
        indexes: ClassVar[list[models.Index]] = [
            models.Index(fields=["layer", "-created"], name="card_build_latest")
        ]
