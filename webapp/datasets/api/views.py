"""Datasets API views: thin adapters from HTTP to selectors and services."""

from __future__ import annotations

import re
import shutil
import uuid
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.files.uploadedfile import UploadedFile
from django.db.models import Q, QuerySet
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import generics, status
from rest_framework.parsers import FormParser, MultiPartParser
from rest_framework.permissions import IsAuthenticated
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from webapp.core.api_schema import ErrorSerializer
from webapp.core.errors import InvalidRequest, NotAllowed, NotFound, TooLarge
from webapp.core.parsers import StrictJSONParser
from webapp.core.permissions import VIEW, MayDoAction, RestrictedActionView, RestrictedAPIView
from webapp.core.users import signed_in_user
from webapp.datasets import services
from webapp.datasets.api.serializers import (
    DatasetSerializer,
    DatasetUpdateSerializer,
    ImportRequestSerializer,
    JobSerializer,
    ShareLinkCreateSerializer,
    ShareLinkSerializer,
)
from webapp.datasets.import_rules import label_name_check
from webapp.datasets.models import Dataset, DatasetJob, Layer, ShareLink, Visibility

OWNER_ONLY = {
    "change": "Only the dataset's owner can change it.",
    "delete": "Only the dataset's owner can delete it.",
    "share": "Only the dataset's owner can manage its share links.",
}


def _datasets_with_layers(qs: QuerySet[Dataset]) -> QuerySet[Dataset]:
    return qs.select_related("owner").prefetch_related("layers__dataset", "layers__source_layer")


# ---------------------------------------------------------------------------------------------
# Datasets
# ---------------------------------------------------------------------------------------------


@extend_schema(
    parameters=[
        OpenApiParameter("visibility", OpenApiTypes.STR, enum=Visibility.values),
        OpenApiParameter("search", OpenApiTypes.STR, description="Part of name/description."),
    ]
)
class DatasetListView(RestrictedAPIView[Dataset], generics.ListAPIView[Dataset]):
    """Datasets the caller may see (anonymous: the public ones), with layers and sources."""

    serializer_class = DatasetSerializer
    queryset = Dataset.objects.all()

    def get_queryset(self) -> QuerySet[Dataset]:
        qs = super().get_queryset()
        visibility = self.request.query_params.get("visibility")
        if visibility:
            if visibility not in Visibility.values:
                raise InvalidRequest(f"Unknown visibility {visibility!r}.")
            qs = qs.filter(visibility=visibility)
        search = (self.request.query_params.get("search") or "").strip()
        if search:
            qs = qs.filter(
                Q(name__icontains=search)
                | Q(description__icontains=search)
                | Q(slug__icontains=search)
            )
        return _datasets_with_layers(qs).order_by("name", "id")


