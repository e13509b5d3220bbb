"""Which boxes to annotate next: the model's uncertainty per box of the image (active learning).

A box where the model's foreground probability sits near 0.5 is one it cannot decide; painting
its objects is meant to teach it more than a box it already segments confidently
(``bench/active_learning.py`` measures whether it does: on the synthetic fluorescence set, not
yet better than random boxes; bench/README.md). The uncertainty
of a voxel is the binary entropy of its probability, in bits (1 at p = 0.5, 0 at p = 0 or 1);
a box's is the mean over its voxels.

Scoring happens in two passes so that a site can answer "suggest K boxes" at once on any image
size: :func:`entropy_cells` reads the probability map once, block by block (a run does it on its
worker right after predicting), and keeps the entropy summed over cells of ``cell`` voxels per
axis with their voxel counts (a 2048^3 image in 16^3 cells is 2 Mi cells, 16 MiB); then
:func:`box_scores` scores any boxes from the cells through a summed-volume table: exact for
boxes on the cell grid, cell-rounded otherwise. :func:`suggest_boxes` ranks candidate boxes,
by uncertainty alone or spread out (:func:`spread_order`: neither has trained better models
than random boxes on the synthetic set yet, bench/README.md).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt
from scipy.stats import rankdata

from pipeline.blocks import ReadableArray
from pipeline.errors import InvalidInputError
from pipeline.progress import ProgressCallback, no_progress
from pipeline.task_boxes import TaskBox

CELL = 16
CELLS_FILE = "uncertainty_cells.npz"
# Probabilities are clipped this far from 0 and 1 before the logarithms.
EPSILON = 1e-6


@dataclass(frozen=True)
class EntropyCells:
    """Per cell (``cell`` voxels per axis, the last ones clipped by the image) the summed
    voxel entropy in bits and the number of voxels."""

    cell: int
    shape: tuple[int, ...]  # the image's, in voxels
    sums: npt.NDArray[np.float64]
    counts: npt.NDArray[np.int64]

    def save(self, path: Path) -> None:
        np.savez_compressed(
            path, cell=self.cell, shape=np.asarray(self.shape), sums=self.sums, counts=self.counts
        )

    @classmethod
    def load(cls, path: Path) -> EntropyCells:
        try:
            with np.load(path) as data:
                return cls(
                    int(data["cell"]),
                    tuple(int(n) for n in data["shape"]),
                    data["sums"].astype(np.float64),
                    data["counts"].astype(np.int64),
                )
        except (OSError, KeyError, ValueError) as exc:
            raise InvalidInputError(f"{path}: not an uncertainty cell file ({exc})") from None


def voxel_entropy(probability: npt.ArrayLike) -> npt.NDArray[np.float64]:
    """Binary entropy in bits of each probability (NaN, e.g. unpredicted voxels, counts 0)."""
    p = np.clip(np.nan_to_num(np.asarray(probability, np.float64), nan=0.0), EPSILON, 1 - EPSILON)
    entropy: npt.NDArray[np.float64] = -(p * np.log2(p) + (1 - p) * np.log2(1 - p))
    return entropy


def _cell_sums(block: npt.NDArray[np.float64], cell: int) -> npt.NDArray[np.float64]:
    """Sum ``block`` over cells of ``cell`` voxels per axis (edge cells partial)."""
    out = block
    for axis in range(block.ndim):
        n = out.shape[axis]
        starts = np.arange(0, n, cell)
        out = np.add.reduceat(out, starts, axis=axis)
    return out


def entropy_cells(
    probability: ReadableArray,
    *,
    cell: int = CELL,
    slab_cells: int = 4,
    progress: ProgressCallback = no_progress,
) -> EntropyCells:
    """One pass over a probability map (z, y, x), ``slab_cells`` cells of z at a time."""
    shape = tuple(int(n) for n in probability.shape)
    if len(shape) != 3 or min(shape) < 1:
        raise InvalidInputError(f"a 3D probability map is needed, got shape {shape}")
    if cell < 1:
        raise InvalidInputError("cell must be at least 1 voxel")
    grid = tuple(-(-n // cell) for n in shape)
    sums = np.zeros(grid, np.float64)
    counts = np.zeros(grid, np.int64)
    step = cell * max(1, slab_cells)
    total = -(-shape[0] // step)
    for i, z0 in enumerate(range(0, shape[0], step)):
        z1 = min(shape[0], z0 + step)
        block = voxel_entropy(probability[z0:z1])
        c0 = z0 // cell
        sums[c0 : c0 + -(-(z1 - z0) // cell)] = _cell_sums(block, cell)
        ones = np.ones(block.shape, np.int64)
        counts[c0 : c0 + -(-(z1 - z0) // cell)] = _cell_sums(ones, cell)  # type: ignore[arg-type]
        progress("uncertainty", i + 1, total)
    return EntropyCells(cell, shape, sums, counts)


def _summed(table: npt.NDArray[np.generic]) -> npt.NDArray[np.float64]:
    """Summed-volume table with a zero border: S[i, j, k] = sum of table[:i, :j, :k]."""
    out = np.zeros(tuple(n + 1 for n in table.shape), np.float64)
    out[1:, 1:, 1:] = table.cumsum(0).cumsum(1).cumsum(2)
    return out


def _box_total(table: npt.NDArray[np.float64], lo: Sequence[int], hi: Sequence[int]) -> float:
    (a, b, c), (d, e, f) = lo, hi
    return float(
        table[d, e, f] - table[a, e, f] - table[d, b, f] - table[d, e, c]
        + table[a, b, f] + table[a, e, c] + table[d, b, c] - table[a, b, c]
    )  # fmt: skip


def box_scores(cells: EntropyCells, boxes: Sequence[TaskBox]) -> npt.NDArray[np.float64]:
    """Mean voxel entropy (bits) of each box, from the cells it overlaps."""
    sums, counts = _summed(cells.sums), _summed(cells.counts)
    grid = cells.sums.shape
    scores = np.zeros(len(boxes), np.float64)
    for i, box in enumerate(boxes):
        lo = [min(g - 1, max(0, s // cells.cell)) for s, g in zip(box.start, grid, strict=True)]
        hi = [
            min(g, max(low + 1, -(-(s + n) // cells.cell)))
            for s, n, g, low in zip(box.start, box.size, grid, lo, strict=True)
        ]
        count = _box_total(counts, lo, hi)
        scores[i] = _box_total(sums, lo, hi) / count if count > 0 else 0.0
    return scores


@dataclass(frozen=True)
class Suggestion:
    box: TaskBox
    score: float  # mean voxel entropy, bits
    rank: int  # 1 = most uncertain


def suggest_boxes(
    cells: EntropyCells,
    candidates: Sequence[TaskBox],
    count: int,
    *,
    spread_from: Sequence[TaskBox] | None = None,
    voxel_size: Sequence[float] | None = None,
) -> list[Suggestion]:
    """The ``count`` most uncertain candidates, most uncertain first (ties: candidate order).

    With ``spread_from`` (the boxes annotated already, maybe none) the choice is greedy and
    spread out: each next box maximises its uncertainty rank (1 for the most uncertain, near 0
    for the least) times its distance to the nearest box annotated or chosen so far (divided by
    the largest such distance), so the boxes do not crowd one corner (:func:`spread_order`).
    Distances are between box centres, in units of ``voxel_size`` (voxels without).
    """
    if count < 1:
        raise InvalidInputError("count must be at least 1")
    scores = box_scores(cells, candidates)
    if spread_from is None:
        order = [int(i) for i in np.argsort(-scores, kind="stable")[:count]]
    else:
        order = spread_order(scores, candidates, spread_from, count, voxel_size)
    return [Suggestion(candidates[i], float(scores[i]), rank + 1) for rank, i in enumerate(order)]


def _centres(boxes: Sequence[TaskBox], scale: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    return (
        np.asarray(
            [[s + n / 2 for s, n in zip(b.start, b.size, strict=True)] for b in boxes], np.float64
        ).reshape(-1, 3)
        * scale
    )


def spread_order(
    scores: npt.ArrayLike,
    candidates: Sequence[TaskBox],
    annotated: Sequence[TaskBox],
    count: int,
    voxel_size: Sequence[float] | None = None,
) -> list[int]:
    """Indices of ``count`` candidates chosen greedily by uncertainty rank times distance to
    the nearest box annotated or chosen already (:func:`suggest_boxes`). With nothing
    annotated the first pick is the most uncertain box."""
    values = np.asarray(scores, np.float64)
    n = len(candidates)
    if n == 0:
        return []
    # Rank 1 for the most uncertain down to 1/n for the least; equal scores (e.g. boxes of
    # background only) share the better rank, so input order does not rank them.
    rank = rankdata(values, method="max") / n
    scale = np.asarray(voxel_size if voxel_size is not None else (1.0, 1.0, 1.0), np.float64)
    centres = _centres(candidates, scale)
    nearest = np.full(n, np.inf)
    if annotated:
        taken = _centres(annotated, scale)
        nearest = np.min(np.linalg.norm(centres[:, None] - taken[None], axis=2), axis=1)
    chosen: list[int] = []
    free = np.ones(n, bool)
    for _ in range(min(count, n)):
        finite = np.isfinite(nearest) & free
        if finite.any():
            far = nearest / max(float(nearest[finite].max()), 1e-12)
            far[~np.isfinite(nearest)] = 1.0
        else:
            far = np.ones(n)
        gain = np.where(free, rank * far, -np.inf)
        pick = int(np.argmax(gain))  # of equals, the first in input order
        chosen.append(pick)
        free[pick] = False
        nearest = np.minimum(nearest, np.linalg.norm(centres - centres[pick], axis=1))
    return chosen


#: An object below this fraction, or above its inverse times, of the median volume is odd: a
#: fragment or a merge, the model's object-level mistakes.
ODD_FRACTION = 0.5


def odd_objects(volumes: npt.ArrayLike, fraction: float = ODD_FRACTION) -> npt.NDArray[np.bool_]:
    """Which objects are odd for their size: below ``fraction`` or above 1/``fraction`` of the
    median volume of all of them (fragments and merges)."""
    sizes = np.asarray(volumes, dtype=np.float64)
    if sizes.size == 0:
        return np.zeros(0, dtype=bool)
    if not 0 < fraction < 1:
        raise InvalidInputError(f"fraction must lie between 0 and 1, got {fraction}")
    median = float(np.median(sizes))
    odd: npt.NDArray[np.bool_] = (sizes < fraction * median) | (sizes > median / fraction)
    return odd


def odd_object_scores(
    centroids: npt.ArrayLike, odd: npt.ArrayLike, boxes: Sequence[TaskBox]
) -> npt.NDArray[np.float64]:
    """Per box: the odd objects whose centroid (z, y, x voxels) lies in it, plus a thousandth
    per object there (among equals, the box with more objects teaches more)."""
    points = np.asarray(centroids, dtype=np.float64).reshape(-1, 3)
    flags = np.asarray(odd, dtype=bool)
    if flags.shape != (len(points),):
        raise InvalidInputError("one odd flag per centroid is needed")
    scores = np.zeros(len(boxes), np.float64)
    for i, box in enumerate(boxes):
        lo = np.asarray(box.start, dtype=np.float64)
        inside = np.all((points >= lo) & (points < lo + np.asarray(box.size)), axis=1)
        scores[i] = float(np.count_nonzero(inside & flags)) + 1e-3 * np.count_nonzero(inside)
    return scores


def cells_of_map(
    path: Path, *, cell: int = CELL, progress: ProgressCallback = no_progress
) -> EntropyCells:
    """:func:`entropy_cells` of a probability map on disk (any format ``open_volume`` reads;
    a 2D map is one slice deep)."""
    from pipeline.volumes import open_volume

    array = open_volume(path, 0, what="probability map").array
    if len(array.shape) == 2:
        array = np.asarray(array[...])[None]
    return entropy_cells(array, cell=cell, progress=progress)
