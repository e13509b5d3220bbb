"""Annotation API views: thin adapters from HTTP to the selectors and services.

Everything below ``annotation/campaigns/<campaign_id>/`` needs a signed-in member of the
campaign (404 for anyone else); assignments are visible to their annotator and to the
campaign's reviewers and managers. What a member may do is their roles' business, checked by
the services (403 with the reason). Hand-outs change state, so ``next`` is a POST.
"""

from __future__ import annotations

import re
from typing import Any, ClassVar, TypeVar

from django.db.models import Model, QuerySet
from django.http import HttpResponse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import generics, status
from rest_framework.permissions import IsAuthenticated
from rest_framework.renderers import JSONRenderer
from rest_framework.request import Request
from rest_framework.response import Response

from pipeline.task_boxes import TaskBox as BoxSpec
from webapp.annotation import dashboard, selectors, services
from webapp.annotation.api import serializers as s
from webapp.annotation.models import (
    AnnotationCampaign,
    Assignment,
    AuditAction,
    AuditEntry,
    BoxSource,
    CampaignMember,
    TaskBox,
)
from webapp.annotation.services import CampaignSpec
from webapp.core.api_schema import ErrorSerializer
from webapp.core.downloads import DownloadRenderer, attachment
from webapp.core.errors import InvalidRequest, NotFound
from webapp.core.parsers import StrictJSONParser
from webapp.core.permissions import VIEW, MayDoAction, RestrictedAPIView
from webapp.core.users import signed_in_user
from webapp.datasets.models import Dataset, Layer, LayerKind

M = TypeVar("M", bound=Model)

NO_CAMPAIGN = "No such annotation campaign, or you are not one of its members."
NO_ASSIGNMENT = "No such assignment, or you may not see it."
DENIED = {
    "change": "Only the campaign's managers can change it.",
    "delete": "Only the campaign's managers can delete it.",
    "report": "Only the campaign's managers and reviewers can read this.",
    "audit": "Only the campaign's managers can read its audit log.",
}
CONFLICT = OpenApiResponse(ErrorSerializer, description="The state forbids this.")
STALE = OpenApiResponse(
    s.ConflictSerializer,
    description="Based on an older version, or the task can no longer be edited: the body "
    "names the current version.",
)
TOO_LARGE = OpenApiResponse(ErrorSerializer, description="Too many changes or annotations.")


class _CampaignView(RestrictedAPIView[M]):
    """Base of the views under ``annotation/campaigns/<campaign_id>/`` (JSON bodies only)."""

    permission_classes = [IsAuthenticated, MayDoAction]
    parser_classes = [StrictJSONParser]
    denied_messages: ClassVar[dict[str, str]] = DENIED

    def campaign(self, action: str = VIEW) -> AnnotationCampaign:
        """The campaign (404 unless the caller may see it; 403 unless they may do ``action``),
        with the caller's roles: one statement, and the services' role checks ask no more."""
        campaign = selectors.campaign_of(self.request.user, self.kwargs["campaign_id"])
        if campaign is None:
            raise NotFound(NO_CAMPAIGN)
        if action != VIEW and not selectors.may(campaign, self.request.user, action):
            self.permission_denied(self.request, self.denied_message(action))
        return campaign


class _AssignmentView(RestrictedAPIView[Any]):
    """Base of the views under ``annotation/assignments/<assignment_id>/``: POSTs are actions
    the services check (the annotator's own, a reviewer's)."""

    permission_classes = [IsAuthenticated, MayDoAction]
    parser_classes = [StrictJSONParser]
    queryset = Assignment.objects.all()
    method_actions = {"GET": VIEW, "HEAD": VIEW, "OPTIONS": VIEW, "POST": VIEW}

    def assignment(self, people: bool = True) -> Assignment:
        row = selectors.assignment_visible(
            self.request.user, self.kwargs["assignment_id"], people=people
        )
        if row is None:
            raise NotFound(NO_ASSIGNMENT)
        return row


