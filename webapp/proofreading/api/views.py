"""Proofreading API views: thin adapters from HTTP to the selectors and services.

Every URL below ``proofreading/campaigns/<campaign_id>/`` needs a signed-in member of the
campaign (404 for anyone else, so campaigns do not reveal that they exist); what a member may
do there is their roles' business, checked by the services (403 with the reason). Handing out
items changes state (claims), so ``next`` is a POST.
"""

from __future__ import annotations

import re
from typing import Any, ClassVar, TypeVar

from django.db.models import Model, QuerySet
from django.http import HttpResponse, StreamingHttpResponse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import generics, status
from rest_framework.permissions import IsAuthenticated
from rest_framework.renderers import JSONRenderer
from rest_framework.request import Request
from rest_framework.response import Response

from webapp.core.api_schema import ErrorSerializer
from webapp.core.downloads import DownloadRenderer, attachment
from webapp.core.errors import InvalidRequest, NotFound
from webapp.core.parsers import StrictJSONParser
from webapp.core.permissions import VIEW, MayDoAction, RestrictedAPIView
from webapp.core.users import signed_in_user
from webapp.datasets.models import Dataset, Layer, LayerKind
from webapp.detections import exports
from webapp.proofreading import selectors, services
from webapp.proofreading.api import serializers as s
from webapp.proofreading.models import (
    CampaignItem,
    CampaignMember,
    ItemStatus,
    MissedObject,
    ProofreadingCampaign,
    ReviewEvent,
    Verdict,
)
from webapp.proofreading.services import CampaignSettings, Handout

M = TypeVar("M", bound=Model)

NO_CAMPAIGN = "No such proofreading campaign, or you are not one of its members."
MANAGERS_ONLY = {
    "change": "Only the campaign's managers can change it.",
    "delete": "Only the campaign's managers can delete it.",
    "report": "Only the campaign's managers and experts can read its reports.",
}
CONFLICT = OpenApiResponse(ErrorSerializer, description="The campaign's state forbids this.")
TABLE_FORMATS = ("csv", "parquet")


def _download_name(campaign: ProofreadingCampaign, suffix: str) -> str:
    base = re.sub(r"[^A-Za-z0-9._-]+", "_", f"{campaign.layer.dataset.slug}-campaign{campaign.id}")
    return f"{base}-{suffix}"


class _CampaignView(RestrictedAPIView[M]):
    """Base of the views under ``proofreading/campaigns/<campaign_id>/``. Bodies are JSON only:
    the pages send JSON, and a form-encoded list of 1,000 item ids would exceed Django's
    field limit."""

    permission_classes = [IsAuthenticated, MayDoAction]
    parser_classes = [StrictJSONParser]
    denied_messages: ClassVar[dict[str, str]] = MANAGERS_ONLY

    def campaign(self, action: str = VIEW) -> ProofreadingCampaign:
        return self.get_restricted(
            ProofreadingCampaign.objects.select_related("layer__dataset"),
            action,
            not_found=NO_CAMPAIGN,
            pk=self.kwargs["campaign_id"],
        )


def _user(view: RestrictedAPIView[Any]) -> Any:
    return signed_in_user(view.request)


def _refetch(view: RestrictedAPIView[Any], campaign_id: int) -> ProofreadingCampaign:
    return selectors.campaigns_visible(view.request.user).get(id=campaign_id)


# --- campaigns ----------------------------------------------------------------------------------


