"""The one write of the painted review: a manager accepts a box's ground-truth label volume.

Either the consensus of the box's handed-in volumes at a quorum, or one approved assignment's
current volume. It is computed again here from what the server holds now, so what is stored is
what the export will use; the manifest (chunk -> blob) is copied, so later saves or restores of
the assignments leave the accepted truth as it was. A consensus may be accepted once every
volume it is made of is approved (the reviewer has looked at each). Accepting again replaces
the earlier choice; each acceptance is audited with the volumes it used.
"""

from __future__ import annotations

from django.contrib.auth.models import User
from django.db import transaction

from pipeline.label_versions import LabelVersion
from webapp.annotation import painted_agreement as pa
from webapp.annotation import services
from webapp.annotation.models import (
    AssignmentState,
    AuditAction,
    BoxLabelTruth,
    LabelTruthSource,
    TaskBox,
)
from webapp.core.errors import Conflict, InvalidRequest

NOT_PAINTED = "This campaign's objects are not painted: accept a point consensus instead."


def label_truth_accept(
    box: TaskBox,
    actor: User,
    source: str,
    *,
    quorum: int | None = None,
    assignment_id: int | None = None,
) -> BoxLabelTruth:
    """Store the box's ground-truth labels (module docstring; managers). 400 for a quorum out
    of range or an assignment of another box; 409 when there is nothing to accept: fewer than
    two handed-in volumes or some not yet approved (consensus), an assignment not approved, or
    an empty volume."""
    campaign = box.campaign
    services._require_manager(campaign, actor)
    if not campaign.painted:
        raise InvalidRequest(NOT_PAINTED)
    with transaction.atomic():
        TaskBox.objects.select_for_update().filter(pk=box.pk).first()
        works = pa.works_of(campaign, box_ids=[box.pk]).get(box.pk, [])
        if source == LabelTruthSource.CONSENSUS:
            if assignment_id is not None:
                raise InvalidRequest("A consensus is not one assignment's: leave out assignment.")
            q = pa.check_quorum(quorum, len(works))
            if len(works) < 2:
                raise Conflict(
                    f"Box {box.name!r} has {len(works)} handed-in volume(s); a consensus needs "
                    "two or more."
                )
            pending = [w.annotator for w in works if w.state != AssignmentState.APPROVED]
            if pending:
                raise Conflict(
                    f"Review the volumes of {', '.join(pending)} first: a consensus is accepted "
                    "from approved volumes only."
                )
            found = pa.consensus_of(box, works, q)
            members = works
            manifest = found.manifest()
            n_objects = len(found.summary["objects"])
            row_assignment = None
            quorum_kept: int | None = q
        elif source == LabelTruthSource.ASSIGNMENT:
            if quorum is not None:
                raise InvalidRequest("A quorum is for a consensus: leave it out.")
            chosen = [w for w in works if w.assignment_id == assignment_id]
            if not chosen:
                raise InvalidRequest(
                    f"Assignment {assignment_id} is not a handed-in task of box {box.name!r}."
                )
            work = chosen[0]
            if work.state != AssignmentState.APPROVED:
                raise Conflict(f"{work.annotator}'s volume is not approved yet: review it first.")
            members = [work]
            chunks = dict(work.labels.chunks)
            manifest = LabelVersion(
                number=1, based_on=0, chunks=chunks, changed=tuple(chunks)
            ).to_json()
            n_objects = pa.count_objects(work.labels)
            row_assignment = work.assignment_id
            quorum_kept = None
        else:
            raise InvalidRequest("source must be consensus or assignment.")
        if not manifest["chunks"]:
            raise Conflict(f"That volume of box {box.name!r} is empty: nothing to accept.")
        described = [
            {"assignment": w.assignment_id, "annotator": w.annotator, "version": w.version}
            for w in members
        ]
        row, created = BoxLabelTruth.objects.update_or_create(
            box=box,
            defaults={
                "source": source,
                "assignment_id": row_assignment,
                "quorum": quorum_kept,
                "members": described,
                "labels": manifest,
                "objects_count": n_objects,
                "accepted_by": actor,
            },
        )
        services._audit(
            campaign,
            actor,
            AuditAction.LABEL_TRUTH_ACCEPT,
            box=box,
            source=source,
            quorum=quorum_kept,
            members=described,
            objects=n_objects,
            replaced=not created,
        )
    return row
