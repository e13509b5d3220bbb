"""Fitting the seeded-watershed settings on the validation boxes: a small grid, object F1 decides.

(And on the training boxes too when the validation boxes hold few objects: see
:func:`fit_model_segment_params`.)

The derived settings (:func:`pipeline.segment_params.derive_segment_params`) are a good start, but
how deep the predicted distance of a trained network reaches, and how noisy it is, depends on the
data and the training. So the seed threshold (``SEED_FACTORS`` x the ground truth's median
equivalent radius ``r``), the peak dynamic (``DYNAMIC_FACTORS`` x ``r``), the smoothing
(``SMOOTH_FACTORS`` x ``r``) and the minimum seed size (``MIN_SEED_MULTIPLES`` x the derived value)
are tried on every combination, plus the starting values themselves; each combination segments every
validation box's predicted distance map and is judged by object F1 at IoU >= 0.5 over all boxes
together, counted as ``evaluate`` counts (a predicted object centred in the context around a box is
not a false positive). The winner is the combination whose F1 averaged with its grid neighbours'
(one step along any axes) is highest, not the single best: with a few dozen validation objects one
combination's F1 is uncertain by about 0.06, and on the real 2D nuclei (bench/accuracy.py,
dsb2018) a lone best combination held out worse than a setting amid good neighbours. Only
combinations whose own F1 lies within two standard errors of the best one contend
(:func:`contenders`): a broad plateau of mediocre settings must not win over a peak far above
it (on a fluorescence-like 3D model the neighbourhood chose a setting of F1 0.767 on its 42
fitting objects against a best of 0.883, and held out 0.820 against 0.912). Ties go to the
higher F1 of its own, then to the combination nearest the starting values. Cheap:
the smoothed maps are computed once per smoothing, their peak caps once per dynamic, and a
combination whose seeds equal an earlier one's reuses its score instead of flooding again
(:mod:`pipeline.seed_search`).

Fitting judges the distance map alone, as :func:`pipeline.segment.segment_volume` segments it.
"""

from __future__ import annotations

import math
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
from scipy import ndimage

from pipeline.box_table import Box
from pipeline.errors import InvalidInputError
from pipeline.evaluation import detection_scores, evaluate_box
from pipeline.progress import ProgressCallback, no_progress
from pipeline.seed_search import JudgedMap, Seeding, score_seedings
from pipeline.segment_params import (
    MIN_SEED_FRACTION,
    SegmentParams,
    derive_segment_params,
    median_object_radius_nm,
    smooth_sigma_voxels,
)
from pipeline.watershed import seeded_watershed

SEED_FACTORS = (0.15, 0.2, 0.25, 0.3, 0.4, 0.5, 0.6)
DYNAMIC_FACTORS = (0.0, 0.1, 0.2)  # 0.05 r was never chosen on dsb2018 (seven models)
SMOOTH_FACTORS = (0.0, 0.1, 0.2)
MIN_SEED_MULTIPLES = (0, 1, 3)
CONTEXT_FACTOR = 1.5  # context around a box, x r: the seeds of objects cut by its faces
IOU_THRESHOLD = 0.5
MIN_FIT_OBJECTS = 100  # fewer in the validation boxes: the training boxes are fitted on too
FIT_TABLE_NAME = "segment_fit.csv"
SE_MULTIPLE = 2.0  # how far below the best F1 a combination may lie and still win


@dataclass(frozen=True)
class BoxPrediction:
    """A box's predicted distance (nm) over the box plus context; ``box`` locates the box in it."""

    distance: np.ndarray
    box: tuple[slice, ...]
    name: str = "box"


@dataclass(frozen=True)
class SegmentFit:
    """The search: the start, the winner, and every combination tried with its counts."""

    start: SegmentParams
    params: SegmentParams
    start_f1: float
    f1: float
    table: list[dict[str, Any]]
    boxes: list[str]
    neighbourhood_f1: float  # the winner's F1 averaged with its grid neighbours' (the judge)

    def to_dict(self) -> dict[str, Any]:
        return {
            "start": self.start.to_dict(),
            "params": self.params.to_dict(),
            "start_f1": self.start_f1,
            "f1": self.f1,
            "neighbourhood_f1": self.neighbourhood_f1,
            "boxes": list(self.boxes),
            "table": [dict(row) for row in self.table],
        }

    def summary(self) -> dict[str, Any]:
        """What the model file keeps (the table goes to the run manifest and a CSV)."""
        return {
            "f1": self.f1,
            "start_f1": self.start_f1,
            "boxes": list(self.boxes),
            "tried": len(self.table),
        }