def campaign_download(
    body: str | bytes, content_type: str, campaign: AnnotationCampaign, name: str
) -> HttpResponse:
    """A campaign's file as an attachment named ``<dataset>-annotation<id>-<name>``."""
    response = HttpResponse(body, content_type=content_type)
    attachment(response, download_name(campaign, name))
    return response


def download_name(campaign: AnnotationCampaign, name: str) -> str:
    """``<dataset>-annotation<id>-<name>``, safe as a file name."""
    base = re.sub(r"[^A-Za-z0-9._-]+", "_", f"{campaign.dataset.slug}-annotation{campaign.pk}")
    return f"{base}-{name}"


def _campaign_body(view: RestrictedAPIView[Any], campaign_id: int) -> Any:
    campaign = selectors.campaigns_visible(view.request.user).get(id=campaign_id)
    return s.AnnotationCampaignSerializer(campaign, context={"request": view.request}).data


# --- campaigns ----------------------------------------------------------------------------------


@extend_schema(
    parameters=[
        OpenApiParameter("dataset", OpenApiTypes.STR, description="Only this dataset's (slug)."),
    ]
)
class CampaignListView(_CampaignView[AnnotationCampaign], generics.ListAPIView[AnnotationCampaign]):
    """The annotation campaigns the caller is a member of (GET); POST creates one over an
    image layer of a dataset the caller owns, with the caller as its first manager."""

    serializer_class = s.AnnotationCampaignSerializer
    queryset = AnnotationCampaign.objects.all()
    method_actions = {"GET": VIEW, "HEAD": VIEW, "OPTIONS": VIEW, "POST": VIEW}

    def get_queryset(self) -> QuerySet[AnnotationCampaign]:
        queryset = selectors.campaigns_visible(self.request.user)
        dataset = self.request.query_params.get("dataset")
        if dataset:
            queryset = queryset.filter(dataset__slug=dataset)
        return queryset.order_by("-created", "-id")

    @extend_schema(
        request=s.AnnotationCampaignCreateSerializer,
        responses={201: s.AnnotationCampaignSerializer, 409: CONFLICT},
    )
    def post(self, request: Request) -> Response:
        form = s.AnnotationCampaignCreateSerializer(data=request.data)
        form.is_valid(raise_exception=True)
        data = form.validated_data
        user = signed_in_user(request)
        dataset = Dataset.objects.restrict(user, VIEW).filter(slug=data["dataset"]).first()
        if dataset is None:
            raise InvalidRequest(f"No dataset {data['dataset'][:100]!r} that you may see.")
        layer = Layer.objects.filter(dataset=dataset, name=data["image_layer"]).first()
        if layer is None or layer.kind != LayerKind.IMAGE:
            raise InvalidRequest(
                f"Dataset {dataset.slug!r} has no image layer {data['image_layer'][:100]!r}."
            )
        spec = CampaignSpec(
            painted=data["painted"],
            name=data["name"],
            instructions=data.get("instructions", ""),
            label_schema=data.get("label_schema"),
            box_size_um=data.get("box_size_um"),
            redundancy=data["redundancy"],
            deadline=data.get("deadline"),
            match_tolerance_um=data["match_tolerance_um"],
        )
        campaign = services.campaign_create(user, dataset, layer, spec)
        for member in data.get("members", []):
            username, role = member.get("username", ""), member.get("role", "")
            services.member_add(campaign, user, username, role)
        return Response(_campaign_body(self, campaign.pk), status=status.HTTP_201_CREATED)


