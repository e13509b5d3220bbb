"""Writes of the runs app: start a run (everything checked before anything is queued), cancel
one; choose a dataset's current model; open a proofreading campaign on a model's segmentation."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from django.contrib.auth.models import User
from django.db import transaction

from pipeline.config import parse_config
from pipeline.errors import InvalidInputError
from pipeline.naming import IMAGE_LAYER_NAME
from pipeline.suggest import EntropyCells, suggest_boxes
from pipeline.task_boxes import TaskBox as BoxSpec
from pipeline.task_boxes import overlaps, tile_boxes
from webapp.annotation import services as annotation_services
from webapp.annotation.label_exports import painted_ground_truth
from webapp.annotation.models import AnnotationCampaign, TaskBox
from webapp.core.errors import Conflict, InvalidRequest, NotAllowed
from webapp.core.jobs.lifecycle import job_cancel, job_create_queued
from webapp.core.jobs.models import ACTIVE_STATUSES
from webapp.core.jobs.queues import queue_for
from webapp.datasets.models import Dataset, Layer, LayerKind
from webapp.detections.filters import layer_filter_values
from webapp.detections.models import Detection
from webapp.proofreading.models import (
    CampaignState,
    ProofreadingCampaign,
    QueueOrder,
    Role,
    Selection,
)
from webapp.proofreading.services import CampaignSettings, campaign_create
from webapp.runs import layout, publish
from webapp.runs.models import STAGES, ModelVersion, PipelineRun
from webapp.runs.presets import HELD_OUT_FRACTION, OVERRIDES, preset_config
from webapp.runs.verdicts import verdict_filter

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


def ground_truth_snapshot(
    campaign: AnnotationCampaign, *, all_held_out: bool = False
) -> dict[str, object]:
    """What a run of ``campaign`` trains and evaluates on, fixed when it starts: per box its
    source and the chunk map of the chosen labels (blob keys are content hashes, so later edits
    do not change what the run reads); every k-th box held out (every box for a run that
    trains nothing)."""
    try:
        truths = painted_ground_truth(campaign)
    except InvalidInputError as exc:
        raise InvalidRequest(str(exc)) from None
    if not truths:
        raise InvalidRequest(NO_GROUND_TRUTH)
    held = len(truths) if all_held_out else held_out_count(len(truths))
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


def trained_on(run: PipelineRun, truths: Sequence[Any]) -> bool:
    """Whether ``run``'s snapshot holds exactly ``truths`` (``painted_ground_truth``'s): the
    same boxes, sources and labels versions, as :func:`ground_truth_snapshot` records them."""
    then = {
        (e.get("box"), e.get("source"), e.get("version"))
        for e in (run.ground_truth or {}).get("boxes", [])
    }
    return then == {(t.box.pk, t.source, t.labels.version) for t in truths}


def config_check(config: dict[str, object], image: Path) -> None:
    """Let the pipeline's own configuration reader check the run's settings on the image (400
    with its message), so that a run never fails on them after it was queued."""
    if not image.exists():
        raise InvalidRequest("The campaign's image layer has no data on disk.")
    try:
        parse_config({**config, "data": {"image": str(image)}}, base=image.parent)
    except InvalidInputError as exc:
        raise InvalidRequest(f"The run's settings are not valid: {exc}") from None


def source_image(dataset: Dataset) -> Layer:
    """The image a run without a campaign segments: the dataset's own (not a derived map)."""
    images = dataset.layers.filter(kind=LayerKind.IMAGE, source_layer__isnull=True)
    layer = images.filter(name=IMAGE_LAYER_NAME).first() or images.order_by("pk").first()
    if layer is None:
        raise InvalidRequest("The dataset has no image layer to segment.")
    return layer


def model_config(
    config: dict[str, Any],
    params: dict[str, object] | None,
    *,
    parent: ModelVersion | None,
    model: ModelVersion | None,
) -> dict[str, Any]:
    """The run's configuration with a registered model in it: ``parent``, the weights a
    fine-tune starts from (its network kept, so no ``model.*`` override), or ``model``, the
    one that predicts (nothing trained)."""
    version = parent or model
    if version is None:
        return config
    if parent is not None and model is not None:
        raise InvalidRequest("Give parent (fine-tune it) or model (predict with it), not both.")
    network = sorted(k for k in (params or {}) if k.startswith("model."))
    if network:
        raise InvalidRequest(
            f"{', '.join(network)}: a run with a registered model keeps that model's network."
        )
    path = publish.model_file(version)
    if not path.is_file():
        raise Conflict(f"The file of model v{version.number} is missing on the server.")
    config = {k: v for k, v in config.items() if k != "model"}
    if parent is not None:
        config["training"] = {**(config.get("training") or {}), "init_model": str(path)}
    else:
        config.pop("training", None)
        config["model"] = {"path": str(path)}
    return config


