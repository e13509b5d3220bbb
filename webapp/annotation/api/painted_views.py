"""Annotation API of the painted review (managers and reviewers; accepting the truth is the
managers'): label agreement per campaign and per box, a box's consensus volume (and its
OME-Zarr files for Neuroglancer), and the box's accepted ground-truth volume."""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from django.views.decorators.csrf import csrf_exempt
from drf_spectacular.utils import extend_schema
from rest_framework.request import Request
from rest_framework.response import Response

from webapp.annotation import label_truth, selectors
from webapp.annotation import painted_agreement as pa
from webapp.annotation.api import painted_serializers as ps
from webapp.annotation.api.label_files import method_refused, not_found, reader
from webapp.annotation.api.label_views import zarr_file_response
from webapp.annotation.api.review_views import REPORT, _BoxReportView
from webapp.annotation.api.views import CONFLICT, _CampaignView
from webapp.annotation.models import AnnotationCampaign, TaskBox
from webapp.core.errors import InvalidRequest
from webapp.core.users import signed_in_user

NOT_PAINTED = "This campaign's objects are not painted: see agreement/ and consensus/."


def _painted(box: TaskBox) -> TaskBox:
    if not box.campaign.painted:
        raise InvalidRequest(NOT_PAINTED)
    return box


class LabelAgreementView(_CampaignView[AnnotationCampaign]):
    """Painted agreement of every box with two or more submitted or approved volumes, and per
    annotator pair pooled over the boxes both painted (managers and reviewers; 400 for a
    campaign that is not painted)."""

    serializer_class = ps.CampaignLabelAgreementSerializer  # type: ignore[assignment]  # a report
    queryset = AnnotationCampaign.objects.all()
    method_actions = REPORT

    def get(self, request: Request, campaign_id: int) -> Response:
        return Response(pa.campaign_label_agreement(self.campaign("report")))


class BoxLabelAgreementView(_BoxReportView):
    """One box's painted agreement: its submitted and approved volumes, each pair's object
    P/R/F1 (IoU >= 0.5), voxel Dice and mean matched IoU, each annotator's summary."""

    serializer_class = ps.BoxLabelAgreementSerializer  # type: ignore[assignment]  # a report

    def get(self, request: Request, campaign_id: int, box_id: int) -> Response:
        return Response(pa.box_label_agreement(_painted(self.box())))


def _base_url(request: HttpRequest, box: TaskBox) -> str:
    return request.build_absolute_uri(
        f"/api/v1/annotation/campaigns/{box.campaign_id}/boxes/{box.pk}/label-consensus/"
    )


class BoxLabelConsensusView(_BoxReportView):
    """The consensus volume of the box's handed-in volumes at ``?quorum=`` (default a strict
    majority): its objects, the objects left out for the reviewer, its OME-Zarr files' URL
    (``source``; ``neuroglancer_source`` for Neuroglancer) and the accepted truth, if any."""

    serializer_class = ps.LabelConsensusSerializer  # type: ignore[assignment]  # a report

    @extend_schema(parameters=[ps.QuorumInputSerializer])
    def get(self, request: Request, campaign_id: int, box_id: int) -> Response:
        box = _painted(self.box())
        form = ps.QuorumInputSerializer(data=request.query_params)
        form.is_valid(raise_exception=True)
        quorum = form.validated_data.get("quorum")
        return Response(pa.box_label_consensus(box, quorum, _base_url(request, box)))


class BoxLabelTruthView(_BoxReportView):
    """GET: the box's accepted ground-truth volume (null when none; managers and reviewers).
    POST: accept one (managers): ``source`` consensus (at ``quorum``; every volume compared
    must be approved) or assignment (an approved task's ``assignment``); it replaces an
    earlier one and is audited. 409 when there is nothing to accept."""

    serializer_class = ps.LabelTruthStateSerializer  # type: ignore[assignment]  # a report
    method_actions = {**REPORT, "POST": "change"}

    def _body(self, box: TaskBox) -> dict[str, object]:
        return {"box": box.pk, "name": box.name, "accepted": pa.truth_body(pa.truth_of(box))}

    def get(self, request: Request, campaign_id: int, box_id: int) -> Response:
        return Response(self._body(_painted(self.box())))

    @extend_schema(
        request=ps.LabelTruthInputSerializer,
        responses={200: ps.LabelTruthStateSerializer, 409: CONFLICT},
    )
    def post(self, request: Request, campaign_id: int, box_id: int) -> Response:
        box = _painted(self.box("change"))
        form = ps.LabelTruthInputSerializer(data=request.data)
        form.is_valid(raise_exception=True)
        data = form.validated_data
        label_truth.label_truth_accept(
            box,
            signed_in_user(request),
            data["source"],
            quorum=data.get("quorum"),
            assignment_id=data.get("assignment"),
        )
        return Response(self._body(box))


@csrf_exempt
def consensus_zarr_file(
    request: HttpRequest, campaign_id: int, box_id: int, token: str, path: str
) -> HttpResponse:
    """A file of a box's consensus volume as OME-Zarr (``token``: its quorum and the volumes'
    versions, so a URL's files never change); 404 for what is not there, may not be read
    (managers and reviewers read), names volumes no longer handed in, or an all-zero chunk."""
    refused = method_refused(request)
    if refused is not None:
        return refused
    user = reader(request)
    if user is None:
        return not_found(request)
    campaign = AnnotationCampaign.objects.restrict(user, "report").filter(pk=campaign_id).first()
    box = None if campaign is None else TaskBox.objects.filter(campaign=campaign, pk=box_id).first()
    if campaign is None or box is None or not campaign.painted:
        return not_found(request)
    box.campaign = campaign
    found = pa.consensus_at_token(box, token)
    if found is None:
        return not_found(request)
    geometry = selectors.label_geometry(box)
    labels = selectors.Labels(0, geometry, found.chunks, selectors.label_blobs(campaign.pk))
    return zarr_file_response(request, labels, path, name="consensus")
