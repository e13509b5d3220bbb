"""Object-level validation during training: segment the validation boxes and score them.

The loss says how close the maps are voxel by voxel, not whether the seeded watershed finds the
objects: a distance map a little too low everywhere has a small loss and no seed. So every
``val_interval`` epochs the trainer predicts each validation box whole (the model's valid
outputs stitched over the box), segments it with the seeded watershed (:mod:`pipeline.watershed`) at
the settings :func:`pipeline.segment_params.derive_segment_params` scales to the ground truth's
objects, and matches the objects at IoU >= 0.5 (:mod:`pipeline.evaluation`). As in the
published evaluation, the prediction covers the box plus a margin (the segmentation's own halo,
:func:`pipeline.segment.default_halo`, inside the image): an object cut by the box often has its
seed outside it, and without the margin it would be missed. Matching is on the box (ground truth
exists only there); an unmatched predicted object is a false positive only if centred in the box.

The F1 reported is the best over a few seed thresholds (``SEED_FACTORS`` x the objects' median
equivalent radius, plus the derived one; smoothing and minimum seed as derived, no peak
dynamic), as the fit after training will choose: how high a
network's distance map reaches drifts from epoch to epoch, and at one fixed threshold the F1 of
a small real 2D training (BBBC038, 24 validation nuclei) jumped between 0.08 and 0.74 from one
epoch to the next while the maps hardly changed. The smoothing is computed once per validation,
and each threshold only labels seeds and floods them again.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np
from scipy import ndimage

from pipeline.box_table import Box
from pipeline.evaluation import detection_scores
from pipeline.seed_search import JudgedMap, Seeding, score_seedings
from pipeline.segment import default_halo
from pipeline.segment_params import SegmentParams, smooth_sigma_voxels

# The distance head predicts distance / clamp_nm: it cannot exceed the clamp. A seed threshold
# above this share of the clamp is lowered to it, or no seed could ever form.
MAX_SEED_CLAMP_FRACTION = 0.5
# Seed thresholds tried at each validation, x the objects' median equivalent radius.
SEED_FACTORS = (0.15, 0.2, 0.3, 0.4, 0.5)


def validation_params(params: SegmentParams, clamp_nm: float) -> SegmentParams:
    """The derived settings, with the seed threshold kept reachable under the model's clamp."""
    ceiling = MAX_SEED_CLAMP_FRACTION * clamp_nm
    if params.seed_threshold_nm <= ceiling:
        return replace(params, clamp_nm=clamp_nm)
    return replace(params, seed_threshold_nm=ceiling, clamp_nm=clamp_nm)


@dataclass(frozen=True)
class BoxContext:
    """The region predicted for a validation box: the box plus ``halo``, inside the image."""

    offset: tuple[int, ...]  # region start minus box start (<= 0 on every axis)
    shape: tuple[int, ...]  # the region's shape
    box_shape: tuple[int, ...]
    halo: tuple[int, ...]

    @property
    def inner(self) -> tuple[slice, ...]:
        """The box within the region."""
        return tuple(slice(-o, -o + b) for o, b in zip(self.offset, self.box_shape, strict=True))


def box_context(
    start: Sequence[int],
    box_shape: Sequence[int],
    image_shape: Sequence[int],
    params: SegmentParams,
    voxel_size: Sequence[float],
) -> BoxContext:
    """The box enlarged by the segmentation's halo at ``params``, clipped to the image."""
    halo = default_halo(params.seed_threshold_nm, voxel_size, len(box_shape), params.smooth_nm)
    lo = [max(0, s - h) for s, h in zip(start, halo, strict=True)]
    hi = [min(n, s + b + h) for s, b, h, n in zip(start, box_shape, halo, image_shape, strict=True)]
    return BoxContext(
        offset=tuple(a - s for a, s in zip(lo, start, strict=True)),
        shape=tuple(b - a for a, b in zip(lo, hi, strict=True)),
        box_shape=tuple(box_shape),
        halo=tuple(halo),
    )


