"""Reads of the campaign dashboard: progress by state, per-annotator figures, approvals over time.

Managers and reviewers read it (the campaign's "report" action; the API and the page check).
Figures, all from the database as it is now:

- ``slots``: assignments (a box's N slots) per state; ``boxes``: each box in one state, the
  furthest all its slots have reached: complete (all N approved), in review (all submitted or
  approved), in progress (any slot taken), to do; a flagged box that is not complete counts as
  flagged.
- ``annotators``: per annotator (members with the role, and anyone holding a slot): tasks held
  now and by state, objects (current annotations of their submitted and approved tasks),
  median seconds per task (server-measured ``active_seconds`` of submitted and approved tasks)
  and per object (each such task's seconds over its objects, tasks with objects only), and the
  rejection rate (rejections over reviews of their tasks, from the audit log).
- ``timeline``: approvals and submissions per hour (when the campaign's first one is less than
  two days old) or per day, from the audit log, with the running total of approvals.

Point agreement comes from ``agreement.campaign_agreement`` (``pipeline.point_agreement``): the
distribution of the boxes' mean F1 in tenths, and each annotator's pooled figures. A painted
campaign has no point agreement; its label agreement (``painted_agreement``: object F1 at IoU >=
0.5 and voxel Dice) is given per box and per annotator pair.
"""

from __future__ import annotations

import csv
import io
import statistics
from collections import Counter, defaultdict
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from django.db.models import Count, Q
from django.utils import timezone

from webapp.annotation.models import (
    Annotation,
    AnnotationCampaign,
    Assignment,
    AssignmentState,
    AuditAction,
    AuditEntry,
    CampaignMember,
    Role,
    TaskBox,
)

BOX_STATES = ("todo", "in_progress", "in_review", "complete", "flagged")
DONE = (AssignmentState.SUBMITTED, AssignmentState.APPROVED)
HOURLY_FOR = timedelta(days=2)


def _median(values: Sequence[float]) -> float | None:
    return float(statistics.median(values)) if values else None


def _box_states(campaign: AnnotationCampaign) -> dict[str, int]:
    n = campaign.redundancy
    rows = TaskBox.objects.filter(campaign=campaign).annotate(
        approved=Count("assignments", filter=Q(assignments__state=AssignmentState.APPROVED)),
        done=Count("assignments", filter=Q(assignments__state__in=DONE)),
        taken=Count("assignments", filter=Q(assignments__annotator__isnull=False)),
    )
    counts: Counter[str] = Counter()
    for flag, approved, done, taken in rows.values_list("flag_reason", "approved", "done", "taken"):
        if approved >= n:
            counts["complete"] += 1
        elif flag:
            counts["flagged"] += 1
        elif done >= n:
            counts["in_review"] += 1
        elif taken:
            counts["in_progress"] += 1
        else:
            counts["todo"] += 1
    return {state: counts[state] for state in BOX_STATES}


