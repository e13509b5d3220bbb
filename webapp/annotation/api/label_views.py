"""Painted labels of an assignment: chunked saves (multipart) and read-only OME-Zarr versions.

``labels/`` answers the labels' geometry and where each version is served; a POST writes the
chunks a page changed (one file part per chunk, named ``z.y.x``: raw uint32 little-endian in z y x
C order, or gzip) as one new version. Who may do what is as for the point annotations: the
annotator writes their own editable task, reviewers and managers read, anyone else gets 404.

``labels/v<n>/<path>`` serves version n as an OME-Zarr label image, both as zarr v2 (NGFF 0.4:
``.zgroup``, ``.zattrs``, ``s0/.zarray``, chunks ``s0/z/y/x``) and v3 (NGFF 0.5: ``zarr.json``,
``s0/zarr.json``, chunks ``s0/c/z/y/x``): the stored blobs are those chunk files. A version never
changes, so its files are cached for good; an all-zero chunk is absent (404, as zarr expects).
A chunk file redirects to its blob, ``labels/chunks/<key>`` (named by its content): a chunk that
a save left as it was keeps its URL, so after a save Neuroglancer, pointed at the new version,
downloads only the chunks that changed (the others come from the browser's cache).
These are files for Neuroglancer and zarr readers, not API operations: like the datasets'
``/data/`` files they stay out of the OpenAPI schema.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.exceptions import RequestDataTooBig, TooManyFieldsSent, TooManyFilesSent
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.views.decorators.csrf import csrf_exempt
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework.parsers import MultiPartParser
from rest_framework.request import Request
from rest_framework.response import Response

from pipeline.errors import InvalidInputError
from pipeline.label_export import (
    ZarrFormat,
    neuroglancer_source,
    ome_zarr_files,
    zarr_chunk_index,
)
from pipeline.label_store import BlobError, PayloadEncoding, blob_key_check
from webapp.annotation import label_exports, selectors, services
from webapp.annotation.api import serializers as s
from webapp.annotation.api.label_files import (
    IMMUTABLE,
    file_response,
    method_refused,
    not_found,
    visible_assignment,
    with_cors,
)
from webapp.annotation.api.views import STALE, _AssignmentView, _version_param
from webapp.annotation.models import Assignment
from webapp.core.api_schema import ErrorSerializer
from webapp.core.errors import InvalidRequest, TooLarge
from webapp.core.users import signed_in_user

GZIP_TYPES = ("application/gzip", "application/x-gzip")
FIELDS = ("base_version", "encoding", "provenance")
# The metadata documents of both zarr formats; their paths never collide.
ZARR_FORMATS: tuple[ZarrFormat, ...] = (2, 3)


def max_request_bytes() -> int:
    """Largest labels save accepted: 100 raw 64^3 chunks and their multipart headers."""
    return int(getattr(settings, "ANNOTATION_LABELS_MAX_REQUEST_BYTES", 112 * 1024**2))


class LabelsMultiPartParser(MultiPartParser):
    """Multipart, with Django's limits on files and fields answered as 413, not 400."""

    def parse(self, stream: Any, media_type: Any = None, parser_context: Any = None) -> Any:
        try:
            return super().parse(stream, media_type, parser_context)
        except TooManyFilesSent:
            raise TooLarge(
                f"At most {services.MAX_LABEL_CHUNKS_PER_SAVE} chunks per save."
            ) from None
        except (TooManyFieldsSent, RequestDataTooBig):
            raise TooLarge("The form has too many or too large fields.") from None


SAVE_FORM = {
    "type": "object",
    "properties": {
        "base_version": {
            "type": "integer",
            "minimum": 0,
            "description": "The version the changes are based on (409 when it is not current).",
        },
        "encoding": {
            "type": "string",
            "enum": ["raw", "gzip"],
            "description": "How every chunk part is encoded (default raw; a part sent as "
            "application/gzip is gzip either way).",
        },
        "provenance": {
            "type": "string",
            "description": 'JSON text: {"<object id>": {"source": "manual" | "click" | '
            '"proposal", "proposal_source": "model" | "watershed" (optional), "model": the '
            "model version's name (optional), "
            '"interpolated": {"xy" | "xz" | "yz": [slice, ...]} (optional: the slices '
            "interpolation filled)}}; updates where "
            "the objects came from (400, nothing saved, when malformed).",
        },
    },
    "required": ["base_version"],
    "additionalProperties": {
        "type": "string",
        "format": "binary",
        "description": "One part per changed chunk, named z.y.x (its index in the box's chunk "
        "grid): uint32 little-endian ids in z y x C order, the chunk's shape (clipped at the "
        "box's far edges).",
    },
}


