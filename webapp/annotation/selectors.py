"""Reads of the annotation app: what each member may see of a campaign."""

from __future__ import annotations

from django.db.models import Count, Q, QuerySet

from webapp.annotation.models import (
    AnnotationCampaign,
    Assignment,
    AuditEntry,
    CampaignMember,
    Revision,
    TaskBox,
)
from webapp.core.users import AnyUser


def campaigns_visible(user: AnyUser) -> QuerySet[AnnotationCampaign]:
    return AnnotationCampaign.objects.restrict(user, "view").select_related(
        "dataset", "image_layer"
    )


def roles_of(campaign: AnnotationCampaign, user: AnyUser) -> list[str]:
    """The caller's roles in the campaign (all of them for a superuser)."""
    if getattr(user, "is_superuser", False):
        return ["manager", "annotator", "reviewer"]
    if not user.is_authenticated:
        return []
    return sorted(
        CampaignMember.objects.filter(campaign=campaign, user_id=user.pk).values_list(
            "role", flat=True
        )
    )


def may(campaign: AnnotationCampaign, user: AnyUser, action: str) -> bool:
    return AnnotationCampaign.objects.allows(user, action, campaign)


def boxes_of(campaign: AnnotationCampaign) -> QuerySet[TaskBox]:
    """Every member sees the campaign's boxes, with how many slots are in each state (and
    their accepted ground truth, joined)."""
    return (
        TaskBox.objects.filter(campaign=campaign)
        .select_related("ground_truth")
        .annotate(
            n_approved=Count("assignments", filter=Q(assignments__state="approved")),
            n_submitted=Count("assignments", filter=Q(assignments__state="submitted")),
            n_taken=Count("assignments", filter=Q(assignments__annotator__isnull=False)),
        )
    )


def assignments_visible(user: AnyUser) -> QuerySet[Assignment]:
    """Annotators see their own assignments; reviewers and managers every assignment of their
    campaigns."""
    if not user.is_authenticated:
        return Assignment.objects.none()
    reportable = AnnotationCampaign.objects.restrict(user, "report").values("pk")
    return Assignment.objects.filter(
        Q(annotator_id=user.pk, box__campaign__in=campaigns_visible(user).values("pk"))
        | Q(box__campaign__in=reportable)
    ).select_related("box__campaign", "annotator", "reviewer")


def revisions_of(assignment: Assignment) -> QuerySet[Revision]:
    return Revision.objects.filter(assignment=assignment).select_related("author")


def audit_of(
    campaign: AnnotationCampaign,
    *,
    action: str | None = None,
    actor: str | None = None,
    box_id: int | None = None,
) -> QuerySet[AuditEntry]:
    rows = AuditEntry.objects.filter(campaign=campaign).select_related("actor", "box")
    if action:
        rows = rows.filter(Q(action=action) | Q(action__startswith=f"{action}."))
    if actor:
        rows = rows.filter(actor__username=actor)
    if box_id is not None:
        rows = rows.filter(box_id=box_id)
    return rows