@extend_schema(
    parameters=[
        OpenApiParameter("dataset", OpenApiTypes.STR, description="Only this dataset's (slug)."),
        OpenApiParameter("state", OpenApiTypes.STR, enum=["open", "closed"]),
    ]
)
class CampaignListView(
    _CampaignView[ProofreadingCampaign], generics.ListAPIView[ProofreadingCampaign]
):
    """The campaigns the caller is a member of (GET); POST creates one over a segmentation
    layer of a dataset the caller may change, with the caller as its first manager."""

    serializer_class = s.CampaignSerializer
    queryset = ProofreadingCampaign.objects.all()
    method_actions = {"GET": VIEW, "HEAD": VIEW, "OPTIONS": VIEW, "POST": VIEW}

    def get_queryset(self) -> QuerySet[ProofreadingCampaign]:
        queryset = selectors.campaigns_visible(self.request.user)
        dataset = self.request.query_params.get("dataset")
        if dataset:
            queryset = queryset.filter(layer__dataset__slug=dataset)
        state = self.request.query_params.get("state")
        if state:
            if state not in ("open", "closed"):
                raise InvalidRequest("state must be open or closed.")
            queryset = queryset.filter(state=state)
        return queryset.order_by("-created", "-id")

    @extend_schema(
        request=s.CampaignCreateSerializer, responses={201: s.CampaignSerializer, 409: CONFLICT}
    )
    def post(self, request: Request) -> Response:
        form = s.CampaignCreateSerializer(data=request.data)
        form.is_valid(raise_exception=True)
        data = form.validated_data
        user = signed_in_user(request)
        dataset = Dataset.objects.restrict(user, VIEW).filter(slug=data["dataset"]).first()
        if dataset is None:
            raise InvalidRequest(f"No dataset {data['dataset']!r} that you may see.")
        layer = Layer.objects.filter(dataset=dataset, name=data["layer"]).first()
        if layer is None or layer.kind != LayerKind.SEGMENTATION:
            raise InvalidRequest(
                f"Dataset {dataset.slug!r} has no segmentation layer {data['layer'][:100]!r}."
            )
        settings = CampaignSettings(
            name=data["name"],
            description=data.get("description", ""),
            selection=data["selection"],
            volume_min=data.get("volume_min"),
            sphericity_min=data.get("sphericity_min"),
            volume_max=data.get("volume_max"),
            sample_size=data.get("sample_size"),
            seed=data.get("seed"),
            verdict_set=data.get("verdict_set"),
            reviewers_per_item=data["reviewers_per_item"],
            consensus_rule=data["consensus_rule"],
            order=data["order"],
            claim_seconds=data["claim_seconds"],
        )
        members = [(m["username"], m["role"]) for m in data.get("members", [])]
        campaign = services.campaign_create(user, layer, settings, members=members)
        body = self.get_serializer(_refetch(self, campaign.id)).data
        return Response(body, status=status.HTTP_201_CREATED)


class CampaignDetailView(_CampaignView[ProofreadingCampaign]):
    """One campaign (members); PATCH changes its name, description, state, claim time or its
    verdicts' labels, colours and keys, DELETE removes one without verdicts (managers)."""

    serializer_class = s.CampaignSerializer
    queryset = ProofreadingCampaign.objects.all()

    def get(self, request: Request, campaign_id: int) -> Response:
        campaign = self.campaign()
        return Response(self.get_serializer(_refetch(self, campaign.id)).data)

    @extend_schema(
        request=s.CampaignUpdateSerializer, responses={200: s.CampaignSerializer, 409: CONFLICT}
    )
    def patch(self, request: Request, campaign_id: int) -> Response:
        campaign = self.campaign("change")
        form = s.CampaignUpdateSerializer(data=request.data, partial=True)
        form.is_valid(raise_exception=True)
        services.campaign_update(campaign, signed_in_user(request), **form.validated_data)
        return Response(self.get_serializer(_refetch(self, campaign.id)).data)

    @extend_schema(responses={204: None, 409: CONFLICT})
    def delete(self, request: Request, campaign_id: int) -> Response:
        campaign = self.campaign("delete")
        services.campaign_delete(campaign, signed_in_user(request))
        return Response(status=status.HTTP_204_NO_CONTENT)


# --- members ------------------------------------------------------------------------------------


