"""Stereology API views: thin adapters from HTTP to the selectors and services.

Studies are their campaign's: members see them (404 for anyone else), managers create and
delete them, reviewers and experts mark objects and count pairs (403 with the reason otherwise,
from the services).
"""

from __future__ import annotations

from typing import Any

from django.db.models import QuerySet
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import generics, status
from rest_framework.permissions import IsAuthenticated
from rest_framework.request import Request
from rest_framework.response import Response

from webapp.core.api_schema import ErrorSerializer
from webapp.core.errors import InvalidRequest, NotFound
from webapp.core.parsers import StrictJSONParser
from webapp.core.permissions import VIEW, MayDoAction, RestrictedAPIView
from webapp.core.users import signed_in_user
from webapp.datasets.models import Layer
from webapp.proofreading.models import ProofreadingCampaign
from webapp.stereology import selectors, services
from webapp.stereology.api import serializers as s
from webapp.stereology.models import DisectorMark, DisectorStudy

NO_STUDY = "No such disector study, or you are not a member of its campaign."
NO_CAMPAIGN = "No such proofreading campaign, or you are not one of its members."
CONFLICT = OpenApiResponse(ErrorSerializer, description="The campaign is closed.")


class _StudyView(RestrictedAPIView[DisectorStudy]):
    permission_classes = [IsAuthenticated, MayDoAction]
    parser_classes = [StrictJSONParser]
    queryset = DisectorStudy.objects.all()
    denied_messages = {"delete": "Only the campaign's managers delete disector studies."}

    def study(self, action: str = VIEW) -> DisectorStudy:
        return self.get_restricted(
            DisectorStudy.objects.select_related("campaign__layer__dataset", "mask_layer"),
            action,
            not_found=NO_STUDY,
            pk=self.kwargs["study_id"],
        )


@extend_schema(
    parameters=[OpenApiParameter("campaign", OpenApiTypes.INT, description="Only this campaign's.")]
)
class StudyListView(_StudyView, generics.ListAPIView[DisectorStudy]):
    """Disector studies of the caller's campaigns (GET); POST places a new one over a campaign's
    layer (managers): K pairs of sections h apart along z by systematic uniform random sampling
    through the volume, or through a mask layer's region."""

    serializer_class = s.DisectorStudySerializer
    method_actions = {"GET": VIEW, "HEAD": VIEW, "OPTIONS": VIEW, "POST": VIEW}

    def get_queryset(self) -> QuerySet[DisectorStudy]:
        queryset = selectors.studies_visible(self.request.user)
        campaign = self.request.query_params.get("campaign")
        if campaign:
            if not campaign.isdigit():
                raise InvalidRequest("campaign must be a campaign id (a whole number).")
            queryset = queryset.filter(campaign_id=int(campaign))
        return queryset.order_by("-created", "-id")

    @extend_schema(
        request=s.DisectorStudyCreateSerializer,
        responses={201: s.DisectorStudySerializer, 409: CONFLICT},
    )
    def post(self, request: Request) -> Response:
        form = s.DisectorStudyCreateSerializer(data=request.data)
        form.is_valid(raise_exception=True)
        data = form.validated_data
        user = signed_in_user(request)
        campaign = (
            ProofreadingCampaign.objects.restrict(user, VIEW)
            .select_related("layer__dataset")
            .filter(pk=data["campaign"])
            .first()
        )
        if campaign is None:  # a body's reference: 400, as the campaigns' own POST answers
            raise InvalidRequest(f"campaign: {NO_CAMPAIGN}")
        mask = None
        if data.get("mask_layer"):
            mask = Layer.objects.filter(
                dataset_id=campaign.layer.dataset_id, name=data["mask_layer"]
            ).first()
            if mask is None:
                raise InvalidRequest(
                    f"The campaign's dataset has no layer {data['mask_layer'][:100]!r}."
                )
        study = services.study_create(
            user,
            campaign,
            name=data["name"],
            n_pairs=data["n_pairs"],
            h_um=data["h_um"],
            seed=data.get("seed"),
            mask_layer=mask,
            tolerance_um=data["tolerance_um"],
        )
        return Response(self.get_serializer(study).data, status=status.HTTP_201_CREATED)


class StudyDetailView(_StudyView):
    """One study with its plan (members); DELETE removes it with its marks (managers)."""

    serializer_class = s.DisectorStudySerializer

    def get(self, request: Request, study_id: int) -> Response:
        return Response(self.get_serializer(self.study()).data)

    @extend_schema(responses={204: None})
    def delete(self, request: Request, study_id: int) -> Response:
        services.study_delete(self.study(), signed_in_user(request))
        return Response(status=status.HTTP_204_NO_CONTENT)