class BoxCanvas:
    """A box-sized map filled window by window from the model's output windows."""

    def __init__(self, shape: Sequence[int]) -> None:
        self.array = np.zeros(tuple(shape), dtype=np.float32)

    def paste(self, window_start: Sequence[int], output: np.ndarray) -> None:
        """Put an output window that starts at ``window_start`` (box coordinates; negative where
        the window is larger than the box) into the box, cropped to it."""
        inside = tuple(
            slice(max(w, 0), min(w + o, b))
            for w, o, b in zip(window_start, output.shape, self.array.shape, strict=True)
        )
        source = tuple(
            slice(s.start - w, s.stop - w) for s, w in zip(inside, window_start, strict=True)
        )
        self.array[inside] = output[source]


@dataclass(frozen=True)
class ValidationScores:
    """Object matches over all validation boxes (micro-averaged)."""

    tp: int
    fp: int
    fn: int
    objects: int  # predicted objects in the boxes
    gt_objects: int
    seed_threshold_nm: float = math.nan  # the threshold these counts were found at

    @property
    def precision(self) -> float:
        return detection_scores(self.tp, self.fp, self.fn)[0]

    @property
    def recall(self) -> float:
        return detection_scores(self.tp, self.fp, self.fn)[1]

    @property
    def f1(self) -> float:
        return detection_scores(self.tp, self.fp, self.fn)[2]


def validation_seeds(params: SegmentParams) -> list[float]:
    """The seed thresholds a validation tries: the derived one and ``SEED_FACTORS`` x the
    objects' radius, none above the clamp's reach (``params`` as :func:`validation_params`
    returns them)."""
    ceiling = MAX_SEED_CLAMP_FRACTION * params.clamp_nm if params.clamp_nm else math.inf
    radius = params.object_radius_nm
    factors = SEED_FACTORS if radius and radius > 0 else ()
    seeds = {round(params.seed_threshold_nm, 6)} | {round(f * (radius or 0.0), 6) for f in factors}
    return sorted(s for s in seeds if 0 < s <= ceiling) or [params.seed_threshold_nm]


def score_boxes(
    distances_nm: Sequence[np.ndarray],
    labels: Sequence[np.ndarray],
    contexts: Sequence[BoxContext],
    params: SegmentParams,
    voxel_size: Sequence[float],
) -> ValidationScores:
    """Segment each box's region (distance map over ``context.shape``) at each of
    :func:`validation_seeds` and match it to the box's labels (IoU >= 0.5; see the module
    docstring); the scores of the threshold with the best F1 (ties: the derived threshold, then
    the lower)."""
    sigma = smooth_sigma_voxels(params.smooth_nm, voxel_size)
    maps = [
        ndimage.gaussian_filter(np.asarray(d, np.float32), sigma)
        if params.smooth_nm > 0
        else np.asarray(d, np.float32)
        for d in distances_nm
    ]
    judged = []
    for distance, truth, context in zip(maps, labels, contexts, strict=True):
        known = np.zeros(context.shape, dtype=truth.dtype)
        known[context.inner] = truth
        start = tuple(s.start for s in context.inner)
        box = Box("validation", start, context.box_shape)
        judged.append(JudgedMap(distance, known, box, context.halo))
    # Thresholds alone, no peak dynamic: the choice of epoch was measured so, and the dynamic's
    # reconstruction would cost ~1 s per validation of a 3D box (the fit after training tries it).
    seedings = [Seeding(seed, 0.0, params.min_seed_voxels) for seed in validation_seeds(params)]
    best: ValidationScores | None = None
    for score in score_seedings(judged, seedings):
        seed = score.seeding.seed_threshold_nm
        scores = ValidationScores(
            score.tp, score.fp, score.fn, score.objects, score.gt_objects, seed
        )
        derived = math.isclose(seed, params.seed_threshold_nm)
        if best is None or scores.f1 > best.f1 or (scores.f1 == best.f1 and derived):
            best = scores
    assert best is not None
    return best


def nan_scores() -> dict[str, float]:
    """The validation columns of an epoch without object validation."""
    keys = ("val_f1", "val_precision", "val_recall", "val_objects", "val_seed_nm")
    return {k: math.nan for k in keys}