class MemberListView(_CampaignView[CampaignMember]):
    """The campaign's members and their roles (members; a plain list); POST adds a role to a
    user by username (managers)."""

    serializer_class = s.MemberSerializer
    queryset = CampaignMember.objects.all()
    pagination_class = None
    method_actions = {"GET": VIEW, "HEAD": VIEW, "OPTIONS": VIEW, "POST": "change"}

    @extend_schema(responses=s.MemberSerializer(many=True))
    def get(self, request: Request, campaign_id: int) -> Response:
        campaign = self.campaign()
        return Response(self.get_serializer(selectors.members_of(campaign), many=True).data)

    @extend_schema(
        request=s.MemberInputSerializer, responses={201: s.MemberSerializer, 409: CONFLICT}
    )
    def post(self, request: Request, campaign_id: int) -> Response:
        campaign = self.campaign("change")
        form = s.MemberInputSerializer(data=request.data)
        form.is_valid(raise_exception=True)
        member = services.member_add(
            campaign,
            signed_in_user(request),
            form.validated_data["username"],
            form.validated_data["role"],
        )
        return Response(self.get_serializer(member).data, status=status.HTTP_201_CREATED)


class MemberDetailView(_CampaignView[CampaignMember]):
    """DELETE takes a role away (managers; the last manager stays)."""

    serializer_class = s.MemberSerializer
    queryset = CampaignMember.objects.all()
    method_actions = {"OPTIONS": VIEW, "DELETE": "change"}

    @extend_schema(responses={204: None, 409: CONFLICT})
    def delete(self, request: Request, campaign_id: int, member_id: int) -> Response:
        campaign = self.campaign("change")
        member = (
            CampaignMember.objects.filter(campaign=campaign, id=member_id)
            .select_related("campaign", "user")
            .first()
        )
        if member is None:
            raise NotFound(f"Campaign {campaign.id} has no member {member_id}.")
        services.member_remove(member, signed_in_user(request))
        return Response(status=status.HTTP_204_NO_CONTENT)


# --- items and the queue ------------------------------------------------------------------------


def _bool_param(request: Request, name: str) -> bool | None:
    raw = request.query_params.get(name)
    if raw is None or raw == "":
        return None
    if raw.lower() in ("true", "1", "yes"):
        return True
    if raw.lower() in ("false", "0", "no"):
        return False
    raise InvalidRequest(f"{name} must be true or false.")


@extend_schema(
    parameters=[
        OpenApiParameter(
            "status",
            OpenApiTypes.STR,
            enum=ItemStatus.values,
            description="Managers and experts only.",
        ),
        OpenApiParameter(
            "verdict", OpenApiTypes.STR, description="Final verdict (managers and experts only)."
        ),
        OpenApiParameter(
            "decided_by_me",
            OpenApiTypes.BOOL,
            description="Only items the caller has (true) or has not (false) a live verdict on.",
        ),
    ]
)
class ItemListView(_CampaignView[CampaignItem], generics.ListAPIView[CampaignItem]):
    """The campaign's items in queue order, with their detections' measurements (a gallery's
    pages); managers and experts also see where each item's verdicts stand."""

    serializer_class = s.ItemSerializer
    queryset = CampaignItem.objects.all()

    def get_queryset(self) -> QuerySet[CampaignItem]:
        campaign = self.campaign()
        params = self.request.query_params
        return selectors.items_of(
            campaign,
            self.request.user,
            status=params.get("status") or None,
            verdict=params.get("verdict") or None,
            decided_by_me=_bool_param(self.request, "decided_by_me"),
        )


class ItemDetailView(_CampaignView[CampaignItem]):
    """One item of the campaign."""

    serializer_class = s.ItemSerializer
    queryset = CampaignItem.objects.all()

    def get(self, request: Request, campaign_id: int, item_id: int) -> Response:
        campaign = self.campaign()
        item = selectors.item_of(campaign, request.user, item_id)
        return Response(self.get_serializer(item).data)


def _handouts_for_answer(
    campaign: ProofreadingCampaign, request: Request, handouts: list[Handout]
) -> list[Handout]:
    """The hand-outs with their items read as the item serializer wants them."""
    items = {
        item.id: item
        for item in selectors.items_of(campaign, request.user).filter(
            id__in=[h.item.id for h in handouts]
        )
    }
    return [Handout(items[h.item.id], h.claim) for h in handouts]