def _labels_body(request: HttpRequest, row: Assignment, version: int | None) -> dict[str, Any]:
    labels = selectors.labels_at(row, version)
    g = labels.geometry
    url = request.build_absolute_uri(
        f"/api/v1/annotation/assignments/{row.pk}/labels/v{labels.version}/"
    )
    return {
        "version": labels.version,
        "current_version": row.version,
        "geometry": {
            "shape": list(g.shape),
            "chunk": list(g.chunk),
            "start": list(g.start),
            "voxel_size_nm": list(g.voxel_size_nm),
            "origin_nm": list(g.origin_nm),
        },
        "chunks": len(labels.chunks),
        "source": url,
        "neuroglancer_source": neuroglancer_source(url),
        # The meshes (label_mesh_views) only once there is something to mesh.
        "neuroglancer_sources": [neuroglancer_source(url)]
        + ([f"precomputed://{url}meshes/"] if labels.chunks else []),
        "provenance": dict(labels.provenance),
    }


class LabelsView(_AssignmentView):
    """GET: the painted labels' geometry and version ``?version=`` (default the current one) as
    an OME-Zarr URL; POST: save changed chunks (the annotator of a painted campaign's task)
    based on ``base_version``: 409 with the current version when another save came first."""

    serializer_class = s.LabelsStateSerializer
    parser_classes = [LabelsMultiPartParser]

    @extend_schema(
        parameters=[OpenApiParameter("version", OpenApiTypes.INT, description="An earlier one.")],
        responses=s.LabelsStateSerializer,
    )
    def get(self, request: Request, assignment_id: int) -> Response:
        row = self.assignment()
        version = _version_param(request)
        if version is not None and version > row.version:
            raise InvalidRequest(f"version must be 0-{row.version}.")
        return Response(_labels_body(request, row, version))

    @extend_schema(
        request={"multipart/form-data": SAVE_FORM},
        responses={
            200: s.LabelsSaveResultSerializer,
            409: STALE,
            413: OpenApiResponse(ErrorSerializer, description="Too many or too large chunks."),
            415: OpenApiResponse(ErrorSerializer, description="Not a multipart form."),
        },
    )
    def post(self, request: Request, assignment_id: int) -> Response:
        row = self.assignment()
        try:
            length = int(request.META.get("CONTENT_LENGTH") or 0)
        except ValueError:
            length = 0
        if length > max_request_bytes():
            raise TooLarge(
                f"A labels save may be at most {max_request_bytes():,} bytes; "
                "save fewer chunks at a time."
            )
        fields, files = request.POST, request.FILES
        unknown = sorted(set(fields) - set(FIELDS))
        if unknown:
            raise InvalidRequest(
                f"Unknown form field(s) {', '.join(k[:20] for k in unknown[:5])}: chunks are "
                "file parts named z.y.x; the other fields are base_version, encoding and "
                "provenance."
            )
        base = fields.get("base_version", "")
        if not base.isascii() or not base.isdigit() or len(base) > 9:
            raise InvalidRequest("base_version must be the version number the changes are on.")
        encoding = fields.get("encoding") or "raw"
        if encoding not in ("raw", "gzip"):
            raise InvalidRequest("encoding must be raw or gzip.")
        payloads: list[tuple[str, bytes, PayloadEncoding]] = []
        for key, parts in files.lists():
            if len(parts) != 1:
                raise InvalidRequest(f"Chunk {key[:20]} is sent twice.")
            part = parts[0]
            gzip = encoding == "gzip" or (part.content_type or "").lower() in GZIP_TYPES
            payloads.append((key, part.read(), "gzip" if gzip else "raw"))
        user = signed_in_user(request)
        chunks = services.label_payloads_parse(row, user, payloads)  # checks who, first
        provenance_text = fields.get("provenance")
        provenance = None if provenance_text is None else services.provenance_parse(provenance_text)
        result = services.labels_save(row, user, int(base), chunks, provenance)
        return Response(result.__dict__)