@extend_schema(
    parameters=[OpenApiParameter("pair", OpenApiTypes.INT, description="Only this pair's marks.")]
)
class MarkListView(_StudyView, generics.ListAPIView[DisectorMark]):
    """Marks (the caller's own; every reviewer's for managers and experts), each saying whether
    the marked object matched a detection; POST marks an object seen in the pair's reference
    section but not in its look-up section (reviewers and experts)."""

    serializer_class = s.DisectorMarkSerializer  # type: ignore[assignment]
    pagination_class = None
    method_actions = {"GET": VIEW, "HEAD": VIEW, "OPTIONS": VIEW, "POST": VIEW}

    def get_queryset(self) -> QuerySet[DisectorMark]:  # type: ignore[override]
        marks = selectors.marks_visible(self.study(), self.request.user)
        pair = self.request.query_params.get("pair")
        if pair:
            if not pair.isdigit():
                raise InvalidRequest("pair must be a whole number.")
            marks = marks.filter(pair=int(pair))
        return marks.order_by("pair", "id")

    @extend_schema(
        request=s.DisectorMarkCreateSerializer,
        responses={201: s.DisectorMarkSerializer, 409: CONFLICT},
    )
    def post(self, request: Request, study_id: int) -> Response:
        study = self.study()
        form = s.DisectorMarkCreateSerializer(data=request.data)
        form.is_valid(raise_exception=True)
        data = form.validated_data
        mark = services.mark_add(
            study, signed_in_user(request), data["pair"], data["z"], data["y"], data["x"]
        )
        return Response(s.DisectorMarkSerializer(mark).data, status=status.HTTP_201_CREATED)


class MarkDetailView(_StudyView):
    """DELETE removes a mark (whoever made it, or a manager)."""

    serializer_class = s.DisectorMarkSerializer  # type: ignore[assignment]
    method_actions = {"OPTIONS": VIEW, "DELETE": VIEW}

    @extend_schema(responses={204: None, 409: CONFLICT})
    def delete(self, request: Request, study_id: int, mark_id: int) -> Response:
        study = self.study()
        mark = DisectorMark.objects.filter(study=study, id=mark_id).select_related("study").first()
        user = signed_in_user(request)
        if mark is None or (mark.reviewer_id != user.id and not selectors.may_report(study, user)):
            raise NotFound(f"Study {study.id} has no mark {mark_id} that you may see.")
        services.mark_delete(mark, user)
        return Response(status=status.HTTP_204_NO_CONTENT)


class PairCountedView(_StudyView):
    """POST: the caller has counted this pair (a pair with no marks then counts Q- = 0); DELETE
    takes that back (only without marks in it). Reviewers and experts."""

    serializer_class = s.PairCountedSerializer  # type: ignore[assignment]
    method_actions = {"OPTIONS": VIEW, "POST": VIEW, "DELETE": VIEW}

    def _answer(self, study: DisectorStudy, pair: int, counted: bool) -> Response:
        user = signed_in_user(self.request)
        body: dict[str, Any] = {
            "pair": pair,
            "counted": counted,
            "counted_pairs": selectors.counted_pairs(study, user),
        }
        return Response(s.PairCountedSerializer(body).data)

    @extend_schema(request=None, responses={200: s.PairCountedSerializer, 409: CONFLICT})
    def post(self, request: Request, study_id: int, pair: int) -> Response:
        study = self.study()
        counted = services.pair_counted_set(study, signed_in_user(request), pair, True)
        return self._answer(study, pair, counted)

    @extend_schema(request=None, responses={200: s.PairCountedSerializer, 409: CONFLICT})
    def delete(self, request: Request, study_id: int, pair: int) -> Response:
        study = self.study()
        counted = services.pair_counted_set(study, signed_in_user(request), pair, False)
        return self._answer(study, pair, counted)


class EstimateView(_StudyView):
    """The estimate from the counted pairs: objects in the region (Q- / sampled fraction),
    detected fraction and miss rate with 95 % intervals (the physical disector,
    ``pipeline.stereology``), per reviewer and pooled."""

    serializer_class = s.DisectorEstimateSerializer  # type: ignore[assignment]

    def get(self, request: Request, study_id: int) -> Response:
        body = selectors.estimate(self.study(), request.user)
        return Response(s.DisectorEstimateSerializer(body).data)
