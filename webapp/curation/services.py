"""Writes of the curation app: verdict tags into segment properties, curated-layer jobs.

Verdicts into segment properties: rewriting the properties of a 100,000-object layer takes
about 1.1 s (7.7 MB of JSON, measured here), too slow for every verdict's request. So a change
of an item's final verdict queues a ``verdict_properties`` job for the layer once its
transaction commits, unless one is queued already: a burst of verdicts costs one rewrite after
it (the queued job reads the verdicts when it starts, so it includes every change committed
before). The file is written through a temporary file and a rename (a reader never sees half
of it), and the viewer's mesh source URL carries the file's version (``?v=``, see
``datasets.data_urls``), so Neuroglancer fetches the new properties instead of a cached copy.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from functools import partial
from pathlib import Path, PurePosixPath
from typing import Any

import pandas as pd
from django.contrib.auth.models import User
from django.db import connection, transaction

from pipeline.layout import mesh_dir_path
from pipeline.naming import (
    LABEL_NAME_PATTERN,
    MESH_LAYER_SUFFIX,
    is_label_name,
    mesh_layer_name,
)
from pipeline.precomputed import (
    VERDICT_PROPERTY,
    segment_properties_file,
    segment_properties_remove,
    segment_properties_set_tags,
)
from webapp.core.errors import Conflict, InvalidRequest, NotAllowed
from webapp.core.jobs.lifecycle import job_cancel, job_create_queued
from webapp.core.jobs.models import JobStatus
from webapp.curation import selectors
from webapp.curation.models import CurationJob, CurationKind
from webapp.datasets.models import Layer, LayerKind
from webapp.detections.models import Detection
from webapp.detections.selectors import ExtraColumn
from webapp.proofreading.models import CampaignState, ProofreadingCampaign

logger = logging.getLogger(__name__)

MAX_NAME_LENGTH = 64


# --- verdicts into segment properties ---------------------------------------------------------


def verdict_properties_write(layer: Layer) -> list[Path]:
    """Write the verdict tags of ``layer``'s verdict campaign into the segment properties of
    its mesh layers (every other property kept); with no campaign, remove the tags. Returns
    the files written (none when the layer has no segment properties)."""
    campaign = selectors.verdict_campaign_of(layer)
    written: list[Path] = []
    for mesh in selectors.mesh_layers_of(layer):
        mesh_dir = mesh.dataset.root / mesh.path
        try:
            if segment_properties_file(mesh_dir) is None:
                continue
            if campaign is None:
                path = segment_properties_remove(mesh_dir, VERDICT_PROPERTY)
            else:
                classes = selectors.classes_of(campaign)
                path = segment_properties_set_tags(
                    mesh_dir,
                    selectors.decided_verdicts(campaign),
                    [c.name for c in classes],
                    property_id=VERDICT_PROPERTY,
                    description=f"Proofreading verdict (campaign {campaign.name})"[:200],
                    tag_descriptions=[c.label for c in classes],
                )
        except FileNotFoundError:
            continue
        if path is not None:
            written.append(path)
    return written


def verdict_properties_schedule(layer_id: int) -> CurationJob | None:
    """Queue a rewrite of the layer's verdict properties unless one is queued already."""
    queued = CurationJob.objects.filter(
        layer_id=layer_id, kind=CurationKind.VERDICT_PROPERTIES, status=JobStatus.QUEUED
    ).exists()
    if queued or not Layer.objects.filter(id=layer_id).exists():
        return None
    from webapp.curation import tasks

    return job_create_queued(
        CurationJob,
        task=tasks.verdict_properties_task,
        kind=CurationKind.VERDICT_PROPERTIES,
        layer_id=layer_id,
    )


def _schedule_safely(layer_id: int) -> None:
    try:
        verdict_properties_schedule(layer_id)
    except Exception:  # a verdict must never fail because its display could not be queued
        logger.exception("could not queue the verdict properties of layer %s", layer_id)


def verdict_properties_schedule_on_commit(layer_id: int) -> None:
    """Queue the rewrite when the current transaction commits, once per transaction and layer
    (a bulk verdict saves many items)."""
    marker = ("curation-verdicts", layer_id)
    pending = getattr(connection, "run_on_commit", [])
    if any(getattr(entry[1], "curation_marker", None) == marker for entry in pending):
        return
    callback = partial(_schedule_safely, layer_id)
    callback.curation_marker = marker  # type: ignore[attr-defined]
    transaction.on_commit(callback)


# --- verdict columns in the detections exports -----------------------------------------------