class DatasetDetailView(RestrictedAPIView[Dataset], generics.RetrieveUpdateDestroyAPIView[Dataset]):
    """One dataset: read by anyone who may see it; changed or deleted by its owner."""

    serializer_class = DatasetSerializer
    queryset = Dataset.objects.all()
    denied_messages = OWNER_ONLY
    lookup_field = "slug"
    http_method_names = ["get", "patch", "delete", "head", "options"]

    def get_queryset(self) -> QuerySet[Dataset]:
        return _datasets_with_layers(super().get_queryset())

    @extend_schema(request=DatasetUpdateSerializer, responses=DatasetSerializer)
    def patch(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        dataset = self.get_object()
        form = DatasetUpdateSerializer(data=request.data, partial=True)
        form.is_valid(raise_exception=True)
        dataset = services.dataset_update(dataset, signed_in_user(request), **form.validated_data)
        dataset = self.get_queryset().get(id=dataset.id)
        return Response(self.get_serializer(dataset).data)

    def perform_destroy(self, instance: Dataset) -> None:
        services.dataset_delete(instance, signed_in_user(self.request))


# ---------------------------------------------------------------------------------------------
# Share links
# ---------------------------------------------------------------------------------------------


class ShareLinkListView(RestrictedAPIView[ShareLink]):
    """The dataset's share links, newest first (owner only; a plain list); POST creates one."""

    serializer_class = ShareLinkSerializer
    queryset = ShareLink.objects.all()
    permission_classes = [IsAuthenticated, MayDoAction]
    pagination_class = None
    method_actions = {"GET": "share", "HEAD": "share", "OPTIONS": VIEW, "POST": "share"}
    denied_messages = OWNER_ONLY

    @extend_schema(responses=ShareLinkSerializer(many=True))
    def get(self, request: Request, slug: str) -> Response:
        dataset = self.get_restricted(Dataset.objects.all(), "share", slug=slug)
        links = self.get_queryset().filter(dataset=dataset).select_related("dataset", "created_by")
        return Response(self.get_serializer(links, many=True).data)

    @extend_schema(request=ShareLinkCreateSerializer, responses={201: ShareLinkSerializer})
    def post(self, request: Request, slug: str) -> Response:
        dataset = self.get_restricted(Dataset.objects.all(), "share", slug=slug)
        form = ShareLinkCreateSerializer(data=request.data)
        form.is_valid(raise_exception=True)
        link = services.share_link_create(
            dataset,
            signed_in_user(request),
            label=form.validated_data["label"],
            expires_at=form.validated_data["expires_at"],
        )
        return Response(self.get_serializer(link).data, status=status.HTTP_201_CREATED)


class ShareLinkRevokeView(RestrictedAPIView[ShareLink]):
    """Revoke a share link now: its URLs stop working (owner only)."""

    serializer_class = ShareLinkSerializer
    queryset = ShareLink.objects.all()
    permission_classes = [IsAuthenticated, MayDoAction]
    method_actions = {"OPTIONS": VIEW, "POST": "share"}
    denied_messages = OWNER_ONLY

    @extend_schema(request=None, responses=ShareLinkSerializer)
    def post(self, request: Request, slug: str, link_id: int) -> Response:
        dataset = self.get_restricted(Dataset.objects.all(), "share", slug=slug)
        link = (
            ShareLink.objects.restrict(request.user, "change")
            .select_related("dataset")
            .filter(dataset=dataset, id=link_id)
            .first()
        )
        if link is None:
            raise NotFound("No such share link for this dataset.")
        link = services.share_link_revoke(link, signed_in_user(request))
        return Response(self.get_serializer(link).data)


# ---------------------------------------------------------------------------------------------
# Imports and jobs
# ---------------------------------------------------------------------------------------------

_UNSAFE_CHARS = re.compile(r"[^A-Za-z0-9._-]+")
_LABEL_CHARS = re.compile(r"[^A-Za-z0-9_-]+")


def upload_filename_sanitize(raw: str | None) -> str:
    """A safe file name from a client's: directories stripped, no '..', plain characters."""
    base = re.split(r"[\\/]", raw or "")[-1].strip()
    if base in ("", ".", "..") or ".." in base:
        raise InvalidRequest(f"Refusing the file name {raw!r}: give a plain file name.")
    name = _UNSAFE_CHARS.sub("_", base).lstrip("._")
    if not name:
        raise InvalidRequest(f"Refusing the file name {raw!r}: give a plain file name.")
    if len(name) > 150:
        stem, dot, ext = name.rpartition(".")
        name = (stem[: 140 - len(ext)] + dot + ext) if dot and len(ext) <= 10 else name[:150]
    return name


def _label_name_from_file(filename: str) -> str:
    stem = filename.split(".", 1)[0]
    return _LABEL_CHARS.sub("_", stem).strip("_-") or "labels"


def _store_upload(upload: UploadedFile[bytes], directory: Path, name: str) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    dest = directory / name
    temp_path = getattr(upload, "temporary_file_path", None)
    if temp_path is not None:
        shutil.move(temp_path(), dest)
    else:
        with open(dest, "wb") as out:
            for chunk in upload.chunks():
                out.write(chunk)
    return dest


class ImportCreateView(APIView):
    """Upload a volume (and label images) and start an import job; answers 202 with the job."""

    permission_classes = [IsAuthenticated]
    parser_classes = [MultiPartParser, FormParser, StrictJSONParser]

    @extend_schema(
        request={"multipart/form-data": ImportRequestSerializer},
        responses={202: JobSerializer, 413: ErrorSerializer},
    )
    def post(self, request: Request) -> Response:
        limit = settings.MAX_UPLOAD_BYTES
        too_large = TooLarge(
            f"The upload is larger than this site's limit of {limit:,} bytes "
            f"(ANNOTOME_MAX_UPLOAD_BYTES)."
        )
        try:
            declared = int(request.META.get("CONTENT_LENGTH") or 0)
        except ValueError:
            declared = 0
        if declared > limit:
            raise too_large  # refused before reading the body
        form = ImportRequestSerializer(data=request.data)
        form.is_valid(raise_exception=True)
        data = form.validated_data
        files: list[UploadedFile[bytes]] = [f for f in [data.get("file"), *data["labels"]] if f]
        if sum(f.size or 0 for f in files) > limit:
            raise too_large
        if data.get("server_path") and not request.user.is_staff:
            raise NotAllowed("Only staff can import from a server path.")

        upload_dir: Path | None = None
        try:
            labels: dict[str, Path] = {}
            if data.get("file") is not None:
                upload_dir = Path(settings.UPLOAD_ROOT) / uuid.uuid4().hex
                source = _store_upload(
                    data["file"], upload_dir, upload_filename_sanitize(data["file"].name)
                )
            else:
                source = Path(data["server_path"])
            names = data["label_names"] or [
                _label_name_from_file(upload_filename_sanitize(f.name)) for f in data["labels"]
            ]
            if len(set(names)) != len(names):
                raise InvalidRequest(f"Label names must differ, got {names}.")
            for label_name, label_file in zip(names, data["labels"], strict=True):
                label_name_check(label_name)
                if upload_dir is None:
                    upload_dir = Path(settings.UPLOAD_ROOT) / uuid.uuid4().hex
                labels[label_name] = _store_upload(
                    label_file,
                    upload_dir / "labels" / label_name,
                    upload_filename_sanitize(label_file.name),
                )
            job = services.import_job_create(
                signed_in_user(request),
                name=data["name"],
                source_path=source,
                voxel_size=data["voxel_size"],
                unit=data["unit"],
                labels=labels,
                visibility=data["visibility"],
                description=data["description"],
                register_in_place=data["register_in_place"],
                team_id=data["team"],
                upload_dir=upload_dir,
            )
        except BaseException:
            if upload_dir is not None:
                shutil.rmtree(upload_dir, ignore_errors=True)
            raise
        body = JobSerializer(job, context={"request": request}).data
        return Response(
            body,
            status=status.HTTP_202_ACCEPTED,
            headers={"Location": f"/api/v1/jobs/{job.id}/"},
        )


class JobListView(RestrictedAPIView[DatasetJob], generics.ListAPIView[DatasetJob]):
    """The caller's import and mesh jobs, newest first."""

    serializer_class = JobSerializer
    queryset = DatasetJob.objects.select_related("dataset")
    permission_classes = [IsAuthenticated, MayDoAction]

    def get_queryset(self) -> QuerySet[DatasetJob]:
        return super().get_queryset().order_by("-created", "-id")


class JobDetailView(RestrictedAPIView[DatasetJob], generics.RetrieveAPIView[DatasetJob]):
    """One job: status, stage, progress, error, and the dataset once it exists."""

    serializer_class = JobSerializer
    queryset = DatasetJob.objects.select_related("dataset")
    permission_classes = [IsAuthenticated, MayDoAction]


class JobCancelView(RestrictedActionView[DatasetJob]):
    """Cancel a queued or running job (409 when it already ended)."""

    serializer_class = JobSerializer
    queryset = DatasetJob.objects.select_related("dataset")
    denied_messages = {"change": "Only the job's owner can cancel it."}

    @extend_schema(request=None, responses={200: JobSerializer, 409: ErrorSerializer})
    def post(self, request: Request, pk: int) -> Response:
        job = self.get_restricted(self.queryset, "change", pk=pk)
        job = services.job_cancel(job, signed_in_user(request))
        return Response(self.get_serializer(job).data)


class MeshesBuildView(RestrictedActionView[Dataset]):
    """Rebuild the meshes of a segmentation layer in a background job (owner only)."""

    # The view looks up a dataset but answers with the job it starts; the stubs tie
    # ``serializer_class`` to the queryset's model.
    serializer_class = JobSerializer  # type: ignore[assignment]
    queryset = Dataset.objects.all()
    denied_messages = {"change": "Only the dataset's owner can rebuild its meshes."}

    @extend_schema(request=None, responses={202: JobSerializer})
    def post(self, request: Request, slug: str, layer_name: str) -> Response:
        dataset = self.get_restricted(self.queryset, "change", slug=slug)
        layer = Layer.objects.filter(dataset=dataset, name=layer_name).first()
        if layer is None:
            raise NotFound(f"Dataset {slug!r} has no layer {layer_name!r}.")
        job = services.meshes_build_start(dataset, layer, user=signed_in_user(request))
        return Response(self.get_serializer(job).data, status=status.HTTP_202_ACCEPTED)
