"""Stereology API shapes: studies with their plan, marks with their match, the estimate."""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from pipeline.stereology import DEFAULT_H_UM
from webapp.stereology.models import DisectorMark, DisectorStudy
from webapp.stereology.services import MAX_PAIRS, MAX_TOLERANCE_UM


class DisectorPairSerializer(serializers.Serializer[dict[str, Any]]):
    index = serializers.IntegerField()
    reference = serializers.IntegerField(help_text="z of the reference section (voxels)")
    lookup = serializers.IntegerField(help_text="z of the look-up section (voxels)")
    reference_um = serializers.FloatField()
    lookup_um = serializers.FloatField()
    reference_area_um2 = serializers.FloatField(help_text="The region's area in the reference")
    lookup_in_volume = serializers.BooleanField(
        help_text="False: the look-up section lies beyond the volume (shows nothing)."
    )


class DisectorStudySerializer(serializers.ModelSerializer[DisectorStudy]):
    campaign = serializers.IntegerField(source="campaign_id", read_only=True)
    dataset = serializers.CharField(source="campaign.layer.dataset.slug", read_only=True)
    layer = serializers.CharField(source="campaign.layer.name", read_only=True)
    mask_layer = serializers.CharField(
        source="mask_layer.name", read_only=True, allow_null=True, default=None
    )
    created_by = serializers.CharField(
        source="created_by.username", read_only=True, allow_null=True, default=None
    )
    h_um = serializers.SerializerMethodField(help_text="h as placed: whole sections apart (um)")
    h_voxels = serializers.SerializerMethodField()
    axis = serializers.SerializerMethodField()
    shape = serializers.SerializerMethodField(help_text="z, y, x voxels")
    voxel_size_nm = serializers.SerializerMethodField(help_text="z, y, x")
    region_volume_um3 = serializers.SerializerMethodField()
    pairs = serializers.SerializerMethodField()

    class Meta:
        model = DisectorStudy
        fields = [
            "id",
            "name",
            "campaign",
            "dataset",
            "layer",
            "mask_layer",
            "n_pairs",
            "h_um_requested",
            "h_um",
            "h_voxels",
            "axis",
            "seed",
            "tolerance_um",
            "shape",
            "voxel_size_nm",
            "region_volume_um3",
            "pairs",
            "created_by",
            "created",
        ]

    def get_h_um(self, study: DisectorStudy) -> float:
        return float(study.plan["h_um"])

    def get_h_voxels(self, study: DisectorStudy) -> int:
        return int(study.plan["h_voxels"])

    def get_axis(self, study: DisectorStudy) -> str:
        return "zyx"[int(study.plan["axis"])]

    def get_shape(self, study: DisectorStudy) -> list[int]:
        return [int(n) for n in study.plan["shape"]]

    def get_voxel_size_nm(self, study: DisectorStudy) -> list[float]:
        return [float(v) for v in study.plan["voxel_size_nm"]]

    def get_region_volume_um3(self, study: DisectorStudy) -> float:
        return float(study.plan["region_volume_um3"])

    @extend_schema_field(DisectorPairSerializer(many=True))
    def get_pairs(self, study: DisectorStudy) -> list[dict[str, Any]]:
        return [DisectorPairSerializer(p).data for p in study.pairs]


class DisectorStudyCreateSerializer(serializers.Serializer[dict[str, Any]]):
    campaign = serializers.IntegerField(help_text="The proofreading campaign (you manage it).")
    name = serializers.CharField(max_length=200)
    n_pairs = serializers.IntegerField(
        min_value=1, max_value=MAX_PAIRS, help_text="K, the number of disector pairs."
    )
    h_um = serializers.FloatField(
        default=DEFAULT_H_UM, help_text="Disector height h (um), rounded to whole sections."
    )
    seed = serializers.IntegerField(
        required=False, allow_null=True, min_value=0, help_text="Random start; drawn if omitted."
    )
    mask_layer = serializers.CharField(
        required=False,
        allow_blank=True,
        help_text="A segmentation (label) layer of the dataset whose non-zero voxels are the "
        "region (optional); image layers are refused.",
    )
    tolerance_um = serializers.FloatField(
        default=0.0,
        min_value=0.0,
        max_value=MAX_TOLERANCE_UM,
        help_text="A mark this close to a segment matches it (um).",
    )


