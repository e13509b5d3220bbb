"""Training patches from ground-truth boxes: windows, padded normalised reads, target crops.

A patch is an output window (the region the loss sees) plus the U-Net's margin of input
context around it. Windows lie inside their box when the box is at least as large as the
window; along an axis where the box is smaller, the window covers the whole box and the loss is
masked outside it (labels are unknown there). Input context reaching outside the image is the
image mirrored at its edge (:func:`read_normalised`).
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from pipeline.blocks import ReadableArray
from pipeline.errors import InvalidInputError

FloatArray = npt.NDArray[np.float32]
Region = tuple[slice, ...]


def box_region(box: Sequence[int], shape: Sequence[int]) -> Region:
    """Slices of a ``(starts..., stops...)`` box, checked against the image shape."""
    ndim = len(shape)
    if len(box) != 2 * ndim:
        raise InvalidInputError(f"box {tuple(box)} needs {2 * ndim} values for a {ndim}D image")
    starts, stops = box[:ndim], box[ndim:]
    for a, b, n in zip(starts, stops, shape, strict=True):
        if not 0 <= a < b <= n:
            raise InvalidInputError(
                f"box {tuple(box)} is empty or outside the image {tuple(shape)}"
            )
    return tuple(slice(int(a), int(b)) for a, b in zip(starts, stops, strict=True))


def read_normalised(image: ReadableArray, region: Region, mean: float, std: float) -> FloatArray:
    """``(image[region] - mean) / std`` as float32, mirrored where the region leaves the image.

    Mirroring (the U-Net paper's extrapolation of the border) rather than zeros: a zero step at
    the image's edge looks like an object's border to the network, and a model trained on one
    image predicted rims of false objects along every edge of another. A region wholly outside
    the image reads as zeros. An image with more axes than ``region`` has channels first: they
    are read whole and kept.
    """
    lead = tuple(int(n) for n in image.shape[: len(image.shape) - len(region)])
    spatial = tuple(int(n) for n in image.shape[len(lead) :])
    shape = (*lead, *(s.stop - s.start for s in region))
    if any(s.stop <= 0 or s.start >= n for s, n in zip(region, spatial, strict=True)):
        return np.zeros(shape, dtype=np.float32)
    # Read what the mirror needs too: a pad wider than the region's inside part reflects
    # image voxels beyond it (so a block's context equals the whole image's mirror).
    reads, pads, crops = [], [], []
    for s, n in zip(region, spatial, strict=True):
        before, after = max(0, -s.start), max(0, s.stop - n)
        lo, hi = max(s.start, 0), min(s.stop, n)
        lo = max(0, min(lo, n - after)) if after else lo
        hi = min(n, max(hi, before)) if before else hi
        reads.append(slice(lo, hi))
        pads.append((before, after))
        crops.append(slice(s.start + before - lo, s.start + before - lo + s.stop - s.start))
    whole = (slice(None),) * len(lead)
    data = np.asarray(image[(*whole, *reads)], dtype=np.float32)
    data = (data - np.float32(mean)) / np.float32(std)
    if any(p != (0, 0) for p in pads):
        data = np.pad(data, [(0, 0)] * len(lead) + pads, mode="symmetric")
    return np.ascontiguousarray(data[(*whole, *crops)], dtype=np.float32)


@dataclass(frozen=True)
class PreparedBox:
    """A box's image source and its targets (box-sized float32 arrays, one per head)."""

    name: str
    image: ReadableArray
    start: tuple[int, ...]
    targets: Mapping[str, FloatArray]

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(next(iter(self.targets.values())).shape)


@dataclass(frozen=True)
class Sample:
    """One training example: normalised input, targets and loss mask over the output window."""

    image: FloatArray
    targets: dict[str, FloatArray]
    mask: FloatArray


def random_window(
    rng: np.random.Generator, box_shape: Sequence[int], output_shape: Sequence[int]
) -> tuple[int, ...]:
    """Window start in box coordinates: inside the box, or covering it where it is smaller."""
    return tuple(
        int(rng.integers(0, b - o + 1)) if b >= o else -int(rng.integers(0, o - b + 1))
        for b, o in zip(box_shape, output_shape, strict=True)
    )


def tiling_windows(
    box_shape: Sequence[int], output_shape: Sequence[int]
) -> Iterator[tuple[int, ...]]:
    """Deterministic window starts covering the box (the last ones shifted back inside)."""
    axes = []
    for b, o in zip(box_shape, output_shape, strict=True):
        if b <= o:
            axes.append([-((o - b) // 2)])
        else:
            starts = list(range(0, b - o + 1, o))
            if starts[-1] != b - o:
                starts.append(b - o)
            axes.append(starts)
    yield from itertools.product(*axes)


def _crop_padded(array: FloatArray, start: Sequence[int], shape: Sequence[int]) -> FloatArray:
    region = tuple(slice(a, a + n) for a, n in zip(start, shape, strict=True))
    out = np.zeros(tuple(shape), dtype=np.float32)
    inside = tuple(
        slice(max(s.start, 0), min(s.stop, n)) for s, n in zip(region, array.shape, strict=True)
    )
    if any(i.stop <= i.start for i in inside):
        return out  # the window lies wholly outside the array (a validation context's halo)
    where = tuple(
        slice(i.start - r.start, i.stop - r.start) for i, r in zip(inside, region, strict=True)
    )
    out[where] = array[inside]
    return out


def extract_sample(
    box: PreparedBox,
    window_start: Sequence[int],
    output_shape: Sequence[int],
    margin: Sequence[int],
    mean: float,
    std: float,
) -> Sample:
    """The input patch (window plus margin, from the whole image) and the window's targets."""
    region = tuple(
        slice(s + w - m, s + w + o + m)
        for s, w, o, m in zip(box.start, window_start, output_shape, margin, strict=True)
    )
    image = read_normalised(box.image, region, mean, std)
    targets = {name: _crop_padded(t, window_start, output_shape) for name, t in box.targets.items()}
    mask = np.zeros(tuple(output_shape), dtype=np.float32)
    mask[
        tuple(
            slice(max(0, -w), min(o, b - w))
            for w, o, b in zip(window_start, output_shape, box.shape, strict=True)
        )
    ] = 1.0
    return Sample(image=image, targets=targets, mask=mask)