class CampaignDetailView(_CampaignView[AnnotationCampaign]):
    """One campaign (members); PATCH changes its settings, DELETE removes it (managers)."""

    serializer_class = s.AnnotationCampaignSerializer
    queryset = AnnotationCampaign.objects.all()

    def get(self, request: Request, campaign_id: int) -> Response:
        campaign = self.campaign()
        return Response(_campaign_body(self, campaign.pk))

    @extend_schema(
        request=s.AnnotationCampaignUpdateSerializer,
        responses={200: s.AnnotationCampaignSerializer, 409: CONFLICT},
    )
    def patch(self, request: Request, campaign_id: int) -> Response:
        campaign = self.campaign("change")
        form = s.AnnotationCampaignUpdateSerializer(data=request.data, partial=True)
        form.is_valid(raise_exception=True)
        services.campaign_update(campaign, signed_in_user(request), dict(form.validated_data))
        return Response(_campaign_body(self, campaign.pk))

    @extend_schema(responses={204: None})
    def delete(self, request: Request, campaign_id: int) -> Response:
        campaign = self.campaign("delete")
        services.campaign_delete(campaign, signed_in_user(request))
        return Response(status=status.HTTP_204_NO_CONTENT)


class MemberListView(_CampaignView[CampaignMember]):
    """The campaign's members and roles (a plain list); POST adds a role (managers)."""

    serializer_class = s.AnnotationMemberSerializer
    queryset = CampaignMember.objects.all()
    pagination_class = None
    method_actions = {"GET": VIEW, "HEAD": VIEW, "OPTIONS": VIEW, "POST": "change"}

    @extend_schema(responses=s.AnnotationMemberSerializer(many=True))
    def get(self, request: Request, campaign_id: int) -> Response:
        campaign = self.campaign()
        rows = CampaignMember.objects.filter(campaign=campaign).select_related("user")
        return Response(self.get_serializer(rows, many=True).data)

    @extend_schema(
        request=s.AnnotationMemberInputSerializer,
        responses={201: s.AnnotationMemberSerializer, 409: CONFLICT},
    )
    def post(self, request: Request, campaign_id: int) -> Response:
        campaign = self.campaign("change")
        form = s.AnnotationMemberInputSerializer(data=request.data)
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

    serializer_class = s.AnnotationMemberSerializer
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
            raise NotFound(f"Campaign {campaign.pk} has no member {member_id}.")
        services.member_remove(member, signed_in_user(request))
        return Response(status=status.HTTP_204_NO_CONTENT)


# --- boxes --------------------------------------------------------------------------------------


class BoxListView(_CampaignView[TaskBox], generics.ListAPIView[TaskBox]):
    """The campaign's boxes with how far their slots are (members; paged); POST adds boxes
    (managers) by tiling, stratified sampling, a CSV table or around missed objects."""

    serializer_class = s.BoxSerializer
    queryset = TaskBox.objects.all()
    method_actions = {"GET": VIEW, "HEAD": VIEW, "OPTIONS": VIEW, "POST": "change"}

    def get_queryset(self) -> QuerySet[TaskBox]:
        return selectors.boxes_of(self.campaign()).order_by("-priority", "id")

    @extend_schema(
        request=s.BoxesCreateSerializer,
        responses={201: s.BoxesCreatedSerializer, 409: CONFLICT, 413: TOO_LARGE},
    )
    def post(self, request: Request, campaign_id: int) -> Response:
        campaign = self.campaign("change")
        form = s.BoxesCreateSerializer(data=request.data)
        form.is_valid(raise_exception=True)
        data = form.validated_data
        user = signed_in_user(request)
        region = None
        if data.get("region"):
            r = data["region"]
            region = BoxSpec("region", tuple(r["start"]), tuple(r["size"]))
        source = data["source"]
        if source == BoxSource.TILE:
            rows = services.boxes_tile(campaign, user, region, data["priority"])
        elif source == BoxSource.SAMPLE:
            if data.get("count") is None:
                raise InvalidRequest("count: how many boxes to sample is needed.")
            mask = None
            if data.get("mask_layer"):
                mask = Layer.objects.filter(
                    dataset_id=campaign.dataset_id, name=data["mask_layer"]
                ).first()
                if mask is None:
                    raise InvalidRequest(f"The dataset has no layer {data['mask_layer'][:100]!r}.")
            rows = services.boxes_sample(
                campaign,
                user,
                data["count"],
                data["seed"],
                region=region,
                mask_layer=mask,
                min_inside=data["min_inside"],
                priority=data["priority"],
            )
        elif source == BoxSource.CSV:
            if not data.get("csv"):
                raise InvalidRequest("csv: the table's text is needed.")
            rows = services.boxes_import_csv(campaign, user, data["csv"], data["priority"])
        else:
            rows = _boxes_from_missed(campaign, user, data)
        boxes = selectors.boxes_of(campaign).filter(pk__in=[r.pk for r in rows]).order_by("id")
        body = {"created": len(rows), "boxes": s.BoxSerializer(boxes[:1000], many=True).data}
        return Response(body, status=status.HTTP_201_CREATED)


