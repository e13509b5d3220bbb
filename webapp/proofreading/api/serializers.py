"""Proofreading API serializers: requests are checked here for shape and bounds, and by the
services for meaning; answers are documented field by field, so the schema tells the truth."""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from webapp.detections.api.serializers import DetectionSerializer
from webapp.proofreading.models import (
    ROUNDS,
    CampaignItem,
    CampaignMember,
    CampaignState,
    ConsensusRule,
    EventAction,
    ItemStatus,
    MissedObject,
    ProofreadingCampaign,
    QueueOrder,
    ReviewEvent,
    Role,
    Selection,
    Verdict,
)
from webapp.proofreading.services import (
    MAX_CLAIM_SECONDS,
    MAX_PREFETCH,
    MAX_REASON,
    MAX_REVIEWERS_PER_ITEM,
    MIN_CLAIM_SECONDS,
)
from webapp.proofreading.verdict_sets import KINDS

MAX_ID = 2**63 - 1
MIN_SEGMENT = -(2**63)
MAX_BULK = 1000


def _id_field(**kwargs: Any) -> serializers.IntegerField:
    return serializers.IntegerField(min_value=1, max_value=MAX_ID, **kwargs)


def _round_field() -> serializers.ChoiceField:
    return serializers.ChoiceField(
        choices=ROUNDS,
        default=1,
        help_text="1: the first round (reviewers); 2: the second round (experts).",
    )


# --- campaigns ----------------------------------------------------------------------------------


class VerdictClassSerializer(serializers.Serializer[dict[str, Any]]):
    name = serializers.CharField(max_length=40, help_text="Stored and exported, e.g. 'tp'.")
    # DRF moves declared fields out of the class; the stubs see one overriding Field.label.
    label = serializers.CharField(  # type: ignore[assignment]
        max_length=80, help_text="What the button says."
    )
    colour = serializers.CharField(max_length=7, help_text="'#rrggbb'.")
    key = serializers.CharField(
        max_length=1, help_text="Keyboard shortcut (S, F, U and Z are the queue's own)."
    )
    kind = serializers.ChoiceField(
        choices=list(KINDS),
        required=False,
        help_text="positive, negative, or uncertain (sends the detection to the second round); "
        "default: 'uncertain' for a class named uncertain, 'negative' for fp, else positive.",
    )


class MemberInputSerializer(serializers.Serializer[dict[str, Any]]):
    username = serializers.CharField(max_length=150)
    role = serializers.ChoiceField(choices=Role.choices)


class CampaignCreateSerializer(serializers.Serializer[dict[str, Any]]):
    dataset = serializers.SlugField(max_length=100, help_text="The dataset's slug.")
    layer = serializers.CharField(max_length=100, help_text="A segmentation layer's name.")
    name = serializers.CharField(max_length=200)
    description = serializers.CharField(required=False, allow_blank=True, max_length=10000)
    selection = serializers.ChoiceField(choices=Selection.choices, default=Selection.ALL)
    volume_min = serializers.FloatField(
        required=False,
        allow_null=True,
        help_text="Filter (and sample population): volume >= this, um^3.",
    )
    sphericity_min = serializers.FloatField(
        required=False, allow_null=True, help_text="Filter: sphericity >= this."
    )
    sample_size = serializers.IntegerField(
        required=False,
        allow_null=True,
        min_value=1,
        max_value=10_000_000,
        help_text="K, for the sample selection.",
    )
    seed = serializers.IntegerField(
        required=False,
        allow_null=True,
        min_value=0,
        max_value=MAX_ID,
        help_text="Seed of the sample and the random order (chosen and stored when absent).",
    )
    verdict_set = VerdictClassSerializer(many=True, required=False)
    reviewers_per_item = serializers.IntegerField(
        default=1, min_value=1, max_value=MAX_REVIEWERS_PER_ITEM
    )
    consensus_rule = serializers.ChoiceField(
        choices=ConsensusRule.choices, default=ConsensusRule.UNANIMOUS
    )
    order = serializers.ChoiceField(choices=QueueOrder.choices, default=QueueOrder.RANDOM)
    claim_seconds = serializers.IntegerField(
        default=900, min_value=MIN_CLAIM_SECONDS, max_value=MAX_CLAIM_SECONDS
    )
    members = MemberInputSerializer(
        many=True, required=False, help_text="Members besides the creator (a manager)."
    )


