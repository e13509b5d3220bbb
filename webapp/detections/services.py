"""Writes of the detections app: starting table builds (the build itself is ``builds``).

A segmentation layer gets its table when its dataset's layers change (``layers_changed``, sent
by imports once they published), and again whenever its owner asks for a rebuild.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

from django.contrib.auth.models import User

from pipeline.progress import ProgressCallback
from webapp.core.errors import InvalidRequest, NotAllowed
from webapp.core.jobs.lifecycle import job_create_queued
from webapp.datasets.models import Dataset, Layer, LayerKind
from webapp.detections.builds import detections_build_run, detections_replace
from webapp.detections.models import DetectionBuild, JobStatus

__all__ = [
    "detections_build_on_layers_changed",
    "detections_build_run",
    "detections_build_start",
    "detections_replace",
]

logger = logging.getLogger(__name__)


def detections_build_start(
    layer: Layer,
    *,
    user: User | None = None,
    reason: str = "rebuild",
    enqueue: bool = True,
) -> DetectionBuild:
    """Queue a build of ``layer``'s detections table (sent to a worker when the row commits).

    A build already queued for the layer is returned instead of a second one: it has not read
    anything yet, so it will see the layer as it is now. ``user`` (when given) must be allowed
    to change the dataset.
    """
    if layer.kind != LayerKind.SEGMENTATION:
        raise InvalidRequest(
            f"Layer {layer.name!r} is a {layer.kind} layer: only segmentation layers have "
            "a detections table."
        )
    dataset = layer.dataset
    if user is not None and not Dataset.objects.allows(user, "change", dataset):
        raise NotAllowed("Only the dataset's owner can rebuild its detections table.")
    queued = DetectionBuild.objects.filter(layer=layer, status=JobStatus.QUEUED).first()
    if queued is not None:
        return queued
    task = None
    if enqueue:
        from webapp.detections.tasks import detections_build_task  # tasks import services

        task = detections_build_task
    return job_create_queued(
        DetectionBuild,
        task=task,
        layer=layer,
        owner=user or dataset.owner,
        reason=reason,
    )


def detections_build_on_layers_changed(
    dataset: Dataset, *, layers: Iterable[Layer] | None = None
) -> list[DetectionBuild]:
    """Queue a build for every segmentation layer of ``dataset`` (only those of ``layers`` when
    given: the ones that changed); a failure to queue one is logged, never raised (it must not
    undo the import that sent the signal)."""
    builds = []
    queryset = Layer.objects.select_related("dataset").filter(
        dataset=dataset, kind=LayerKind.SEGMENTATION
    )
    if layers is not None:
        queryset = queryset.filter(id__in=[layer.id for layer in layers])
    for layer in queryset:
        try:
            builds.append(detections_build_start(layer, reason="import"))
        except Exception:
            logger.exception("could not queue the detections build of layer %s", layer.id)
    return builds


def detections_build_now(
    layer: Layer, *, reason: str = "command", progress: ProgressCallback | None = None
) -> DetectionBuild:
    """Build ``layer``'s table in this process (commands, tests); returns the ended build."""
    build = detections_build_start(layer, reason=reason, enqueue=False)
    return detections_build_run(build.id, progress=progress)