def _boxes_from_missed(
    campaign: AnnotationCampaign, user: Any, data: dict[str, Any]
) -> list[TaskBox]:
    from webapp.proofreading.models import MissedObject, ProofreadingCampaign

    ref = data.get("proofreading_campaign")
    if ref is None:
        raise InvalidRequest("proofreading_campaign: the campaign whose missed objects to use.")
    source: ProofreadingCampaign | None = (
        ProofreadingCampaign.objects.restrict(user, "view").filter(pk=ref).first()
    )
    if source is None:
        raise InvalidRequest(f"No proofreading campaign {ref} that you are a member of.")
    if source.layer.dataset_id != campaign.dataset_id:
        raise InvalidRequest("That proofreading campaign is over another dataset.")
    points = [
        (f"missed-{source.pk}-{m.pk}", (m.z, m.y, m.x))
        for m in MissedObject.objects.filter(campaign=source).order_by("id")
    ]
    if not points:
        raise InvalidRequest(f"Proofreading campaign {source.pk} has no missed objects.")
    return services.boxes_from_points(
        campaign, user, points, f"proofreading campaign {source.pk}", data["priority"]
    )


class BoxDetailView(_CampaignView[TaskBox]):
    """One box (members); DELETE removes a box nobody saved in (managers)."""

    serializer_class = s.BoxSerializer
    queryset = TaskBox.objects.all()

    def box(self) -> TaskBox:
        campaign = self.campaign()
        box = selectors.boxes_of(campaign).filter(pk=self.kwargs["box_id"]).first()
        if box is None:
            raise NotFound(f"Campaign {campaign.pk} has no box {self.kwargs['box_id']}.")
        return box

    def get(self, request: Request, campaign_id: int, box_id: int) -> Response:
        return Response(self.get_serializer(self.box()).data)

    @extend_schema(responses={204: None, 409: CONFLICT})
    def delete(self, request: Request, campaign_id: int, box_id: int) -> Response:
        self.campaign("change")
        services.box_delete(self.box(), signed_in_user(request))
        return Response(status=status.HTTP_204_NO_CONTENT)


class BoxFlagView(BoxDetailView):
    """DELETE clears the box's flag (managers): it is handed out again."""

    method_actions = {"OPTIONS": VIEW, "DELETE": "change"}

    @extend_schema(responses={200: s.BoxSerializer})
    def delete(self, request: Request, campaign_id: int, box_id: int) -> Response:
        self.campaign("change")
        services.box_unflag(self.box(), signed_in_user(request))
        return Response(self.get_serializer(self.box()).data)


class CoverageView(_CampaignView[Any]):
    """Where the boxes are (members): each box projected onto the dataset's thumbnail (the
    middle z slice, whole y-x extent) with its state, for the coverage map."""

    serializer_class = s.CoverageSerializer
    queryset = TaskBox.objects.all()
    pagination_class = None

    def get(self, request: Request, campaign_id: int) -> Response:
        from webapp.annotation.coverage import coverage_of

        return Response(coverage_of(self.campaign()))


# --- hand-out and review queue ------------------------------------------------------------------