class CampaignUpdateSerializer(serializers.Serializer[dict[str, Any]]):
    name = serializers.CharField(max_length=200, required=False)
    description = serializers.CharField(required=False, allow_blank=True, max_length=10000)
    state = serializers.ChoiceField(choices=CampaignState.choices, required=False)
    claim_seconds = serializers.IntegerField(
        required=False, min_value=MIN_CLAIM_SECONDS, max_value=MAX_CLAIM_SECONDS
    )
    verdict_set = VerdictClassSerializer(
        many=True,
        required=False,
        help_text="Same names and kinds; labels, colours and keys may change.",
    )


class CampaignSerializer(serializers.ModelSerializer[ProofreadingCampaign]):
    dataset = serializers.CharField(source="layer.dataset.slug", read_only=True)
    layer = serializers.CharField(source="layer.name", read_only=True)
    created_by = serializers.CharField(
        source="created_by.username", read_only=True, allow_null=True, default=None
    )
    verdict_set = VerdictClassSerializer(many=True, read_only=True)
    my_roles = serializers.SerializerMethodField()

    class Meta:
        model = ProofreadingCampaign
        fields = [
            "id",
            "name",
            "description",
            "dataset",
            "layer",
            "created_by",
            "created",
            "updated",
            "state",
            "selection",
            "selection_params",
            "verdict_set",
            "reviewers_per_item",
            "consensus_rule",
            "order",
            "order_seed",
            "claim_seconds",
            "n_items",
            "my_roles",
        ]
        read_only_fields = fields

    @extend_schema_field(serializers.ListField(child=serializers.ChoiceField(Role.choices)))
    def get_my_roles(self, campaign: ProofreadingCampaign) -> list[str]:
        memberships = getattr(campaign, "my_memberships", None)
        if memberships is None:
            user = self.context["request"].user
            memberships = CampaignMember.objects.filter(campaign=campaign, user_id=user.pk)
        return sorted(m.role for m in memberships)


class MemberSerializer(serializers.ModelSerializer[CampaignMember]):
    username = serializers.CharField(source="user.username", read_only=True)
    added_by = serializers.CharField(
        source="added_by.username", read_only=True, allow_null=True, default=None
    )

    class Meta:
        model = CampaignMember
        fields = ["id", "username", "role", "added_by", "created"]
        read_only_fields = fields


# --- items, hand-outs, verdicts -----------------------------------------------------------------


class VerdictSerializer(serializers.ModelSerializer[Verdict]):
    reviewer = serializers.CharField(source="reviewer.username", read_only=True)
    segment_id = serializers.IntegerField(source="item.segment_id", read_only=True)
    live = serializers.BooleanField(source="is_live", read_only=True)

    class Meta:
        model = Verdict
        fields = [
            "id",
            "item",
            "segment_id",
            "reviewer",
            "round",
            "verdict",
            "seconds",
            "created",
            "updated",
            "undone_at",
            "live",
        ]
        read_only_fields = fields


class ItemVerdictSerializer(serializers.ModelSerializer[Verdict]):
    reviewer = serializers.CharField(source="reviewer.username", read_only=True)

    class Meta:
        model = Verdict
        fields = ["id", "reviewer", "round", "verdict", "seconds", "created", "updated"]
        read_only_fields = fields


class OwnVerdictSerializer(serializers.ModelSerializer[Verdict]):
    class Meta:
        model = Verdict
        fields = ["id", "round", "verdict", "seconds", "created", "updated"]
        read_only_fields = fields


