"""Detections API views: thin adapters from HTTP to the selectors, services and exports.

Every URL names a dataset and one of its segmentation layers; the caller must be allowed to
view the dataset (404 otherwise, as for the dataset itself), and to change it to start a
rebuild. Downloads are plain Django responses (bytes or a stream) inside DRF views, so they
share the permission checks, the error bodies and the schema.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from django.db.models import QuerySet
from django.http import HttpResponse, StreamingHttpResponse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import generics, status
from rest_framework.renderers import JSONRenderer
from rest_framework.request import Request
from rest_framework.response import Response

from pipeline.errors import PipelineError
from pipeline.mesh_export import (
    MEDIA_TYPES as MESH_MEDIA_TYPES,
)
from pipeline.mesh_export import (
    MESH_FILE_FORMATS,
    iter_meshes_zip,
    mesh_dir_check,
    mesh_file_bytes,
    read_object_mesh,
)
from webapp.core.downloads import DownloadRenderer, attachment
from webapp.core.errors import InvalidRequest, NotFound
from webapp.core.pagination import BoundedLimitOffsetPagination
from webapp.core.permissions import VIEW, RestrictedAPIView
from webapp.core.users import signed_in_user
from webapp.datasets.models import Dataset, Layer
from webapp.detections import exports, selectors, services
from webapp.detections.api.serializers import DetectionSerializer, TableStatusSerializer
from webapp.detections.builds import mesh_layer_of
from webapp.detections.export_registry import layer_export_columns
from webapp.detections.models import NUMERIC_COLUMNS, Detection
from webapp.detections.selectors import DetectionQuery, layer_for_detections

TABLE_FORMATS = ("csv", "parquet")

_RANGE_PARAMETERS = [
    OpenApiParameter(
        f"{column}_{side}",
        OpenApiTypes.DOUBLE,
        description=(
            f"Only detections whose {column} is {'at least' if side == 'min' else 'at most'} "
            "this (a finite number)."
        ),
    )
    for column in NUMERIC_COLUMNS
    for side in ("min", "max")
]
_QUERY_PARAMETERS = [
    OpenApiParameter(
        "ordering",
        OpenApiTypes.STR,
        enum=[*NUMERIC_COLUMNS, *(f"-{c}" for c in NUMERIC_COLUMNS)],
        description="Column to sort by, '-' first for descending (default segment_id); ties "
        "are broken by segment_id in the same direction.",
    ),
    OpenApiParameter(
        "region",
        OpenApiTypes.STR,
        pattern=r"^-?\d{1,10}(,-?\d{1,10}){5}$",
        description="Only detections whose bounding box intersects this box of voxels, "
        "'z0,y0,x0,z1,y1,x1' (half-open: z0 <= z < z1), z1 > z0 etc.",
    ),
    OpenApiParameter(
        "verdict",
        OpenApiTypes.STR,
        description="Only detections with this final verdict (a verdict name of the layer's "
        "verdict campaign: the latest proofreading campaign over it with a decided detection, "
        "e.g. 'fp'); 400 when the layer has no verdicts or no such verdict.",
    ),
    *_RANGE_PARAMETERS,
]


class DetectionPagination(BoundedLimitOffsetPagination):
    """The core pagination, with the count taken from the table's build when the view knows
    it (an unfiltered list: no COUNT over 100,000 rows per page)."""

    known_count: int | None = None

    def get_count(self, queryset: Any) -> int:
        if self.known_count is not None:
            return self.known_count
        return int(super().get_count(queryset))


def _download_name(layer: Layer, suffix: str) -> str:
    base = re.sub(r"[^A-Za-z0-9._-]+", "_", f"{layer.dataset.slug}-{layer.name}")
    return f"{base}-{suffix}"


def _readable_meshes(layer: Layer) -> Path:
    """The directory of the layer's meshes; 404 when it has none or they cannot be read."""
    meshes = mesh_layer_of(layer)
    if meshes is None:
        raise NotFound(f"Layer {layer.name!r} has no meshes.")
    path = layer.dataset.root / meshes.path
    try:
        mesh_dir_check(path)
    except PipelineError as exc:
        raise NotFound(f"The meshes of layer {layer.name!r} cannot be read: {exc}")
    return path


