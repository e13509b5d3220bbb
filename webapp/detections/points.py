"""A segmentation layer's detections as Neuroglancer point annotations, beside its table.

Every detections build also writes the layer's detections as a precomputed annotation source
(``pipeline.annotation_points``: a point per detection at its centroid, volume and sphericity as
properties, the segment id as the ``segment_id`` relationship, a multi-level spatial index so
100,000 points load by area) into ``DATA_ROOT/datasets/<slug>/annotations/<name>-detections/``
(``pipeline.layout.detection_points_dir_path``). The data server serves it like any other file
of the dataset (``/data/<slug>/...``, share links, nginx), with the dataset's permissions, so no
view of its own. It is derived data: rebuilt with the table (built in the build's work
directory, swapped in once the table is committed), removed with the layer. The viewer offers
it as a hidden annotation layer (``viewer.services.detections_points_layer``).
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path
from typing import Any

import pandas as pd
from django.db import transaction

from pipeline.annotation_points import (
    PointsResult,
    replace_directory,
    write_detection_points_of_store,
)
from pipeline.layout import detection_points_dir_path
from pipeline.naming import is_label_name
from pipeline.progress import ProgressCallback, no_progress
from webapp.datasets.data_urls import annotation_source_url, data_path
from webapp.datasets.models import Dataset, Layer, LayerKind

logger = logging.getLogger(__name__)

WORK_DIR_NAME = "points"


def points_dir_name(layer: Layer) -> str:
    """The layer's name when it is a safe path segment (label names are), else ``_layer-<id>``
    (no label name starts with ``_``, so the two never collide)."""
    return layer.name if is_label_name(layer.name) else f"_layer-{layer.id}"


def layer_points_path(layer: Layer) -> str:
    """Path of the layer's detection points inside its dataset directory."""
    return detection_points_dir_path(points_dir_name(layer))


def layer_points_dir(layer: Layer) -> Path:
    return layer.dataset.root / layer_points_path(layer)


def layer_points_exist(layer: Layer) -> bool:
    """Whether the layer's detection points have been written (their ``info`` exists)."""
    return (layer_points_dir(layer) / "info").is_file()


def layer_points_data_path(layer: Layer, share_token: str | None = None) -> str:
    """Site-relative data URL of the source's directory (``/data/<slug>/annotations/...``)."""
    return data_path(layer.dataset, layer_points_path(layer), share_token) + "/"


def layer_points_source_url(
    layer: Layer, base_url: str, share_token: str | None = None
) -> str | None:
    """Neuroglancer source of the layer's detection points (versioned by their ``info``), or
    None before the first build wrote them."""
    if not layer_points_exist(layer):
        return None
    return annotation_source_url(layer.dataset, layer_points_path(layer), base_url, share_token)


def points_build(
    layer: Layer, frame: pd.DataFrame, work_dir: Path, progress: ProgressCallback = no_progress
) -> PointsResult:
    """Write ``frame`` (the layer's new detections table) as points into ``work_dir``, with the
    geometry of the layer's label image; :func:`points_publish` moves them into place."""
    return write_detection_points_of_store(
        frame, layer.dataset.root / layer.path, Path(work_dir) / WORK_DIR_NAME, progress=progress
    )


def points_publish(layer: Layer, built: Path) -> None:
    """Swap the built source in for the layer's current one (a reader sees one or the other).
    A failure is logged, not raised: the table it comes from is already committed, and the
    next build writes the points again."""
    try:
        replace_directory(Path(built), layer_points_dir(layer))
    except OSError:
        logger.exception("publishing the detection points of layer %s failed", layer.id)


def points_on_layer_deleted(sender: Any, instance: Layer, **kwargs: Any) -> None:
    """``post_delete`` of a layer: its detection points go with it, once the deletion commits
    (a deleted dataset's directory is already gone; nothing to do then)."""
    if instance.kind != LayerKind.SEGMENTATION:
        return
    try:
        target = layer_points_dir(instance)
    except Dataset.DoesNotExist:
        return
    transaction.on_commit(lambda: shutil.rmtree(target, ignore_errors=True))
