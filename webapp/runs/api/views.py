"""Runs API: start runs (dataset owners, campaign managers), follow them (whoever sees the
dataset), cancel them; the presets; the model registry (list, one, download)."""

from __future__ import annotations

from typing import Any, ClassVar

from django.db.models import QuerySet
from django.http import FileResponse
from django.urls import reverse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import generics, status
from rest_framework.permissions import AllowAny
from rest_framework.renderers import JSONRenderer
from rest_framework.request import Request
from rest_framework.response import Response

from webapp.annotation.models import AnnotationCampaign
from webapp.core.api_schema import ErrorSerializer
from webapp.core.downloads import DownloadRenderer, attachment
from webapp.core.errors import InvalidRequest, NotFound
from webapp.core.parsers import StrictJSONParser
from webapp.core.permissions import VIEW, RestrictedActionView, RestrictedAPIView
from webapp.core.users import signed_in_user
from webapp.datasets.models import Dataset
from webapp.runs import auto_retrain, publish, selectors, services
from webapp.runs.api.serializers import (
    AutoRetrainRequestSerializer,
    AutoRetrainSerializer,
    ModelProofreadingSerializer,
    ModelVersionSerializer,
    RunPresetsSerializer,
    RunSerializer,
    RunStartSerializer,
    SuggestionsRequestSerializer,
    SuggestionsSerializer,
    presets_body,
)
from webapp.runs.models import AutoRetrain, ModelVersion, PipelineRun

NO_CAMPAIGN = "No such annotation campaign, or you may not see it."
NO_MODEL = "No such model version, or you may not see it."
FILTERS = [
    OpenApiParameter("dataset", OpenApiTypes.STR, description="Only this dataset's (slug)."),
    OpenApiParameter("campaign", OpenApiTypes.INT, description="Only this campaign's."),
]


def _filtered(queryset: QuerySet[Any], params: Any, campaign: bool = True) -> QuerySet[Any]:
    slug = params.get("dataset")
    if slug:
        queryset = queryset.filter(dataset__slug=slug[:100])
    value = params.get("campaign") if campaign else None
    if value:
        if not str(value).isdigit() or len(str(value)) > 18:
            raise InvalidRequest("campaign must be a campaign id (a whole number).")
        queryset = queryset.filter(campaign_id=int(value))
    return queryset