class _LayerView(RestrictedAPIView[Detection]):
    """Base of the views under ``datasets/<slug>/layers/<layer_name>/detections/``."""

    queryset = Detection.objects.all()

    def layer(self, action: str = VIEW) -> Layer:
        _, layer = layer_for_detections(
            self.request.user, self.kwargs["slug"], self.kwargs["layer_name"]
        )
        if action != VIEW:
            self.get_restricted(Dataset.objects.all(), action, id=layer.dataset_id)
        return layer


@extend_schema(parameters=_QUERY_PARAMETERS)
class DetectionListView(_LayerView, generics.ListAPIView[Detection]):
    """A segmentation layer's detections, paged, sorted by any column (``ordering``), filtered
    by column ranges (``<column>_min``, ``<column>_max``, inclusive), by a region of voxels and
    by final verdict (``verdict``).

    An unknown column, or a value that is not a finite number, is a 400.
    """

    serializer_class = DetectionSerializer
    pagination_class = DetectionPagination

    def get_queryset(self) -> QuerySet[Detection]:
        layer = self.layer()
        return selectors.detections_of_layer(
            layer, DetectionQuery.from_params(self.request.query_params)
        )

    def list(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        """Page the ordered segment ids, then read the page's rows (see ``detection_keys``).

        The rows are the database's values as they are (numbers and nulls, in the
        serializer's fields), so no per-field serializer work is done for a page.
        """
        layer = self.layer()
        query = DetectionQuery.from_params(request.query_params)
        paginator = self.paginator
        assert isinstance(paginator, DetectionPagination)
        if not query.filters:
            paginator.known_count = selectors.table_count(layer)
        page = paginator.paginate_queryset(
            selectors.detection_keys(layer, query), request, view=self
        )
        rows = selectors.detection_rows(layer, page or [])
        return paginator.get_paginated_response(rows)


class DetectionDetailView(_LayerView):
    """One detection of a segmentation layer, by segment id."""

    serializer_class = DetectionSerializer

    def get(self, request: Request, slug: str, layer_name: str, segment_id: int) -> Response:
        detection = selectors.detection_get(self.layer(), segment_id)
        return Response(self.get_serializer(detection).data)


@extend_schema(
    parameters=[
        OpenApiParameter(
            "file_format", OpenApiTypes.STR, OpenApiParameter.PATH, enum=list(MESH_FILE_FORMATS)
        )
    ],
    responses={
        **{
            (200, MESH_MEDIA_TYPES[f]): OpenApiResponse(
                OpenApiTypes.BINARY, description=f"The mesh as {f.upper()}, in um, x y z."
            )
            for f in MESH_FILE_FORMATS
        },
    },
)
class DetectionMeshView(_LayerView):
    """One detection's mesh (the finest level of detail) as PLY, OBJ or GLB, in micrometres
    (x y z, as the physical columns); 404 when the layer or the object has no mesh."""

    renderer_classes = [JSONRenderer, DownloadRenderer]

    def get(
        self, request: Request, slug: str, layer_name: str, segment_id: int, file_format: str
    ) -> HttpResponse:
        if file_format not in MESH_FILE_FORMATS:
            raise InvalidRequest(
                f"Unknown mesh format {file_format[:20]!r}; use one of "
                f"{', '.join(MESH_FILE_FORMATS)}."
            )
        layer = self.layer()
        detection = selectors.detection_get(layer, segment_id)
        meshes = _readable_meshes(layer)
        mesh = read_object_mesh(meshes, detection.segment_id)
        if mesh is None:
            raise NotFound(f"Detection {segment_id} of layer {layer.name!r} has no mesh.")
        response = HttpResponse(
            mesh_file_bytes(mesh, file_format), content_type=MESH_MEDIA_TYPES[file_format]
        )
        attachment(response, _download_name(layer, f"{segment_id}.{file_format}"))
        return response


@extend_schema(
    parameters=[
        OpenApiParameter(
            "table_format", OpenApiTypes.STR, OpenApiParameter.PATH, enum=list(TABLE_FORMATS)
        ),
        *_RANGE_PARAMETERS,
        _QUERY_PARAMETERS[1],  # region
        _QUERY_PARAMETERS[2],  # verdict
    ],
    responses={
        (200, "text/csv"): OpenApiResponse(OpenApiTypes.BINARY, description="The table as CSV."),
        (200, exports.MEDIA_TYPES["parquet"]): OpenApiResponse(
            OpenApiTypes.BINARY, description="The table as Parquet."
        ),
    },
)
class DetectionExportView(_LayerView):
    """The layer's detections table as CSV or Parquet (the list's columns, in segment id
    order), streamed; the list's range, region and verdict filters apply. Once a proofreading
    campaign over the layer has decided detections, two more columns: ``verdict`` (the final
    verdict) and ``verdict_campaign`` (whose: the latest campaign with decided items); once the
    layer has a filter (a run's fitted one, or its owner's), ``kept``: whether each passes it."""

    renderer_classes = [JSONRenderer, DownloadRenderer]

    def get(
        self, request: Request, slug: str, layer_name: str, table_format: str
    ) -> StreamingHttpResponse:
        if table_format not in TABLE_FORMATS:
            raise InvalidRequest(f"Unknown table format {table_format[:20]!r}; use csv or parquet.")
        layer = self.layer()
        query = DetectionQuery.from_params(request.query_params)
        extra = layer_export_columns(layer)  # e.g. proofreading verdicts (curation app)
        batches = selectors.export_batches(layer, query, extra=extra)
        if table_format == "csv":
            stream = exports.csv_stream(batches, exports.export_columns(extra))
        else:
            stream = exports.parquet_stream(batches, extra)
        response = StreamingHttpResponse(stream, content_type=exports.MEDIA_TYPES[table_format])
        attachment(response, _download_name(layer, f"detections.{table_format}"))
        return response


@extend_schema(
    parameters=[
        OpenApiParameter(
            "mesh_format",
            OpenApiTypes.STR,
            enum=list(MESH_FILE_FORMATS),
            description="Format of the files in the archive (default ply).",
        )
    ],
    responses={
        (200, "application/zip"): OpenApiResponse(
            OpenApiTypes.BINARY, description="A zip of '<segment id>.<format>' files, in um."
        )
    },
)
class DetectionMeshesZipView(_LayerView):
    """Every detection's mesh in one zip archive, streamed object by object."""

    renderer_classes = [JSONRenderer, DownloadRenderer]

    def get(self, request: Request, slug: str, layer_name: str) -> StreamingHttpResponse:
        file_format = request.query_params.get("mesh_format") or "ply"
        if file_format not in MESH_FILE_FORMATS:
            raise InvalidRequest(
                f"Unknown mesh format {file_format[:20]!r}; use one of "
                f"{', '.join(MESH_FILE_FORMATS)}."
            )
        layer = self.layer()
        meshes = _readable_meshes(layer)
        ids = list(
            Detection.objects.filter(layer_id=layer.id)
            .order_by("segment_id")
            .values_list("segment_id", flat=True)
        )
        stream = iter_meshes_zip(meshes, ids, file_format)
        response = StreamingHttpResponse(stream, content_type=MESH_MEDIA_TYPES["zip"])
        attachment(response, _download_name(layer, f"meshes-{file_format}.zip"))
        return response


class DetectionTableView(_LayerView):
    """The layer's detections table: rows and latest build (GET); POST starts a rebuild
    (the dataset's owner; a rebuild already queued is returned instead of a second one)."""

    serializer_class = TableStatusSerializer  # type: ignore[assignment]
    method_actions = {"GET": VIEW, "HEAD": VIEW, "OPTIONS": VIEW, "POST": "change"}
    denied_messages = {"change": "Only the dataset's owner can rebuild its detections table."}

    def get(self, request: Request, slug: str, layer_name: str) -> Response:
        return Response(self.get_serializer(selectors.table_status(self.layer())).data)

    @extend_schema(request=None, responses={202: TableStatusSerializer})
    def post(self, request: Request, slug: str, layer_name: str) -> Response:
        layer = self.layer("change")
        services.detections_build_start(layer, user=signed_in_user(request), reason="rebuild")
        data = self.get_serializer(selectors.table_status(layer)).data
        return Response(data, status=status.HTTP_202_ACCEPTED)


class DatasetTablesView(RestrictedAPIView[Dataset]):
    """The detections table of each segmentation layer of a dataset (a plain list)."""

    serializer_class = TableStatusSerializer  # type: ignore[assignment]
    queryset = Dataset.objects.all()
    pagination_class = None

    @extend_schema(responses=TableStatusSerializer(many=True))
    def get(self, request: Request, slug: str) -> Response:
        dataset = self.get_restricted(self.queryset, VIEW, slug=slug)
        statuses = selectors.dataset_table_statuses(dataset)
        return Response(self.get_serializer(statuses, many=True).data)
