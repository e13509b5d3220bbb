"""Which detections a campaign takes, and in which order its queue hands them out.

Pure numpy over the columns of the selected detections, so that a campaign of 100,000 items is
chosen and ordered in one pass when it is created, and the result depends only on the stored
parameters and seed (the same campaign settings give the same queue).

- Sample: a simple random sample of K without replacement (``numpy.random.Generator.choice``)
  from the population (all detections, or those passing the filter), taken from the detections
  in segment-id order: every detection has the same chance K/n, so the verdicts on the sample
  estimate the precision of the whole population without bias.
- Orders: ``random`` (a seeded permutation); ``uncertainty`` (nearest the filter's thresholds
  first, measured as the share of the selected detections lying between a detection and the
  threshold, so that volume and sphericity distances are comparable; without thresholds, the
  lowest ``mean_probability`` first); ``region`` (along a Z-order curve over blocks of
  ``REGION_BLOCK_VOXELS``, so that consecutive items are neighbours and the viewer's chunks stay
  cached). Ties are broken by the seeded permutation.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from webapp.core.errors import InvalidRequest

REGION_BLOCK_VOXELS = 64
_MORTON_BITS = 21  # three 21-bit block coordinates interleave into 63 bits

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]


@dataclass(frozen=True)
class Candidates:
    """Columns of the detections a campaign may take, one entry per detection (same order)."""

    ids: IntArray
    segment_ids: IntArray
    volume: FloatArray
    sphericity: FloatArray  # NaN where unknown
    mean_probability: FloatArray  # NaN where unknown
    centroids: FloatArray  # (n, 3), voxels z y x

    def take(self, index: IntArray) -> Candidates:
        return Candidates(
            self.ids[index],
            self.segment_ids[index],
            self.volume[index],
            self.sphericity[index],
            self.mean_probability[index],
            self.centroids[index],
        )

    def __len__(self) -> int:
        return len(self.ids)


def sample_indices(n: int, sample_size: int, seed: int) -> IntArray:
    """Indices (sorted) of a simple random sample of ``sample_size`` out of ``n``."""
    if sample_size < 1:
        raise InvalidRequest("sample_size must be at least 1.")
    if sample_size > n:
        raise InvalidRequest(
            f"sample_size {sample_size} is larger than the {n} detections to sample from."
        )
    rng = np.random.default_rng(seed)
    chosen = rng.choice(n, size=sample_size, replace=False)
    return np.sort(chosen.astype(np.int64))


def _ecdf_distance(values: FloatArray, threshold: float) -> FloatArray:
    """Share of the (finite) values lying between each value and ``threshold``; NaN -> inf."""
    finite = np.sort(values[np.isfinite(values)])
    if finite.size == 0:
        return np.full(values.shape, np.inf)
    at_value = np.searchsorted(finite, values, side="right") / finite.size
    at_threshold = np.searchsorted(finite, threshold, side="right") / finite.size
    distance = np.abs(at_value - at_threshold)
    return np.where(np.isfinite(values), distance, np.inf)


def _morton(blocks: IntArray) -> IntArray:
    """Z-order code of non-negative block coordinates (n, 3), 21 bits per axis."""
    code = np.zeros(len(blocks), dtype=np.int64)
    for bit in range(_MORTON_BITS):
        for axis in range(3):
            code |= ((blocks[:, axis] >> bit) & 1) << (3 * bit + (2 - axis))
    return code


def queue_keys(
    candidates: Candidates,
    order: str,
    seed: int,
    *,
    volume_min: float | None = None,
    sphericity_min: float | None = None,
) -> IntArray:
    """Each detection's place in the queue (0 first), a permutation of ``range(n)``."""
    n = len(candidates)
    tiebreak = np.random.default_rng(seed).permutation(n).astype(np.int64)
    if order == "random":
        primary: list[npt.NDArray[np.generic]] = []
    elif order == "uncertainty":
        distances = []
        if volume_min is not None:
            distances.append(_ecdf_distance(candidates.volume, volume_min))
        if sphericity_min is not None:
            distances.append(_ecdf_distance(candidates.sphericity, sphericity_min))
        if distances:
            primary = [np.minimum.reduce(distances)]
        elif np.isfinite(candidates.mean_probability).any():
            probability = candidates.mean_probability
            primary = [np.where(np.isfinite(probability), probability, np.inf)]
        else:
            raise InvalidRequest(
                "The uncertainty order needs filter thresholds (volume_min or sphericity_min) "
                "or detections with a mean_probability; this layer's have none."
            )
    elif order == "region":
        blocks = np.floor(candidates.centroids / REGION_BLOCK_VOXELS).astype(np.int64)
        blocks = np.clip(blocks - blocks.min(axis=0, initial=0), 0, 2**_MORTON_BITS - 1)
        primary = [_morton(blocks)]
    else:
        raise InvalidRequest(f"Unknown order {order[:20]!r}; use random, uncertainty or region.")
    # np.lexsort sorts by the last key first.
    ranking = np.lexsort([tiebreak, *reversed(primary)])
    keys = np.empty(n, dtype=np.int64)
    keys[ranking] = np.arange(n, dtype=np.int64)
    return keys