class RunListView(RestrictedAPIView[PipelineRun], generics.ListAPIView[PipelineRun]):
    """GET: the runs of datasets the caller may see, newest first (``dataset``, ``campaign``
    filters). POST: start a run on a painted campaign's approved ground truth (its managers or
    the dataset's owner): checked before anything is queued, 202 with the run."""

    serializer_class = RunSerializer
    queryset = selectors.RUNS
    parser_classes = [StrictJSONParser]

    def get_queryset(self) -> QuerySet[PipelineRun]:
        return _filtered(super().get_queryset(), self.request.query_params)

    @extend_schema(parameters=FILTERS)
    def get(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        return super().get(request, *args, **kwargs)

    @extend_schema(
        request=RunStartSerializer,
        responses={
            202: RunSerializer,
            400: ErrorSerializer,
            403: ErrorSerializer,
            404: ErrorSerializer,
            409: ErrorSerializer,
        },
    )
    def post(self, request: Request) -> Response:
        form = RunStartSerializer(data=request.data)
        form.is_valid(raise_exception=True)
        user = signed_in_user(request)
        data = form.validated_data
        campaign, dataset = None, None
        if "campaign" in data:
            campaign = (
                AnnotationCampaign.objects.restrict(user, VIEW)
                .select_related("dataset", "image_layer")
                .filter(pk=data["campaign"])
                .first()
            )
            if campaign is None:
                raise NotFound(NO_CAMPAIGN)
            if "dataset" in data and data["dataset"] != campaign.dataset.slug:
                raise InvalidRequest("dataset: the campaign belongs to another dataset.")
        elif "dataset" in data:
            dataset = Dataset.objects.restrict(user, VIEW).filter(slug=data["dataset"]).first()
            if dataset is None:
                raise NotFound("No such dataset, or you may not see it.")
        versions = {
            key: self.visible_model(user, data[key]) for key in ("parent", "model") if key in data
        }
        run = services.run_start(
            user,
            campaign,
            dataset=dataset,
            preset=data["preset"],
            params=data.get("params"),
            **versions,
        )
        body = RunSerializer(selectors.RUNS.get(pk=run.pk)).data
        return Response(body, status=status.HTTP_202_ACCEPTED)

    @staticmethod
    def visible_model(user: Any, pk: int) -> ModelVersion:
        version = selectors.models_for(user).filter(pk=pk).first()
        if version is None:
            raise NotFound(NO_MODEL)
        return version


class RunDetailView(RestrictedAPIView[PipelineRun], generics.RetrieveAPIView[PipelineRun]):
    """One run: status, per-stage progress (live while workers run a plan), training curves
    as they come, the ground truth it trains on, metrics, error, what it published."""

    serializer_class = RunSerializer
    queryset = selectors.RUNS


class RunCancelView(RestrictedActionView[PipelineRun]):
    """Cancel a queued or running run (409 once it ended): nothing is published and its
    temporary files go."""

    serializer_class = RunSerializer
    queryset = selectors.RUNS
    denied_messages: ClassVar[dict[str, str]] = {
        "change": "Only the dataset's owner, whoever started the run or a manager of its "
        "campaign can cancel it."
    }

    @extend_schema(request=None, responses={200: RunSerializer, 409: ErrorSerializer})
    def post(self, request: Request, pk: int) -> Response:
        run = self.get_restricted(self.queryset, "change", pk=pk)
        run = services.run_cancel(run, signed_in_user(request))
        return Response(RunSerializer(selectors.RUNS.get(pk=run.pk)).data)


class PresetsView(generics.GenericAPIView[Any]):
    """The run presets and the parameters a run may override, with their ranges."""

    serializer_class = RunPresetsSerializer
    permission_classes = [AllowAny]

    @extend_schema(responses={200: RunPresetsSerializer})
    def get(self, request: Request) -> Response:
        return Response(presets_body())


class ModelListView(RestrictedAPIView[ModelVersion], generics.ListAPIView[ModelVersion]):
    """The model versions of datasets the caller may see (``dataset`` filter), newest first."""

    serializer_class = ModelVersionSerializer
    queryset = selectors.MODELS

    def get_queryset(self) -> QuerySet[ModelVersion]:
        return _filtered(super().get_queryset(), self.request.query_params, campaign=False)

    @extend_schema(parameters=FILTERS[:1])
    def get(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        return super().get(request, *args, **kwargs)


class ModelDetailView(RestrictedAPIView[ModelVersion], generics.RetrieveAPIView[ModelVersion]):
    """One model version: its run, parameters, fitted settings and metrics."""

    serializer_class = ModelVersionSerializer
    queryset = selectors.MODELS


@extend_schema(
    responses={
        (200, "application/octet-stream"): OpenApiResponse(
            OpenApiTypes.BINARY, description="The model file (PyTorch), as `pipeline` reads it."
        )
    }
)
class ModelDownloadView(RestrictedAPIView[ModelVersion]):
    """The model file, for ``python -m pipeline predict --model`` or a fine-tune elsewhere."""

    queryset = selectors.MODELS
    renderer_classes = [JSONRenderer, DownloadRenderer]

    def get(self, request: Request, pk: int) -> FileResponse:
        version = self.get_restricted(self.queryset, VIEW, pk=pk)
        path = publish.model_file(version)
        if not path.is_file():
            raise NotFound("The model file is missing.")
        response = FileResponse(path.open("rb"), content_type="application/octet-stream")
        attachment(response, f"{version.dataset.slug}-model-v{version.number}.pt")
        return response


class ModelCurrentView(RestrictedActionView[ModelVersion]):
    """Make this version its dataset's current model (the dataset's owner). A run's new
    version becomes current by itself unless it scores lower on its held-out boxes."""

    serializer_class = ModelVersionSerializer
    queryset = selectors.MODELS
    denied_messages: ClassVar[dict[str, str]] = {
        "change": "Only the dataset's owner can choose its current model."
    }

    @extend_schema(request=None, responses={200: ModelVersionSerializer})
    def post(self, request: Request, pk: int) -> Response:
        version = self.get_restricted(self.queryset, "change", pk=pk)
        services.model_make_current(signed_in_user(request), version)
        return Response(ModelVersionSerializer(selectors.MODELS.get(pk=pk)).data)


class ModelProofreadingView(RestrictedActionView[ModelVersion]):
    """Open a proofreading campaign on this version's segmentation in one step (the dataset's
    owner): the detections its fitted filter keeps, most uncertain first; 201 with the
    campaign's id and page, or 200 with the open campaign the caller already manages on that
    layer. 400 while its detections table is still being built."""

    serializer_class = ModelProofreadingSerializer  # type: ignore[assignment]  # answers a campaign
    queryset = selectors.MODELS
    denied_messages: ClassVar[dict[str, str]] = {
        "change": "Only the dataset's owner can open proofreading campaigns on its layers."
    }

    @extend_schema(
        request=None,
        responses={
            200: ModelProofreadingSerializer,
            201: ModelProofreadingSerializer,
            400: ErrorSerializer,
            409: ErrorSerializer,
        },
    )
    def post(self, request: Request, pk: int) -> Response:
        version = self.get_restricted(self.queryset, "change", pk=pk)
        campaign, created = services.proofreading_from_model(signed_in_user(request), version)
        body = {
            "id": campaign.pk,
            "name": campaign.name,
            "items": campaign.n_items,
            "url": reverse("proofreading:queue", args=[campaign.pk]),
            "created": created,
        }
        return Response(body, status=status.HTTP_201_CREATED if created else status.HTTP_200_OK)


class ModelSuggestionsView(RestrictedAPIView[ModelVersion]):
    """Suggest next boxes (active learning): the ``count`` boxes of a campaign's image where
    this version is least sure, put first in the campaign's queue (its managers; the model
    must be of the campaign's dataset). Untouched boxes move up, free tiles become new boxes
    (source ``suggested``); 201 with them, most uncertain first."""

    serializer_class = SuggestionsSerializer  # type: ignore[assignment]  # answers boxes
    queryset = selectors.MODELS
    parser_classes = [StrictJSONParser]
    method_actions = {"OPTIONS": VIEW, "POST": VIEW}  # the campaign's managers: the service

    @extend_schema(
        request=SuggestionsRequestSerializer,
        responses={
            201: SuggestionsSerializer,
            400: ErrorSerializer,
            403: ErrorSerializer,
            404: ErrorSerializer,
            409: ErrorSerializer,
        },
    )
    def post(self, request: Request, pk: int) -> Response:
        user = signed_in_user(request)
        version = self.get_restricted(self.queryset, VIEW, not_found=NO_MODEL, pk=pk)
        form = SuggestionsRequestSerializer(data=request.data)
        form.is_valid(raise_exception=True)
        data = form.validated_data
        campaign = self.get_restricted(
            AnnotationCampaign.objects.select_related("dataset"),
            VIEW,
            not_found=NO_CAMPAIGN,
            pk=data["campaign"],
        )
        suggested = services.suggest_next_boxes(user, version, campaign, data["count"])
        body = {
            "model": version.number,
            "campaign": campaign.pk,
            "boxes": [
                {
                    "id": box.pk,
                    "name": box.name,
                    "start": [box.z0, box.y0, box.x0],
                    "size": [box.depth, box.height, box.width],
                    "priority": box.priority,
                    "uncertainty": score,
                    "created": created,
                }
                for box, score, created in suggested
            ],
        }
        return Response(body, status=status.HTTP_201_CREATED)


class AutoRetrainView(RestrictedAPIView[AnnotationCampaign]):
    """A campaign's automatic retraining (off by default): GET (members), PUT to set it, DELETE
    to turn it off (managers). With it on, each approval that brings ``every`` more boxes of
    approved painted ground truth than the latest run trained on starts a run."""

    serializer_class = AutoRetrainSerializer  # type: ignore[assignment]  # answers with policies
    queryset = AnnotationCampaign.objects.select_related("dataset", "image_layer")
    lookup_url_kwarg = "campaign_id"  # OPTIONS describes PUT through get_object()
    parser_classes = [StrictJSONParser]
    method_actions = {
        "GET": VIEW,
        "HEAD": VIEW,
        "OPTIONS": VIEW,
        "PUT": "change",
        "DELETE": "change",
    }
    denied_messages: ClassVar[dict[str, str]] = {
        "change": "Only the campaign's managers can set automatic retraining."
    }

    def campaign(self, action: str) -> AnnotationCampaign:
        return self.get_restricted(
            self.queryset, action, not_found=NO_CAMPAIGN, pk=self.kwargs["campaign_id"]
        )

    def body(self, campaign: AnnotationCampaign) -> dict[str, Any]:
        policy = AutoRetrain.objects.select_related("owner").filter(campaign=campaign).first()
        approved, trained = (
            auto_retrain.boxes_since_last_run(campaign) if campaign.painted else (0, 0)
        )
        return {
            "enabled": policy is not None,
            "every": policy.every if policy else None,
            "preset": policy.preset if policy else None,
            "params": policy.params if policy else None,
            "owner": policy.owner.username if policy else None,
            "approved_boxes": approved,
            "trained_boxes": trained,
        }

    @extend_schema(responses={200: AutoRetrainSerializer})
    def get(self, request: Request, campaign_id: int) -> Response:
        return Response(self.body(self.campaign(VIEW)))

    @extend_schema(
        request=AutoRetrainRequestSerializer,
        responses={200: AutoRetrainSerializer, 400: ErrorSerializer},
    )
    def put(self, request: Request, campaign_id: int) -> Response:
        campaign = self.campaign("change")
        form = AutoRetrainRequestSerializer(data=request.data)
        form.is_valid(raise_exception=True)
        data = form.validated_data
        auto_retrain.auto_retrain_set(
            signed_in_user(request),
            campaign,
            every=data["every"],
            preset=data["preset"],
            params=data.get("params"),
        )
        return Response(self.body(campaign))

    @extend_schema(request=None, responses={200: AutoRetrainSerializer})
    def delete(self, request: Request, campaign_id: int) -> Response:
        campaign = self.campaign("change")
        auto_retrain.auto_retrain_clear(signed_in_user(request), campaign)
        return Response(self.body(campaign))