class DisectorMarkSerializer(serializers.ModelSerializer[DisectorMark]):
    reviewer = serializers.CharField(source="reviewer.username", read_only=True)
    detection = serializers.IntegerField(
        source="detection_id", read_only=True, allow_null=True, help_text="The detection's id"
    )
    matched = serializers.BooleanField(
        read_only=True, help_text="The marked object is one of the segmentation's detections."
    )

    class Meta:
        model = DisectorMark
        fields = [
            "id",
            "pair",
            "z",
            "y",
            "x",
            "reviewer",
            "matched",
            "segment_id",
            "detection",
            "match",
            "distance_um",
            "created",
        ]
        read_only_fields = fields


class DisectorMarkCreateSerializer(serializers.Serializer[dict[str, Any]]):
    pair = serializers.IntegerField(min_value=0)
    z = serializers.FloatField(help_text="Voxels of the layer; must be the pair's reference z.")
    y = serializers.FloatField()
    x = serializers.FloatField()


class PairCountedSerializer(serializers.Serializer[dict[str, Any]]):
    pair = serializers.IntegerField()
    counted = serializers.BooleanField()
    counted_pairs = serializers.ListField(
        child=serializers.IntegerField(), help_text="Every pair the caller has counted."
    )


class DisectorEstimateRowSerializer(serializers.Serializer[dict[str, Any]]):
    reviewer = serializers.CharField(allow_null=True, help_text="Null: pooled over reviewers.")
    n_pairs = serializers.IntegerField(help_text="Pairs counted")
    q_minus = serializers.FloatField(help_text="Objects counted (sum of Q-)")
    matched = serializers.FloatField(allow_null=True, help_text="Of them, detected")
    reference_area_um2 = serializers.FloatField()
    h_um = serializers.FloatField()
    nv_per_mm3 = serializers.FloatField(help_text="Numerical density")
    region_volume_um3 = serializers.FloatField()
    n_total = serializers.FloatField(help_text="Estimated number of objects in the region")
    n_total_low = serializers.FloatField(allow_null=True)
    n_total_high = serializers.FloatField(allow_null=True)
    ce = serializers.FloatField(allow_null=True, help_text="Coefficient of error of n_total")
    detections = serializers.IntegerField(allow_null=True)
    detected_fraction = serializers.FloatField(
        allow_null=True, help_text="detections / n_total (null when withheld: n_based_shown)"
    )
    detected_fraction_low = serializers.FloatField(allow_null=True)
    detected_fraction_high = serializers.FloatField(allow_null=True)
    miss_rate = serializers.FloatField(allow_null=True, help_text="1 - detections / n_total")
    miss_rate_low = serializers.FloatField(allow_null=True)
    miss_rate_high = serializers.FloatField(allow_null=True)
    miss_rate_sampled = serializers.FloatField(
        allow_null=True, help_text="Counted objects not detected / counted objects"
    )
    miss_rate_sampled_low = serializers.FloatField(allow_null=True)
    miss_rate_sampled_high = serializers.FloatField(allow_null=True)
    method = serializers.CharField()
    confidence = serializers.FloatField()
    min_counted_objects = serializers.IntegerField(
        help_text="Counted objects (q_minus) needed before D / N and 1 - D / N are shown"
    )
    n_based_shown = serializers.BooleanField(
        help_text="False: detected_fraction* and miss_rate* (N-based) are null, withheld"
    )
    n_based_withheld = serializers.ChoiceField(
        choices=["few_objects", "exceeds_one"],
        allow_null=True,
        help_text="Why the N-based values are withheld: fewer than min_counted_objects counted, "
        "or D exceeds the estimate of N. Shown values' bounds are clipped to [0, 1].",
    )


class DisectorEstimateSerializer(serializers.Serializer[dict[str, Any]]):
    detections = serializers.IntegerField(help_text="Detections in the region (D)")
    n_pairs = serializers.IntegerField(help_text="Pairs in the plan")
    h_um = serializers.FloatField()
    region_volume_um3 = serializers.FloatField()
    reviewers = DisectorEstimateRowSerializer(
        many=True, help_text="Per reviewer (yours only unless you manage or are an expert)"
    )
    pooled = DisectorEstimateRowSerializer(
        allow_null=True, help_text="Null before any pair is counted"
    )