class LabelObjectsView(_AssignmentView):
    """Morphometrics of the painted objects of version ``?version=`` (default the current one):
    per object its voxels, volume (um^3), surface area (um^2) and sphericity (a 2D image's: its
    area, um^2) measured by the pipeline's own code, and its centroid (image voxels and um). Who
    may read: as ``labels/``."""

    serializer_class = s.LabelObjectsSerializer

    @extend_schema(
        parameters=[OpenApiParameter("version", OpenApiTypes.INT, description="An earlier one.")],
        responses=s.LabelObjectsSerializer,
    )
    def get(self, request: Request, assignment_id: int) -> Response:
        row = self.assignment()
        version = _version_param(request)
        if version is not None and version > row.version:
            raise InvalidRequest(f"version must be 0-{row.version}.")
        labels = selectors.labels_at(row, version)
        provenance = selectors.labels_provenance_at(row.pk, labels.version)
        planar = row.box.campaign.image_layer.spatial_dims == 2
        objects = label_exports.label_objects(labels, planar)
        for item in objects:
            item["provenance"] = provenance.get(str(item["segment_id"]))
        return Response(
            {"version": labels.version, "current_version": row.version, "objects": objects}
        )


# --- the OME-Zarr files of a version ------------------------------------------------------------


def _to_blob(request: HttpRequest, prefix: str, key: str) -> HttpResponse:
    """A chunk file of a version is its blob, by content (``<prefix>/labels/chunks/<key>``): a
    redirect, so a chunk unchanged between versions has one URL and the browser fetches it once."""
    response = HttpResponseRedirect(f"{prefix}/labels/chunks/{key}")
    response["Cache-Control"] = IMMUTABLE  # a version's chunk never changes
    return with_cors(request, response)


@csrf_exempt
def labels_chunk_blob(request: HttpRequest, assignment_id: int, key: str) -> HttpResponse:
    """A labels chunk file by its blob key (where a version's chunk files redirect); 404 for an
    unknown key or an assignment that may not be seen."""
    refused = method_refused(request)
    if refused is not None:
        return refused
    row = visible_assignment(request, assignment_id)
    if row is None:
        return not_found(request)
    try:
        body = selectors.label_blobs(row.box.campaign_id).get(blob_key_check(key))
    except (InvalidInputError, BlobError):
        return not_found(request)
    return file_response(request, body, "application/octet-stream")


@csrf_exempt
def labels_zarr_file(
    request: HttpRequest, assignment_id: int, version: int, path: str
) -> HttpResponse:
    """A file of version ``version`` of the assignment's labels as OME-Zarr (module docstring);
    404 for what is not there, may not be seen, or is an all-zero chunk."""
    refused = method_refused(request)
    if refused is not None:
        return refused
    row = visible_assignment(request, assignment_id)
    if row is None or version > row.version:
        return not_found(request)
    prefix = request.path.rsplit("/labels/v", 1)[0]
    return zarr_file_response(request, selectors.labels_at(row, version), path, blobs_at=prefix)


def zarr_file_response(
    request: HttpRequest,
    labels: selectors.Labels,
    path: str,
    name: str = "labels",
    blobs_at: str | None = None,
) -> HttpResponse:
    """File ``path`` of ``labels`` as an OME-Zarr label image (v2 and v3 documents, chunks as
    stored), cached for good (what it serves never changes); 404 for an all-zero chunk or
    anything else. A chunk redirects to ``<blobs_at>/labels/chunks/<key>`` when given, else is
    answered here. The caller has checked who may read it."""
    body: bytes | None = None
    content_type = "application/json"
    for zarr_format in ZARR_FORMATS:
        documents = ome_zarr_files(labels.geometry, name=name, zarr_format=zarr_format)
        if path in documents:
            body = documents[path]
            break
        index = zarr_chunk_index(path, labels.geometry, zarr_format)
        if index is not None:
            key = labels.chunks.get(index)
            if key is None:
                return not_found(request)  # all zero: the fill value
            if blobs_at is not None:
                return _to_blob(request, blobs_at, key)
            try:
                body = labels.blobs.get(key)
            except BlobError:
                return not_found(request)
            content_type = "application/octet-stream"
            break
    if body is None:
        return not_found(request)
    return file_response(request, body, content_type)