class NextTaskView(_CampaignView[Assignment]):
    """The caller's next task (annotators): their rejected or unfinished one, else a free slot
    of a box they have not done. 204 when nothing is left for them."""

    serializer_class = s.AssignmentSerializer
    queryset = Assignment.objects.all()
    method_actions = {"OPTIONS": VIEW, "POST": VIEW}

    @extend_schema(
        request=None,
        responses={200: s.AssignmentSerializer, 204: OpenApiResponse(None), 409: CONFLICT},
    )
    def post(self, request: Request, campaign_id: int) -> Response:
        campaign = self.campaign()
        row = services.next_task(campaign, signed_in_user(request))
        if row is None:
            return Response(status=status.HTTP_204_NO_CONTENT)
        return Response(self.get_serializer(row).data)


class NextReviewView(NextTaskView):
    """The caller's next submitted task to review (reviewers). 204 when none waits."""

    @extend_schema(
        request=None,
        responses={200: s.AssignmentSerializer, 204: OpenApiResponse(None)},
    )
    def post(self, request: Request, campaign_id: int) -> Response:
        campaign = self.campaign()
        row = services.next_review(campaign, signed_in_user(request))
        if row is None:
            return Response(status=status.HTTP_204_NO_CONTENT)
        return Response(self.get_serializer(row).data)


@extend_schema(
    parameters=[
        OpenApiParameter("state", OpenApiTypes.STR, enum=[c[0] for c in s.STATES]),
        OpenApiParameter("mine", OpenApiTypes.BOOL, description="Only the caller's."),
        OpenApiParameter("box", OpenApiTypes.INT, description="Only this box's."),
    ]
)
class AssignmentListView(_CampaignView[Assignment], generics.ListAPIView[Assignment]):
    """The campaign's assignments the caller may see (annotators: their own; reviewers and
    managers: all), paged."""

    serializer_class = s.AssignmentSerializer
    queryset = Assignment.objects.all()

    def get_queryset(self) -> QuerySet[Assignment]:
        campaign = self.campaign()
        rows = selectors.assignments_visible(self.request.user).filter(box__campaign=campaign)
        state = self.request.query_params.get("state")
        if state:
            if state not in dict(s.STATES):
                raise InvalidRequest(f"state must be one of {', '.join(dict(s.STATES))}.")
            rows = rows.filter(state=state)
        if self.request.query_params.get("mine", "").lower() in ("1", "true", "yes"):
            rows = rows.filter(annotator_id=self.request.user.pk)
        box = self.request.query_params.get("box")
        if box:
            if not box.isdigit() or len(box) > 18:
                raise InvalidRequest("box must be a box id.")
            rows = rows.filter(box_id=int(box))
        return rows.order_by("box_id", "slot")


@extend_schema(
    parameters=[
        OpenApiParameter(
            "action", OpenApiTypes.STR, description="An action, or its group (e.g. 'assignment')."
        ),
        OpenApiParameter("actor", OpenApiTypes.STR, description="A username."),
        OpenApiParameter("box", OpenApiTypes.INT, description="A box id."),
    ]
)
class AuditListView(_CampaignView[AuditEntry], generics.ListAPIView[AuditEntry]):
    """The campaign's audit log, newest first (managers), filterable."""

    serializer_class = s.AuditSerializer
    queryset = AuditEntry.objects.all()

    def get_queryset(self) -> QuerySet[AuditEntry]:
        campaign = self.campaign("audit")
        params = self.request.query_params
        action = params.get("action") or None
        if (
            action
            and action not in AuditAction.values
            and not any(v.startswith(f"{action}.") for v in AuditAction.values)
        ):
            raise InvalidRequest(f"Unknown action {action[:50]!r}.")
        box = params.get("box")
        box_id = None
        if box:
            if not box.isdigit() or len(box) > 18:
                raise InvalidRequest("box must be a box id.")
            box_id = int(box)
        return selectors.audit_of(
            campaign, action=action, actor=params.get("actor") or None, box_id=box_id
        )


# --- one assignment -----------------------------------------------------------------------------


class AssignmentDetailView(_AssignmentView):
    """One assignment (its annotator, the campaign's reviewers and managers)."""

    serializer_class = s.AssignmentSerializer

    def get(self, request: Request, assignment_id: int) -> Response:
        return Response(self.get_serializer(self.assignment()).data)


