"""Model assistance from a segmentation the model already made of the whole image.

A run segments the whole image with the seeded watershed on its model's probability and
distance maps, merged across chunks: the object holding a click, or the objects of a task box,
are read from that label image (holes inside an object filled) instead of predicting the box
again (no network on the request, no seams at a window's edge, and the annotator is shown what
the model published). Both answers are :class:`pipeline.assist.AssistObject` with
``source="model"``, like :func:`pipeline.assist.propose_all` on predictions.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import fastremap
import numpy as np
import numpy.typing as npt
from scipy import ndimage

from pipeline.assist import AssistObject, label_objects, probability_scores
from pipeline.errors import InvalidInputError


def _renumbered(labels: npt.NDArray[Any]) -> tuple[npt.NDArray[np.uint32], int]:
    """``labels`` with ids 1..n (a segmentation's ids may be sparse and large)."""
    renumbered, mapping = fastremap.renumber(np.asarray(labels), preserve_zero=True)
    return np.asarray(renumbered, dtype=np.uint32), max(0, len(mapping) - 1)


def _fill_holes(labels: npt.NDArray[np.uint32]) -> None:
    """Fill, in place, the holes a weak model leaves inside each object (voxels below its
    probability threshold), which the annotator would otherwise paint; only background is
    filled, never another object's voxels."""
    for index, where in enumerate(ndimage.find_objects(labels), start=1):
        if where is None:
            continue
        crop = labels[where]  # a view: holes lie inside the object's bbox
        crop[ndimage.binary_fill_holes(crop == index) & (crop == 0)] = index


def _check_shapes(labels: npt.NDArray[Any], probability: npt.NDArray[Any] | None) -> None:
    if labels.ndim != 3:
        raise InvalidInputError(f"the segmentation must be 3D (z, y, x), got {labels.shape}")
    if probability is not None and probability.shape != labels.shape:
        raise InvalidInputError("the probability map's shape differs from the segmentation's")


def segmentation_objects(
    labels: npt.NDArray[Any],
    probability: npt.NDArray[Any] | None = None,
    *,
    min_voxels: int = 1,
) -> list[AssistObject]:
    """Every object of ``labels`` (a box of the segmentation, clipped to it), most probable
    first; objects smaller than ``min_voxels`` in the box (a sliver of a neighbour reaching in)
    are left out."""
    _check_shapes(labels, probability)
    renumbered, count = _renumbered(labels)
    # Scored on the object's own voxels, before its holes are filled.
    if probability is None:
        scores = dict.fromkeys(range(1, count + 1), 1.0)
    else:
        means = probability_scores(renumbered, probability)
        scores = {i: float(np.nan_to_num(m)) for i, m in means.items()}
    _fill_holes(renumbered)
    found = label_objects(renumbered, (0, 0, 0), "model", scores, min_voxels)
    return sorted(found, key=lambda o: (-o.score, o.bbox))


def segmentation_click(
    labels: npt.NDArray[Any],
    click_zyx: Sequence[int],
    probability: npt.NDArray[Any] | None = None,
) -> AssistObject | None:
    """The object of ``labels`` (a window of the segmentation) holding the voxel ``click_zyx``,
    clipped to the window; None on the background."""
    _check_shapes(labels, probability)
    at = tuple(int(v) for v in click_zyx)
    if len(at) != 3 or any(not 0 <= c < n for c, n in zip(at, labels.shape, strict=True)):
        raise InvalidInputError(f"click {tuple(click_zyx)} lies outside {labels.shape}")
    value = labels[at]
    if not value:
        return None
    picked = np.asarray(labels == value, dtype=np.uint8)
    return segmentation_objects(picked, probability)[0]
