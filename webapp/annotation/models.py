"""Annotation campaigns: task boxes, assignments, versioned annotations, review, audit.

An ``AnnotationCampaign`` belongs to a dataset and one of its image layers. Its ``TaskBox``es
(blocks in full-resolution voxels, z y x) each yield N ``Assignment``s (``redundancy``), made
when the box is made, one per slot; an annotator who asks for the next task takes a free slot
of a box they have not done (see ``services`` for the concurrency rules). An assignment moves
todo -> in progress -> submitted -> approved, or rejected (with a comment) -> back to its
annotator, who edits and submits again.

What an annotator draws is versioned per assignment, so nothing is ever overwritten: each save
is a ``Revision`` (number 1, 2, ...; the assignment's ``version`` is the latest), and each
``Annotation`` row is one state of one annotation, valid from the revision that wrote it until
the revision that changed or deleted it (``valid_to``; null while current). The annotations at
version v are the rows with ``valid_from <= v`` and (``valid_to`` null or ``> v``); a save
touches only the rows it changes, so a box with thousands of points saves a few rows at a time.
A restore is a new revision that makes the current state equal to an earlier one.

In a ``painted`` campaign a revision may also change the assignment's painted label volume (uint32
ids over the box, stored as copy-on-write chunks by ``pipeline.label_store``): ``Revision.labels``
then holds the new version's manifest (chunk -> blob map); null means the labels did not change.
The labels at version v are those of the latest revision <= v whose ``labels`` is not null (none
painted when there is none), so points and labels share one version sequence and a restore brings
both back together.

Coordinates are the image layer's full-resolution voxel positions z y x, voxel i's centre at i
(as the proofreading app's missed-object points); physical positions are
``origin_um + position * voxel_size_um`` (the campaign's ``geometry``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar, TypeVar

from django.conf import settings
from django.db import models
from django.db.models import Q

from webapp.core.jobs.models import Job
from webapp.core.permissions import (
    Principal,
    RestrictedByParent,
    RestrictedQuerySet,
    Rules,
    rules_allow,
)

M = TypeVar("M", bound=models.Model)


class Role(models.TextChoices):
    MANAGER = "manager", "Manager"
    ANNOTATOR = "annotator", "Annotator"
    REVIEWER = "reviewer", "Reviewer"


ANY_ROLE = (Role.MANAGER, Role.ANNOTATOR, Role.REVIEWER)


class CampaignState(models.TextChoices):
    OPEN = "open", "Open"
    CLOSED = "closed", "Closed"


class BoxSource(models.TextChoices):
    TILE = "tile", "Tiling"
    SAMPLE = "sample", "Stratified random sample"
    CSV = "csv", "Imported table"
    MISSED = "missed", "Missed objects of a proofreading campaign"
    SUGGESTED = "suggested", "Suggested by a model's uncertainty"


class AssignmentState(models.TextChoices):
    TODO = "todo", "To do"
    IN_PROGRESS = "in_progress", "In progress"
    SUBMITTED = "submitted", "Submitted"
    APPROVED = "approved", "Approved"
    REJECTED = "rejected", "Rejected"


class AnnotationKind(models.TextChoices):
    """Neuroglancer's annotation types (their names in its state JSON)."""

    POINT = "point", "Point"
    LINE = "line", "Line"
    BOX = "axis_aligned_bounding_box", "Bounding box"
    ELLIPSOID = "ellipsoid", "Ellipsoid"
    POLYLINE = "polyline", "Polyline"


class RevisionKind(models.TextChoices):
    SAVE = "save", "Saved"
    RESTORE = "restore", "Restored an earlier version"


class AuditAction(models.TextChoices):
    CAMPAIGN_CREATE = "campaign.create", "Campaign created"
    CAMPAIGN_CHANGE = "campaign.change", "Campaign changed"
    MEMBER_ADD = "member.add", "Member added"
    MEMBER_REMOVE = "member.remove", "Member removed"
    BOXES_ADD = "boxes.add", "Boxes added"
    BOX_DELETE = "box.delete", "Box deleted"
    BOX_FLAG = "box.flag", "Box flagged"
    BOX_UNFLAG = "box.unflag", "Flag cleared"
    ASSIGNMENT_TAKE = "assignment.take", "Task taken"
    ASSIGNMENT_SKIP = "assignment.skip", "Task skipped"
    ASSIGNMENT_SUBMIT = "assignment.submit", "Task submitted"
    ASSIGNMENT_APPROVE = "assignment.approve", "Task approved"
    ASSIGNMENT_REJECT = "assignment.reject", "Task rejected"
    ANNOTATIONS_SAVE = "annotations.save", "Annotations saved"
    ANNOTATIONS_RESTORE = "annotations.restore", "Version restored"
    LABELS_SAVE = "labels.save", "Labels saved"
    CONSENSUS_ACCEPT = "consensus.accept", "Consensus accepted"
    LABEL_TRUTH_ACCEPT = "labels.truth", "Painted ground truth accepted"


