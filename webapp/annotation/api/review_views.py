"""Annotation API of the review's reports and of the export (managers and reviewers; the
consensus accept is the managers'): agreement per campaign and per box, a box's consensus,
and the approved ground truth as CSV, JSON and the boxes table."""

from __future__ import annotations

import json
from typing import Any

from django.http import HttpResponse, StreamingHttpResponse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework.renderers import JSONRenderer
from rest_framework.request import Request
from rest_framework.response import Response

from webapp.annotation import agreement, consensus, exports, label_exports, selectors
from webapp.annotation.api import review_serializers as rs
from webapp.annotation.api.views import CONFLICT, _CampaignView, campaign_download, download_name
from webapp.annotation.models import AnnotationCampaign, TaskBox
from webapp.core.downloads import DownloadRenderer, attachment
from webapp.core.errors import NotFound
from webapp.core.permissions import VIEW
from webapp.core.users import signed_in_user

REPORT = {"GET": "report", "HEAD": "report", "OPTIONS": VIEW}
TOLERANCE = OpenApiParameter(
    "tolerance_um",
    OpenApiTypes.FLOAT,
    description="Match distance in um (default: the campaign's match_tolerance_um).",
)
QUORUM = OpenApiParameter(
    "quorum", OpenApiTypes.INT, description="Default: a strict majority of the campaign's N."
)
CSV_RESPONSE = {(200, "text/csv"): OpenApiResponse(OpenApiTypes.BINARY, description="CSV.")}
CSV_TYPE = "text/csv; charset=utf-8"


def _params(request: Request) -> dict[str, Any]:
    form = rs.ConsensusInputSerializer(data=request.query_params)
    form.is_valid(raise_exception=True)
    return dict(form.validated_data)


@extend_schema(parameters=[TOLERANCE])
class AgreementView(_CampaignView[AnnotationCampaign]):
    """Point agreement of every box with two or more submitted or approved tasks, and per
    annotator pooled over them (managers and reviewers)."""

    serializer_class = rs.CampaignAgreementSerializer  # type: ignore[assignment]  # a report
    queryset = AnnotationCampaign.objects.all()
    method_actions = REPORT

    def get(self, request: Request, campaign_id: int) -> Response:
        campaign = self.campaign("report")
        params = _params(request)
        return Response(agreement.campaign_agreement(campaign, params.get("tolerance_um")))


class _BoxReportView(_CampaignView[TaskBox]):
    queryset = TaskBox.objects.all()
    method_actions = REPORT

    def box(self, action: str = "report") -> TaskBox:
        campaign = self.campaign(action)
        box = (
            selectors.boxes_of(campaign)
            .filter(pk=self.kwargs["box_id"])
            .select_related("campaign")
            .first()
        )
        if box is None:
            raise NotFound(f"Campaign {campaign.pk} has no box {self.kwargs['box_id']}.")
        box.campaign = campaign
        return box


@extend_schema(parameters=[TOLERANCE])
class BoxAgreementView(_BoxReportView):
    """One box's point agreement: its submitted and approved tasks, each pair's figures, each
    annotator's summary (managers and reviewers)."""

    serializer_class = rs.BoxAgreementSerializer  # type: ignore[assignment]  # a report

    def get(self, request: Request, campaign_id: int, box_id: int) -> Response:
        box = self.box()
        return Response(agreement.box_agreement(box, _params(request).get("tolerance_um")))


