"""The thresholds page's API, under ``proofreading/campaigns/<id>/thresholds/``.

``GET thresholds/`` (managers and experts: it shows the final verdicts) answers the decided
detections as parallel arrays; ``POST thresholds/fit/`` (the same) runs
``pipeline.thresholds``' search on them; ``POST thresholds/filter/`` (managers, and the
dataset's owner) stores a pair as the layer's detection filter. Non-members get 404.
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from drf_spectacular.utils import extend_schema
from rest_framework import serializers, status
from rest_framework.request import Request
from rest_framework.response import Response

from webapp.core.permissions import VIEW
from webapp.detections.api.filter_views import (
    FilterInputSerializer,
    LayerFilterSerializer,
    layer_filter_body,
)
from webapp.detections.filters import FilterValues
from webapp.proofreading import thresholds
from webapp.proofreading.api.views import _CampaignView, _user
from webapp.proofreading.models import ProofreadingCampaign


class ThresholdClassSerializer(serializers.Serializer[dict[str, Any]]):
    name = serializers.CharField()
    label = serializers.CharField()  # type: ignore[assignment]
    colour = serializers.CharField()
    kind = serializers.ChoiceField(choices=["positive", "negative", "uncertain"])


class ThresholdBoundsSerializer(serializers.Serializer[dict[str, Any]]):
    volume_min = serializers.FloatField(allow_null=True)
    volume_max = serializers.FloatField(allow_null=True)
    sphericity_min = serializers.FloatField(allow_null=True)


class ThresholdDataSerializer(serializers.Serializer[dict[str, Any]]):
    """Parallel arrays: entry i of segment_id, volume, sphericity and verdict is one decided
    detection; verdict is an index into classes."""

    classes = ThresholdClassSerializer(many=True)
    segment_id = serializers.ListField(child=serializers.IntegerField())
    volume = serializers.ListField(child=serializers.FloatField(), help_text="um^3")
    sphericity = serializers.ListField(child=serializers.FloatField())
    verdict = serializers.ListField(child=serializers.IntegerField(min_value=0))
    items = serializers.IntegerField(help_text="Items in the campaign.")
    decided = serializers.IntegerField(help_text="Items with a final verdict.")
    second_round = serializers.IntegerField(
        help_text="Items waiting for an expert (the first round disagreed or was uncertain)."
    )
    left_out = serializers.IntegerField(
        help_text="Decided items left out: their detection is gone or has no sphericity."
    )
    filter = ThresholdBoundsSerializer(help_text="The layer's current detection filter.")
    min_recall_default = serializers.FloatField()
    n_folds_default = serializers.IntegerField()


class FitInputSerializer(serializers.Serializer[dict[str, Any]]):
    min_recall = serializers.FloatField(
        default=thresholds.DEFAULT_MIN_RECALL,
        min_value=0,
        max_value=1,
        help_text="The recall floor: the fit maximises F1 among thresholds keeping at least "
        "this share of the positives.",
    )
    n_folds = serializers.IntegerField(
        default=thresholds.DEFAULT_FOLDS,
        min_value=1,
        max_value=thresholds.MAX_FOLDS,
        help_text="Folds of the cross-validation over boxes (capped at the boxes with a positive).",
    )


class ThresholdFoldSerializer(serializers.Serializer[dict[str, Any]]):
    held_out = serializers.ListField(child=serializers.CharField())
    volume_min = serializers.FloatField()
    sphericity_min = serializers.FloatField()
    held_out_precision = serializers.FloatField(allow_null=True)
    held_out_recall = serializers.FloatField(allow_null=True)


class FitResultSerializer(serializers.Serializer[dict[str, Any]]):
    volume_min = serializers.FloatField()
    sphericity_min = serializers.FloatField()
    min_recall = serializers.FloatField()
    n_folds = serializers.IntegerField(help_text="Folds used (1: one search on everything).")
    precision = serializers.FloatField(help_text="Of the fitted pair on all labelled detections.")
    recall = serializers.FloatField()
    f1 = serializers.FloatField()
    tp_kept = serializers.IntegerField()
    fp_kept = serializers.IntegerField()
    tp_total = serializers.IntegerField()
    n_labelled = serializers.IntegerField(help_text="Decided detections that are not uncertain.")
    folds = ThresholdFoldSerializer(many=True)


class ThresholdDataView(_CampaignView[ProofreadingCampaign]):
    """The campaign's decided detections for the thresholds page (managers and experts)."""

    serializer_class = ThresholdDataSerializer  # type: ignore[assignment]  # a report
    queryset = ProofreadingCampaign.objects.all()
    pagination_class = None
    method_actions = {"GET": "report", "HEAD": "report", "OPTIONS": VIEW}

    def get(self, request: Request, campaign_id: int) -> Response:
        campaign = self.campaign("report")
        return Response(thresholds.threshold_data(campaign))


class ThresholdFitView(_CampaignView[ProofreadingCampaign]):
    """Fit volume/sphericity thresholds on the final verdicts (``pipeline.thresholds``:
    best F1 subject to the recall floor, k-fold by box). Stores nothing."""

    serializer_class = FitResultSerializer  # type: ignore[assignment]  # a report
    queryset = ProofreadingCampaign.objects.all()
    method_actions = {"POST": "report", "OPTIONS": VIEW}

    @extend_schema(request=FitInputSerializer, responses=FitResultSerializer)
    def post(self, request: Request, campaign_id: int) -> Response:
        campaign = self.campaign("report")
        form = FitInputSerializer(data=request.data)
        form.is_valid(raise_exception=True)
        result = thresholds.thresholds_fit(
            campaign,
            min_recall=form.validated_data["min_recall"],
            n_folds=form.validated_data["n_folds"],
        )
        return Response(FitResultSerializer(asdict(result)).data)


class ThresholdFilterView(_CampaignView[ProofreadingCampaign]):
    """The campaign's layer's detection filter: GET reads it (any member), POST stores one
    (the campaign's managers and the dataset's owner; 403 for reviewers and experts)."""

    serializer_class = LayerFilterSerializer  # type: ignore[assignment]
    queryset = ProofreadingCampaign.objects.all()
    method_actions = {"GET": VIEW, "HEAD": VIEW, "OPTIONS": VIEW, "POST": VIEW}

    def get(self, request: Request, campaign_id: int) -> Response:
        return Response(layer_filter_body(self.campaign().layer))

    @extend_schema(request=FilterInputSerializer, responses={201: LayerFilterSerializer})
    def post(self, request: Request, campaign_id: int) -> Response:
        campaign = self.campaign()
        form = FilterInputSerializer(data=request.data)
        form.is_valid(raise_exception=True)
        data = form.validated_data
        thresholds.filter_save(
            campaign,
            _user(self),
            FilterValues(
                data.get("volume_min"), data.get("volume_max"), data.get("sphericity_min")
            ),
            source=data.get("source", ""),
        )
        return Response(layer_filter_body(campaign.layer), status=status.HTTP_201_CREATED)