class NextView(_CampaignView[CampaignItem]):
    """Hand the caller the next items of their queue (POST: it claims them).

    The first is the one to show, the others are for the page to preload; asking again
    returns the items still held first. An empty list: nothing is left for the caller now
    (items held by others may come back when their claims expire). Reviewers ask for round 1,
    experts for round 2 (items whose first round disagreed or was uncertain; each item carries
    the earlier verdicts).
    """

    serializer_class = s.HandoutSerializer
    queryset = CampaignItem.objects.all()
    pagination_class = None

    @extend_schema(
        request=s.NextRequestSerializer,
        responses={200: s.HandoutSerializer(many=True), 409: CONFLICT},
    )
    def post(self, request: Request, campaign_id: int) -> Response:
        campaign = self.campaign()
        form = s.NextRequestSerializer(data=request.data)
        form.is_valid(raise_exception=True)
        handouts = services.items_next(
            campaign,
            signed_in_user(request),
            count=form.validated_data["count"],
            round_=form.validated_data["round"],
        )
        answer = _handouts_for_answer(campaign, request, handouts)
        return Response(s.HandoutSerializer(answer, many=True).data)


# --- verdicts -----------------------------------------------------------------------------------


@extend_schema(
    parameters=[
        OpenApiParameter("round", OpenApiTypes.INT, enum=[1, 2]),
        OpenApiParameter(
            "include_undone", OpenApiTypes.BOOL, description="Also verdicts that were undone."
        ),
    ]
)
class VerdictListView(_CampaignView[Verdict], generics.ListAPIView[Verdict]):
    """Verdicts: the caller's own, or everyone's for managers and experts (GET); POST gives a
    verdict on one item, named by its id or its segment id."""

    serializer_class = s.VerdictSerializer
    queryset = Verdict.objects.all()
    method_actions = {"GET": VIEW, "HEAD": VIEW, "OPTIONS": VIEW, "POST": VIEW}

    def get_queryset(self) -> QuerySet[Verdict]:
        campaign = self.campaign()
        raw_round = self.request.query_params.get("round")
        round_ = None
        if raw_round:
            if raw_round not in ("1", "2"):
                raise InvalidRequest("round must be 1 or 2.")
            round_ = int(raw_round)
        return selectors.verdicts_visible(
            campaign,
            self.request.user,
            round_=round_,
            include_undone=bool(_bool_param(self.request, "include_undone")),
        )

    @extend_schema(
        request=s.VerdictCreateSerializer, responses={201: s.VerdictSerializer, 409: CONFLICT}
    )
    def post(self, request: Request, campaign_id: int) -> Response:
        campaign = self.campaign()
        form = s.VerdictCreateSerializer(data=request.data)
        form.is_valid(raise_exception=True)
        data = form.validated_data
        item_id = services.item_id_for(
            campaign, item=data.get("item"), segment_id=data.get("segment_id")
        )
        verdict = services.verdict_create(
            campaign, signed_in_user(request), item_id, data["verdict"], round_=data["round"]
        )
        verdict = Verdict.objects.select_related("reviewer", "item").get(id=verdict.id)
        return Response(self.get_serializer(verdict).data, status=status.HTTP_201_CREATED)


class VerdictBulkView(_CampaignView[Verdict]):
    """One verdict on several items at once (a gallery's selection): all are recorded or none."""

    serializer_class = s.VerdictSerializer
    queryset = Verdict.objects.all()
    pagination_class = None

    @extend_schema(
        request=s.VerdictBulkSerializer,
        responses={201: s.VerdictSerializer(many=True), 409: CONFLICT},
    )
    def post(self, request: Request, campaign_id: int) -> Response:
        campaign = self.campaign()
        form = s.VerdictBulkSerializer(data=request.data)
        form.is_valid(raise_exception=True)
        data = form.validated_data
        created = services.verdicts_create_bulk(
            campaign, signed_in_user(request), data["items"], data["verdict"], round_=data["round"]
        )
        verdicts = Verdict.objects.select_related("reviewer", "item").filter(
            id__in=[v.id for v in created]
        )
        body = self.get_serializer(verdicts.order_by("id"), many=True).data
        return Response(body, status=status.HTTP_201_CREATED)