def _grid(values: Sequence[float], start: float) -> list[float]:
    return sorted({round(float(v), 6) for v in values} | {round(float(start), 6)})


def _nearness(row: dict[str, Any], start: SegmentParams, radius: float) -> float:
    """How far a combination lies from the start (for breaking ties toward it)."""
    return float(
        abs(math.log(row["seed_threshold_nm"] / start.seed_threshold_nm))
        + abs(row["seed_dynamic_nm"] - start.seed_dynamic_nm) / radius
        + abs(row["smooth_nm"] - start.smooth_nm) / radius
        + abs(math.log((row["min_seed_voxels"] + 1) / (start.min_seed_voxels + 1)))
    )


def _check_inputs(
    predictions: Sequence[BoxPrediction], truths: Sequence[np.ndarray], ndim: int
) -> None:
    if not predictions or len(predictions) != len(truths):
        raise InvalidInputError(
            f"fitting needs one ground-truth box per prediction, got {len(predictions)} "
            f"predictions and {len(truths)} boxes"
        )
    for pred, truth in zip(predictions, truths, strict=True):
        shape = tuple(s.stop - s.start for s in pred.box)
        if pred.distance.ndim != ndim or tuple(truth.shape) != shape:
            raise InvalidInputError(
                f"box {pred.name}: ground truth {tuple(truth.shape)} does not fit the box "
                f"{shape} of a {pred.distance.ndim}D prediction (voxel size has {ndim} values)"
            )


def fit_segment_params(
    predictions: Sequence[BoxPrediction],
    truths: Sequence[np.ndarray],
    voxel_size: Sequence[float],
    start: SegmentParams,
    *,
    progress: ProgressCallback = no_progress,
) -> tuple[SegmentParams, SegmentFit]:
    """The grid combination with the best object F1 on the boxes (see the module docstring).

    ``truths`` are the boxes' instance labels (the shape of each ``prediction.box``). The result
    keeps ``start``'s clamp (a training value) and has ``source="fitted"``.
    """
    voxel_size = tuple(float(v) for v in voxel_size)
    _check_inputs(predictions, truths, len(voxel_size))
    # The grid scales with the start's radius when it has one (derived from every box, so the
    # start lies on the grid); else with the fitted boxes' objects.
    if start.object_radius_nm:
        radius, derived_min = start.object_radius_nm, max(1, start.min_seed_voxels)
    else:
        radius, voxels = median_object_radius_nm(list(truths), voxel_size)
        derived_min = max(1, round(MIN_SEED_FRACTION * voxels))
    seeds = _grid([f * radius for f in SEED_FACTORS], start.seed_threshold_nm)
    seeds = [s for s in seeds if s > 0]
    smooths = _grid([f * radius for f in SMOOTH_FACTORS], start.smooth_nm)
    min_seeds = sorted({m * derived_min for m in MIN_SEED_MULTIPLES} | {start.min_seed_voxels})
    dynamics = _grid([f * radius for f in DYNAMIC_FACTORS], start.seed_dynamic_nm)
    # Dynamic-major: each dynamic's peak caps (the fit's costliest part, a reconstruction per
    # box) are computed at its first seeding, so this order spreads them over the smoothing
    # instead of paying them all in its first few combinations, and the stage's ETA, reckoned
    # from its pace, holds within ~1.5x from the start (seed-major showed ~5x at first).
    seedings = [
        Seeding(seed, dynamic, int(min_seed))
        for dynamic in dynamics
        for seed in seeds
        for min_seed in min_seeds
    ]
    boxes, full_truths, margins = _judge_inputs(predictions, truths)
    table: list[dict[str, Any]] = []
    total = len(smooths) * len(seedings)
    for smooth in smooths:
        sigma = smooth_sigma_voxels(smooth, voxel_size)
        maps = [
            JudgedMap(
                ndimage.gaussian_filter(np.asarray(p.distance, np.float32), sigma)
                if smooth > 0
                else np.asarray(p.distance, np.float32),
                truth,
                box,
                margin,
            )
            for p, box, truth, margin in zip(predictions, boxes, full_truths, margins, strict=True)
        ]

        step = _shifted(progress, "fit segmentation", len(table), total)
        for score in score_seedings(maps, seedings, iou_threshold=IOU_THRESHOLD, progress=step):
            table.append(
                {
                    "seed_threshold_nm": score.seeding.seed_threshold_nm,
                    "seed_dynamic_nm": score.seeding.seed_dynamic_nm,
                    "smooth_nm": smooth,
                    "min_seed_voxels": score.seeding.min_seed_voxels,
                    "tp": score.tp,
                    "fp": score.fp,
                    "fn": score.fn,
                    **score.scores(),
                }
            )
    table.sort(key=lambda r: tuple(r[k] for k in TABLE_ORDER))
    best = choose_row(table, start, radius)
    start_row = next(
        r
        for r in table
        if r["seed_threshold_nm"] == round(start.seed_threshold_nm, 6)
        and r["seed_dynamic_nm"] == round(start.seed_dynamic_nm, 6)
        and r["smooth_nm"] == round(start.smooth_nm, 6)
        and r["min_seed_voxels"] == start.min_seed_voxels
    )
    params = SegmentParams(
        seed_threshold_nm=float(best["seed_threshold_nm"]),
        smooth_nm=float(best["smooth_nm"]),
        min_seed_voxels=int(best["min_seed_voxels"]),
        clamp_nm=start.clamp_nm,
        source="fitted",
        object_radius_nm=radius,
        seed_dynamic_nm=float(best["seed_dynamic_nm"]),
    )
    fit = SegmentFit(
        start=start,
        params=params,
        start_f1=float(start_row["f1"]),
        f1=float(best["f1"]),
        table=table,
        boxes=[b.name for b in boxes],
        neighbourhood_f1=float(best["neighbourhood_f1"]),
    )
    return params, fit


