"""Writes of the runs app: start a run (everything checked before anything is queued), cancel
one."""

from __future__ import annotations

import logging
from pathlib import Path

from django.contrib.auth.models import User
from django.db import transaction

from pipeline.config import parse_config
from pipeline.errors import InvalidInputError
from webapp.annotation.label_exports import painted_ground_truth
from webapp.annotation.models import AnnotationCampaign
from webapp.core.errors import Conflict, InvalidRequest, NotAllowed
from webapp.core.jobs.lifecycle import job_cancel, job_create_queued
from webapp.core.jobs.models import ACTIVE_STATUSES
from webapp.datasets.models import Dataset
from webapp.runs import layout
from webapp.runs.models import STAGES, PipelineRun
from webapp.runs.presets import HELD_OUT_FRACTION, OVERRIDES, preset_config

logger = logging.getLogger(__name__)

NO_GROUND_TRUTH = (
    "The campaign has no approved painted ground truth yet: approve at least one painted box "
    "(or accept a consensus) before retraining."
)


def held_out_count(boxes: int) -> int:
    """Boxes kept for evaluation: a fifth, at least one when there are two or more."""
    if boxes < 2:
        return 0
    return max(1, round(boxes * HELD_OUT_FRACTION))


def ground_truth_snapshot(campaign: AnnotationCampaign) -> dict[str, object]:
    """What a run of ``campaign`` trains and evaluates on, fixed when it starts: per box its
    source and the chunk map of the chosen labels (blob keys are content hashes, so later edits
    do not change what the run reads); every k-th box held out."""
    try:
        truths = painted_ground_truth(campaign)
    except InvalidInputError as exc:
        raise InvalidRequest(str(exc)) from None
    if not truths:
        raise InvalidRequest(NO_GROUND_TRUTH)
    held = held_out_count(len(truths))
    # Evenly spread over the boxes in their order, so neither end is favoured.
    held_at = {round((i + 0.5) * len(truths) / held - 0.5) for i in range(held)} if held else set()
    boxes = []
    for i, truth in enumerate(truths):
        boxes.append(
            {
                "box": truth.box.pk,
                "name": truth.box.name,
                "source": truth.source,
                "assignment": truth.assignment.pk if truth.assignment else None,
                "version": truth.labels.version,
                "chunks": {
                    ".".join(map(str, k)): v for k, v in sorted(truth.labels.chunks.items())
                },
                "held_out": i in held_at,
            }
        )
    return {"campaign": campaign.pk, "boxes": boxes}


def config_check(config: dict[str, object], image: Path) -> None:
    """Let the pipeline's own configuration reader check the run's settings on the image (400
    with its message), so that a run never fails on them after it was queued."""
    if not image.exists():
        raise InvalidRequest("The campaign's image layer has no data on disk.")
    try:
        parse_config({**config, "data": {"image": str(image)}}, base=image.parent)
    except InvalidInputError as exc:
        raise InvalidRequest(f"The run's settings are not valid: {exc}") from None


def run_start(
    user: User,
    campaign: AnnotationCampaign,
    *,
    preset: str,
    params: dict[str, object] | None = None,
) -> PipelineRun:
    """Start a retraining run on ``campaign``'s approved painted ground truth.

    The dataset's owner or a campaign manager may; a bad preset or parameter, a campaign that
    is not painted or has no approved ground truth is refused (400) and a second active run of
    the campaign too (409), before anything is queued.
    """
    from webapp.runs.tasks import advance_task

    dataset = campaign.dataset
    if not (
        AnnotationCampaign.objects.allows(user, "change", campaign)
        or Dataset.objects.allows(user, "change", dataset)
    ):
        raise NotAllowed("Only the dataset's owner or the campaign's managers can start runs.")
    config = preset_config(preset, params)
    config_check(config, dataset.root / campaign.image_layer.path)
    if not campaign.painted:
        raise InvalidRequest("Retraining needs painted objects: this campaign marks points only.")
    snapshot = ground_truth_snapshot(campaign)
    with transaction.atomic():
        # Lock the campaign row so two starts cannot both see no active run.
        AnnotationCampaign.objects.select_for_update().filter(pk=campaign.pk).first()
        if PipelineRun.objects.filter(campaign=campaign, status__in=ACTIVE_STATUSES).exists():
            raise Conflict("A run of this campaign is already queued or running: wait for it or "
                           "cancel it.")  # fmt: skip
        run = job_create_queued(
            PipelineRun,
            task=advance_task,
            dataset=dataset,
            image_layer=campaign.image_layer,
            campaign=campaign,
            owner=user,
            preset=preset,
            params={k: OVERRIDES[k].kind(v) for k, v in (params or {}).items()},
            config=config,
            ground_truth=snapshot,
            stages={s: {"state": "pending"} for s in STAGES},
        )
    return run


def run_cancel(run: PipelineRun, user: User) -> PipelineRun:
    """Cancel a queued or running run (409 once it ended): its plans stop, nothing is published
    and its work directory goes (now, or when its workers are done with it)."""
    if not PipelineRun.objects.allows(user, "change", run):
        raise NotAllowed("Only the dataset's owner or whoever started the run can cancel it.")
    holder = run.worker
    if not job_cancel(run):
        raise Conflict(f"The run has already ended ({run.status}).")
    if not holder:  # queued, or waiting on its workers; a running stage stops itself
        layout.stop_and_clean(run.pk)
    return run
