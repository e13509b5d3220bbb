"""Detections API serializers: one detection (flat columns, as in the exports), table status."""

from __future__ import annotations

from typing import Any

from django.urls import reverse
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from pipeline.detections import COLUMN_DESCRIPTIONS, DETECTION_COLUMNS
from webapp.detections.models import Detection, DetectionBuild, JobState
from webapp.detections.points import layer_points_data_path, layer_points_source_url
from webapp.detections.selectors import INTEGER_COLUMNS, TableStatus

NULLABLE_COLUMNS = frozenset({"surface_area", "sphericity", "mean_intensity", "mean_probability"})


def _column_field(name: str) -> serializers.Field[Any, Any, Any, Any]:
    help_text = COLUMN_DESCRIPTIONS[name]
    if name in INTEGER_COLUMNS:
        return serializers.IntegerField(read_only=True, help_text=help_text)
    return serializers.FloatField(
        read_only=True, allow_null=name in NULLABLE_COLUMNS, help_text=help_text
    )


class DetectionSerializer(serializers.Serializer[Detection]):
    """One object of a segmentation layer: its measurements in voxels and micrometres.

    Voxel positions are in the layer's full-resolution voxels, z y x; boxes are half-open
    (``bbox_z1`` is one past the last voxel). Physical positions are in um, with voxel centres
    at ``origin + index * voxel size`` (so a box's edges lie half a voxel outside its first and
    last voxel centres).
    """

    id = serializers.IntegerField(
        read_only=True, help_text="The detection's database id (stable across rebuilds)."
    )


# One field per table column, declared from the one list of columns (DRF copies the declared
# fields per instance, so adding them after the class statement is the same as writing them in).
DetectionSerializer._declared_fields.update(
    {name: _column_field(name) for name in DETECTION_COLUMNS}
)


class DetectionBuildSerializer(serializers.ModelSerializer[DetectionBuild]):
    """A build job of a layer's table."""

    progress = serializers.FloatField(read_only=True, help_text="done / total of the stage, 0-1.")
    state = serializers.ChoiceField(choices=JobState.choices, read_only=True)

    class Meta:
        model = DetectionBuild
        fields = [
            "id",
            "status",
            "state",
            "reason",
            "stage",
            "done",
            "total",
            "progress",
            "error",
            "n_detections",
            "attempts",
            "created",
            "started",
            "finished",
        ]
        read_only_fields = fields


class TableDownloadsSerializer(serializers.Serializer[dict[str, str | None]]):
    csv = serializers.CharField(help_text="The table as CSV.")
    parquet = serializers.CharField(help_text="The table as Parquet.")
    meshes_zip = serializers.CharField(
        allow_null=True, help_text="Every object's mesh (PLY) in one zip; null without meshes."
    )


class DetectionPointsSerializer(serializers.Serializer[dict[str, str]]):
    """The layer's detections as a Neuroglancer precomputed point annotation source."""

    path = serializers.CharField(
        help_text="Data URL of the source's directory (its files are served like the "
        "dataset's other data)."
    )
    neuroglancer_source = serializers.CharField(
        help_text="Neuroglancer data source string for an annotation layer (versioned: it "
        "changes when the table is rebuilt)."
    )


class TableStatusSerializer(serializers.Serializer[TableStatus]):
    """A segmentation layer's detections table: how many rows, the latest build, downloads."""

    layer = serializers.SerializerMethodField(help_text="The layer's name.")
    table_state = serializers.ChoiceField(
        source="state",
        choices=[*JobState.values, "none"],
        read_only=True,
        help_text="State of the latest build ('none': never built).",
    )
    count = serializers.IntegerField(read_only=True, help_text="Detections in the table.")
    built = serializers.DateTimeField(
        source="built.finished",
        read_only=True,
        allow_null=True,
        help_text="When the rows were written (null: no table yet).",
    )
    unit = serializers.SerializerMethodField(help_text="Unit of the physical columns.")
    latest_build = DetectionBuildSerializer(source="latest", read_only=True, allow_null=True)
    has_meshes = serializers.BooleanField(read_only=True)
    downloads = serializers.SerializerMethodField()
    points = serializers.SerializerMethodField(
        help_text="The detections as Neuroglancer point annotations (written by each table "
        "build; null before the first)."
    )

    def get_layer(self, status: TableStatus) -> str:
        return status.layer.name

    def get_unit(self, status: TableStatus) -> str:
        return "micrometer"

    def _url(self, name: str, status: TableStatus, **kwargs: Any) -> str:
        layer = status.layer
        return reverse(
            name, kwargs={"slug": layer.dataset.slug, "layer_name": layer.name, **kwargs}
        )

    @extend_schema_field(TableDownloadsSerializer)
    def get_downloads(self, status: TableStatus) -> dict[str, str | None]:
        return {
            "csv": self._url("api-detections-export", status, table_format="csv"),
            "parquet": self._url("api-detections-export", status, table_format="parquet"),
            "meshes_zip": (
                self._url("api-detections-meshes-zip", status) if status.has_meshes else None
            ),
        }

    @extend_schema_field(DetectionPointsSerializer(allow_null=True))
    def get_points(self, status: TableStatus) -> dict[str, str] | None:
        request = self.context.get("request")
        base_url = request.build_absolute_uri("/") if request is not None else "/"
        source = layer_points_source_url(status.layer, base_url)
        if source is None:
            return None
        return {"path": layer_points_data_path(status.layer), "neuroglancer_source": source}
