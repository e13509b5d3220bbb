"""Model-assisted objects in a painted task: object from a click, and "propose all in box".

Answers are the issue-10 contract's Proposals in box-local voxels. A click is answered at once
(a window around it, well under a second); proposing over the whole box runs as an
:class:`AssistJob` on a Celery worker, its progress on the job row.

The source is the dataset's current model (:mod:`webapp.core.current_models`, kept by the runs
app) when there is one, else the classical watershed on the image
(:func:`pipeline.assist.click_object`, :func:`pipeline.assist.propose_all`):

- the model's published segmentation of the campaign's image (the seeded watershed on its
  probability and distance maps, merged over the whole image) answers both, read in the click's
  window or the box (:mod:`pipeline.assist_segmentation`), scored by the mean probability;
- a model that segmented another layer predicts the box in the propose-all job
  (:func:`pipeline.assist.predict_box`); a click then uses the watershed, as it does where the
  model sees no object (a missed nucleus is still one click away).

Proposals from a model carry its name (``model``), which the labels save keeps as provenance.
Only the annotator who took an editable task of a painted campaign may ask; the proposals of the
latest job are readable by whoever may read the assignment.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from django.contrib.auth.models import User
from django.db import transaction

from pipeline.assist import (
    DEFAULT_MIN_DIAMETER_NM,
    AssistObject,
    Predictions,
    ball_voxels,
    click_object,
    click_window,
    predict_box,
    propose_all,
)
from pipeline.assist_segmentation import segmentation_click, segmentation_objects
from pipeline.box_image import read_box
from pipeline.errors import InvalidInputError
from pipeline.ome_zarr_io import open_spatial_level
from pipeline.progress import ProgressCallback
from webapp.annotation.models import Assignment, AssignmentState, AssistJob
from webapp.annotation.selectors import label_geometry
from webapp.core.current_models import CurrentModel, current_model
from webapp.core.errors import Conflict, InvalidRequest, NotAllowed
from webapp.core.jobs.lifecycle import job_create_queued
from webapp.core.jobs.models import ACTIVE_STATUSES
from webapp.core.jobs.progress import JobProgressWriter
from webapp.core.jobs.runner import JobRunner

logger = logging.getLogger(__name__)

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


def box_model(assignment: Assignment) -> CurrentModel | None:
    """The current model of the box's dataset, for the campaign's image layer."""
    layer = assignment.box.campaign.image_layer
    return current_model(layer.dataset_id, layer.pk)


def model_output(
    model: CurrentModel, origin: Sequence[int], shape: Sequence[int]
) -> tuple[np.ndarray, np.ndarray | None] | None:
    """The model's published labels (and probability, when kept) over a region of the image;
    None, logged, when they cannot be read: a damaged store must not cost the annotator the
    assistance (the callers fall back to the image's watershed)."""
    assert model.segmentation is not None
    try:
        labels = read_box(model.segmentation, origin, shape)
        probability = None
        if model.probability is not None:
            probability = read_box(model.probability, origin, shape)
    except (InvalidInputError, OSError, ValueError) as error:
        logger.warning("%s: its segmentation could not be read: %s", model.name, error)
        return None
    return labels, probability


def _proposal(found: AssistObject, object_id: str, model: CurrentModel | None) -> dict[str, Any]:
    proposal = found.proposal(object_id)
    if model is not None and found.source == "model":
        proposal["model"] = model.name
    return proposal


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
    box = assignment.box
    voxel_size = label_geometry(box).voxel_size_nm
    # Only the window the click looks at is read: a click costs the same in any box.
    window = click_window(click, size, voxel_size)
    layer = box.campaign.image_layer
    origin = [s + w.start for s, w in zip(box.start, window, strict=True)]
    shape = [w.stop - w.start for w in window]
    image = read_box(Path(layer.dataset.root) / layer.path, origin, shape)
    local = tuple(c - w.start for c, w in zip(click, window, strict=True))
    if any(c >= n for c, n in zip(local, image.shape, strict=True)):
        return None, "The click lies past the image's edge (the box reaches beyond it)."
    object_id = f"click-{secrets.token_hex(6)}"
    starts = [w.start for w in window]
    model = box_model(assignment)
    missed = ""
    if model is not None and model.segmentation is not None:
        output = model_output(model, origin, shape)
        if output is None:
            missed = f"{model.name}'s segmentation could not be read. "
        elif (picked := segmentation_click(output[0], local, output[1])) is not None:
            reason = f"An object of {picked.voxels} voxels ({model.name})."
            return _proposal(picked.shifted(starts), object_id, model), reason
        else:
            missed = f"{model.name} sees no object here. "
    found, reason = click_object(image, local, voxel_size)
    if found is None:
        return None, missed + reason
    return _proposal(found.shifted(starts), object_id, model), missed + reason


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
        model = box_model(job.assignment)
        found, note = box_objects(job.assignment, image, voxel_size, model, work_dir, progress)
        proposals = [_proposal(item, f"job{job.pk}-{n}", model) for n, item in enumerate(found, 1)]
        sources = sorted({p.get("model", p["source"]) for p in proposals}) or ["watershed"]
        message = f"{len(proposals)} objects proposed ({', '.join(sources)}).{note}"
        with transaction.atomic():
            self.succeed(proposals=proposals, message=message)


def box_objects(
    assignment: Assignment,
    image: np.ndarray,
    voxel_size: tuple[float, float, float],
    model: CurrentModel | None,
    work_dir: Path,
    progress: ProgressCallback,
) -> tuple[list[AssistObject], str]:
    """Every object of the box (module docstring: which source) and a note when the model
    could not be used."""
    if model is None:
        return propose_all(image, voxel_size, progress=progress), ""
    box = assignment.box
    if model.segmentation is not None:
        progress("reading the model's segmentation", 0, 1)
        output = model_output(model, box.start, box.size)
        if output is not None:
            smallest = ball_voxels(DEFAULT_MIN_DIAMETER_NM, voxel_size)
            found = segmentation_objects(output[0], output[1], min_voxels=smallest)
            progress("reading the model's segmentation", 1, 1)
            return found, ""
        why = f"{model.name}'s segmentation could not be read"
    elif not model.model_file.is_file():
        why = f"The file of {model.name} is missing"
    else:
        from pipeline.model_io import model_segment_params  # torch: only when a model is used

        try:
            predictions = _predict(assignment, model, image, work_dir, progress)
        except InvalidInputError as error:
            why = f"{model.name} could not be applied ({error})"
        else:
            params = model_segment_params(model.model_file)
            seed = {"seed_threshold_nm": params.seed_threshold_nm} if params is not None else {}
            return propose_all(image, voxel_size, predictions, progress=progress, **seed), ""
    note = f" {why}: the image's watershed instead."
    return propose_all(image, voxel_size, progress=progress), note


def _predict(
    assignment: Assignment,
    model: CurrentModel,
    image: np.ndarray,
    work_dir: Path,
    progress: ProgressCallback,
) -> Predictions:
    """The model's maps over the box, normalised by the whole image (as a run predicts it)."""
    from pipeline.model_io import load_model  # torch: only when a model is used

    layer = assignment.box.campaign.image_layer
    whole = open_spatial_level(Path(layer.dataset.root) / layer.path, 0, what="image")
    scaling = load_model(model.model_file, device="cpu").normalisation.scaling(whole.array)
    return predict_box(model.model_file, image, work_dir, scaling=scaling, progress=progress)


def proposals_run(job_id: int) -> AssistJob:
    """Run propose-all job ``job_id`` to its end (the Celery task's body)."""
    return AssistProposalsRunner(job_id).run()
