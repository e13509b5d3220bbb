"""Serializers of the datasets API: datasets with layers, share links, imports and jobs."""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from typing import Any

import numpy as np
from django.contrib.auth.models import User
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from webapp.datasets.data_urls import data_path, layer_source_url
from webapp.datasets.import_rules import unit_parse, voxel_size_parse
from webapp.datasets.models import (
    Dataset,
    DatasetJob,
    JobState,
    Layer,
    LayerKind,
    ShareLink,
    Visibility,
)
from webapp.datasets.services_errors import InvalidRequest


def viewer_url(slug: str, share_token: str | None = None) -> str:
    """Site-relative URL of a dataset's viewer page."""
    if share_token:
        return f"/s/{share_token}/datasets/{slug}/"
    return f"/datasets/{slug}/"


def _base_url(context: Mapping[str, Any]) -> str:
    request = context.get("request")
    return request.build_absolute_uri("/") if request is not None else "/"


def layer_voxels(layer: Layer) -> int:
    """Voxels of the layer's full-resolution array (0 for meshes)."""
    if layer.kind == LayerKind.MESH or not layer.shape:
        return 0
    return math.prod(int(s) for s in layer.shape)


def layer_bytes_estimate(layer: Layer) -> int:
    """Uncompressed bytes of all pyramid levels (each level halves the spatial axes)."""
    voxels = layer_voxels(layer)
    if not voxels:
        return 0
    try:
        itemsize = np.dtype(layer.dtype).itemsize
    except TypeError:
        return 0
    spatial = sum(1 for a in layer.axes if a in ("z", "y", "x")) or 3
    shrink = 2**spatial
    return int(sum(voxels * itemsize / shrink**level for level in range(max(layer.levels, 1))))


class ContrastWindowSerializer(serializers.Serializer[dict[str, float]]):
    min = serializers.FloatField()
    max = serializers.FloatField()


class LayerSerializer(serializers.ModelSerializer[Layer]):
    source_url = serializers.SerializerMethodField(
        help_text="Neuroglancer source, e.g. zarr3://http://host/data/<slug>/image.ome.zarr"
    )
    contrast_window = serializers.SerializerMethodField()
    source_layer: serializers.SlugRelatedField[Layer] = serializers.SlugRelatedField(
        slug_field="name",
        read_only=True,
        allow_null=True,
        help_text="Name of the segmentation a mesh layer draws; null for other layers.",
    )
    voxels = serializers.SerializerMethodField()
    bytes_estimate = serializers.SerializerMethodField()

    class Meta:
        model = Layer
        fields = [
            "name",
            "kind",
            "path",
            "ngff_version",
            "shape",
            "axes",
            "dtype",
            "voxel_size",
            "unit",
            "channels",
            "levels",
            "contrast_window",
            "source_layer",
            "source_url",
            "voxels",
            "bytes_estimate",
        ]
        read_only_fields = fields

    def get_source_url(self, layer: Layer) -> str:
        return layer_source_url(layer, _base_url(self.context), self.context.get("share_token"))

    @extend_schema_field(ContrastWindowSerializer(allow_null=True))
    def get_contrast_window(self, layer: Layer) -> dict[str, float] | None:
        if layer.contrast_min is None or layer.contrast_max is None:
            return None
        return {"min": layer.contrast_min, "max": layer.contrast_max}

    def get_voxels(self, layer: Layer) -> int:
        return layer_voxels(layer)

    def get_bytes_estimate(self, layer: Layer) -> int:
        return layer_bytes_estimate(layer)