# --- permissions --------------------------------------------------------------------------------


@dataclass(frozen=True)
class MemberOfVisibleCampaign:
    """Open to members holding one of ``roles`` of a campaign whose dataset they may view (a
    campaign of a dataset someone may no longer see is hidden from them too)."""

    roles: tuple[str, ...]

    def _members(self, user_id: int) -> models.QuerySet[CampaignMember]:
        return CampaignMember.objects.filter(user_id=user_id, role__in=self.roles)

    def _datasets(self, principal: Principal) -> Any:
        from webapp.datasets.models import Dataset

        return Dataset.objects.restrict(principal, "view").values("pk")

    def q(self, principal: Principal, model: type[models.Model]) -> Q | None:
        if principal.user_id is None:
            return None
        return Q(pk__in=self._members(principal.user_id).values("campaign_id")) & Q(
            dataset__in=self._datasets(principal)
        )

    def allows(self, row: Any, principal: Principal) -> bool:
        if principal.user_id is None:
            return False
        facts: MemberFacts | None = getattr(row, "member_facts", None)
        if facts is not None and facts.user_id == principal.user_id:
            # The hot path loaded the caller's roles with the row and its dataset: the same
            # rule read in Python, no query (``selectors.with_member_facts``).
            from webapp.datasets.models import DatasetQuerySet

            return bool(facts.roles & set(self.roles)) and rules_allow(
                DatasetQuerySet.rules, "view", row.dataset, principal
            )
        member = self._members(principal.user_id).filter(campaign_id=row.pk).exists()
        return member and self._datasets(principal).filter(pk=row.dataset_id).exists()


@dataclass(frozen=True)
class MemberFacts:
    """One user's roles in a campaign, read with the campaign's row (``member_facts``)."""

    user_id: int
    roles: frozenset[str]


class AnnotationCampaignQuerySet(RestrictedQuerySet["AnnotationCampaign"]):
    """Members see their campaigns (of datasets they may see); managers change them, annotators
    annotate, reviewers review; managers and reviewers read the reports (every annotator's
    work, agreement, the dashboard, exports, the audit log is the managers')."""

    rules: ClassVar[Rules] = {
        "view": (MemberOfVisibleCampaign(ANY_ROLE),),
        "change": (MemberOfVisibleCampaign((Role.MANAGER,)),),
        "delete": (MemberOfVisibleCampaign((Role.MANAGER,)),),
        "annotate": (MemberOfVisibleCampaign((Role.ANNOTATOR,)),),
        "review": (MemberOfVisibleCampaign((Role.REVIEWER,)),),
        "report": (MemberOfVisibleCampaign((Role.MANAGER, Role.REVIEWER)),),
        "audit": (MemberOfVisibleCampaign((Role.MANAGER,)),),
    }


class AnnotationChildQuerySet(RestrictedByParent[M]):
    """Rows of a campaign: visible with it; which of them a member may read or change is the
    selectors' and services' business (an annotator's own assignments, a manager's boxes)."""

    parent_field = "campaign"
    parent_actions = {"view": "view", "report": "report", "change": "change"}


class AnnotationMemberQuerySet(AnnotationChildQuerySet["CampaignMember"]):
    pass


class TaskBoxQuerySet(AnnotationChildQuerySet["TaskBox"]):
    pass


class AssignmentQuerySet(RestrictedByParent["Assignment"]):
    parent_field = "box__campaign"
    parent_actions = {"view": "view", "report": "report", "change": "change"}


class AuditQuerySet(RestrictedByParent["AuditEntry"]):
    parent_field = "campaign"
    parent_actions = {"view": "audit"}


# --- rows ---------------------------------------------------------------------------------------


def default_label_schema() -> list[dict[str, str]]:
    return [{"name": "nucleus", "label": "Nucleus", "colour": "#ffcc00", "key": "1"}]


