"""Proofreading campaigns over a segmentation layer's detections: items, claims, verdicts.

A ``ProofreadingCampaign`` chooses detections of one segmentation layer (all, a volume/sphericity
filter, or a seeded random sample) and materialises one ``CampaignItem`` per detection, each with
its place in the queue (``queue_key``). Reviewers ask for the next item: handing one out writes
a ``Claim`` (with an expiry, so an abandoned claim frees its place), and the verdict replaces the
claim. An item takes at most N first-round verdicts (``reviewers_per_item``) from N different
people: live verdicts plus live claims never exceed N (see ``services``). When the N first-round
verdicts disagree or one is uncertain (``pipeline.agreement``), the item goes to the second
round, where one expert's verdict is final.

Nothing a reviewer did is ever lost: a verdict that is undone keeps its row (``undone_at``), and
``ReviewEvent`` is an append-only log of every create, change, undo, skip and flag (who, when,
before, after). Items keep their segment id, so that a rebuild of the detections table that
drops a segment leaves its verdicts (the item's ``detection`` then points at nothing).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar, TypeVar

from django.conf import settings
from django.db import models
from django.db.models import Exists, OuterRef, Q

from webapp.core.permissions import Principal, RestrictedByParent, RestrictedQuerySet, Rules
from webapp.proofreading.verdict_sets import default_verdict_set

M = TypeVar("M", bound=models.Model)

FIRST_ROUND = 1
SECOND_ROUND = 2
ROUNDS = ((FIRST_ROUND, "First round"), (SECOND_ROUND, "Second round (expert)"))


class CampaignState(models.TextChoices):
    OPEN = "open", "Open"
    CLOSED = "closed", "Closed"


class Selection(models.TextChoices):
    ALL = "all", "All detections"
    FILTER = "filter", "Detections passing a volume/sphericity filter"
    SAMPLE = "sample", "A random sample of K detections"


class QueueOrder(models.TextChoices):
    RANDOM = "random", "Random"
    UNCERTAINTY = "uncertainty", "Most uncertain first"
    REGION = "region", "By region"


class ConsensusRule(models.TextChoices):
    UNANIMOUS = "unanimous", "All first-round verdicts agree"
    MAJORITY = "majority", "A strict majority of the first-round verdicts"


class Role(models.TextChoices):
    MANAGER = "manager", "Manager"
    REVIEWER = "reviewer", "Reviewer"
    EXPERT = "expert", "Expert (second round)"


class ItemStatus(models.TextChoices):
    """``pipeline.agreement.Status``: where an item's verdicts stand."""

    PENDING = "pending", "Waiting for first-round verdicts"
    SECOND_ROUND = "second_round", "Waiting for an expert"
    DECIDED = "decided", "Decided"


class EventAction(models.TextChoices):
    CREATE = "create", "Verdict given"
    CHANGE = "change", "Verdict changed"
    UNDO = "undo", "Verdict undone"
    SKIP = "skip", "Skipped"
    FLAG = "flag", "Flagged"


# --- permissions --------------------------------------------------------------------------------


@dataclass(frozen=True)
class CampaignRole:
    """Open to members of the campaign holding one of ``roles`` (a permissions grant)."""

    roles: tuple[str, ...]

    def _members(self, user_id: int) -> models.QuerySet[CampaignMember]:
        return CampaignMember.objects.filter(user_id=user_id, role__in=self.roles)

    def q(self, principal: Principal, model: type[models.Model]) -> Q | None:
        if principal.user_id is None:
            return None
        return Q(pk__in=self._members(principal.user_id).values("campaign_id"))

    def allows(self, row: Any, principal: Principal) -> bool:
        if principal.user_id is None:
            return False
        return self._members(principal.user_id).filter(campaign_id=row.pk).exists()


ANY_ROLE = (Role.MANAGER, Role.REVIEWER, Role.EXPERT)


class CampaignQuerySet(RestrictedQuerySet["ProofreadingCampaign"]):
    """Members see their campaigns; managers change them; reviewers and experts review in their
    rounds; managers and experts read the reports (agreement, dashboard, exports, flags)."""

    rules: ClassVar[Rules] = {
        "view": (CampaignRole(ANY_ROLE),),
        "change": (CampaignRole((Role.MANAGER,)),),
        "delete": (CampaignRole((Role.MANAGER,)),),
        "review": (CampaignRole((Role.REVIEWER,)),),
        "expert": (CampaignRole((Role.EXPERT,)),),
        "report": (CampaignRole((Role.MANAGER, Role.EXPERT)),),
    }


class CampaignChildQuerySet(RestrictedByParent[M]):
    """Rows of a campaign: visible with it (and the reports with "report" on it); what a member
    may do to them is the services' business (a reviewer's own verdicts, a manager's settings)."""

    parent_field = "campaign"
    parent_actions = {"view": "view", "report": "report"}


class ItemQuerySet(CampaignChildQuerySet["CampaignItem"]):
    pass


class VerdictQuerySet(CampaignChildQuerySet["Verdict"]):
    pass


