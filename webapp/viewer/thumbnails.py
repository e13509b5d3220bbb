"""Dataset thumbnails: the middle z slice of a coarse pyramid level with the labels outlined.

Rendered where the data is produced (the import job in a Celery worker, ``load_demo``), on the
``layers_changed`` signal, so that a page view normally only sends a file. A dataset without a
current thumbnail (its layers are newer than the file) is rendered on request as a fallback.
"""

from __future__ import annotations

import colorsys
import logging
import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
from django.db.models import Max
from PIL import Image

from pipeline.errors import PipelineError
from pipeline.layout import THUMBNAIL_NAME
from pipeline.ome_zarr_io import open_multiscale
from webapp.datasets.models import Dataset, Layer, LayerKind
from webapp.viewer.services import CHANNEL_COLORS, default_contrast

logger = logging.getLogger(__name__)

THUMBNAIL_SIZE = 256
# Read the coarsest pyramid level that still has at least this many pixels across.
MIN_LEVEL_PIXELS = 128


def _middle_slice(store: Path, axes: list[str], min_pixels: int, level_shape: Any = None) -> Any:
    """Middle z slice (channels first, then y, x) of a coarse level of the image at ``store``."""
    arrays = list(open_multiscale(store).levels)
    array = arrays[0]
    if level_shape is not None:
        array = next((a for a in arrays if a.shape[-2:] == level_shape), arrays[0])
    else:
        for candidate in arrays:
            if min(candidate.shape[-2:]) >= min_pixels:
                array = candidate
    index: list[Any] = []
    for axis, n in zip(axes, array.shape, strict=False):
        index.append(n // 2 if axis not in ("c", "y", "x") else slice(None))
    data = np.asarray(array[tuple(index)])
    if "c" not in axes:
        data = data[np.newaxis]
    return data


def _hex_rgb(color: str) -> np.ndarray:
    return np.array([int(color[i : i + 2], 16) for i in (1, 3, 5)], dtype=np.float32) / 255


def label_colors(labels: np.ndarray) -> np.ndarray:
    """A distinct saturated RGB colour (0..1) per label id; 0 stays black."""
    ids = labels.astype(np.uint64)
    hue = (ids * np.uint64(2654435761) % np.uint64(1000)).astype(np.float32) / 1000
    rgb = np.zeros((*labels.shape, 3), dtype=np.float32)
    for h in np.unique(hue[labels != 0]):
        rgb[(hue == h) & (labels != 0)] = colorsys.hsv_to_rgb(float(h), 0.85, 1.0)
    return rgb


def render_thumbnail(dataset: Dataset) -> Image.Image | None:
    """Thumbnail of ``dataset``, or None when it has no readable image or labels."""
    layers = list(dataset.layers.all().order_by("id"))
    image = next((la for la in layers if la.kind == LayerKind.IMAGE), None)
    labels_layer = next((la for la in layers if la.kind == LayerKind.SEGMENTATION), None)
    if image is None and labels_layer is None:
        return None
    rgb: np.ndarray | None = None
    shape_yx = None
    if image is not None:
        rgb = _render_image(dataset, image)
        shape_yx = rgb.shape[:2]
    if labels_layer is not None:
        axes = [str(a).lower() for a in labels_layer.axes]
        labels = _middle_slice(dataset.root / labels_layer.path, axes, MIN_LEVEL_PIXELS, shape_yx)
        labels = labels[0]
        if rgb is None:
            rgb = np.zeros((*labels.shape, 3), dtype=np.float32)
        if labels.shape != rgb.shape[:2]:
            ys = np.arange(rgb.shape[0]) * labels.shape[0] // rgb.shape[0]
            xs = np.arange(rgb.shape[1]) * labels.shape[1] // rgb.shape[1]
            labels = labels[np.ix_(ys, xs)]
        colors = label_colors(labels)
        inside = labels != 0
        edge = np.zeros_like(inside)
        edge[:-1] |= labels[:-1] != labels[1:]
        edge[1:] |= labels[:-1] != labels[1:]
        edge[:, :-1] |= labels[:, :-1] != labels[:, 1:]
        edge[:, 1:] |= labels[:, :-1] != labels[:, 1:]
        edge &= inside
        rgb[inside] = rgb[inside] * 0.7 + colors[inside] * 0.3
        rgb[edge] = colors[edge]
    assert rgb is not None
    picture = Image.fromarray((np.clip(rgb, 0, 1) * 255).astype(np.uint8), "RGB")
    picture.thumbnail((THUMBNAIL_SIZE, THUMBNAIL_SIZE), Image.Resampling.BILINEAR)
    if max(picture.size) < THUMBNAIL_SIZE:
        scale = THUMBNAIL_SIZE / max(picture.size)
        size = (round(picture.width * scale), round(picture.height * scale))
        picture = picture.resize(size, Image.Resampling.NEAREST)
    return picture


def _render_image(dataset: Dataset, image: Layer) -> np.ndarray:
    axes = [str(a).lower() for a in image.axes]
    data = _middle_slice(dataset.root / image.path, axes, MIN_LEVEL_PIXELS).astype(np.float32)
    lo, hi = default_contrast(image)
    scaled = np.clip((data - lo) / max(hi - lo, 1e-9), 0, 1)
    if scaled.shape[0] == 1:
        return np.repeat(scaled[0][..., np.newaxis], 3, axis=-1)
    rgb = np.zeros((*scaled.shape[1:], 3), dtype=np.float32)
    for c in range(scaled.shape[0]):
        rgb += scaled[c][..., np.newaxis] * _hex_rgb(CHANNEL_COLORS[c % len(CHANNEL_COLORS)])
    return np.clip(rgb, 0, 1)


def _layers_changed_at(dataset: Dataset) -> float:
    """When the newest image or label layer was created (what the thumbnail draws)."""
    newest = dataset.layers.filter(kind__in=[LayerKind.IMAGE, LayerKind.SEGMENTATION]).aggregate(
        newest=Max("created")
    )["newest"]
    return newest.timestamp() if newest is not None else 0.0


def thumbnail_current(dataset: Dataset) -> Path | None:
    """The thumbnail file if it exists and is not older than the layers it draws."""
    path = dataset.root / THUMBNAIL_NAME
    try:
        if path.stat().st_mtime >= _layers_changed_at(dataset):
            return path
    except OSError:
        pass
    return None


def thumbnail_path(dataset: Dataset) -> Path | None:
    """The current thumbnail, rendered now if there is none (datasets from before jobs did it)."""
    return thumbnail_current(dataset) or thumbnail_write(dataset)


def thumbnail_on_layers_changed(sender: Any, dataset: Dataset, **kwargs: Any) -> None:
    """``layers_changed`` receiver: render the thumbnail now; a failure only costs the picture."""
    try:
        thumbnail_write(dataset)
    except Exception:
        logger.exception("could not render the thumbnail of dataset %s", dataset.slug)


def thumbnail_write(dataset: Dataset) -> Path | None:
    """Render the thumbnail and replace the file atomically; None when there is nothing to draw."""
    path = dataset.root / THUMBNAIL_NAME
    try:
        picture = render_thumbnail(dataset)
    except (OSError, ValueError, KeyError, IndexError, PipelineError):
        logger.warning("no thumbnail for dataset %s", dataset.slug, exc_info=True)
        return None
    if picture is None:
        return None
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".png.tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            picture.save(handle, format="PNG")
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path
