"""Intensity normalisation of a whole volume, as a model file records it.

Two microscope sessions of one study can differ threefold in brightness, so a model normalises
each volume it sees by that volume's own robust range: ``percentile`` maps the ``low`` and
``high`` percentiles (default 1 and 99.8) of the volume to 0 and 1 (no clipping: bright objects go
above 1). ``meanstd`` subtracts a fixed mean and divides by a fixed standard deviation, both
measured on the training image; it is what model files written before percentile normalisation
hold, and stays selectable.

The percentiles come from a bounded sample (:func:`sample_intensities`): the whole volume when it
has at most ``max_voxels`` voxels, otherwise that many voxels in blocks (chunk-aligned when the
array has chunks) picked at random by a fixed seed, so the same volume always gives the same
values and a huge zarr array costs a bounded read (measured: a 256 x 512 x 512 uint16 zarr in 64^3
chunks took 0.7 s on a loaded 2-core machine, within one grey level of the exact percentiles,
which took 2.3 s over the array in memory). Voxels equal to ``ignore_value`` (default 0)
are left out of the sample: masked or padded volumes hold exact zeros outside the tissue, which
would otherwise pull the low percentile to 0 (and, when they are most of the volume, the high
one too). An image whose real background is 0 loses little by this: its low percentile then
comes from the darkest non-zero voxels, which lie next to 0. When fewer than ``MIN_KEPT_VOXELS``
voxels remain, the whole sample is used.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

from pipeline.blocks import ReadableArray
from pipeline.errors import InvalidInputError

Method = Literal["percentile", "meanstd"]
DEFAULT_PERCENTILES = (1.0, 99.8)
DEFAULT_SAMPLE_VOXELS = 1 << 22  # ~4 M voxels: percentiles stable to the third digit
MIN_BLOCKS = 64  # spread the sample over at least this many places in the volume
DEFAULT_BLOCK_EDGE = {2: 256, 3: 32}
MIN_KEPT_VOXELS = 1000
SAMPLE_SEED = 0


@dataclass(frozen=True)
class Scaling:
    """The affine map applied to a volume: ``(x - offset) / scale``."""

    offset: float
    scale: float

    def apply(self, values: npt.ArrayLike) -> npt.NDArray[np.float32]:
        data = np.asarray(values, dtype=np.float32)
        out: npt.NDArray[np.float32] = (data - np.float32(self.offset)) / np.float32(self.scale)
        return out


@dataclass(frozen=True)
class Normalisation:
    """How a model normalises its input; ``values`` are the training image's.

    ``percentile``: ``values`` are the training image's (low, high) percentile values, kept for
    reference (each volume is normalised by its own). ``meanstd``: ``values`` are the (mean, std)
    applied to every volume; when training with ``values`` unset they are measured on the boxes.
    """

    method: Method = "percentile"
    percentiles: tuple[float, float] = DEFAULT_PERCENTILES
    ignore_value: float | None = 0.0
    max_voxels: int = DEFAULT_SAMPLE_VOXELS
    values: tuple[float, float] | None = None

    def __post_init__(self) -> None:
        if self.method not in ("percentile", "meanstd"):
            raise InvalidInputError(
                f"normalisation method must be percentile or meanstd, not {self.method!r}"
            )
        low, high = self.percentiles
        if not 0.0 <= low < high <= 100.0:
            raise InvalidInputError(
                f"normalisation percentiles {self.percentiles} need 0 <= low < high <= 100"
            )
        if self.max_voxels < MIN_KEPT_VOXELS:
            raise InvalidInputError(f"normalisation max_voxels must be >= {MIN_KEPT_VOXELS}")
        if self.method == "meanstd" and self.values is not None and not self.values[1] > 0:
            raise InvalidInputError("normalisation meanstd needs a positive std")

    def scaling(self, array: ReadableArray) -> Scaling:
        """The map for ``array``: its own percentiles, or the fixed mean and std."""
        if self.method == "meanstd":
            if self.values is None:
                raise InvalidInputError("normalisation meanstd has no mean and std recorded")
            return Scaling(float(self.values[0]), float(self.values[1]))
        return percentile_scaling(array, self.percentiles, self.ignore_value, self.max_voxels)

    def to_dict(self) -> dict[str, Any]:
        """Plain values, as a model file and a run manifest hold them."""
        return {
            "method": self.method,
            "percentiles": [float(p) for p in self.percentiles],
            "ignore_value": None if self.ignore_value is None else float(self.ignore_value),
            "max_voxels": int(self.max_voxels),
            "values": None if self.values is None else [float(v) for v in self.values],
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Normalisation:
        known = {"method", "percentiles", "ignore_value", "max_voxels", "values"}
        unknown = set(data) - known
        if unknown:
            raise InvalidInputError(f"unknown normalisation keys: {', '.join(sorted(unknown))}")
        values = dict(data)
        for key in ("percentiles", "values"):
            if values.get(key) is not None:
                pair = tuple(float(v) for v in values[key])
                if len(pair) != 2:
                    raise InvalidInputError(f"normalisation {key} needs two values")
                values[key] = pair
        return cls(**values)

    @classmethod
    def mean_std(cls, mean: float, std: float) -> Normalisation:
        """A fixed mean and std: the behaviour of model files without a normalisation entry."""
        return cls(method="meanstd", values=(float(mean), float(std)))


def _block_shape(array: ReadableArray, max_voxels: int) -> tuple[int, ...]:
    """Chunk-sized blocks (whole chunks read once) or a default edge, small enough that the
    sample spreads over at least ``MIN_BLOCKS`` places."""
    shape = tuple(int(n) for n in array.shape)
    chunks = getattr(array, "chunks", None)
    if isinstance(chunks, tuple) and len(chunks) == len(shape) and all(
        isinstance(c, int) and c > 0 for c in chunks
    ):  # fmt: skip
        block = [min(int(c), n) for c, n in zip(chunks, shape, strict=True)]
    else:
        edge = DEFAULT_BLOCK_EDGE.get(len(shape), 32)
        block = [min(edge, n) for n in shape]
    limit = max(1, max_voxels // MIN_BLOCKS)
    while math.prod(block) > limit and max(block) > 1:
        axis = int(np.argmax(block))
        block[axis] = (block[axis] + 1) // 2
    return tuple(block)


def sample_intensities(
    array: ReadableArray, max_voxels: int = DEFAULT_SAMPLE_VOXELS, seed: int = SAMPLE_SEED
) -> npt.NDArray[np.float32]:
    """At most about ``max_voxels`` voxel values of ``array`` (1-D float32), see the module doc.

    Deterministic for a given array, ``max_voxels`` and ``seed``; memory is bounded by the
    sample (each block is read on its own).
    """
    shape = tuple(int(n) for n in array.shape)
    if not shape or min(shape) < 1:
        raise InvalidInputError(f"cannot sample intensities of an empty array {shape}")
    total = math.prod(shape)
    if total <= max_voxels:
        whole = tuple(slice(0, n) for n in shape)  # array-likes need not take an Ellipsis
        return np.asarray(array[whole], dtype=np.float32).ravel()
    block = _block_shape(array, max_voxels)
    grid = tuple(math.ceil(n / b) for n, b in zip(shape, block, strict=True))
    n_grid = math.prod(grid)
    wanted = min(n_grid, max(1, max_voxels // math.prod(block)))
    picked = np.sort(np.random.default_rng(seed).choice(n_grid, size=wanted, replace=False))
    parts = []
    for flat in picked:
        index = np.unravel_index(int(flat), grid)
        region = tuple(
            slice(int(i) * b, min((int(i) + 1) * b, n))
            for i, b, n in zip(index, block, shape, strict=True)
        )
        parts.append(np.asarray(array[region], dtype=np.float32).ravel())
    return np.concatenate(parts)


def robust_range(
    sample: npt.NDArray[np.floating[Any]],
    percentiles: Sequence[float] = DEFAULT_PERCENTILES,
    ignore_value: float | None = 0.0,
) -> tuple[float, float]:
    """The low and high percentiles of ``sample``, ``ignore_value`` and non-finite values left
    out (unless fewer than ``MIN_KEPT_VOXELS`` would remain)."""
    finite = sample[np.isfinite(sample)]
    if finite.size == 0:
        raise InvalidInputError("the volume has no finite intensity to normalise by")
    kept = finite
    if ignore_value is not None:
        rest = finite[finite != ignore_value]
        if rest.size >= MIN_KEPT_VOXELS:
            kept = rest
    low, high = np.percentile(kept, [float(percentiles[0]), float(percentiles[1])])
    return float(low), float(high)


def percentile_scaling(
    array: ReadableArray,
    percentiles: Sequence[float] = DEFAULT_PERCENTILES,
    ignore_value: float | None = 0.0,
    max_voxels: int = DEFAULT_SAMPLE_VOXELS,
) -> Scaling:
    """Map the volume's low percentile to 0 and its high one to 1.

    A flat range (high == low, e.g. a mostly constant volume) falls back to the sample's full
    range, then to a scale of 1, so the map is always defined.
    """
    sample = sample_intensities(array, max_voxels)
    low, high = robust_range(sample, percentiles, ignore_value)
    scale = high - low
    if not scale > 0:
        finite = sample[np.isfinite(sample)]
        scale = float(finite.max() - finite.min())
    return Scaling(low, scale if scale > 0 else 1.0)