def _version_param(request: Request) -> int | None:
    raw = request.query_params.get("version")
    if raw is None or raw == "":
        return None
    if not raw.isdigit() or len(raw) > 9:
        raise InvalidRequest("version must be a version number.")
    return int(raw)


class AnnotationsView(_AssignmentView):
    """GET: the annotations of the current version (or ``?version=``); POST: save a batch of
    changes based on ``base_version`` (the annotator): 409 with the current version when
    another save came first."""

    serializer_class = s.AnnotationStateSerializer

    @extend_schema(
        parameters=[OpenApiParameter("version", OpenApiTypes.INT, description="An earlier one.")],
        responses=s.AnnotationStateSerializer,
    )
    def get(self, request: Request, assignment_id: int) -> Response:
        row = self.assignment()
        version = _version_param(request)
        if version is not None and version > row.version:
            raise InvalidRequest(f"version must be 0-{row.version}.")
        rows = services.annotations_at(row.pk, version)
        body = {
            "version": row.version if version is None else version,
            "current_version": row.version,
            # The serializer's fields read straight from the rows: a task of 2,000 points
            # answers in a tenth of the time DRF's field-by-field serialisation takes.
            "annotations": list(rows.values(*s.AnnotationSerializer.Meta.fields)),
        }
        return Response(body)

    @extend_schema(
        request=s.SaveInputSerializer,
        responses={200: s.SaveResultSerializer, 409: STALE, 413: TOO_LARGE},
    )
    def post(self, request: Request, assignment_id: int) -> Response:
        row = self.assignment(people=False)
        # ``SaveInputSerializer`` documents the body; the service parses every op itself (one
        # pass: validating them here first as well cost more than the rest of a save's Python).
        body = request.data if isinstance(request.data, dict) else {}
        result = services.save(
            row, signed_in_user(request), _base_version(body.get("base_version")), body.get("ops")
        )
        return Response(result.__dict__)


def _base_version(value: Any) -> int:
    """A request's ``base_version``: a whole number 0-2**31-1 (also as digits, as DRF took it)."""
    if isinstance(value, str) and value.isdigit() and len(value) <= 10:
        value = int(value)
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= s.MAX_VERSION:
        raise InvalidRequest("base_version: give the version your edits are based on (0 or more).")
    return value


class RevisionListView(_AssignmentView):
    """Every version of the assignment's annotations, newest first."""

    serializer_class = s.RevisionSerializer
    pagination_class = None

    @extend_schema(responses=s.RevisionSerializer(many=True))
    def get(self, request: Request, assignment_id: int) -> Response:
        rows = selectors.revisions_of(self.assignment()).order_by("-number")
        return Response(self.get_serializer(rows, many=True).data)


class RestoreView(_AssignmentView):
    """Make an earlier version current again, as a new version (the annotator)."""

    serializer_class = s.SaveResultSerializer

    @extend_schema(
        request=s.RestoreInputSerializer, responses={200: s.SaveResultSerializer, 409: STALE}
    )
    def post(self, request: Request, assignment_id: int) -> Response:
        row = self.assignment()
        form = s.RestoreInputSerializer(data=request.data)
        form.is_valid(raise_exception=True)
        result = services.restore(
            row,
            signed_in_user(request),
            form.validated_data["version"],
            form.validated_data["base_version"],
        )
        return Response(result.__dict__)


class ActivityView(_AssignmentView):
    """The task page reports activity (a view change): time on task advances on the server."""

    serializer_class = s.AssignmentSerializer

    @extend_schema(request=None, responses=s.AssignmentSerializer)
    def post(self, request: Request, assignment_id: int) -> Response:
        row = services.activity(self.assignment(), signed_in_user(request))
        return Response(self.get_serializer(row).data)


class SkipView(_AssignmentView):
    """Give the task back (the annotator; refused while it holds annotations)."""

    serializer_class = s.AssignmentSerializer

    @extend_schema(request=None, responses={204: None, 409: CONFLICT})
    def post(self, request: Request, assignment_id: int) -> Response:
        services.skip(self.assignment(), signed_in_user(request))
        return Response(status=status.HTTP_204_NO_CONTENT)