class VerdictDetailView(_CampaignView[Verdict]):
    """One verdict (its reviewer, managers, experts); PATCH changes one's own live verdict."""

    serializer_class = s.VerdictSerializer
    queryset = Verdict.objects.all()
    method_actions = {"GET": VIEW, "HEAD": VIEW, "OPTIONS": VIEW, "PATCH": VIEW}

    def verdict(self, campaign: ProofreadingCampaign, verdict_id: int) -> Verdict:
        verdict = (
            selectors.verdicts_visible(campaign, self.request.user, include_undone=True)
            .filter(id=verdict_id)
            .first()
        )
        if verdict is None:
            raise NotFound(f"Campaign {campaign.id} has no verdict {verdict_id} you may see.")
        return verdict

    def get(self, request: Request, campaign_id: int, verdict_id: int) -> Response:
        campaign = self.campaign()
        return Response(self.get_serializer(self.verdict(campaign, verdict_id)).data)

    @extend_schema(
        request=s.VerdictChangeSerializer, responses={200: s.VerdictSerializer, 409: CONFLICT}
    )
    def patch(self, request: Request, campaign_id: int, verdict_id: int) -> Response:
        campaign = self.campaign()
        form = s.VerdictChangeSerializer(data=request.data)
        form.is_valid(raise_exception=True)
        verdict = self.verdict(campaign, verdict_id)
        verdict.campaign = campaign
        services.verdict_change(verdict, signed_in_user(request), form.validated_data["verdict"])
        return Response(self.get_serializer(self.verdict(campaign, verdict_id)).data)


class UndoView(_CampaignView[Verdict]):
    """Undo the caller's last verdict (named, so that a page with an out-of-date idea of "last"
    gets a 409 rather than undoing something else); the item is handed back to them."""

    serializer_class = s.UndoResultSerializer
    queryset = Verdict.objects.all()

    @extend_schema(
        request=s.UndoRequestSerializer, responses={200: s.UndoResultSerializer, 409: CONFLICT}
    )
    def post(self, request: Request, campaign_id: int) -> Response:
        campaign = self.campaign()
        form = s.UndoRequestSerializer(data=request.data)
        form.is_valid(raise_exception=True)
        result = services.verdict_undo(
            campaign, signed_in_user(request), form.validated_data["verdict"]
        )
        verdict = Verdict.objects.select_related("reviewer", "item").get(id=result.verdict.id)
        handout = None
        if result.handout is not None:
            handout = _handouts_for_answer(campaign, request, [result.handout])[0]
        return Response(s.UndoResultSerializer({"verdict": verdict, "handout": handout}).data)


# --- skips, flags, history ----------------------------------------------------------------------


class SkipView(_CampaignView[ReviewEvent]):
    """Skip an item: it leaves the caller's hands and comes back to them last."""

    serializer_class = s.EventSerializer
    queryset = ReviewEvent.objects.all()

    @extend_schema(request=s.SkipSerializer, responses={201: s.EventSerializer, 409: CONFLICT})
    def post(self, request: Request, campaign_id: int) -> Response:
        campaign = self.campaign()
        form = s.SkipSerializer(data=request.data)
        form.is_valid(raise_exception=True)
        data = form.validated_data
        item_id = services.item_id_for(
            campaign, item=data.get("item"), segment_id=data.get("segment_id")
        )
        event = services.item_skip(campaign, signed_in_user(request), item_id, round_=data["round"])
        return Response(self.get_serializer(event).data, status=status.HTTP_201_CREATED)