class ItemSerializer(serializers.ModelSerializer[CampaignItem]):
    """An item of a campaign: its detection's measurements (null when the detection vanished
    from the layer in a rebuild), the caller's own live verdicts, and for managers and experts
    where its verdicts stand (null for reviewers, whose first round stays blind)."""

    detection = DetectionSerializer(read_only=True, allow_null=True)
    my_verdicts = OwnVerdictSerializer(source="mine", many=True, read_only=True)
    status = serializers.SerializerMethodField()
    verdict = serializers.SerializerMethodField()
    verdict_source = serializers.SerializerMethodField()
    majority = serializers.SerializerMethodField()
    reason = serializers.SerializerMethodField()
    first_round_count = serializers.SerializerMethodField()
    verdicts = serializers.SerializerMethodField()

    class Meta:
        model = CampaignItem
        fields = [
            "id",
            "segment_id",
            "queue_key",
            "detection",
            "my_verdicts",
            "status",
            "verdict",
            "verdict_source",
            "majority",
            "reason",
            "first_round_count",
            "verdicts",
        ]
        read_only_fields = fields

    def _reports(self, item: CampaignItem) -> bool:
        return hasattr(item, "live_verdicts")

    @extend_schema_field(serializers.ChoiceField(choices=ItemStatus.choices, allow_null=True))
    def get_status(self, item: CampaignItem) -> str | None:
        return item.status if self._reports(item) else None

    @extend_schema_field(serializers.CharField(allow_null=True))
    def get_verdict(self, item: CampaignItem) -> str | None:
        return (item.verdict or None) if self._reports(item) else None

    @extend_schema_field(serializers.CharField(allow_null=True))
    def get_verdict_source(self, item: CampaignItem) -> str | None:
        return (item.verdict_source or None) if self._reports(item) else None

    @extend_schema_field(serializers.CharField(allow_null=True))
    def get_majority(self, item: CampaignItem) -> str | None:
        return (item.majority or None) if self._reports(item) else None

    @extend_schema_field(serializers.CharField(allow_null=True))
    def get_reason(self, item: CampaignItem) -> str | None:
        return (item.reason or None) if self._reports(item) else None

    @extend_schema_field(serializers.IntegerField(allow_null=True))
    def get_first_round_count(self, item: CampaignItem) -> int | None:
        return item.first_round_count if self._reports(item) else None

    @extend_schema_field(ItemVerdictSerializer(many=True, allow_null=True))
    def get_verdicts(self, item: CampaignItem) -> list[dict[str, Any]] | None:
        if not self._reports(item):
            return None
        live: list[Verdict] = getattr(item, "live_verdicts", [])
        return list(ItemVerdictSerializer(live, many=True).data)


class HandoutSerializer(serializers.Serializer[Any]):
    item = ItemSerializer(read_only=True)
    round = serializers.IntegerField(source="claim.round", read_only=True)
    handed_out = serializers.DateTimeField(source="claim.handed_out", read_only=True)
    expires_at = serializers.DateTimeField(
        source="claim.expires_at",
        read_only=True,
        help_text="The item is held for the caller until then; asking for next extends it.",
    )


class NextRequestSerializer(serializers.Serializer[dict[str, Any]]):
    count = serializers.IntegerField(
        default=1,
        min_value=1,
        max_value=MAX_PREFETCH,
        help_text="How many items to hand out (the first is the one to show; the others are "
        "for the page to preload; a gallery asks for a page).",
    )
    round = _round_field()


class ItemRefSerializer(serializers.Serializer[dict[str, Any]]):
    """Names an item by its id or by its detection's segment id (exactly one)."""

    item = _id_field(required=False)
    segment_id = serializers.IntegerField(required=False, min_value=MIN_SEGMENT, max_value=MAX_ID)

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        if ("item" in attrs) == ("segment_id" in attrs):
            raise serializers.ValidationError(
                "Name the detection by exactly one of item or segment_id."
            )
        return attrs


class VerdictCreateSerializer(ItemRefSerializer):
    verdict = serializers.CharField(
        max_length=40, help_text="A name of the campaign's verdict set."
    )
    round = _round_field()


class VerdictBulkSerializer(serializers.Serializer[dict[str, Any]]):
    items = serializers.ListField(
        child=_id_field(), min_length=1, max_length=MAX_BULK, help_text="Item ids."
    )
    verdict = serializers.CharField(max_length=40)
    round = _round_field()


class VerdictChangeSerializer(serializers.Serializer[dict[str, Any]]):
    verdict = serializers.CharField(max_length=40)


class UndoRequestSerializer(serializers.Serializer[dict[str, Any]]):
    verdict = _id_field(help_text="The id of the verdict the page believes is the caller's last.")


class UndoResultSerializer(serializers.Serializer[Any]):
    verdict = VerdictSerializer(read_only=True)
    handout = HandoutSerializer(
        read_only=True,
        allow_null=True,
        help_text="The item, handed back to the caller (null when it is no longer theirs to "
        "decide, e.g. the campaign moved on).",
    )


