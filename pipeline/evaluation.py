"""Evaluation of instance segmentations against ground truth in boxes: matching, P/R/F1, Dice.

Objects are matched one to one by intersection over union (IoU) with the Hungarian algorithm on
the pairs with IoU >= ``iou_threshold`` (0.5 by default, as in the DSB 2018 and StarDist matching;
above 0.5 a pair is the only possible partner of either object, so the result equals greedy
max-IoU matching). All overlaps come from one contingency table of the two label arrays, counted
with ``numpy.bincount`` after ``fastremap.renumber``: no Python loop touches voxels.

Boxes follow the published evaluation (Nathansen et al., SPIE 13152, 2024): ground truth exists
only inside a box; predictions are read in the box enlarged by a margin (8 um by default) so
objects crossing the border are seen whole. A predicted object is a true positive when matched to
a ground-truth object; an unmatched one is a false positive only if its centroid lies inside the
box; unmatched ones centred in the margin are ignored. Ground truth left unmatched is a false
negative. Dice is measured inside the box, at pixel level and at object level (the GlaS
challenge's object Dice, Sirinukunwattana et al., Med. Image Anal. 35, 2017).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import fastremap
import numpy as np
import numpy.typing as npt
import pandas as pd
from scipy.optimize import linear_sum_assignment

from pipeline.box_table import Box, box_table_read
from pipeline.errors import InvalidInputError
from pipeline.progress import ProgressCallback, no_progress

IntArray = npt.NDArray[np.int64]
FloatArray = npt.NDArray[np.float64]
# Labels renumbered 1..n by renumber_labels (any integer dtype: callers may narrow them).
RenumberedArray = npt.NDArray[np.integer[Any]]
# Above this many (pred, gt) cells the contingency table is counted sparsely with np.unique.
DENSE_TABLE_LIMIT = 1 << 24


class LabelVolume(Protocol):
    """What a label source needs: a shape and numpy-style slicing (numpy or zarr arrays)."""

    @property
    def shape(self) -> tuple[int, ...]: ...

    def __getitem__(self, key: Any) -> Any: ...


@dataclass(frozen=True)
class Overlaps:
    """Sizes of the objects of two label arrays and the voxel counts of their overlaps."""

    ids_a: IntArray  # object ids of a (0 excluded), ascending
    sizes_a: IntArray
    ids_b: IntArray
    sizes_b: IntArray
    pair_a: IntArray  # indices into ids_a / ids_b of every overlapping pair
    pair_b: IntArray
    pair_count: IntArray

    @property
    def pair_iou(self) -> FloatArray:
        inter = self.pair_count.astype(np.float64)
        union = self.sizes_a[self.pair_a] + self.sizes_b[self.pair_b] - inter
        iou: FloatArray = inter / union
        return iou


def renumber_labels(labels: npt.NDArray[Any]) -> tuple[IntArray, IntArray]:
    """Labels renumbered 1..n (0 kept) and the original id of each new number (index 0 = 0).

    New numbers follow the original ids' order, so results do not depend on voxel order.
    """
    if labels.dtype.kind not in "iu":
        raise InvalidInputError(f"label arrays must hold integers, not {labels.dtype}")
    if labels.dtype.kind == "i" and labels.size and labels.min() < 0:
        raise InvalidInputError("label arrays must not hold negative ids")
    renumbered, mapping = fastremap.renumber(np.ascontiguousarray(labels), preserve_zero=True)
    originals = np.zeros(len(mapping) + (0 if 0 in mapping else 1), dtype=np.int64)
    new_ids = np.fromiter(mapping.values(), dtype=np.int64, count=len(mapping))
    originals[new_ids] = np.fromiter(mapping.keys(), dtype=np.int64, count=len(mapping))
    # fastremap numbers by first appearance; renumber again so new ids follow the original order.
    order = np.argsort(originals[1:], kind="stable")
    rank = np.zeros(originals.size, dtype=np.int64)
    rank[1 + order] = np.arange(1, originals.size)
    return rank[renumbered], np.concatenate([[0], originals[1:][order]])


def overlap_table(a: npt.NDArray[Any], b: npt.NDArray[Any]) -> Overlaps:
    """Contingency table of two label arrays of the same shape (any dimension)."""
    if a.shape != b.shape:
        raise InvalidInputError(f"label arrays differ in shape: {a.shape} and {b.shape}")
    return overlaps_renumbered(*renumber_labels(a), *renumber_labels(b))


def overlaps_renumbered(
    ra: RenumberedArray, ids_a: IntArray, rb: RenumberedArray, ids_b: IntArray
) -> Overlaps:
    """:func:`overlap_table` of arrays already renumbered by :func:`renumber_labels`, so a caller
    comparing N volumes pairwise renumbers each once."""
    if ra.shape != rb.shape:
        raise InvalidInputError(f"label arrays differ in shape: {ra.shape} and {rb.shape}")
    na, nb = len(ids_a), len(ids_b)
    key = (ra.astype(np.int64, copy=False) * nb + rb).ravel()
    if na * nb <= DENSE_TABLE_LIMIT:
        counts = np.bincount(key, minlength=na * nb)
        cells = np.flatnonzero(counts)
        cell_counts = counts[cells]
    else:
        cells, cell_counts = np.unique(key, return_counts=True)
    ia, ib = np.divmod(cells, nb)
    sizes_a = np.bincount(ia, weights=cell_counts, minlength=na).astype(np.int64)
    sizes_b = np.bincount(ib, weights=cell_counts, minlength=nb).astype(np.int64)
    both = (ia > 0) & (ib > 0)
    return Overlaps(
        ids_a=ids_a[1:],
        sizes_a=sizes_a[1:],
        ids_b=ids_b[1:],
        sizes_b=sizes_b[1:],
        pair_a=ia[both] - 1,
        pair_b=ib[both] - 1,
        pair_count=cell_counts[both].astype(np.int64),
    )


@dataclass(frozen=True)
class Matching:
    """One-to-one matches between predicted (a) and ground-truth (b) objects."""

    overlaps: Overlaps
    matched_a: IntArray  # indices into overlaps.ids_a
    matched_b: IntArray
    iou: FloatArray

    @property
    def matched_ids_pred(self) -> IntArray:
        return self.overlaps.ids_a[self.matched_a]

    @property
    def matched_ids_gt(self) -> IntArray:
        return self.overlaps.ids_b[self.matched_b]


def match_objects(
    pred: npt.NDArray[Any], gt: npt.NDArray[Any], iou_threshold: float = 0.5
) -> Matching:
    """Match objects one to one, maximising total IoU over the pairs with IoU >= threshold."""
    return match_overlaps(overlap_table(pred, gt), iou_threshold)


def match_overlaps(ov: Overlaps, iou_threshold: float = 0.5) -> Matching:
    """:func:`match_objects` on a contingency table already counted."""
    if not 0 < iou_threshold <= 1:
        raise InvalidInputError("the IoU threshold must be in (0, 1]")
    iou = ov.pair_iou
    keep = iou >= iou_threshold
    pa, pb, piou = ov.pair_a[keep], ov.pair_b[keep], iou[keep]
    if piou.size == 0:
        empty = np.zeros(0, dtype=np.int64)
        return Matching(ov, empty, empty, np.zeros(0))
    # Hungarian matching on the candidate sub-matrix only (rows/cols that have a candidate).
    rows, row_of = np.unique(pa, return_inverse=True)
    cols, col_of = np.unique(pb, return_inverse=True)
    weight = np.zeros((rows.size, cols.size))
    weight[row_of, col_of] = piou
    r, c = linear_sum_assignment(weight, maximize=True)
    ok = weight[r, c] >= iou_threshold
    return Matching(ov, rows[r[ok]], cols[c[ok]], weight[r[ok], c[ok]])


def dice_pixel(pred: npt.NDArray[Any], gt: npt.NDArray[Any]) -> float:
    """Dice of the foregrounds (label != 0); 1.0 when both are empty."""
    p, g = np.asarray(pred) != 0, np.asarray(gt) != 0
    total = int(p.sum()) + int(g.sum())
    return 2.0 * int(np.count_nonzero(p & g)) / total if total else 1.0


def _best_match_dice(
    sizes_self: IntArray, sizes_other: IntArray, idx_self: IntArray, idx_other: IntArray,
    counts: IntArray,
) -> FloatArray:  # fmt: skip
    """Per object of 'self': Dice with the other object it overlaps most (0 if none)."""
    dice = np.zeros(sizes_self.size)
    if counts.size == 0:
        return dice
    # Sort by self index, then by count descending, then other index: first row per self wins.
    order = np.lexsort((idx_other, -counts, idx_self))
    s, o, n = idx_self[order], idx_other[order], counts[order]
    first = np.ones(s.size, dtype=bool)
    first[1:] = s[1:] != s[:-1]
    s, o, n = s[first], o[first], n[first]
    dice[s] = 2.0 * n / (sizes_self[s] + sizes_other[o])
    return dice


def dice_object(pred: npt.NDArray[Any], gt: npt.NDArray[Any]) -> float:
    """Object-level Dice (GlaS): size-weighted best-match Dice, averaged over both directions.

    D = 1/2 [sum_i w_i Dice(G_i, S*(G_i)) + sum_j w~_j Dice(G~*(S_j), S_j)], with
    w_i = |G_i| / sum|G|, w~_j = |S_j| / sum|S|, and * the object of the other segmentation that
    overlaps it most.
    """
    ov = overlap_table(pred, gt)
    if ov.sizes_a.size == 0 and ov.sizes_b.size == 0:
        return 1.0
    if ov.sizes_a.size == 0 or ov.sizes_b.size == 0:
        return 0.0
    d_gt = _best_match_dice(ov.sizes_b, ov.sizes_a, ov.pair_b, ov.pair_a, ov.pair_count)
    d_pred = _best_match_dice(ov.sizes_a, ov.sizes_b, ov.pair_a, ov.pair_b, ov.pair_count)
    w_gt = ov.sizes_b / ov.sizes_b.sum()
    w_pred = ov.sizes_a / ov.sizes_a.sum()
    return float(0.5 * ((w_gt * d_gt).sum() + (w_pred * d_pred).sum()))


def detection_scores(tp: int, fp: int, fn: int) -> tuple[float, float, float]:
    """Precision, recall, F1; an empty denominator scores 1.0 only if nothing was missed/wrong."""
    precision = tp / (tp + fp) if tp + fp else float(fn == 0)
    recall = tp / (tp + fn) if tp + fn else float(fp == 0)
    f1 = 2 * tp / (2 * tp + fp + fn) if tp + fp + fn else 1.0
    return precision, recall, f1


def boxes_read_csv(path: Path, ndim: int = 3) -> list[Box]:
    """Boxes of a box table (:mod:`pipeline.box_table`), not checked against an image."""
    return box_table_read(path, ndim=ndim)


def semantic_dice(
    predicted: LabelVolume,
    truth: LabelVolume,
    boxes: Sequence[Box],
    *,
    threshold: float = 0.5,
) -> tuple[pd.DataFrame, dict[str, float]]:
    """Pixel- and object-level Dice of a semantic head inside each box: ``predicted`` (a
    probability map, foreground where it exceeds ``threshold``) against ``truth`` (a mask,
    foreground where non-zero); pixel Dice per box and pooled over all boxes (1.0 where both are
    empty), object Dice (:func:`dice_object`, GlaS) per box and its mean over the boxes. The
    objects are the connected components of each side's foreground (a truth given as instance
    labels keeps its own ids, so touching objects stay apart)."""
    if tuple(predicted.shape) != tuple(truth.shape):
        raise InvalidInputError(
            f"prediction and mask differ in shape: {predicted.shape} and {truth.shape}"
        )
    if not boxes:
        raise InvalidInputError("no boxes to evaluate")
    import cc3d

    rows = []
    for box in boxes:
        pred = np.asarray(predicted[box.slices()]) > threshold
        truth_values = np.asarray(truth[box.slices()])
        gt = truth_values != 0
        inter = int(np.count_nonzero(pred & gt))
        total = int(np.count_nonzero(pred)) + int(np.count_nonzero(gt))
        binary_truth = set(np.unique(truth_values).tolist()) <= {0, 1}
        truth_objects = cc3d.connected_components(gt) if binary_truth else truth_values
        rows.append(
            {
                "box": box.name,
                "dice_pixel": 2.0 * inter / total if total else 1.0,
                "dice_object": dice_object(cc3d.connected_components(pred), truth_objects),
                "foreground_intersection": inter,
                "foreground_sum": total,
            }
        )
    table = pd.DataFrame(rows)
    total = int(table["foreground_sum"].sum())
    pooled = 2.0 * int(table["foreground_intersection"].sum()) / total if total else 1.0
    return table, {
        "dice_pixel": pooled,
        "dice_pixel_mean_over_boxes": float(table["dice_pixel"].mean()),
        "dice_object_mean_over_boxes": float(table["dice_object"].mean()),
    }


def margin_voxels(margin_um: float, voxel_size_nm: Sequence[float]) -> tuple[int, ...]:
    """The margin in whole voxels per axis (rounded up, so at least ``margin_um`` is covered)."""
    if margin_um < 0:
        raise InvalidInputError("the margin must not be negative")
    if min(voxel_size_nm) <= 0:
        raise InvalidInputError("voxel sizes must be positive")
    return tuple(math.ceil(margin_um * 1000.0 / v - 1e-9) for v in voxel_size_nm)


def _centroids(labels: IntArray, n: int) -> FloatArray:
    """Centroid (index coordinates) of labels 1..n in a renumbered array; row k-1 for label k."""
    flat = np.flatnonzero(labels)
    ids = labels.ravel()[flat]
    sizes = np.bincount(ids, minlength=n + 1)[1:].astype(np.float64)
    coords = np.unravel_index(flat, labels.shape)
    out = np.empty((n, labels.ndim))
    for axis, c in enumerate(coords):
        out[:, axis] = np.bincount(ids, weights=c, minlength=n + 1)[1:] / np.maximum(sizes, 1)
    return out


def evaluate_box(
    pred: LabelVolume,
    gt: LabelVolume,
    box: Box,
    *,
    margin: Sequence[int],
    iou_threshold: float = 0.5,
) -> dict[str, Any]:
    """Counts and scores of one box (see the module docstring for the margin rule)."""
    shape = tuple(pred.shape)
    outer = tuple(
        slice(max(0, s - m), min(n, s + size + m))
        for s, size, m, n in zip(box.start, box.size, margin, shape, strict=True)
    )
    inner_box = tuple(
        slice(max(0, s), min(n, s + size))
        for s, size, n in zip(box.start, box.size, shape, strict=True)
    )
    if any(sl.stop <= sl.start for sl in inner_box):
        raise InvalidInputError(f"box {box.name} lies outside the label volume {shape}")
    pred_outer = np.asarray(pred[outer])
    gt_box = np.asarray(gt[inner_box])
    inner = tuple(
        slice(b.start - o.start, b.stop - o.start) for b, o in zip(inner_box, outer, strict=True)
    )
    pred_box = pred_outer[inner]
    matching = match_objects(pred_box, gt_box, iou_threshold)
    ov = matching.overlaps
    # Centroids of every predicted object touching the box, measured over the enlarged region.
    renumbered, originals = renumber_labels(pred_outer)
    centroids = _centroids(renumbered, len(originals) - 1)
    matched = np.zeros(ov.ids_a.size, dtype=bool)
    matched[matching.matched_a] = True
    unmatched = ov.ids_a[~matched]
    c = centroids[np.searchsorted(originals[1:], unmatched)]
    lo = np.array([sl.start for sl in inner], dtype=np.float64)
    hi = np.array([sl.stop for sl in inner], dtype=np.float64)
    # Voxel k spans [k - 0.5, k + 0.5) around its centre k.
    centred_inside = np.all((c >= lo - 0.5) & (c < hi - 0.5), axis=1)
    fp = int(centred_inside.sum())
    ignored = int(unmatched.size) - fp
    tp = int(matching.matched_a.size)
    fn = int(ov.ids_b.size) - tp
    precision, recall, f1 = detection_scores(tp, fp, fn)
    inter = int(np.count_nonzero((pred_box != 0) & (gt_box != 0)))
    fg_sum = int(np.count_nonzero(pred_box)) + int(np.count_nonzero(gt_box))
    return {
        "box": box.name,
        "n_gt": int(ov.ids_b.size),
        "n_pred": int(ov.ids_a.size),
        "tp": tp,
        "fp": fp,
        "fn": fn,
        "ignored_in_margin": ignored,
        "precision": precision,
        "recall": recall,
        "f1": f1,
        "mean_matched_iou": float(matching.iou.mean()) if tp else float("nan"),
        "dice_pixel": 2.0 * inter / fg_sum if fg_sum else 1.0,
        "dice_object": dice_object(pred_box, gt_box),
        "foreground_intersection": inter,
        "foreground_sum": fg_sum,
    }


def evaluate_boxes(
    pred: LabelVolume,
    gt: LabelVolume,
    boxes: Sequence[Box],
    *,
    voxel_size_nm: Sequence[float],
    margin_um: float = 8.0,
    iou_threshold: float = 0.5,
    progress: ProgressCallback = no_progress,
) -> tuple[pd.DataFrame, dict[str, float]]:
    """Per-box table and aggregate (micro- and macro-averaged) scores over all boxes."""
    if tuple(pred.shape) != tuple(gt.shape):
        raise InvalidInputError(
            f"prediction and ground truth differ in shape: {pred.shape} and {gt.shape}"
        )
    ndim = len(pred.shape)
    if len(voxel_size_nm) != ndim:
        raise InvalidInputError(f"give one voxel size per axis ({ndim}), not {len(voxel_size_nm)}")
    if not boxes:
        raise InvalidInputError("no boxes to evaluate")
    for box in boxes:
        if len(box.start) != ndim:
            raise InvalidInputError(f"box {box.name} has {len(box.start)} axes, labels have {ndim}")
    margin = margin_voxels(margin_um, voxel_size_nm)
    rows = []
    for k, box in enumerate(boxes):
        rows.append(evaluate_box(pred, gt, box, margin=margin, iou_threshold=iou_threshold))
        progress("evaluate", k + 1, len(boxes))
    table = pd.DataFrame(rows)
    return table, aggregate_scores(table)


def aggregate_scores(table: pd.DataFrame) -> dict[str, float]:
    """Micro scores (counts summed over boxes), macro means of per-box scores, pooled Dice."""
    tp, fp, fn = (int(table[c].sum()) for c in ("tp", "fp", "fn"))
    precision, recall, f1 = detection_scores(tp, fp, fn)
    fg_sum = int(table["foreground_sum"].sum())
    return {
        "boxes": float(len(table)),
        "tp": float(tp),
        "fp": float(fp),
        "fn": float(fn),
        "precision": precision,
        "recall": recall,
        "f1": f1,
        "precision_mean_over_boxes": float(table["precision"].mean()),
        "recall_mean_over_boxes": float(table["recall"].mean()),
        "f1_mean_over_boxes": float(table["f1"].mean()),
        "dice_pixel": 2.0 * int(table["foreground_intersection"].sum()) / fg_sum if fg_sum else 1.0,
        "dice_object_mean_over_boxes": float(table["dice_object"].mean()),
    }