class FlagListView(_CampaignView[ReviewEvent], generics.ListAPIView[ReviewEvent]):
    """Flags with their reasons: the caller's own, or all for managers and experts (GET);
    POST flags an item."""

    serializer_class = s.EventSerializer
    queryset = ReviewEvent.objects.all()
    method_actions = {"GET": VIEW, "HEAD": VIEW, "OPTIONS": VIEW, "POST": VIEW}

    def get_queryset(self) -> QuerySet[ReviewEvent]:
        return selectors.flags_of(self.campaign(), self.request.user)

    @extend_schema(request=s.FlagSerializer, responses={201: s.EventSerializer, 409: CONFLICT})
    def post(self, request: Request, campaign_id: int) -> Response:
        campaign = self.campaign()
        form = s.FlagSerializer(data=request.data)
        form.is_valid(raise_exception=True)
        data = form.validated_data
        item_id = services.item_id_for(
            campaign, item=data.get("item"), segment_id=data.get("segment_id")
        )
        event = services.item_flag(
            campaign, signed_in_user(request), item_id, data["reason"], round_=data["round"]
        )
        return Response(self.get_serializer(event).data, status=status.HTTP_201_CREATED)


class HistoryView(_CampaignView[ReviewEvent], generics.ListAPIView[ReviewEvent]):
    """The append-only history (create, change, undo, skip, flag; before and after): the
    caller's own, or everyone's for managers and experts, oldest first."""

    serializer_class = s.EventSerializer
    queryset = ReviewEvent.objects.all()

    def get_queryset(self) -> QuerySet[ReviewEvent]:
        return selectors.events_visible(self.campaign(), self.request.user)


# --- missed objects -----------------------------------------------------------------------------


class MissedListView(_CampaignView[MissedObject], generics.ListAPIView[MissedObject]):
    """Points on objects the segmentation missed (every member sees them, so that nobody marks
    one twice); POST drops one (reviewers and experts)."""

    serializer_class = s.MissedObjectSerializer
    queryset = MissedObject.objects.all()
    method_actions = {"GET": VIEW, "HEAD": VIEW, "OPTIONS": VIEW, "POST": VIEW}

    def get_queryset(self) -> QuerySet[MissedObject]:
        return selectors.missed_objects_of(self.campaign()).order_by("id")

    @extend_schema(
        request=s.MissedObjectCreateSerializer,
        responses={201: s.MissedObjectSerializer, 409: CONFLICT},
    )
    def post(self, request: Request, campaign_id: int) -> Response:
        campaign = self.campaign()
        form = s.MissedObjectCreateSerializer(data=request.data)
        form.is_valid(raise_exception=True)
        data = form.validated_data
        point = services.missed_object_add(
            campaign,
            signed_in_user(request),
            data["z"],
            data["y"],
            data["x"],
            data.get("note", ""),
        )
        return Response(self.get_serializer(point).data, status=status.HTTP_201_CREATED)


class MissedDetailView(_CampaignView[MissedObject]):
    """DELETE removes a point (whoever dropped it, or a manager)."""

    serializer_class = s.MissedObjectSerializer
    queryset = MissedObject.objects.all()
    method_actions = {"OPTIONS": VIEW, "DELETE": VIEW}

    @extend_schema(responses={204: None})
    def delete(self, request: Request, campaign_id: int, missed_id: int) -> Response:
        campaign = self.campaign()
        point = (
            MissedObject.objects.filter(campaign=campaign, id=missed_id)
            .select_related("campaign")
            .first()
        )
        if point is None:
            raise NotFound(f"Campaign {campaign.id} has no missed-object point {missed_id}.")
        services.missed_object_delete(point, signed_in_user(request))
        return Response(status=status.HTTP_204_NO_CONTENT)


CSV_RESPONSE = {(200, "text/csv"): OpenApiResponse(OpenApiTypes.BINARY, description="A CSV table.")}


class MissedCsvView(_CampaignView[MissedObject]):
    """The missed-object points as CSV: id, voxel position (z, y, x), the same in um, note,
    who and when (members)."""

    queryset = MissedObject.objects.all()
    renderer_classes = [JSONRenderer, DownloadRenderer]

    @extend_schema(responses=CSV_RESPONSE)
    def get(self, request: Request, campaign_id: int) -> HttpResponse:
        campaign = self.campaign()
        response = HttpResponse(
            selectors.missed_objects_csv(campaign), content_type=exports.MEDIA_TYPES["csv"]
        )
        attachment(response, _download_name(campaign, "missed-objects.csv"))
        return response