def _annotators(campaign: AnnotationCampaign) -> list[dict[str, Any]]:
    assignments = list(
        Assignment.objects.filter(box__campaign=campaign, annotator__isnull=False).values_list(
            "id", "annotator__username", "state", "active_seconds"
        )
    )
    done_ids = [pk for pk, _, state, _ in assignments if state in DONE]
    objects = Counter(
        dict(
            Annotation.objects.filter(assignment_id__in=done_ids, valid_to__isnull=True)
            .values_list("assignment_id")
            .annotate(n=Count("id"))
            .values_list("assignment_id", "n")
        )
    )
    # Painted objects, counted when each task was handed in.
    objects.update(
        dict(
            Assignment.objects.filter(pk__in=done_ids, painted_objects__isnull=False).values_list(
                "id", "painted_objects"
            )
        )
    )
    reviews: Counter[tuple[str, str]] = Counter(
        AuditEntry.objects.filter(
            campaign=campaign,
            action__in=[AuditAction.ASSIGNMENT_APPROVE, AuditAction.ASSIGNMENT_REJECT],
            assignment__annotator__isnull=False,
        ).values_list("assignment__annotator__username", "action")
    )
    people: dict[str, list[tuple[int, str, float]]] = defaultdict(list)
    for username in CampaignMember.objects.filter(
        campaign=campaign, role=Role.ANNOTATOR
    ).values_list("user__username", flat=True):
        people[username] = []
    for pk, username, state, seconds in assignments:
        people[username].append((pk, state, seconds))
    out = []
    for username in sorted(people):
        tasks = people[username]
        states = Counter(state for _, state, _ in tasks)
        done = [(pk, seconds) for pk, state, seconds in tasks if state in DONE]
        per_object = [seconds / objects[pk] for pk, seconds in done if objects[pk]]
        approvals = reviews[(username, AuditAction.ASSIGNMENT_APPROVE)]
        rejections = reviews[(username, AuditAction.ASSIGNMENT_REJECT)]
        out.append(
            {
                "annotator": username,
                "tasks": len(tasks),
                "by_state": {state: states[state] for state in AssignmentState.values},
                "objects": sum(objects[pk] for pk, _ in done),
                "median_seconds_per_task": _median([seconds for _, seconds in done]),
                "median_seconds_per_object": _median(per_object),
                "reviews": approvals + rejections,
                "rejections": rejections,
                "rejection_rate": rejections / (approvals + rejections)
                if approvals + rejections
                else None,
            }
        )
    return out


def _timeline(campaign: AnnotationCampaign) -> dict[str, Any]:
    events = list(
        AuditEntry.objects.filter(
            campaign=campaign,
            action__in=[AuditAction.ASSIGNMENT_APPROVE, AuditAction.ASSIGNMENT_SUBMIT],
        )
        .order_by("created")
        .values_list("created", "action")
    )
    if not events:
        return {"bucket": "day", "points": []}
    first = events[0][0]
    hourly = timezone.now() - first < HOURLY_FOR
    step = timedelta(hours=1) if hourly else timedelta(days=1)

    def floor(moment: datetime) -> datetime:
        moment = moment.astimezone(UTC)
        if hourly:
            return moment.replace(minute=0, second=0, microsecond=0)
        return moment.replace(hour=0, minute=0, second=0, microsecond=0)

    approved: Counter[datetime] = Counter()
    submitted: Counter[datetime] = Counter()
    for created, action in events:
        (approved if action == AuditAction.ASSIGNMENT_APPROVE else submitted)[floor(created)] += 1
    points = []
    total = 0
    moment, last = floor(first), floor(events[-1][0])
    while moment <= last:
        total += approved[moment]
        points.append(
            {
                "start": moment,
                "approved": approved[moment],
                "submitted": submitted[moment],
                "approved_total": total,
            }
        )
        moment += step
    return {"bucket": "hour" if hourly else "day", "points": points}


def dashboard(campaign: AnnotationCampaign) -> dict[str, Any]:
    """The dashboard's figures (see the module docstring)."""
    slots = dict(
        Assignment.objects.filter(box__campaign=campaign)
        .values_list("state")
        .annotate(n=Count("id"))
        .values_list("state", "n")
    )
    boxes = _box_states(campaign)
    total = sum(boxes.values())
    return {
        "redundancy": campaign.redundancy,
        "boxes_total": total,
        "boxes_complete": boxes["complete"],
        "progress": boxes["complete"] / total if total else None,
        "boxes": boxes,
        "slots": {state: int(slots.get(state, 0)) for state in AssignmentState.values},
        "annotators": _annotators(campaign),
        "timeline": _timeline(campaign),
        "agreement": None if campaign.painted else _agreement(campaign),
        "painted_agreement": _painted_agreement(campaign),
    }


F1_BINS = 10