GRID_KEYS = ("seed_threshold_nm", "seed_dynamic_nm", "smooth_nm", "min_seed_voxels")
#: The fit table's row order (and so ties' order in :func:`choose_row`): whatever order the
#: combinations are scored in.
TABLE_ORDER = ("smooth_nm", "seed_threshold_nm", "seed_dynamic_nm", "min_seed_voxels")


def choose_row(
    table: Sequence[dict[str, Any]], start: SegmentParams, radius: float
) -> dict[str, Any]:
    """The winning combination (see the module docstring); adds ``neighbourhood_f1`` to rows."""
    for row, value in zip(table, neighbourhood_f1(table), strict=True):
        row["neighbourhood_f1"] = value
    return min(
        contenders(table),
        key=lambda r: (
            -round(r["neighbourhood_f1"], 9),
            -round(r["f1"], 9),
            _nearness(r, start, radius),
        ),
    )


def contenders(table: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """The combinations whose F1 lies within ``SE_MULTIPLE`` standard errors of the best.

    The standard error is the binomial one of the best F1 over the boxes' true objects
    (``sqrt(F1 (1 - F1) / n)``); rows without counts (``tp``, ``fn``) all contend.
    """
    best = max(float(r["f1"]) for r in table)
    objects = int(table[0].get("tp", 0)) + int(table[0].get("fn", 0))
    if objects <= 0:
        return list(table)
    margin = SE_MULTIPLE * math.sqrt(best * (1.0 - best) / objects)
    return [r for r in table if float(r["f1"]) >= best - margin - 1e-12]


def neighbourhood_f1(table: Sequence[dict[str, Any]]) -> list[float]:
    """Each combination's F1 averaged with its grid neighbours' (one step along any axes)."""
    steps = {k: {v: i for i, v in enumerate(sorted({r[k] for r in table}))} for k in GRID_KEYS}
    where = np.array([[steps[k][r[k]] for k in GRID_KEYS] for r in table], dtype=np.int64)
    f1 = np.array([r["f1"] for r in table], dtype=np.float64)
    return [float(f1[np.abs(where - w).max(axis=1) <= 1].mean()) for w in where]


def _shifted(progress: ProgressCallback, name: str, offset: int, steps: int) -> ProgressCallback:
    """A callback reporting one part's steps as steps ``offset + done`` of ``steps``."""

    def report(stage: str, done: int, total: int) -> None:
        progress(name, offset + done, steps)

    return report


def _judge_inputs(
    predictions: Sequence[BoxPrediction], truths: Sequence[np.ndarray]
) -> tuple[list[Box], list[np.ndarray], list[tuple[int, ...]]]:
    """Per box: where it lies in its map, its truth padded to the map, the centroid margin."""
    boxes = [
        Box(p.name, tuple(s.start for s in p.box), tuple(s.stop - s.start for s in p.box))
        for p in predictions
    ]
    full_truths = []
    for pred, truth in zip(predictions, truths, strict=True):
        full = np.zeros(pred.distance.shape, dtype=np.uint32)
        full[pred.box] = truth
        full_truths.append(full)
    margins = [p.distance.shape for p in predictions]  # the whole context counts for centroids
    return boxes, full_truths, margins


def score_segment_params(
    predictions: Sequence[BoxPrediction],
    truths: Sequence[np.ndarray],
    voxel_size: Sequence[float],
    params: SegmentParams,
) -> dict[str, float]:
    """Object counts and scores (IoU >= 0.5, all boxes together) of one set of settings."""
    voxel_size = tuple(float(v) for v in voxel_size)
    _check_inputs(predictions, truths, len(voxel_size))
    counts = np.zeros(3, dtype=np.int64)
    judged = zip(predictions, *_judge_inputs(predictions, truths), strict=True)
    for pred, box, truth, margin in judged:
        labels = seeded_watershed(
            pred.distance,
            seed_threshold=params.seed_threshold_nm,
            min_seed_voxels=params.min_seed_voxels,
            smooth_sigma=smooth_sigma_voxels(params.smooth_nm, voxel_size),
            seed_dynamic=params.seed_dynamic_nm,
        )
        row = evaluate_box(labels, truth, box, margin=margin, iou_threshold=IOU_THRESHOLD)
        counts += (row["tp"], row["fp"], row["fn"])
    tp, fp, fn = (int(c) for c in counts)
    precision, recall, f1 = detection_scores(tp, fp, fn)
    return {"tp": tp, "fp": fp, "fn": fn, "precision": precision, "recall": recall, "f1": f1}


class _Crop:
    """A read-only window of a larger array (reads outside the window are never asked for)."""

    def __init__(self, array: Any, region: tuple[slice, ...]) -> None:
        self.array = array
        self.region = region  # spatial axes; channel axes before them are kept whole
        self.lead = tuple(int(n) for n in array.shape[: len(array.shape) - len(region)])
        self.shape = (*self.lead, *(s.stop - s.start for s in region))
        self.dtype = array.dtype
        self.ndim = len(self.shape)

    def __getitem__(self, key: Any) -> np.ndarray:
        if key is Ellipsis:
            key = (slice(None),) * self.ndim
        key = tuple(key)
        lead_key, spatial_key = key[: len(self.lead)], key[len(self.lead) :]
        pairs = zip(self.region, self.shape[len(self.lead) :], spatial_key, strict=True)
        within = [k.indices(n)[:2] for _, n, k in pairs]
        shifted = tuple(
            slice(r.start + a, r.start + b) for r, (a, b) in zip(self.region, within, strict=True)
        )
        return np.asarray(self.array[(*lead_key, *shifted)])


def context_voxels(radius_nm: float, voxel_size: Sequence[float]) -> tuple[int, ...]:
    """Context per axis around a box: ``CONTEXT_FACTOR`` x the median radius, in voxels."""
    return tuple(max(1, math.ceil(CONTEXT_FACTOR * radius_nm / float(v))) for v in voxel_size)


def predict_boxes(
    model: Any,
    boxes: Sequence[Any],
    context: Sequence[int],
    *,
    flips: bool | None = None,
    progress: ProgressCallback = no_progress,
) -> list[BoxPrediction]:
    """A loaded model's distance over each training box plus ``context`` voxels (in the image).

    The U-Net sees the real image around that region too (its margin), so the maps equal what
    whole-volume prediction gives there.
    """
    from pipeline.patches import box_region
    from pipeline.predict import predict_volume

    out: list[BoxPrediction] = []
    margin = model.config.margin
    scalings: dict[int, Any] = {}  # per image: a percentile model maps the whole image's range
    for i, box in enumerate(boxes):
        scaling = scalings.get(id(box.image))
        if scaling is None:
            scaling = scalings[id(box.image)] = model.normalisation.scaling(box.image)
        shape = tuple(int(n) for n in box.image.shape)[-(len(box.box) // 2) :]  # spatial
        inner = box_region(box.box, shape)
        region = tuple(
            slice(max(0, s.start - c), min(n, s.stop + c))
            for s, c, n in zip(inner, context, shape, strict=True)
        )
        outer = tuple(
            slice(max(0, s.start - m), min(n, s.stop + m))
            for s, m, n in zip(region, margin, shape, strict=True)
        )
        with tempfile.TemporaryDirectory(prefix="fit-predict-") as tmp:
            crop = _Crop(box.image, outer)
            result = predict_volume(model, crop, Path(tmp) / "p", scaling=scaling, flips=flips)
            import zarr

            distance = zarr.open_array(str(result.distance_path / "s0"), mode="r")
            within = tuple(
                slice(r.start - o.start, r.stop - o.start)
                for r, o in zip(region, outer, strict=True)
            )
            out.append(
                BoxPrediction(
                    distance=np.asarray(distance[within], dtype=np.float32),
                    box=tuple(
                        slice(s.start - r.start, s.stop - r.start)
                        for s, r in zip(inner, region, strict=True)
                    ),
                    name=box.name,
                )
            )
        progress("predict validation boxes", i + 1, len(boxes))
    return out


def fit_model_segment_params(
    model_path: Path,
    boxes: Sequence[Any],
    config: Any,
    *,
    flips: bool | None = None,
    progress: ProgressCallback = no_progress,
) -> SegmentFit:
    """After training: fit on the validation boxes and record the result in the model file.

    ``boxes`` and ``config`` are what :func:`pipeline.training.train` was given; the validation
    boxes are its split (all boxes when it kept none). When they hold fewer than
    ``MIN_FIT_OBJECTS`` objects the training boxes join them: the maps there are a little better
    than on new images (the network has seen them), but a few dozen objects cannot choose among
    hundreds of combinations (on ``dsb2018``, seven models: held-out F1 0.877 mean when fitted on
    the 93 objects of both parts, 0.845 on the 24 of the validation part alone). The start is
    derived from every box's ground truth, with the model's clamp.
    """
    from pipeline.model_io import load_model, record_segment_params
    from pipeline.patches import box_region
    from pipeline.torch_setup import configure_threads
    from pipeline.training import split_boxes

    def box_labels(box: Any) -> np.ndarray:
        return np.asarray(box.labels[box_region(box.box, box.labels.shape)])

    train_boxes, val_boxes = split_boxes(boxes, config.val_fraction, config.seed)
    fit_boxes, truths = list(val_boxes), [box_labels(b) for b in val_boxes]
    if sum(int(np.count_nonzero(np.unique(t))) for t in truths) < MIN_FIT_OBJECTS:
        fit_boxes += train_boxes
        truths += [box_labels(b) for b in train_boxes]
    voxel_size = tuple(float(v) for v in config.voxel_size)
    every = [box_labels(b) for b in boxes]
    configure_threads(config.num_threads)
    model = load_model(Path(model_path), config.device)
    start = replace(derive_segment_params(every, voxel_size), clamp_nm=model.clamp_nm)
    assert start.object_radius_nm is not None
    predictions = predict_boxes(
        model,
        fit_boxes,
        context_voxels(start.object_radius_nm, voxel_size),
        flips=flips,
        progress=progress,
    )
    _, fit = fit_segment_params(predictions, truths, voxel_size, start, progress=progress)
    record_segment_params(Path(model_path), fit.params, fit.summary())
    return fit


def write_fit_table(fit: SegmentFit, path: Path) -> None:
    """The tried combinations as CSV (one row each)."""
    import pandas as pd

    pd.DataFrame(fit.table).to_csv(path, index=False)