class ConsensusView(_BoxReportView):
    """GET: the consensus of the box's approved tasks (points found by at least a quorum of
    them; managers and reviewers). POST: accept it as the box's ground truth (managers; it
    replaces an earlier one; audited)."""

    serializer_class = rs.ConsensusSerializer  # type: ignore[assignment]  # a report
    method_actions = {**REPORT, "POST": "change"}

    @extend_schema(parameters=[TOLERANCE, QUORUM])
    def get(self, request: Request, campaign_id: int, box_id: int) -> Response:
        box = self.box()
        params = _params(request)
        return Response(
            agreement.box_consensus(box, params.get("tolerance_um"), params.get("quorum"))
        )

    @extend_schema(
        request=rs.ConsensusInputSerializer,
        responses={200: rs.ConsensusSerializer, 409: CONFLICT},
    )
    def post(self, request: Request, campaign_id: int, box_id: int) -> Response:
        box = self.box("change")
        form = rs.ConsensusInputSerializer(data=request.data)
        form.is_valid(raise_exception=True)
        data = form.validated_data
        row = consensus.consensus_accept(
            box, signed_in_user(request), data.get("tolerance_um"), data.get("quorum")
        )
        return Response(agreement.box_consensus(box, row.tolerance_um, row.quorum))


class _ExportView(_CampaignView[AnnotationCampaign]):
    queryset = AnnotationCampaign.objects.all()
    renderer_classes = [JSONRenderer, DownloadRenderer]
    method_actions = REPORT


class ExportCsvView(_ExportView):
    """The approved ground truth, one row per position of an annotation: box, box_id,
    annotator ('consensus' for an accepted consensus), version, uid, kind, class, object_id,
    point (index), z y x (voxels), z_um y_um x_um, author (managers and reviewers)."""

    @extend_schema(responses=CSV_RESPONSE)
    def get(self, request: Request, campaign_id: int) -> HttpResponse:
        campaign = self.campaign("report")
        return campaign_download(
            exports.export_csv(campaign), CSV_TYPE, campaign, "ground-truth.csv"
        )


class ExportJsonView(_ExportView):
    """The approved ground truth per box: name, start and size (voxels and um), source
    ('consensus' or 'approved') and its annotations (managers and reviewers)."""

    @extend_schema(
        responses={
            (200, "application/json"): OpenApiResponse(
                OpenApiTypes.OBJECT, description="{campaign: {...}, boxes: [...]}"
            )
        }
    )
    def get(self, request: Request, campaign_id: int) -> HttpResponse:
        campaign = self.campaign("report")
        body = json.dumps(exports.export_json(campaign), indent=1)
        return campaign_download(body, "application/json", campaign, "ground-truth.json")


class BoxesCsvView(_ExportView):
    """The boxes with ground truth in the published form: id, x, y, z, w, h, d in voxels (what
    the pipeline's training and the box import read; managers and reviewers)."""

    @extend_schema(responses=CSV_RESPONSE)
    def get(self, request: Request, campaign_id: int) -> HttpResponse:
        campaign = self.campaign("report")
        return campaign_download(exports.boxes_csv(campaign), CSV_TYPE, campaign, "boxes.csv")


class LabelsZipView(_ExportView):
    """A painted campaign's approved painted ground truth as a zip in the form ``pipeline``
    training reads (managers and reviewers): ``labels.ome.zarr`` (one sparse uint32 label image
    over the dataset's image grid, ``data.labels``), ``boxes.csv`` (``data.boxes``),
    ``mask.ome.zarr`` (uint8, 1 on the exported boxes), ``boxes/<box id>.ome.zarr`` (each box
    alone), ``sources.csv`` (whose labels, which version) and ``labels_objects.csv`` (each
    object's morphometrics). A box's labels are the ground-truth volume a manager accepted
    (``label-truth/``: the consensus or one annotator's), else those of its first approved task
    by slot that has any; boxes with neither are left out. 400 when the campaign is not
    painted or nothing painted is approved yet."""

    @extend_schema(
        responses={
            (200, "application/zip"): OpenApiResponse(
                OpenApiTypes.BINARY, description="A zip of OME-Zarr label images and CSV tables."
            )
        }
    )
    def get(self, request: Request, campaign_id: int) -> StreamingHttpResponse:
        campaign = self.campaign("report")
        response = StreamingHttpResponse(
            label_exports.iter_labels_zip(campaign), content_type="application/zip"
        )
        attachment(response, download_name(campaign, "labels.zip"))
        return response
