"""The one write of the review's reports: a manager accepts a box's consensus as its ground truth.

The consensus is computed again here from the approved assignments (see ``agreement``), so what
is stored is what the server sees now, not what a page showed earlier. Accepting again replaces
the earlier ground truth (its tolerance, quorum and points); each acceptance is audited with
the figures it used.
"""

from __future__ import annotations

from django.contrib.auth.models import User
from django.db import transaction

from webapp.annotation import agreement, services
from webapp.annotation.models import AuditAction, BoxGroundTruth, TaskBox
from webapp.core.errors import Conflict


def consensus_accept(
    box: TaskBox, actor: User, tolerance_um: float | None = None, quorum: int | None = None
) -> BoxGroundTruth:
    """Store the box's consensus (points found by at least ``quorum`` of its approved
    assignments) as its ground truth (managers). 409 while fewer than ``quorum`` of its
    assignments are approved."""
    campaign = box.campaign
    services._require_manager(campaign, actor)
    tolerance = agreement.check_tolerance(tolerance_um, campaign)
    q = agreement.check_quorum(quorum, campaign)
    with transaction.atomic():
        TaskBox.objects.select_for_update().filter(pk=box.pk).first()
        works, found = agreement.consensus_of(box, tolerance, q)
        if len(works) < q:
            raise Conflict(
                f"Box {box.name!r} has {len(works)} approved assignment(s); a consensus of "
                f"{q} needs at least {q}."
            )
        points = [{"label": c.label, "coords": [list(c.zyx)], "support": c.support} for c in found]
        row, created = BoxGroundTruth.objects.update_or_create(
            box=box,
            defaults={
                "points": points,
                "tolerance_um": tolerance,
                "quorum": q,
                "accepted_by": actor,
            },
        )
        services._audit(
            campaign,
            actor,
            AuditAction.CONSENSUS_ACCEPT,
            box=box,
            tolerance_um=tolerance,
            quorum=q,
            points=len(points),
            annotators=[w.annotator for w in works],
            versions={w.annotator: w.version for w in works},
            replaced=not created,
        )
    return row