def verdict_export_columns(layer: Layer) -> list[ExtraColumn]:
    """``verdict`` (final verdict of the layer's verdict campaign, empty when undecided or not
    in it) and ``verdict_campaign`` (that campaign's id), for the detections exports; none when
    no campaign over the layer has decided anything."""
    campaign = selectors.verdict_campaign_of(layer)
    if campaign is None:
        return []
    cache: dict[tuple[int, ...], list[str | None]] = {}

    def verdicts(ids: Sequence[int]) -> list[str | None]:
        key = tuple(ids)
        if key not in cache:
            cache.clear()
            segments = dict(
                Detection.objects.filter(id__in=list(ids)).values_list("id", "segment_id")
            )
            found = selectors.decided_verdicts(campaign, segments.values())
            cache[key] = [found.get(int(segments.get(i, -1))) for i in ids]
        return cache[key]

    def campaign_ids(ids: Sequence[int]) -> Any:
        # A nullable integer array: "5" or an empty cell in CSV, int64 with nulls in Parquet.
        return pd.array(
            [campaign.id if v is not None else None for v in verdicts(ids)], dtype="Int64"
        )

    return [
        ExtraColumn("verdict", verdicts, "string"),
        ExtraColumn("verdict_campaign", campaign_ids, "int"),
    ]


# --- publish a curated layer -------------------------------------------------------------------


def _free_name(layer: Layer, base: str) -> str:
    base = base[: MAX_NAME_LENGTH - 8]
    name, n = base, 2
    while Layer.objects.filter(
        dataset=layer.dataset, name__in=[name, mesh_layer_name(name)]
    ).exists():
        name = f"{base}-{n}"
        n += 1
    return name


def curated_paths(layer: Layer, name: str) -> tuple[str, str]:
    """Dataset-relative paths of a curated layer's labels (beside the source's, under the same
    image's ``labels/``) and meshes (``meshes/<name>``)."""
    parent = PurePosixPath(layer.path).parent
    return str(parent / name), mesh_dir_path(name)


def publish_start(
    campaign: ProofreadingCampaign,
    user: User,
    *,
    name: str | None = None,
    verdicts: Sequence[str] | None = None,
    enqueue: bool = True,
) -> CurationJob:
    """Queue the publication of a curated layer of ``campaign``'s accepted objects (managers)."""
    if not ProofreadingCampaign.objects.allows(user, "change", campaign):
        raise NotAllowed("Only the campaign's managers can publish a curated layer.")
    layer = Layer.objects.select_related("dataset").get(id=campaign.layer_id)
    if layer.kind != LayerKind.SEGMENTATION or not layer.path:
        raise InvalidRequest("The campaign's layer is not a segmentation layer with labels.")
    names = [c.name for c in selectors.classes_of(campaign)]
    chosen = list(verdicts) if verdicts is not None else selectors.accepted_by_default(campaign)
    unknown = sorted(set(chosen) - set(names))
    if unknown:
        raise InvalidRequest(
            f"Unknown verdicts {', '.join(unknown)}; this campaign's are {', '.join(names)}."
        )
    if not chosen:
        raise InvalidRequest("Choose at least one verdict whose objects the layer keeps.")
    if name is None or name == "":
        name = _free_name(layer, f"{layer.name}-curated")
    elif not is_label_name(name) or name.endswith(MESH_LAYER_SUFFIX):
        raise InvalidRequest(
            f"name must match {LABEL_NAME_PATTERN.pattern}, not be 'image' and not end in "
            "'-meshes'."
        )
    elif Layer.objects.filter(
        dataset=layer.dataset, name__in=[name, mesh_layer_name(name)]
    ).exists():
        raise Conflict(f"Dataset {layer.dataset.slug!r} has a layer named {name!r} already.")
    if not selectors.accepted_segments(campaign, chosen):
        raise InvalidRequest(
            f"No detection of this campaign has a final verdict in {', '.join(chosen)} yet."
        )
    active = CurationJob.objects.filter(
        campaign=campaign,
        kind=CurationKind.PUBLISH,
        status__in=[JobStatus.QUEUED, JobStatus.RUNNING],
    ).exists()
    if active:
        raise Conflict("A curated layer of this campaign is being published already.")
    task: Any = None
    if enqueue:
        from webapp.curation import tasks

        task = tasks.publish_task
    return job_create_queued(
        CurationJob,
        task=task,
        kind=CurationKind.PUBLISH,
        owner=user,
        layer=layer,
        campaign=campaign,
        params={
            "name": name,
            "verdicts": chosen,
            "campaign_state": str(campaign.state or CampaignState.OPEN),
        },
    )


def curation_job_cancel(job: CurationJob, user: User) -> CurationJob:
    """Cancel a queued or running job of the caller's (409 when it ended already)."""
    if not CurationJob.objects.allows(user, "change", job):
        raise NotAllowed("Only the job's owner can cancel it.")
    if not job_cancel(job):
        raise Conflict(f"The job has ended already ({job.status}).")
    return job