def run_start(
    user: User,
    campaign: AnnotationCampaign | None,
    *,
    preset: str,
    params: dict[str, object] | None = None,
    dataset: Dataset | None = None,
    parent: ModelVersion | None = None,
    model: ModelVersion | None = None,
) -> PipelineRun:
    """Start a run: train on ``campaign``'s approved painted ground truth (from scratch, or
    fine-tuning ``parent``), or segment with a registered ``model`` (nothing trained; the
    campaign's boxes, when given, all evaluate it) on the campaign's dataset or ``dataset``.

    The dataset's owner or a campaign manager may (the models must be ones the caller may
    see: the views check); a bad preset or parameter, a campaign that is not painted or has
    no approved ground truth is refused (400) and a second active run of the campaign (or of
    the dataset, without one) too (409), before anything is queued.
    """
    from webapp.runs.tasks import advance_task

    if campaign is not None:
        dataset = campaign.dataset
    if dataset is None:
        raise InvalidRequest("Give the campaign to train on, or a dataset and a model.")
    if campaign is None and model is None:
        raise InvalidRequest("Training needs a campaign's ground truth: give campaign.")
    if not (
        (campaign is not None and AnnotationCampaign.objects.allows(user, "change", campaign))
        or Dataset.objects.allows(user, "change", dataset)
    ):
        raise NotAllowed("Only the dataset's owner or the campaign's managers can start runs.")
    image_layer = campaign.image_layer if campaign is not None else source_image(dataset)
    config = model_config(preset_config(preset, params), params, parent=parent, model=model)
    # Proofreaders' verdicts on an earlier version set the filter the run applies.
    verdicts = verdict_filter(dataset) if "filter" not in config else None
    if verdicts is not None:
        config["filter"] = {
            "method": "fixed",
            "t_volume": verdicts["t_volume"],
            "t_sphericity": verdicts["t_sphericity"],
        }
    config_check(config, dataset.root / image_layer.path)
    if campaign is not None and not campaign.painted:
        raise InvalidRequest("Retraining needs painted objects: this campaign marks points only.")
    snapshot: dict[str, object] = (
        ground_truth_snapshot(campaign, all_held_out=model is not None)
        if campaign is not None
        else {"campaign": None, "boxes": []}
    )
    snapshot["verdicts"] = verdicts
    with transaction.atomic():
        # Lock the campaign (or dataset) row so two starts cannot both see no active run.
        if campaign is not None:
            AnnotationCampaign.objects.select_for_update().filter(pk=campaign.pk).first()
            active = PipelineRun.objects.filter(campaign=campaign)
        else:
            Dataset.objects.select_for_update().filter(pk=dataset.pk).first()
            active = PipelineRun.objects.filter(dataset=dataset, campaign__isnull=True)
        if active.filter(status__in=ACTIVE_STATUSES).exists():
            raise Conflict(
                f"A run of this {'campaign' if campaign else 'dataset'} is already queued or "
                "running: wait for it or cancel it."
            )
        run = job_create_queued(
            PipelineRun,
            task=advance_task,
            queue=queue_for(config),
            dataset=dataset,
            image_layer=image_layer,
            campaign=campaign,
            owner=user,
            preset=preset,
            params={k: OVERRIDES[k].kind(v) for k, v in (params or {}).items()},
            config=config,
            ground_truth=snapshot,
            parent=parent or model,
            stages={s: {"state": "pending"} for s in STAGES},
        )
    return run


def run_cancel(run: PipelineRun, user: User) -> PipelineRun:
    """Cancel a queued or running run (409 once it ended): its plans stop, nothing is published
    and its work directory goes (now, or when its workers are done with it)."""
    if not PipelineRun.objects.allows(user, "change", run):
        raise NotAllowed(
            "Only the dataset's owner, whoever started the run or a manager of its campaign "
            "can cancel it."
        )
    holder = run.worker
    if not job_cancel(run):
        raise Conflict(f"The run has already ended ({run.status}).")
    if not holder:  # queued, or waiting on its workers; a running stage stops itself
        layout.stop_and_clean(run.pk)
    return run


def model_make_current(user: User, version: ModelVersion) -> ModelVersion:
    """Make ``version`` its dataset's current model (the dataset's owner), the previous
    current one no longer."""
    if not ModelVersion.objects.allows(user, "change", version):
        raise NotAllowed("Only the dataset's owner can choose its current model.")
    with transaction.atomic():
        # Lock the dataset's versions so two choices cannot leave two current ones.
        list(ModelVersion.objects.select_for_update().filter(dataset_id=version.dataset_id))
        ModelVersion.objects.filter(dataset_id=version.dataset_id, current=True).exclude(
            pk=version.pk
        ).update(current=False)
        ModelVersion.objects.filter(pk=version.pk).update(current=True)
    version.current = True
    return version


