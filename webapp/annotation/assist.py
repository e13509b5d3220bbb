"""Model-assisted objects in a painted task: object from a click, and "propose all in box".

Both read the task box's image through :func:`pipeline.box_image.read_box` and run
:mod:`pipeline.assist`; answers are the issue-10 contract's Proposals in box-local voxels. A
click is answered at once (a window around it, well under a second); proposing over the whole
box runs as an :class:`AssistJob` on a Celery worker, its progress on the job row.

The source is the classical watershed on the image: no app of the site records a trained model
per dataset yet (models are files of the ``pipeline`` command line), so there is no current model
to look up. :func:`pipeline.assist.propose_all` and ``click_object`` take a model's predictions
when a caller has them (``pipeline.assist.predict_box``).

Only the annotator who took an editable task of a painted campaign may ask; the proposals of the
latest job are readable by whoever may read the assignment.
"""

from __future__ import annotations

import secrets
from pathlib import Path
from typing import Any

import numpy as np
from django.contrib.auth.models import User
from django.db import transaction

from pipeline.assist import click_object, propose_all
from pipeline.box_image import read_box
from webapp.annotation.models import Assignment, AssignmentState, AssistJob
from webapp.annotation.selectors import label_geometry
from webapp.core.errors import Conflict, InvalidRequest, NotAllowed
from webapp.core.jobs.lifecycle import job_create_queued
from webapp.core.jobs.models import ACTIVE_STATUSES
from webapp.core.jobs.progress import JobProgressWriter
from webapp.core.jobs.runner import JobRunner

EDITABLE = (AssignmentState.IN_PROGRESS, AssignmentState.REJECTED)
# What the contract calls a job's state, from the job row's state (retrying is still running).
CONTRACT_STATES = {
    "queued": "queued",
    "running": "running",
    "retrying": "running",
    "succeeded": "done",
    "failed": "failed",
    "cancelled": "failed",
}


def _check_may_assist(assignment: Assignment, user: User) -> None:
    """403 unless the caller took the task; 400 unless its campaign paints; 409 unless
    editable (as for a labels save)."""
    if assignment.annotator_id != user.pk:
        raise NotAllowed("Only the annotator who took this task may ask for proposals.")
    if not assignment.box.campaign.painted:
        raise InvalidRequest(
            "This campaign's objects are not painted: there is nothing to propose."
        )
    if assignment.state not in EDITABLE:
        raise Conflict(
            f"This task is {assignment.get_state_display().lower()}: it can no longer be edited.",
            current_version=assignment.version,
        )


def box_image(assignment: Assignment) -> tuple[np.ndarray, tuple[float, float, float]]:
    """The box's image voxels (raw dtype, clipped to the image) and the voxel size in nm."""
    box = assignment.box
    layer = box.campaign.image_layer
    image = read_box(Path(layer.dataset.root) / layer.path, box.start, box.size)
    return image, label_geometry(box).voxel_size_nm


def assist_click(
    assignment: Assignment, user: User, click: tuple[int, int, int]
) -> tuple[dict[str, Any] | None, str]:
    """The Proposal grown from the box-local voxel ``click`` (or None) and why."""
    _check_may_assist(assignment, user)
    size = assignment.box.size
    if any(not 0 <= c < n for c, n in zip(click, size, strict=True)):
        raise InvalidRequest(
            f"The click {list(click)} lies outside the box of {list(size)} voxels (z, y, x)."
        )
    image, voxel_size = box_image(assignment)
    if any(c >= n for c, n in zip(click, image.shape, strict=True)):
        return None, "The click lies past the image's edge (the box reaches beyond it)."
    found, reason = click_object(image, click, voxel_size)
    if found is None:
        return None, reason
    return found.proposal(f"click-{secrets.token_hex(6)}"), reason


def proposals_start(assignment: Assignment, user: User) -> AssistJob:
    """Queue a propose-all job for the box (or return the one already queued or running)."""
    from webapp.annotation.tasks import assist_proposals_task  # tasks import this module

    _check_may_assist(assignment, user)
    with transaction.atomic():
        Assignment.objects.select_for_update().filter(pk=assignment.pk).first()
        active = AssistJob.objects.filter(assignment=assignment, status__in=ACTIVE_STATUSES).first()
        if active is not None:
            return active
        return job_create_queued(
            AssistJob, task=assist_proposals_task, assignment=assignment, requested_by=user
        )


def contract_state(job: AssistJob) -> str:
    return CONTRACT_STATES.get(job.state, "failed")


def job_body(job: AssistJob) -> dict[str, Any]:
    """The contract's job answer: state, progress 0..1, message, proposals (once done)."""
    state = contract_state(job)
    if state == "failed":
        message = job.error or "The job was cancelled."
    elif state == "done":
        message = job.message
    else:
        message = job.stage or "Waiting for a worker."
    return {
        "id": job.pk,
        "state": state,
        "progress": 1.0 if state == "done" else round(job.progress, 4),
        "message": message,
        "proposals": job.proposals if state == "done" else [],
    }


class AssistProposalsRunner(JobRunner[AssistJob]):
    """Propose every object of the box; bad input (a box outside the image) fails the job
    with its message."""

    model = AssistJob
    work_prefix = "assist"

    def load(self) -> AssistJob:
        return AssistJob.objects.select_related(
            "assignment__box__campaign__image_layer__dataset"
        ).get(pk=self.job_id)

    def work(self, job: AssistJob, work_dir: Path, progress: JobProgressWriter) -> None:
        progress("reading the box's image", 0, 1)
        image, voxel_size = box_image(job.assignment)
        found = propose_all(image, voxel_size, progress=progress)
        proposals = [item.proposal(f"job{job.pk}-{n}") for n, item in enumerate(found, 1)]
        sources = sorted({p["source"] for p in proposals}) or ["watershed"]
        message = f"{len(proposals)} objects proposed ({', '.join(sources)})."
        with transaction.atomic():
            self.succeed(proposals=proposals, message=message)


def proposals_run(job_id: int) -> AssistJob:
    """Run propose-all job ``job_id`` to its end (the Celery task's body)."""
    return AssistProposalsRunner(job_id).run()