class EventQuerySet(CampaignChildQuerySet["ReviewEvent"]):
    pass


class MissedObjectQuerySet(CampaignChildQuerySet["MissedObject"]):
    pass


class MemberQuerySet(CampaignChildQuerySet["CampaignMember"]):
    pass


class ProofreadingCampaign(models.Model):
    layer = models.ForeignKey(
        "datasets.Layer", on_delete=models.CASCADE, related_name="proofreading_campaigns"
    )
    name = models.CharField(max_length=200)
    description = models.TextField(blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        on_delete=models.SET_NULL,
        related_name="proofreading_campaigns_created",
    )
    created = models.DateTimeField(auto_now_add=True)
    updated = models.DateTimeField(auto_now=True)
    state = models.CharField(
        max_length=10, choices=CampaignState.choices, default=CampaignState.OPEN
    )

    selection = models.CharField(max_length=10, choices=Selection.choices, default=Selection.ALL)
    # volume_min, sphericity_min (filter; the population of a sample), sample_size, seed.
    selection_params = models.JSONField(default=dict, blank=True)
    verdict_set = models.JSONField(default=default_verdict_set)
    reviewers_per_item = models.PositiveSmallIntegerField(default=1)
    consensus_rule = models.CharField(
        max_length=10, choices=ConsensusRule.choices, default=ConsensusRule.UNANIMOUS
    )
    order = models.CharField(max_length=12, choices=QueueOrder.choices, default=QueueOrder.RANDOM)
    # Seeds the random order and breaks ties in the other orders: a queue is reproducible.
    order_seed = models.BigIntegerField(default=0)
    claim_seconds = models.PositiveIntegerField(default=900)
    n_items = models.PositiveIntegerField(default=0)
    # {"voxel_size_um": [z, y, x], "origin_um": [z, y, x]}: voxel -> um for missed points.
    geometry = models.JSONField(default=dict, blank=True)

    objects = CampaignQuerySet.as_manager()

    class Meta:
        ordering = ["-created", "-id"]

    def __str__(self) -> str:
        return self.name


class CampaignMember(models.Model):
    """One role of one user in a campaign (a user may hold several, e.g. manager and reviewer)."""

    campaign = models.ForeignKey(
        ProofreadingCampaign, on_delete=models.CASCADE, related_name="members"
    )
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="proofreading_roles"
    )
    role = models.CharField(max_length=10, choices=Role.choices)
    added_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+"
    )
    created = models.DateTimeField(auto_now_add=True)

    objects = MemberQuerySet.as_manager()

    class Meta:
        ordering = ["campaign", "user__username", "role"]
        constraints = [
            models.UniqueConstraint(
                fields=["campaign", "user", "role"], name="unique_campaign_member_role"
            )
        ]
        indexes: ClassVar[list[models.Index]] = [
            models.Index(fields=["user", "role", "campaign"], name="campaign_member_user")
        ]


class CampaignItem(models.Model):
    """One detection in a campaign, with where its verdicts stand (kept up to date by the
    services in the transaction that changes them)."""

    campaign = models.ForeignKey(
        ProofreadingCampaign, on_delete=models.CASCADE, related_name="items"
    )
    # No database constraint and nothing done on delete: a rebuild that drops a segment (or a
    # dataset deletion) deletes detections in one statement, as it did before campaigns
    # existed, instead of Django collecting every detection row to null the items' keys. A
    # dangling key means "the segment vanished from the layer": read ``detection`` through
    # ``select_related`` (a left join gives None) and filter with ``DETECTION_EXISTS``.
    detection = models.ForeignKey(
        "detections.Detection",
        null=True,
        on_delete=models.DO_NOTHING,
        db_constraint=False,
        related_name="proofreading_items",
    )
    segment_id = models.BigIntegerField()
    queue_key = models.PositiveIntegerField()
    status = models.CharField(max_length=12, choices=ItemStatus.choices, default=ItemStatus.PENDING)
    first_round_count = models.PositiveSmallIntegerField(default=0)
    # The consensus: the final verdict once decided ("" before), where it came from
    # ("first_round" or "expert"), and the strict first-round majority (shown to experts).
    verdict = models.CharField(max_length=40, blank=True)
    verdict_source = models.CharField(max_length=12, blank=True)
    majority = models.CharField(max_length=40, blank=True)
    reason = models.CharField(max_length=40, blank=True)
    updated = models.DateTimeField(auto_now=True)

    objects = ItemQuerySet.as_manager()

    class Meta:
        ordering = ["campaign", "queue_key"]
        constraints = [
            models.UniqueConstraint(
                fields=["campaign", "segment_id"], name="unique_campaign_item_segment"
            )
        ]
        indexes: ClassVar[list[models.Index]] = [
            models.Index(fields=["campaign", "status", "queue_key"], name="campaign_item_queue"),
            models.Index(fields=["campaign", "queue_key"], name="campaign_item_order"),
        ]

    def __str__(self) -> str:
        return f"{self.campaign_id}:{self.segment_id}"


