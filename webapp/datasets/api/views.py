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
from django.shortcuts import get_object_or_404
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import exceptions, generics, status
from rest_framework.parsers import FormParser, JSONParser, MultiPartParser
from rest_framework.permissions import IsAuthenticated
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from pipeline.errors import PipelineError
from webapp.datasets import services
from webapp.datasets.api.permissions import DatasetOwnerOnly, DatasetWriteByOwner
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
from webapp.datasets.selectors import datasets_visible_to
from webapp.datasets.services_errors import Conflict, NotAllowed, ServiceError


class BadRequest(exceptions.APIException):
    status_code = status.HTTP_400_BAD_REQUEST
    default_detail = "The request is invalid."
    default_code = "invalid"


class PayloadTooLarge(exceptions.APIException):
    status_code = status.HTTP_413_REQUEST_ENTITY_TOO_LARGE
    default_detail = "The upload is too large."
    default_code = "too_large"


class ConflictError(exceptions.APIException):
    status_code = status.HTTP_409_CONFLICT
    default_detail = "The object's state forbids this change."
    default_code = "conflict"


class ServiceErrorsAsHttp:
    """Map domain errors to HTTP answers with their message (400, 403, 409)."""

    def handle_exception(self, exc: Exception) -> Response:
        if isinstance(exc, NotAllowed):
            exc = exceptions.PermissionDenied(str(exc))
        elif isinstance(exc, Conflict):
            exc = ConflictError(str(exc))
        elif isinstance(exc, (ServiceError, PipelineError)):
            exc = BadRequest(str(exc))
        return super().handle_exception(exc)  # type: ignore[misc]


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
class DatasetListView(ServiceErrorsAsHttp, generics.ListAPIView):
    """Datasets the caller may see (anonymous: the public ones), with layers and sources."""

    serializer_class = DatasetSerializer

    def get_queryset(self) -> QuerySet[Dataset]:
        qs = datasets_visible_to(self.request.user)
        visibility = self.request.query_params.get("visibility")
        if visibility:
            if visibility not in Visibility.values:
                raise BadRequest(f"Unknown visibility {visibility!r}.")
            qs = qs.filter(visibility=visibility)
        search = (self.request.query_params.get("search") or "").strip()
        if search:
            qs = qs.filter(
                Q(name__icontains=search)
                | Q(description__icontains=search)
                | Q(slug__icontains=search)
            )
        return _datasets_with_layers(qs).order_by("name", "id")


