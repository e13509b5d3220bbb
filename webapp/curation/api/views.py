"""Curation API views: publish a curated layer of a campaign, follow and cancel the job."""

from __future__ import annotations

from typing import ClassVar

from django.db.models import QuerySet
from drf_spectacular.utils import extend_schema
from rest_framework import generics, status
from rest_framework.permissions import IsAuthenticated
from rest_framework.request import Request
from rest_framework.response import Response

from webapp.core.api_schema import ErrorSerializer
from webapp.core.parsers import StrictJSONParser
from webapp.core.permissions import VIEW, MayDoAction, RestrictedActionView, RestrictedAPIView
from webapp.core.users import signed_in_user
from webapp.curation import selectors, services
from webapp.curation.api.serializers import CurationJobSerializer, PublishRequestSerializer
from webapp.curation.models import CurationJob
from webapp.proofreading.models import ProofreadingCampaign

NO_CAMPAIGN = "No such proofreading campaign, or you are not one of its members."
JOBS = CurationJob.objects.select_related("layer__dataset", "result_layer")


class PublishView(RestrictedAPIView[ProofreadingCampaign]):
    """A campaign's curated layers: GET lists its publications (members), POST starts one
    (managers): a new segmentation layer of the dataset holding only the objects whose final
    verdict is accepted, built by a background job (202 with the job)."""

    serializer_class = CurationJobSerializer  # type: ignore[assignment]  # answers with jobs
    queryset = ProofreadingCampaign.objects.select_related("layer__dataset")
    permission_classes = [IsAuthenticated, MayDoAction]
    parser_classes = [StrictJSONParser]
    method_actions = {"GET": VIEW, "HEAD": VIEW, "OPTIONS": VIEW, "POST": "change"}
    denied_messages: ClassVar[dict[str, str]] = {
        "change": "Only the campaign's managers can publish a curated layer."
    }
    pagination_class = None

    def campaign(self, action: str) -> ProofreadingCampaign:
        return self.get_restricted(
            self.queryset, action, not_found=NO_CAMPAIGN, pk=self.kwargs["campaign_id"]
        )

    @extend_schema(responses={200: CurationJobSerializer(many=True)})
    def get(self, request: Request, campaign_id: int) -> Response:
        campaign = self.campaign(VIEW)
        jobs = selectors.publish_jobs_of(campaign)
        return Response(CurationJobSerializer(jobs, many=True).data)

    @extend_schema(
        request=PublishRequestSerializer,
        responses={202: CurationJobSerializer, 409: ErrorSerializer},
    )
    def post(self, request: Request, campaign_id: int) -> Response:
        campaign = self.campaign("change")
        form = PublishRequestSerializer(data=request.data)
        form.is_valid(raise_exception=True)
        job = services.publish_start(
            campaign,
            signed_in_user(request),
            name=form.validated_data.get("name") or None,
            verdicts=form.validated_data.get("verdicts"),
        )
        body = CurationJobSerializer(JOBS.get(id=job.id)).data
        return Response(body, status=status.HTTP_202_ACCEPTED)


class CurationJobDetailView(RestrictedAPIView[CurationJob], generics.RetrieveAPIView[CurationJob]):
    """One curation job of the caller's: status, stage, progress, error, the layer it made."""

    serializer_class = CurationJobSerializer
    queryset = JOBS
    permission_classes = [IsAuthenticated, MayDoAction]

    def get_queryset(self) -> QuerySet[CurationJob]:
        return super().get_queryset()


class CurationJobCancelView(RestrictedActionView[CurationJob]):
    """Cancel a queued or running curation job (409 when it already ended)."""

    serializer_class = CurationJobSerializer
    queryset = JOBS
    denied_messages: ClassVar[dict[str, str]] = {"change": "Only the job's owner can cancel it."}

    @extend_schema(request=None, responses={200: CurationJobSerializer, 409: ErrorSerializer})
    def post(self, request: Request, pk: int) -> Response:
        job = self.get_restricted(self.queryset, "change", pk=pk)
        job = services.curation_job_cancel(job, signed_in_user(request))
        return Response(CurationJobSerializer(JOBS.get(id=job.id)).data)