def proofreading_from_model(user: User, version: ModelVersion) -> tuple[ProofreadingCampaign, bool]:
    """A proofreading campaign over ``version``'s segmentation in one step (the dataset's
    owner): the detections its fitted filter keeps (all when it fitted none), most uncertain
    first (random when nothing ranks them), the caller its manager, reviewer and expert (one
    click should leave one person able to work both rounds: an "uncertain" verdict goes to
    the experts); and whether it is new.
    An open campaign the caller manages on that layer is returned instead of a second one
    (verdicts split over look-alike campaigns help nobody). 400 while the detections table is
    still being built."""
    layer = version.layer
    if layer is None:
        raise Conflict(f"The segmentation layer of model v{version.number} was deleted.")
    existing = (
        ProofreadingCampaign.objects.filter(
            layer=layer,
            state=CampaignState.OPEN,
            members__user=user,
            members__role=Role.MANAGER,
        )
        .order_by("-created", "-id")
        .first()
    )
    if existing is not None:
        return existing, False
    filtered = not layer_filter_values(layer).is_empty
    # Uncertainty needs a filter's thresholds or the model's probabilities to rank by.
    uncertain = filtered or (
        Detection.objects.filter(layer=layer, mean_probability__isnull=False).exists()
    )
    settings = CampaignSettings(
        name=f"Proofread model v{version.number}",
        description=(
            f"The detections of {layer.name}"
            + (", those its fitted filter keeps" if filtered else "")
            + (", most uncertain first." if uncertain else ", in random order.")
        ),
        selection=Selection.FILTER if filtered else Selection.ALL,
        order=QueueOrder.UNCERTAINTY if uncertain else QueueOrder.RANDOM,
    )
    me = [(user.username, Role.REVIEWER.value), (user.username, Role.EXPERT.value)]
    return campaign_create(user, layer, settings, members=me), True


MAX_SUGGESTIONS = 100


def suggest_next_boxes(
    user: User, version: ModelVersion, campaign: AnnotationCampaign, count: int
) -> list[tuple[TaskBox, float, bool]]:
    """Active learning: the ``count`` boxes of ``campaign``'s image where ``version`` is least
    sure (``pipeline.suggest``), put first in its queue (its managers). Candidates are the
    boxes nobody has started and the campaign-sized tiles no box overlaps yet; boxes being
    or already annotated are never suggested again. Returns (box, mean entropy in bits,
    whether it is new), most uncertain first."""
    if not AnnotationCampaign.objects.allows(user, "change", campaign):
        raise NotAllowed("Only the campaign's managers can add boxes to it.")
    if not 1 <= count <= MAX_SUGGESTIONS:
        raise InvalidRequest(f"count must be between 1 and {MAX_SUGGESTIONS}.")
    if version.dataset_id != campaign.dataset_id:
        raise InvalidRequest(
            f"Model v{version.number} segmented another dataset: suggest with a version of "
            "the campaign's dataset."
        )
    path = publish.uncertainty_file(version)
    if not path.is_file():
        raise Conflict(
            f"Model v{version.number} has no uncertainty map (published before they were kept, "
            "or it predicted nothing): a new run makes one."
        )
    try:
        cells = EntropyCells.load(path)
    except InvalidInputError as exc:
        raise Conflict(str(exc)) from None
    shape = annotation_services.campaign_shape(campaign)
    if tuple(cells.shape) != tuple(shape):
        raise InvalidRequest(
            f"The campaign's image ({'x'.join(map(str, shape))} voxels) is not the one model "
            f"v{version.number} segmented ({'x'.join(map(str, cells.shape))})."
        )
    untouched = annotation_services.untouched_boxes(campaign)
    taken = [_spec(b) for b in TaskBox.objects.filter(campaign=campaign)]
    tiles = [
        tile
        for tile in tile_boxes(shape, annotation_services.box_voxels_of(campaign))
        if not any(overlaps(tile, box) for box in taken)
    ]
    candidates: list[tuple[BoxSpec, TaskBox | None]] = [(_spec(b), b) for b in untouched] + [
        (t, None) for t in tiles
    ]
    if not candidates:
        raise InvalidRequest("Every box of the campaign is started or done, and no tile is free.")
    ranked = suggest_boxes(cells, [spec for spec, _ in candidates], count)
    by_name = {spec.name: (spec, box) for spec, box in candidates}
    rows = annotation_services.boxes_suggested(
        campaign,
        user,
        [(*by_name[s.box.name], s.score) for s in ranked],
        ref=f"model v{version.number}",
    )
    return [
        (row, s.score, by_name[s.box.name][1] is None) for row, s in zip(rows, ranked, strict=True)
    ]


def _spec(box: TaskBox) -> BoxSpec:
    return BoxSpec(box.name, (box.z0, box.y0, box.x0), (box.depth, box.height, box.width))