class FlagView(_AssignmentView):
    """Flag the box with a reason (the annotator): it leaves the queue until a manager clears
    the flag, and the task is given back."""

    serializer_class = s.FlagInputSerializer

    @extend_schema(request=s.FlagInputSerializer, responses={204: None, 409: CONFLICT})
    def post(self, request: Request, assignment_id: int) -> Response:
        form = s.FlagInputSerializer(data=request.data)
        form.is_valid(raise_exception=True)
        services.flag(self.assignment(), signed_in_user(request), form.validated_data["reason"])
        return Response(status=status.HTTP_204_NO_CONTENT)


class SubmitView(_AssignmentView):
    """Hand the task in for review as of ``base_version`` (the annotator)."""

    serializer_class = s.AssignmentSerializer

    @extend_schema(
        request=s.SubmitInputSerializer, responses={200: s.AssignmentSerializer, 409: STALE}
    )
    def post(self, request: Request, assignment_id: int) -> Response:
        form = s.SubmitInputSerializer(data=request.data)
        form.is_valid(raise_exception=True)
        row = services.submit(
            self.assignment(), signed_in_user(request), form.validated_data["base_version"]
        )
        return Response(self.get_serializer(row).data)


class ApproveView(_AssignmentView):
    """Approve a submitted task (reviewers; not one's own)."""

    serializer_class = s.AssignmentSerializer

    @extend_schema(
        request=s.ReviewInputSerializer, responses={200: s.AssignmentSerializer, 409: CONFLICT}
    )
    def post(self, request: Request, assignment_id: int) -> Response:
        form = s.ReviewInputSerializer(data=request.data)
        form.is_valid(raise_exception=True)
        row = services.approve(
            self.assignment(), signed_in_user(request), form.validated_data.get("comment", "")
        )
        return Response(self.get_serializer(row).data)


class RejectView(_AssignmentView):
    """Send a submitted task back to its annotator with a comment (reviewers)."""

    serializer_class = s.AssignmentSerializer

    @extend_schema(
        request=s.ReviewInputSerializer, responses={200: s.AssignmentSerializer, 409: CONFLICT}
    )
    def post(self, request: Request, assignment_id: int) -> Response:
        form = s.ReviewInputSerializer(data=request.data)
        form.is_valid(raise_exception=True)
        row = services.reject(
            self.assignment(), signed_in_user(request), form.validated_data.get("comment", "")
        )
        return Response(self.get_serializer(row).data)


# --- dashboard ----------------------------------------------------------------------------------


class DashboardView(_CampaignView[AnnotationCampaign]):
    """Progress by state, per-annotator figures and approvals over time (managers and
    reviewers); the dashboard page polls it."""

    serializer_class = s.AnnotationDashboardSerializer  # type: ignore[assignment]  # a report
    queryset = AnnotationCampaign.objects.all()
    method_actions = {"GET": "report", "HEAD": "report", "OPTIONS": VIEW}

    def get(self, request: Request, campaign_id: int) -> Response:
        campaign = self.campaign("report")
        return Response(s.AnnotationDashboardSerializer(dashboard.dashboard(campaign)).data)


class DashboardCsvView(_CampaignView[AnnotationCampaign]):
    """The dashboard as CSV, one figure a row: section, name, annotator, value."""

    queryset = AnnotationCampaign.objects.all()
    renderer_classes = [JSONRenderer, DownloadRenderer]
    method_actions = {"GET": "report", "HEAD": "report", "OPTIONS": VIEW}

    @extend_schema(
        responses={
            (200, "text/csv"): OpenApiResponse(OpenApiTypes.BINARY, description="A CSV table.")
        }
    )
    def get(self, request: Request, campaign_id: int) -> HttpResponse:
        campaign = self.campaign("report")
        return campaign_download(
            dashboard.dashboard_csv(campaign), "text/csv; charset=utf-8", campaign, "dashboard.csv"
        )