# --- reports ------------------------------------------------------------------------------------


class AgreementView(_CampaignView[ProofreadingCampaign]):
    """Agreement between reviewers (managers and experts): Cohen's kappa per pair, Fleiss'
    kappa over items with exactly N first-round verdicts, percent agreement, consensus counts.
    Undefined statistics (e.g. everyone always agreeing on one class) are null."""

    serializer_class = s.AgreementSerializer  # type: ignore[assignment]  # a report
    queryset = ProofreadingCampaign.objects.all()
    method_actions = {"GET": "report", "HEAD": "report", "OPTIONS": VIEW}

    def get(self, request: Request, campaign_id: int) -> Response:
        campaign = self.campaign("report")
        return Response(s.AgreementSerializer(selectors.agreement_summary(campaign)).data)


class DashboardView(_CampaignView[ProofreadingCampaign]):
    """Progress and per-reviewer figures (managers and experts)."""

    serializer_class = s.DashboardSerializer  # type: ignore[assignment]  # a report
    queryset = ProofreadingCampaign.objects.all()
    method_actions = {"GET": "report", "HEAD": "report", "OPTIONS": VIEW}

    def get(self, request: Request, campaign_id: int) -> Response:
        campaign = self.campaign("report")
        return Response(s.DashboardSerializer(selectors.dashboard(campaign)).data)


class DashboardCsvView(_CampaignView[ProofreadingCampaign]):
    """The dashboard as CSV, one figure a row: section, name, reviewer, value."""

    queryset = ProofreadingCampaign.objects.all()
    renderer_classes = [JSONRenderer, DownloadRenderer]
    method_actions = {"GET": "report", "HEAD": "report", "OPTIONS": VIEW}

    @extend_schema(responses=CSV_RESPONSE)
    def get(self, request: Request, campaign_id: int) -> HttpResponse:
        campaign = self.campaign("report")
        response = HttpResponse(
            selectors.dashboard_csv(campaign), content_type=exports.MEDIA_TYPES["csv"]
        )
        attachment(response, _download_name(campaign, "dashboard.csv"))
        return response


@extend_schema(
    parameters=[
        OpenApiParameter(
            "table_format", OpenApiTypes.STR, OpenApiParameter.PATH, enum=list(TABLE_FORMATS)
        )
    ],
    responses={
        (200, "text/csv"): OpenApiResponse(OpenApiTypes.BINARY, description="CSV."),
        (200, exports.MEDIA_TYPES["parquet"]): OpenApiResponse(
            OpenApiTypes.BINARY, description="Parquet."
        ),
    },
)
class ExportView(_CampaignView[ProofreadingCampaign]):
    """The campaign's detections (its items only, by segment id) with the detections table's
    columns plus verdict, verdict_status, verdict_source, round1_verdicts
    ('reviewer=verdict;...'), round1_count, round2_verdict and round2_expert (managers and
    experts), as CSV or Parquet, streamed."""

    queryset = ProofreadingCampaign.objects.all()
    renderer_classes = [JSONRenderer, DownloadRenderer]
    method_actions = {"GET": "report", "HEAD": "report", "OPTIONS": VIEW}

    def get(self, request: Request, campaign_id: int, table_format: str) -> StreamingHttpResponse:
        if table_format not in TABLE_FORMATS:
            raise InvalidRequest(f"Unknown table format {table_format[:20]!r}; use csv or parquet.")
        campaign = self.campaign("report")
        extra = selectors.export_extra_columns(campaign)
        batches = selectors.export_batches_of(campaign, extra)
        if table_format == "csv":
            stream = exports.csv_stream(batches, exports.export_columns(extra))
        else:
            stream = exports.parquet_stream(batches, extra)
        response = StreamingHttpResponse(stream, content_type=exports.MEDIA_TYPES[table_format])
        attachment(response, _download_name(campaign, f"verdicts.{table_format}"))
        return response