def default_box_size_um() -> list[float]:
    return [50.0, 50.0, 50.0]


class AnnotationCampaign(models.Model):
    dataset = models.ForeignKey(
        "datasets.Dataset", on_delete=models.CASCADE, related_name="annotation_campaigns"
    )
    image_layer = models.ForeignKey(
        "datasets.Layer", on_delete=models.CASCADE, related_name="annotation_campaigns"
    )
    name = models.CharField(max_length=200)
    instructions = models.TextField(blank=True, help_text="Markdown.")
    # [{"name", "label", "colour" (#rrggbb), "key" (one character)}]: the object classes.
    label_schema = models.JSONField(default=default_label_schema)
    box_size_um = models.JSONField(default=default_box_size_um)  # z y x
    redundancy = models.PositiveSmallIntegerField(default=1)
    deadline = models.DateTimeField(null=True, blank=True)
    state = models.CharField(
        max_length=10, choices=CampaignState.choices, default=CampaignState.OPEN
    )
    painted = models.BooleanField(
        default=False, help_text="Objects are painted as voxel labels (not only marked)."
    )
    # Point agreement: points of two annotators within this distance (um) may match.
    match_tolerance_um = models.FloatField(default=3.0)
    # {"shape": [z, y, x], "voxel_size_um": [z, y, x], "origin_um": [z, y, x]} of the image
    # layer at full resolution, read when the campaign is made.
    geometry = models.JSONField(default=dict)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        on_delete=models.SET_NULL,
        related_name="annotation_campaigns_created",
    )
    created = models.DateTimeField(auto_now_add=True)
    updated = models.DateTimeField(auto_now=True)

    objects = AnnotationCampaignQuerySet.as_manager()

    class Meta:
        ordering = ["-created", "-id"]

    def __str__(self) -> str:
        return self.name


class CampaignMember(models.Model):
    """One role of one user in a campaign (a user may hold several)."""

    campaign = models.ForeignKey(
        AnnotationCampaign, on_delete=models.CASCADE, related_name="members"
    )
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="annotation_roles"
    )
    role = models.CharField(max_length=10, choices=Role.choices)
    added_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+"
    )
    created = models.DateTimeField(auto_now_add=True)

    objects = AnnotationMemberQuerySet.as_manager()

    class Meta:
        ordering = ["campaign", "user__username", "role"]
        constraints = [
            models.UniqueConstraint(
                fields=["campaign", "user", "role"], name="unique_annotation_member_role"
            )
        ]
        indexes: ClassVar[list[models.Index]] = [
            models.Index(fields=["user", "role", "campaign"], name="annotation_member_user")
        ]


class TaskBox(models.Model):
    campaign = models.ForeignKey(AnnotationCampaign, on_delete=models.CASCADE, related_name="boxes")
    name = models.CharField(max_length=100)
    z0 = models.PositiveIntegerField()
    y0 = models.PositiveIntegerField()
    x0 = models.PositiveIntegerField()
    depth = models.PositiveIntegerField()
    height = models.PositiveIntegerField()
    width = models.PositiveIntegerField()
    priority = models.IntegerField(default=0, help_text="Higher is handed out first.")
    source = models.CharField(max_length=10, choices=BoxSource.choices)
    source_ref = models.CharField(max_length=200, blank=True)
    suggested_uncertainty = models.FloatField(
        null=True,
        blank=True,
        help_text="Set when a model suggested the box (Suggest next boxes): its mean entropy "
        "there, in bits; the coverage map marks such boxes.",
    )
    flag_reason = models.CharField(max_length=500, blank=True)
    flagged_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    flagged_at = models.DateTimeField(null=True, blank=True)
    created = models.DateTimeField(auto_now_add=True)

    objects = TaskBoxQuerySet.as_manager()

    class Meta:
        ordering = ["campaign", "-priority", "id"]
        constraints = [
            models.UniqueConstraint(
                fields=["campaign", "name"], name="unique_box_name_per_campaign"
            )
        ]
        indexes: ClassVar[list[models.Index]] = [
            # The hand-out walks a campaign's boxes in this order and stops at the first free
            # slot, instead of sorting all of them (services._take).
            models.Index(fields=["campaign", "-priority", "id"], name="taskbox_handout"),
        ]

    def __str__(self) -> str:
        return f"{self.campaign_id}/{self.name}"

    @property
    def start(self) -> tuple[int, int, int]:
        return (self.z0, self.y0, self.x0)

    @property
    def size(self) -> tuple[int, int, int]:
        return (self.depth, self.height, self.width)