def _agreement(campaign: AnnotationCampaign) -> dict[str, Any] | None:
    """Boxes per tenth of mean pairwise F1 (the last bin holds 1.0), the campaign's mean, and
    each annotator's pooled precision/recall/F1; None when no box has two handed-in tasks."""
    from webapp.annotation.agreement import campaign_agreement

    if campaign.redundancy < 2:
        return None
    result = campaign_agreement(campaign)
    if not result["boxes_compared"]:
        return None
    bins = [0] * F1_BINS
    for row in result["boxes"]:
        if row["mean_f1"] is not None:
            bins[min(int(row["mean_f1"] * F1_BINS), F1_BINS - 1)] += 1
    return {
        "tolerance_um": result["tolerance_um"],
        "boxes_compared": result["boxes_compared"],
        "mean_f1": result["mean_f1"],
        "f1_bins": bins,
        "annotators": [
            {k: a[k] for k in ("annotator", "boxes", "precision", "recall", "mean_f1")}
            for a in result["annotators"]
        ],
    }


def _painted_agreement(campaign: AnnotationCampaign) -> dict[str, Any] | None:
    """A painted campaign's label agreement (``painted_agreement.campaign_label_agreement``):
    per box its mean F1 and Dice over its pairs, per annotator pair the pooled figures; None
    for a campaign of points, with N = 1 or before two annotators have handed in one box."""
    from webapp.annotation.painted_agreement import campaign_label_agreement

    if not campaign.painted or campaign.redundancy < 2:
        return None
    result = campaign_label_agreement(campaign)
    if not result["boxes_compared"]:
        return None
    return {
        "boxes_compared": result["boxes_compared"],
        "mean_f1": result["mean_f1"],
        "mean_dice": result["mean_dice"],
        "boxes": [
            {k: b[k] for k in ("box", "name", "mean_f1", "mean_dice")} for b in result["boxes"]
        ],
        "pairs": [
            {k: p[k] for k in ("reference", "other", *PAIR_FIGURES)} for p in result["pairs"]
        ],
    }


PAIR_FIGURES = ("boxes", "matched", "precision", "recall", "f1", "dice", "mean_matched_iou")
ANNOTATOR_FIGURES = (
    "tasks",
    "objects",
    "median_seconds_per_task",
    "median_seconds_per_object",
    "reviews",
    "rejections",
    "rejection_rate",
)


def dashboard_csv(campaign: AnnotationCampaign) -> str:
    """The dashboard as a long table ``section, name, annotator, value``: one figure a row."""
    data = dashboard(campaign)
    rows: list[list[Any]] = [["section", "name", "annotator", "value"]]
    rows.append(["progress", "boxes_total", "", data["boxes_total"]])
    rows.append(["progress", "boxes_complete", "", data["boxes_complete"]])
    rows += [["boxes", state, "", n] for state, n in data["boxes"].items()]
    rows += [["slots", state, "", n] for state, n in data["slots"].items()]
    for person in data["annotators"]:
        name = person["annotator"]
        for key in ANNOTATOR_FIGURES:
            value = person[key]
            rows.append(["annotator", key, name, "" if value is None else value])
        rows += [["annotator", f"state_{s}", name, n] for s, n in person["by_state"].items()]
    for point in data["timeline"]["points"]:
        start = point["start"].isoformat()
        rows.append(
            [f"per_{data['timeline']['bucket']}", f"approved {start}", "", point["approved"]]
        )
        rows.append(
            [f"per_{data['timeline']['bucket']}", f"submitted {start}", "", point["submitted"]]
        )
    painted = data["painted_agreement"]
    if painted is not None:
        for box in painted["boxes"]:
            for key in ("mean_f1", "mean_dice"):
                value = box[key]
                rows.append(
                    [f"label_agreement_box {box['name']}", key, "", "" if value is None else value]
                )
        for pair in painted["pairs"]:
            who = f"{pair['reference']} / {pair['other']}"
            for key in PAIR_FIGURES:
                value = pair[key]
                rows.append(["label_agreement_pair", key, who, "" if value is None else value])
    out = io.StringIO()
    csv.writer(out, lineterminator="\n").writerows(rows)
    return out.getvalue()