class DatasetSerializer(serializers.ModelSerializer[Dataset]):
    owner: serializers.SlugRelatedField[User] = serializers.SlugRelatedField(
        slug_field="username", read_only=True
    )
    viewer_url = serializers.SerializerMethodField()
    layers = LayerSerializer(many=True, read_only=True)
    voxels = serializers.SerializerMethodField(help_text="Voxels of the image layer.")
    bytes_estimate = serializers.SerializerMethodField(
        help_text="Uncompressed bytes of all image and label levels."
    )

    class Meta:
        model = Dataset
        fields = [
            "id",
            "name",
            "slug",
            "description",
            "owner",
            "visibility",
            "team",
            "created",
            "updated",
            "viewer_url",
            "layers",
            "voxels",
            "bytes_estimate",
        ]
        read_only_fields = fields

    def get_viewer_url(self, dataset: Dataset) -> str:
        return viewer_url(dataset.slug, self.context.get("share_token"))

    def get_voxels(self, dataset: Dataset) -> int:
        images = [layer for layer in dataset.layers.all() if layer.kind == LayerKind.IMAGE]
        return layer_voxels(images[0]) if images else 0

    def get_bytes_estimate(self, dataset: Dataset) -> int:
        return sum(layer_bytes_estimate(layer) for layer in dataset.layers.all())


class DatasetUpdateSerializer(serializers.Serializer[dict[str, Any]]):
    name = serializers.CharField(max_length=200, required=False)
    description = serializers.CharField(allow_blank=True, required=False)
    visibility = serializers.ChoiceField(choices=Visibility.choices, required=False)
    team = serializers.IntegerField(
        allow_null=True, required=False, help_text="Team id (needed for visibility 'team')."
    )


class ShareLinkSerializer(serializers.ModelSerializer[ShareLink]):
    created_by: serializers.SlugRelatedField[User] = serializers.SlugRelatedField(
        slug_field="username", read_only=True
    )
    active = serializers.SerializerMethodField()
    viewer_url = serializers.SerializerMethodField(help_text="Viewer page opened by the link.")
    data_url = serializers.SerializerMethodField(help_text="Base URL of the dataset's data.")

    class Meta:
        model = ShareLink
        fields = [
            "id",
            "label",
            "token",
            "created_by",
            "created",
            "expires_at",
            "revoked_at",
            "active",
            "viewer_url",
            "data_url",
        ]
        read_only_fields = fields

    def _absolute(self, path: str) -> str:
        request = self.context.get("request")
        return request.build_absolute_uri(path) if request is not None else path

    def get_active(self, link: ShareLink) -> bool:
        return link.is_active()

    def get_viewer_url(self, link: ShareLink) -> str:
        return self._absolute(viewer_url(link.dataset.slug, link.token))

    def get_data_url(self, link: ShareLink) -> str:
        return self._absolute(data_path(link.dataset, "", link.token).rstrip("/") + "/")


class ShareLinkCreateSerializer(serializers.Serializer[dict[str, Any]]):
    # DRF's metaclass moves declared fields out of the class, so ``Field.label`` (the form label)
    # is not replaced at runtime; the stubs see a field overriding it.
    label = serializers.CharField(  # type: ignore[assignment]
        max_length=200, allow_blank=True, required=False, default=""
    )
    expires_at = serializers.DateTimeField(allow_null=True, required=False, default=None)


class JobSerializer(serializers.ModelSerializer[DatasetJob]):
    progress = serializers.FloatField(read_only=True, help_text="done / total of the stage, 0-1.")
    state = serializers.ChoiceField(
        choices=JobState.choices,
        read_only=True,
        help_text="status as it stands now: 'retrying' while a running job's worker is gone "
        "(lease expired or process dead) or while a new attempt restarts it.",
    )
    name = serializers.SerializerMethodField(help_text="Name of the dataset being imported.")
    dataset = serializers.SerializerMethodField(help_text="Slug of the dataset, once it exists.")
    viewer_url = serializers.SerializerMethodField()

    class Meta:
        model = DatasetJob
        fields = [
            "id",
            "kind",
            "status",
            "state",
            "attempts",
            "heartbeat",
            "stage",
            "done",
            "total",
            "progress",
            "error",
            "name",
            "dataset",
            "viewer_url",
            "created",
            "updated",
            "started",
            "finished",
        ]
        read_only_fields = fields

    # ``job.dataset`` is None without a query when ``dataset_id`` is.

    def get_name(self, job: DatasetJob) -> str:
        if job.dataset is not None:
            return job.dataset.name
        return str((job.params or {}).get("name", ""))

    def get_dataset(self, job: DatasetJob) -> str | None:
        return job.dataset.slug if job.dataset is not None else None

    def get_viewer_url(self, job: DatasetJob) -> str | None:
        return viewer_url(job.dataset.slug) if job.dataset is not None else None