class Assignment(models.Model):
    """One of a box's N slots; ``annotator`` is null until someone takes it."""

    box = models.ForeignKey(TaskBox, on_delete=models.CASCADE, related_name="assignments")
    slot = models.PositiveSmallIntegerField()
    annotator = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="annotation_assignments",
    )
    state = models.CharField(
        max_length=12, choices=AssignmentState.choices, default=AssignmentState.TODO
    )
    version = models.PositiveIntegerField(default=0)  # the latest revision; 0 = nothing saved
    taken = models.DateTimeField(null=True, blank=True)
    submitted = models.DateTimeField(null=True, blank=True)
    painted_objects = models.PositiveIntegerField(
        null=True,
        blank=True,
        help_text="Objects in the painted labels as handed in (counted at submit; the dashboard "
        "adds them to the points).",
    )
    reviewer = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    reviewed = models.DateTimeField(null=True, blank=True)
    review_comment = models.TextField(blank=True)
    # Server-side time on task: activity gaps no longer than the idle limit, summed.
    active_seconds = models.FloatField(default=0.0)
    last_activity = models.DateTimeField(null=True, blank=True)
    updated = models.DateTimeField(auto_now=True)

    objects = AssignmentQuerySet.as_manager()

    class Meta:
        ordering = ["box", "slot"]
        constraints = [
            models.UniqueConstraint(fields=["box", "slot"], name="unique_assignment_slot"),
            models.UniqueConstraint(
                fields=["box", "annotator"],
                condition=Q(annotator__isnull=False),
                name="unique_assignment_annotator_per_box",
            ),
        ]
        indexes: ClassVar[list[models.Index]] = [
            models.Index(fields=["annotator", "state"], name="assignment_annotator_state"),
            models.Index(fields=["state", "box"], name="assignment_state_box"),
        ]

    def __str__(self) -> str:
        return f"{self.box} #{self.slot}"


class Skip(models.Model):
    """An annotator passed on a box: it is offered to them again only when nothing else is."""

    box = models.ForeignKey(TaskBox, on_delete=models.CASCADE, related_name="skips")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    created = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["box", "user"], name="unique_box_skip")]


class Revision(models.Model):
    """One save (or restore) of an assignment's annotations."""

    assignment = models.ForeignKey(Assignment, on_delete=models.CASCADE, related_name="revisions")
    number = models.PositiveIntegerField()
    kind = models.CharField(max_length=10, choices=RevisionKind.choices, default=RevisionKind.SAVE)
    based_on = models.PositiveIntegerField()
    restored_from = models.PositiveIntegerField(null=True, blank=True)
    author = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+"
    )
    created = models.DateTimeField(auto_now_add=True)
    # {"created": n, "changed": n, "deleted": n, "count": annotations after this revision};
    # a labels save: {"chunks_changed": n, "chunks": non-zero chunks after it}.
    summary = models.JSONField(default=dict)
    # The painted labels' version manifest (``pipeline.label_versions.LabelVersion.to_json``)
    # when this revision changed them; null: the labels are those of the revision before.
    labels = models.JSONField(null=True, blank=True)
    # Where each painted object of this labels version came from (a labels revision only; the
    # map of the version it was based on, updated by what the save sent):
    # {"<object id>": {"source": "manual" | "click" | "proposal", "proposal_source": ...}}.
    provenance = models.JSONField(default=dict, blank=True)

    class Meta:
        ordering = ["assignment", "number"]
        constraints = [
            models.UniqueConstraint(fields=["assignment", "number"], name="unique_revision_number")
        ]