class SkipSerializer(ItemRefSerializer):
    round = _round_field()


class FlagSerializer(ItemRefSerializer):
    reason = serializers.CharField(max_length=MAX_REASON)
    round = _round_field()


class EventSerializer(serializers.ModelSerializer[ReviewEvent]):
    actor = serializers.CharField(source="actor.username", read_only=True)
    segment_id = serializers.IntegerField(source="item.segment_id", read_only=True)
    action = serializers.ChoiceField(choices=EventAction.choices, read_only=True)

    class Meta:
        model = ReviewEvent
        fields = [
            "id",
            "item",
            "segment_id",
            "verdict",
            "actor",
            "action",
            "round",
            "before",
            "after",
            "reason",
            "created",
        ]
        read_only_fields = fields


class MissedObjectSerializer(serializers.ModelSerializer[MissedObject]):
    created_by = serializers.CharField(source="created_by.username", read_only=True)

    class Meta:
        model = MissedObject
        fields = ["id", "z", "y", "x", "note", "created_by", "created"]
        read_only_fields = ["id", "created_by", "created"]


class MissedObjectCreateSerializer(serializers.Serializer[dict[str, Any]]):
    z = serializers.FloatField(help_text="Voxel position of the layer (full resolution).")
    y = serializers.FloatField()
    x = serializers.FloatField()
    note = serializers.CharField(required=False, allow_blank=True, max_length=MAX_REASON)


# --- reports ------------------------------------------------------------------------------------


class FleissSerializer(serializers.Serializer[dict[str, Any]]):
    kappa = serializers.FloatField(allow_null=True, help_text="Null where undefined.")
    n_raters = serializers.IntegerField()
    n_detections = serializers.IntegerField()
    n_excluded = serializers.IntegerField(
        help_text="Detections with another number of first-round verdicts than n_raters."
    )
    categories = serializers.ListField(child=serializers.CharField())


class PercentAgreementSerializer(serializers.Serializer[dict[str, Any]]):
    pairwise = serializers.FloatField(allow_null=True)
    unanimous = serializers.FloatField(allow_null=True)
    n_detections = serializers.IntegerField()


class PairSerializer(serializers.Serializer[dict[str, Any]]):
    reviewer_a = serializers.CharField()
    reviewer_b = serializers.CharField()
    n_common = serializers.IntegerField()
    percent_agreement = serializers.FloatField(allow_null=True)
    kappa = serializers.FloatField(allow_null=True, help_text="Cohen's kappa; null if undefined.")


def _counts(help_text: str) -> serializers.DictField:
    return serializers.DictField(child=serializers.IntegerField(), help_text=help_text)


class AgreementSerializer(serializers.Serializer[dict[str, Any]]):
    reviewers_per_item = serializers.IntegerField()
    consensus_rule = serializers.ChoiceField(choices=ConsensusRule.choices)
    items = serializers.IntegerField()
    status_counts = _counts("Items per status (pending, second_round, decided).")
    verdict_counts = _counts("Decided items per final verdict.")
    fleiss = FleissSerializer()
    percent_agreement = PercentAgreementSerializer()
    pairs = PairSerializer(many=True)


class ReviewerFiguresSerializer(serializers.Serializer[dict[str, Any]]):
    reviewer = serializers.CharField()
    roles = serializers.ListField(child=serializers.ChoiceField(choices=Role.choices))
    decisions = serializers.IntegerField()
    decisions_round1 = serializers.IntegerField()
    decisions_round2 = serializers.IntegerField()
    median_seconds = serializers.FloatField(allow_null=True)
    agreement_with_consensus = serializers.FloatField(allow_null=True)
    n_with_consensus = serializers.IntegerField()
    skips = serializers.IntegerField()
    flags = serializers.IntegerField()


class DashboardSerializer(serializers.Serializer[dict[str, Any]]):
    total = serializers.IntegerField()
    decided = serializers.IntegerField()
    progress = serializers.FloatField(allow_null=True, help_text="decided / total.")
    status_counts = _counts("Items per status.")
    by_verdict = _counts("Decided items per final verdict.")
    by_round = _counts("Live verdicts given in round '1' and '2'.")
    decided_by = _counts("Decided items by source: first_round or expert.")
    missed_objects = serializers.IntegerField()
    reviewers = ReviewerFiguresSerializer(many=True)