def parse_number_list(raw: Any) -> list[Any]:
    """ "200,200,200", "200 200 200" or a JSON list ``[200, 200, 200]``."""
    if isinstance(raw, (list, tuple)):
        return list(raw)
    text = str(raw).strip()
    if text.startswith("["):
        try:
            value = json.loads(text)
        except json.JSONDecodeError:
            raise serializers.ValidationError("Not a valid JSON list of numbers.")
        if not isinstance(value, list):
            raise serializers.ValidationError("Expected a list of numbers.")
        return value
    return [part for part in re.split(r"[,\s]+", text) if part]


@extend_schema_field(OpenApiTypes.STR)
class VoxelSizeField(serializers.Field[list[float] | None, object, list[float] | None, object]):
    """Voxel size z, y, x: "200,200,200", "200 200 200" or a JSON list."""

    def to_internal_value(self, data: object) -> list[float] | None:
        if data in ("", None):
            return None
        try:
            return voxel_size_parse(parse_number_list(data))
        except InvalidRequest as exc:
            raise serializers.ValidationError(str(exc))

    def to_representation(self, value: list[float] | None) -> list[float] | None:
        return value


class ImportRequestSerializer(serializers.Serializer[dict[str, Any]]):
    """Multipart form of ``POST /api/v1/imports/``.

    Label images: one or more ``labels`` files, named by ``label_names`` in the same order
    (repeated fields or one comma-separated value); without names, a label takes its file name
    (``nuclei.tif`` -> ``nuclei``).
    """

    file = serializers.FileField(
        required=False,
        help_text="TIFF / OME-TIFF stack, NumPy .npy, or a .zip of an OME-Zarr store or TIFF.",
    )
    server_path = serializers.CharField(
        required=False,
        help_text="Staff only: a file or OME-Zarr directory on the server, instead of `file`.",
    )
    register_in_place = serializers.BooleanField(
        required=False,
        default=False,
        help_text=(
            "Staff only, with server_path: reference an OME-Zarr 0.4/0.5 without copying (its "
            "first level untranslated: the site places images at the origin)."
        ),
    )
    labels = serializers.ListField(
        child=serializers.FileField(), required=False, default=list, help_text="Label images."
    )
    label_names = serializers.ListField(
        child=serializers.CharField(), required=False, default=list, help_text="Label names."
    )
    name = serializers.CharField(max_length=200)
    voxel_size = VoxelSizeField(required=False, default=None)
    unit = serializers.CharField(
        required=False,
        default="",
        allow_blank=True,
        help_text="Unit of voxel_size (nanometer, micrometer...); empty: the file's own.",
    )
    visibility = serializers.ChoiceField(choices=Visibility.choices, default=Visibility.PRIVATE)
    description = serializers.CharField(required=False, default="", allow_blank=True)
    team = serializers.IntegerField(required=False, allow_null=True, default=None)

    def validate_unit(self, value: str) -> str | None:
        try:
            return unit_parse(value)
        except InvalidRequest as exc:
            raise serializers.ValidationError(str(exc))

    def validate_label_names(self, value: list[str]) -> list[str]:
        names: list[str] = []
        for item in value:
            names.extend(part.strip() for part in item.split(",") if part.strip())
        return names

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        has_file = attrs.get("file") is not None
        has_path = bool(attrs.get("server_path"))
        if has_file == has_path:
            raise serializers.ValidationError("Send exactly one of `file` or `server_path`.")
        if attrs.get("register_in_place") and not has_path:
            raise serializers.ValidationError("register_in_place needs server_path.")
        names = attrs.get("label_names") or []
        if names and len(names) != len(attrs.get("labels") or []):
            raise serializers.ValidationError(
                f"Got {len(attrs.get('labels') or [])} label files but {len(names)} label names."
            )
        return attrs