class Annotation(models.Model):
    """One state of one annotation (see the module docstring): ``uid`` is the page's id for
    it (Neuroglancer's annotation id), stable across its states."""

    assignment = models.ForeignKey(Assignment, on_delete=models.CASCADE, related_name="annotations")
    uid = models.CharField(max_length=64)
    kind = models.CharField(max_length=30, choices=AnnotationKind.choices)
    label = models.CharField(max_length=40)  # a class name of the campaign's label schema
    object_id = models.BigIntegerField(default=0)
    # Voxel positions z y x: point [p]; line and box [a, b]; ellipsoid [centre, radii];
    # polyline [p1, ..., pn].
    coords = models.JSONField()
    description = models.CharField(max_length=500, blank=True)
    valid_from = models.PositiveIntegerField()
    valid_to = models.PositiveIntegerField(null=True, blank=True)

    class Meta:
        ordering = ["assignment", "id"]
        constraints = [
            models.UniqueConstraint(
                fields=["assignment", "uid"],
                condition=Q(valid_to__isnull=True),
                name="unique_current_annotation_uid",
            )
        ]
        indexes: ClassVar[list[models.Index]] = [
            models.Index(fields=["assignment", "valid_to"], name="annotation_current"),
            models.Index(fields=["assignment", "valid_from"], name="annotation_from"),
        ]


class BoxGroundTruth(models.Model):
    """A box's accepted ground truth when a manager accepted the annotators' consensus (else
    the approved assignments are the ground truth)."""

    box = models.OneToOneField(TaskBox, on_delete=models.CASCADE, related_name="ground_truth")
    # [{"label", "coords": [[z, y, x]], "support": n annotators}]
    points = models.JSONField(default=list)
    tolerance_um = models.FloatField()
    quorum = models.PositiveSmallIntegerField()
    accepted_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+"
    )
    accepted = models.DateTimeField(auto_now=True)


class LabelTruthSource(models.TextChoices):
    CONSENSUS = "consensus", "Consensus of the annotators' volumes"
    ASSIGNMENT = "assignment", "One annotator's volume"


class BoxLabelTruth(models.Model):
    """A painted box's accepted ground-truth label volume (else the first approved assignment
    with labels is): the consensus of its annotators' volumes at a quorum, or one approved
    assignment's volume. ``labels`` is a label version manifest (chunk -> blob in the campaign's
    label store, as ``Revision.labels``) taken when it was accepted, so later saves or restores
    of the assignments do not change it; ``members`` records the volumes it was made of."""

    box = models.OneToOneField(TaskBox, on_delete=models.CASCADE, related_name="label_truth")
    source = models.CharField(max_length=10, choices=LabelTruthSource.choices)
    assignment = models.ForeignKey(
        Assignment, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    quorum = models.PositiveSmallIntegerField(null=True, blank=True)
    # [{"assignment": id, "annotator": name, "version": n}] of the volumes it was made of.
    members = models.JSONField(default=list)
    labels = models.JSONField()
    objects_count = models.PositiveIntegerField(default=0)
    accepted_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+"
    )
    accepted_at = models.DateTimeField(auto_now=True)


class AuditEntry(models.Model):
    """Append-only: who did what, when, to which object of the campaign."""

    campaign = models.ForeignKey(AnnotationCampaign, on_delete=models.CASCADE, related_name="audit")
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+"
    )
    action = models.CharField(max_length=30, choices=AuditAction.choices)
    box = models.ForeignKey(
        TaskBox, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    assignment = models.ForeignKey(
        Assignment, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    detail = models.JSONField(default=dict)
    created = models.DateTimeField(auto_now_add=True)

    objects = AuditQuerySet.as_manager()

    class Meta:
        ordering = ["-created", "-id"]
        indexes: ClassVar[list[models.Index]] = [
            models.Index(fields=["campaign", "-created"], name="audit_campaign_created"),
            models.Index(fields=["campaign", "action"], name="audit_campaign_action"),
        ]


#: Where a painted object came from (labels save ``provenance``), and what proposed it.
OBJECT_SOURCES = ("manual", "click", "proposal")
PROPOSAL_SOURCES = ("model", "watershed")
#: A propose-all job's state as the page sees it (``Job.state``: retrying is running,
#: succeeded is done, cancelled is failed).
ASSIST_STATES = ("queued", "running", "done", "failed")


class AssistJob(Job):
    """A "propose all in box" run over one assignment's box: its proposals once done.

    ``proposals`` are the issue-10 contract's Proposal objects (box-local bbox and run lengths);
    the latest job of an assignment is the one its page shows.
    """

    assignment = models.ForeignKey(Assignment, on_delete=models.CASCADE, related_name="+")
    requested_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+"
    )
    message = models.CharField(max_length=500, blank=True)
    proposals = models.JSONField(default=list, blank=True)

    class Meta(Job.Meta):
        indexes: ClassVar[list[models.Index]] = [
            models.Index(fields=["assignment", "-created"], name="assist_job_assignment"),
        ]