class DatasetDetailView(ServiceErrorsAsHttp, generics.RetrieveUpdateDestroyAPIView):
    """One dataset: read by anyone who may see it; changed or deleted by its owner."""

    serializer_class = DatasetSerializer
    permission_classes = [DatasetWriteByOwner]
    lookup_field = "slug"
    http_method_names = ["get", "patch", "delete", "head", "options"]

    def get_queryset(self) -> QuerySet[Dataset]:
        return _datasets_with_layers(datasets_visible_to(self.request.user))

    @extend_schema(request=DatasetUpdateSerializer, responses=DatasetSerializer)
    def patch(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        dataset = self.get_object()
        form = DatasetUpdateSerializer(data=request.data, partial=True)
        form.is_valid(raise_exception=True)
        dataset = services.dataset_update(dataset, request.user, **form.validated_data)
        dataset = self.get_queryset().get(id=dataset.id)
        return Response(self.get_serializer(dataset).data)

    def perform_destroy(self, instance: Dataset) -> None:
        services.dataset_delete(instance, self.request.user)


# ---------------------------------------------------------------------------------------------
# Share links
# ---------------------------------------------------------------------------------------------


class DatasetOwnedMixin(ServiceErrorsAsHttp):
    """Resolve ``<slug>`` to a dataset the caller owns: 404 if invisible, 403 if not owner."""

    permission_classes = [IsAuthenticated, DatasetOwnerOnly]

    def get_dataset(self) -> Dataset:
        dataset = get_object_or_404(
            datasets_visible_to(self.request.user),  # type: ignore[attr-defined]
            slug=self.kwargs["slug"],  # type: ignore[attr-defined]
        )
        self.check_object_permissions(self.request, dataset)  # type: ignore[attr-defined]
        return dataset


class ShareLinkListView(DatasetOwnedMixin, generics.GenericAPIView):
    """The dataset's share links (owner only); POST creates one."""

    serializer_class = ShareLinkSerializer

    @extend_schema(responses=ShareLinkSerializer(many=True))
    def get(self, request: Request, slug: str) -> Response:
        dataset = self.get_dataset()
        links = dataset.share_links.select_related("dataset", "created_by")
        return Response(self.get_serializer(links, many=True).data)

    @extend_schema(request=ShareLinkCreateSerializer, responses={201: ShareLinkSerializer})
    def post(self, request: Request, slug: str) -> Response:
        dataset = self.get_dataset()
        form = ShareLinkCreateSerializer(data=request.data)
        form.is_valid(raise_exception=True)
        link = services.share_link_create(
            dataset,
            request.user,
            label=form.validated_data["label"],
            expires_at=form.validated_data["expires_at"],
        )
        return Response(self.get_serializer(link).data, status=status.HTTP_201_CREATED)


class ShareLinkRevokeView(DatasetOwnedMixin, generics.GenericAPIView):
    """Revoke a share link now: its URLs stop working (owner only)."""

    serializer_class = ShareLinkSerializer

    @extend_schema(request=None, responses=ShareLinkSerializer)
    def post(self, request: Request, slug: str, link_id: int) -> Response:
        dataset = self.get_dataset()
        link = get_object_or_404(ShareLink.objects.select_related("dataset"), id=link_id)
        if link.dataset_id != dataset.id:
            raise exceptions.NotFound("No such share link for this dataset.")
        link = services.share_link_revoke(link, request.user)
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
        raise BadRequest(f"Refusing the file name {raw!r}: give a plain file name.")
    name = _UNSAFE_CHARS.sub("_", base).lstrip("._")
    if not name:
        raise BadRequest(f"Refusing the file name {raw!r}: give a plain file name.")
    if len(name) > 150:
        stem, dot, ext = name.rpartition(".")
        name = (stem[: 140 - len(ext)] + dot + ext) if dot and len(ext) <= 10 else name[:150]
    return name


def _label_name_from_file(filename: str) -> str:
    stem = filename.split(".", 1)[0]
    return _LABEL_CHARS.sub("_", stem).strip("_-") or "labels"


def _store_upload(upload: UploadedFile, directory: Path, name: str) -> Path:
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


class ImportCreateView(ServiceErrorsAsHttp, APIView):
    """Upload a volume (and label images) and start an import job; answers 202 with the job."""

    permission_classes = [IsAuthenticated]
    parser_classes = [MultiPartParser, FormParser, JSONParser]

    @extend_schema(
        request={"multipart/form-data": ImportRequestSerializer},
        responses={202: JobSerializer},
    )
    def post(self, request: Request) -> Response:
        limit = settings.MAX_UPLOAD_BYTES
        too_large = PayloadTooLarge(
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
        files: list[UploadedFile] = [f for f in [data.get("file"), *data["labels"]] if f]
        if sum(f.size or 0 for f in files) > limit:
            raise too_large
        if data.get("server_path") and not request.user.is_staff:
            raise exceptions.PermissionDenied("Only staff can import from a server path.")

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
                raise BadRequest(f"Label names must differ, got {names}.")
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
                request.user,
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


def _jobs_of(user: Any) -> QuerySet[DatasetJob]:
    qs = DatasetJob.objects.select_related("dataset")
    return qs if user.is_superuser else qs.filter(owner=user)


class JobListView(generics.ListAPIView):
    """The caller's import and mesh jobs, newest first."""

    serializer_class = JobSerializer
    permission_classes = [IsAuthenticated]

    def get_queryset(self) -> QuerySet[DatasetJob]:
        return _jobs_of(self.request.user).order_by("-created", "-id")


class JobDetailView(generics.RetrieveAPIView):
    """One job: status, stage, progress, error, and the dataset once it exists."""

    serializer_class = JobSerializer
    permission_classes = [IsAuthenticated]

    def get_queryset(self) -> QuerySet[DatasetJob]:
        return _jobs_of(self.request.user)


class JobCancelView(ServiceErrorsAsHttp, generics.GenericAPIView):
    """Cancel a queued or running job (409 when it already ended)."""

    serializer_class = JobSerializer
    permission_classes = [IsAuthenticated]

    def get_queryset(self) -> QuerySet[DatasetJob]:
        return _jobs_of(self.request.user)

    @extend_schema(request=None, responses=JobSerializer)
    def post(self, request: Request, pk: int) -> Response:
        job = services.job_cancel(self.get_object(), request.user)
        return Response(self.get_serializer(job).data)


class MeshesBuildView(DatasetOwnedMixin, generics.GenericAPIView):
    """Rebuild the meshes of a segmentation layer in a background job (owner only)."""

    serializer_class = JobSerializer

    @extend_schema(request=None, responses={202: JobSerializer})
    def post(self, request: Request, slug: str, layer_name: str) -> Response:
        dataset = self.get_dataset()
        layer = get_object_or_404(Layer, dataset=dataset, name=layer_name)
        job = services.meshes_build_start(dataset, layer, user=request.user)
        return Response(self.get_serializer(job).data, status=status.HTTP_202_ACCEPTED)
