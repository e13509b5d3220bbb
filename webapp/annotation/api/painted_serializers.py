"""Serializers of the painted review's reports (label agreement, consensus, accepted truth)."""

from __future__ import annotations

from typing import Any

from rest_framework import serializers

from webapp.annotation.api.review_serializers import figure
from webapp.annotation.models import LabelTruthSource
from webapp.annotation.services import MAX_REDUNDANCY


class LabelPairSerializer(serializers.Serializer[dict[str, Any]]):
    reference = serializers.CharField(help_text="The annotator taken as the reference.")
    other = serializers.CharField()
    n_reference = serializers.IntegerField(help_text="The reference's objects.")
    n_other = serializers.IntegerField()
    matched = serializers.IntegerField(help_text="Objects matched one to one at IoU >= 0.5.")
    precision = figure("matched / n_other; null when n_other is 0.")
    recall = figure("matched / n_reference; null when n_reference is 0.")
    f1 = figure("2 matched / (n_reference + n_other); null when both are 0.")
    dice = figure("Voxel Dice of the two foregrounds; null when both are empty.")
    mean_matched_iou = figure("Mean IoU of the matched objects; null when none matched.")


class BoxLabelPairSerializer(LabelPairSerializer):
    matched_iou_sum = serializers.FloatField(help_text="Sum of the matched objects' IoUs.")
    foreground_reference = serializers.IntegerField(help_text="The reference's painted voxels.")
    foreground_other = serializers.IntegerField()
    foreground_intersection = serializers.IntegerField(help_text="Voxels both painted.")


class CampaignLabelPairSerializer(LabelPairSerializer):
    boxes = serializers.IntegerField(help_text="Boxes both painted; counts pooled over them.")


class LabelSummarySerializer(serializers.Serializer[dict[str, Any]]):
    annotator = serializers.CharField()
    n_objects = serializers.IntegerField()
    foreground_voxels = serializers.IntegerField()
    precision = figure("Their matched objects / their objects, pooled over their pairs.")
    recall = figure("The others' matched objects / the others' objects, pooled.")
    f1 = figure("F1 of the pooled counts.")
    dice = figure("Dice of the pooled voxel counts.")
    mean_matched_iou = figure("Mean IoU of all their matches.")


class LabelWorkSerializer(serializers.Serializer[dict[str, Any]]):
    annotator = serializers.CharField()
    assignment = serializers.IntegerField()
    slot = serializers.IntegerField()
    state = serializers.CharField()
    version = serializers.IntegerField()
    n_objects = serializers.IntegerField()
    foreground_voxels = serializers.IntegerField()


class BoxLabelAgreementSerializer(serializers.Serializer[dict[str, Any]]):
    box = serializers.IntegerField()
    name = serializers.CharField()
    iou_threshold = serializers.FloatField()
    annotators = LabelWorkSerializer(many=True, help_text="Submitted and approved volumes.")
    mean_f1 = figure("Mean F1 over the pairs.")
    mean_dice = figure("Mean Dice over the pairs.")
    pairs = BoxLabelPairSerializer(many=True)
    summaries = LabelSummarySerializer(many=True)


class CampaignLabelAgreementSerializer(serializers.Serializer[dict[str, Any]]):
    campaign = serializers.IntegerField()
    iou_threshold = serializers.FloatField()
    boxes_compared = serializers.IntegerField(help_text="Boxes with two or more volumes.")
    mean_f1 = figure("Mean of the boxes' mean F1.")
    mean_dice = figure("Mean of the boxes' mean Dice.")
    boxes = BoxLabelAgreementSerializer(many=True)
    pairs = CampaignLabelPairSerializer(many=True, help_text="Per annotator pair, pooled.")


class ConsensusObjectSerializer(serializers.Serializer[dict[str, Any]]):
    id = serializers.IntegerField(help_text="Its id in the consensus volume (1..K).")
    voxels = serializers.IntegerField()
    centroid = serializers.ListField(child=serializers.FloatField(), help_text="z y x, box voxels.")
    support = serializers.IntegerField(help_text="Annotators whose objects make it.")
    members = serializers.ListField(
        child=serializers.ListField(child=serializers.JSONField()),
        help_text="[annotator, their id] of each object in it.",
    )


class UnmatchedObjectSerializer(serializers.Serializer[dict[str, Any]]):
    annotator = serializers.CharField()
    id = serializers.IntegerField(help_text="The annotator's id of the object.")
    voxels = serializers.IntegerField()
    centroid = serializers.ListField(child=serializers.FloatField(), help_text="z y x, box voxels.")
    support = serializers.IntegerField(help_text="Annotators in its cluster (below the quorum).")


class LabelMemberSerializer(serializers.Serializer[dict[str, Any]]):
    assignment = serializers.IntegerField()
    annotator = serializers.CharField()
    version = serializers.IntegerField()


class LabelTruthSerializer(serializers.Serializer[dict[str, Any]]):
    source = serializers.ChoiceField(choices=LabelTruthSource.choices)  # type: ignore[assignment]
    assignment = serializers.IntegerField(allow_null=True)
    quorum = serializers.IntegerField(allow_null=True)
    members = LabelMemberSerializer(many=True, help_text="The volumes it was made of.")
    objects = serializers.IntegerField()
    chunks = serializers.IntegerField(help_text="Non-zero 64^3 chunks.")
    accepted_by = serializers.CharField(allow_null=True)
    accepted_at = serializers.DateTimeField()


class ConsensusWorkSerializer(serializers.Serializer[dict[str, Any]]):
    annotator = serializers.CharField()
    assignment = serializers.IntegerField()
    state = serializers.CharField()
    version = serializers.IntegerField()


class LabelConsensusSerializer(serializers.Serializer[dict[str, Any]]):
    box = serializers.IntegerField()
    name = serializers.CharField()
    quorum = serializers.IntegerField()
    iou_threshold = serializers.FloatField()
    annotators = ConsensusWorkSerializer(many=True, help_text="The volumes compared.")
    pending = serializers.IntegerField(help_text="Of them, submitted and not yet approved.")
    chunks = serializers.IntegerField(help_text="Non-zero chunks of the consensus volume.")
    objects = ConsensusObjectSerializer(many=True)
    unmatched = UnmatchedObjectSerializer(many=True, help_text="Left out, for the reviewer.")
    source = serializers.URLField(  # type: ignore[assignment]
        allow_null=True, help_text="Its OME-Zarr files."
    )
    neuroglancer_source = serializers.CharField(allow_null=True)
    accepted = LabelTruthSerializer(allow_null=True, help_text="The accepted truth, if any.")


class QuorumInputSerializer(serializers.Serializer[dict[str, Any]]):
    quorum = serializers.IntegerField(
        required=False,
        min_value=1,
        max_value=MAX_REDUNDANCY,
        help_text="Default: a strict majority of the volumes compared.",
    )


class LabelTruthStateSerializer(serializers.Serializer[dict[str, Any]]):
    box = serializers.IntegerField()
    name = serializers.CharField()
    accepted = LabelTruthSerializer(allow_null=True, help_text="None accepted: null.")


class LabelTruthInputSerializer(serializers.Serializer[dict[str, Any]]):
    source = serializers.ChoiceField(choices=LabelTruthSource.choices)  # type: ignore[assignment]
    quorum = serializers.IntegerField(
        required=False,
        min_value=1,
        max_value=MAX_REDUNDANCY,
        help_text="With source consensus; default a strict majority of the volumes.",
    )
    assignment = serializers.IntegerField(
        required=False, min_value=1, help_text="With source assignment: an approved task's id."
    )