def detection_exists() -> Exists:
    """Filter for items whose detection still exists in the layer's table."""
    from webapp.detections.models import Detection

    return Exists(Detection.objects.filter(id=OuterRef("detection_id")))


class Claim(models.Model):
    """An item handed out to one reviewer for one round, until ``expires_at``.

    A live claim holds one of the item's N places; the reviewer's verdict (or skip) removes it.
    ``handed_out`` is when the server gave the item out: the time a decision took is measured
    from it (see ``services.verdict_create``).
    """

    campaign = models.ForeignKey(ProofreadingCampaign, on_delete=models.CASCADE, related_name="+")
    item = models.ForeignKey(CampaignItem, on_delete=models.CASCADE, related_name="claims")
    reviewer = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="proofreading_claims"
    )
    round = models.PositiveSmallIntegerField(choices=ROUNDS, default=FIRST_ROUND)
    handed_out = models.DateTimeField()
    expires_at = models.DateTimeField()

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["item", "reviewer", "round"], name="unique_claim_per_reviewer_round"
            )
        ]
        indexes: ClassVar[list[models.Index]] = [
            models.Index(fields=["campaign", "reviewer", "round"], name="claim_reviewer"),
            models.Index(fields=["item", "round", "expires_at"], name="claim_item_live"),
        ]


class Verdict(models.Model):
    """One reviewer's verdict on one item in one round; live while ``undone_at`` is null.

    At most one live verdict per (item, reviewer, round), enforced by a partial unique index
    as well as by the services.
    """

    campaign = models.ForeignKey(
        ProofreadingCampaign, on_delete=models.CASCADE, related_name="verdicts"
    )
    item = models.ForeignKey(CampaignItem, on_delete=models.CASCADE, related_name="verdicts")
    reviewer = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="proofreading_verdicts"
    )
    round = models.PositiveSmallIntegerField(choices=ROUNDS, default=FIRST_ROUND)
    verdict = models.CharField(max_length=40)
    seconds = models.FloatField(
        null=True, blank=True, help_text="Seconds from hand-out (or the reviewer's previous "
        "action, if later) to the verdict, measured on the server; null without a hand-out."
    )  # fmt: skip
    created = models.DateTimeField(auto_now_add=True)
    # When it was last given or changed: a reviewer's "last verdict" (undo) is the latest.
    updated = models.DateTimeField()
    undone_at = models.DateTimeField(null=True, blank=True)

    objects = VerdictQuerySet.as_manager()

    class Meta:
        ordering = ["campaign", "created", "id"]
        constraints = [
            models.UniqueConstraint(
                fields=["item", "reviewer", "round"],
                condition=Q(undone_at__isnull=True),
                name="unique_live_verdict_per_reviewer_round",
            )
        ]
        indexes: ClassVar[list[models.Index]] = [
            models.Index(fields=["campaign", "reviewer", "updated"], name="verdict_reviewer_last"),
            models.Index(fields=["item", "round"], name="verdict_item_round"),
        ]

    @property
    def is_live(self) -> bool:
        return self.undone_at is None


class ReviewEvent(models.Model):
    """Append-only history: every verdict created, changed or undone, every skip and flag."""

    campaign = models.ForeignKey(
        ProofreadingCampaign, on_delete=models.CASCADE, related_name="events"
    )
    item = models.ForeignKey(CampaignItem, on_delete=models.CASCADE, related_name="events")
    verdict = models.ForeignKey(
        Verdict, null=True, blank=True, on_delete=models.CASCADE, related_name="events"
    )
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="proofreading_events"
    )
    action = models.CharField(max_length=10, choices=EventAction.choices)
    round = models.PositiveSmallIntegerField(choices=ROUNDS, default=FIRST_ROUND)
    before = models.CharField(max_length=40, blank=True)
    after = models.CharField(max_length=40, blank=True)
    reason = models.CharField(max_length=500, blank=True)
    created = models.DateTimeField(auto_now_add=True)

    objects = EventQuerySet.as_manager()

    class Meta:
        ordering = ["campaign", "created", "id"]
        indexes: ClassVar[list[models.Index]] = [
            models.Index(fields=["campaign", "actor", "created"], name="event_actor_last"),
            models.Index(fields=["item", "actor", "action"], name="event_item_actor"),
            models.Index(fields=["campaign", "action", "created"], name="event_action"),
        ]


class MissedObject(models.Model):
    """A point on an object the segmentation missed, in voxels of the campaign's layer (z y x,
    full resolution, voxel centres at integers as in the detections table)."""

    campaign = models.ForeignKey(
        ProofreadingCampaign, on_delete=models.CASCADE, related_name="missed_objects"
    )
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="proofreading_missed"
    )
    z = models.FloatField()
    y = models.FloatField()
    x = models.FloatField()
    note = models.CharField(max_length=500, blank=True)
    created = models.DateTimeField(auto_now_add=True)

    objects = MissedObjectQuerySet.as_manager()

    class Meta:
        ordering = ["campaign", "created", "id"]
