"""Serializers of the review's reports (agreement, consensus) and of the consensus accept."""

from __future__ import annotations

from typing import Any

from rest_framework import serializers

from webapp.annotation.services import MAX_REDUNDANCY


def figure(help_text: str) -> serializers.FloatField:
    """A figure that is null where its denominator is 0 (agreement of points or volumes)."""
    return serializers.FloatField(allow_null=True, help_text=help_text)


class PairAgreementSerializer(serializers.Serializer[dict[str, Any]]):
    reference = serializers.CharField(help_text="The annotator taken as the reference.")
    other = serializers.CharField()
    n_reference = serializers.IntegerField()
    n_other = serializers.IntegerField()
    matched = serializers.IntegerField(help_text="Pairs within the tolerance (Hungarian).")
    precision = figure("matched / n_other; null when n_other is 0.")
    recall = figure("matched / n_reference; null when n_reference is 0.")
    f1 = figure("2 matched / (n_reference + n_other); null when both are 0.")
    mean_distance_um = figure("Mean distance of the matched pairs.")


class AnnotatorSummarySerializer(serializers.Serializer[dict[str, Any]]):
    annotator = serializers.CharField()
    n_points = serializers.IntegerField()
    precision = figure("Their matched points / their points, pooled over their pairs.")
    recall = figure("The others' matched points / the others' points, pooled.")
    mean_f1 = figure("Mean F1 of their pairs.")


class BoxWorkSerializer(serializers.Serializer[dict[str, Any]]):
    annotator = serializers.CharField()
    assignment = serializers.IntegerField()
    state = serializers.CharField()
    version = serializers.IntegerField()
    n_points = serializers.IntegerField()


class BoxAgreementSerializer(serializers.Serializer[dict[str, Any]]):
    box = serializers.IntegerField()
    name = serializers.CharField()
    tolerance_um = serializers.FloatField()
    annotators = BoxWorkSerializer(many=True, help_text="Submitted and approved assignments.")
    mean_f1 = figure("Mean F1 over the pairs.")
    pairs = PairAgreementSerializer(many=True)
    summaries = AnnotatorSummarySerializer(many=True)


class CampaignAnnotatorSerializer(AnnotatorSummarySerializer):
    boxes = serializers.IntegerField(help_text="Boxes compared in which they took part.")


class CampaignAgreementSerializer(serializers.Serializer[dict[str, Any]]):
    campaign = serializers.IntegerField()
    tolerance_um = serializers.FloatField()
    boxes_compared = serializers.IntegerField(help_text="Boxes with two or more handed-in tasks.")
    mean_f1 = figure("Mean of the boxes' mean F1.")
    boxes = BoxAgreementSerializer(many=True)
    annotators = CampaignAnnotatorSerializer(many=True)


class ConsensusPointSerializer(serializers.Serializer[dict[str, Any]]):
    label = serializers.CharField(help_text="Class name.")  # type: ignore[assignment]
    zyx = serializers.ListField(child=serializers.FloatField(), help_text="Voxels z y x.")
    zyx_um = serializers.ListField(child=serializers.FloatField(), help_text="um z y x.")
    support = serializers.IntegerField(help_text="Annotators who found it.")
    annotators = serializers.ListField(child=serializers.CharField())


class AcceptedSerializer(serializers.Serializer[dict[str, Any]]):
    tolerance_um = serializers.FloatField()
    quorum = serializers.IntegerField()
    count = serializers.IntegerField()
    accepted_by = serializers.CharField(allow_null=True)
    accepted = serializers.DateTimeField()


class ConsensusSerializer(serializers.Serializer[dict[str, Any]]):
    box = serializers.IntegerField()
    name = serializers.CharField()
    tolerance_um = serializers.FloatField()
    quorum = serializers.IntegerField()
    annotators = serializers.ListField(
        child=serializers.CharField(), help_text="Approved assignments used."
    )
    pending = serializers.IntegerField(help_text="Submitted assignments not yet reviewed.")
    points = ConsensusPointSerializer(many=True)
    accepted = AcceptedSerializer(
        allow_null=True, help_text="The ground truth a manager accepted, if any."
    )


class ConsensusInputSerializer(serializers.Serializer[dict[str, Any]]):
    tolerance_um = serializers.FloatField(
        required=False,
        min_value=0.001,
        max_value=1000,
        help_text="Default: the campaign's match_tolerance_um.",
    )
    quorum = serializers.IntegerField(
        required=False,
        min_value=1,
        max_value=MAX_REDUNDANCY,
        help_text="Default: a strict majority of the campaign's N.",
    )
