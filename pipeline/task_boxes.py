"""Task boxes of an annotation campaign: where annotators draw ground truth.

A box is a block of the image in full-resolution voxel indices (z, y, x; ``start`` inclusive,
``size`` voxels), always inside the volume. A 2D image is a volume of depth 1. Boxes come from
four sources, each a function here so the site and the command line share them:

- :func:`tile_boxes`: the whole volume or a region cut into boxes of one size (edge boxes are
  clipped, never outside the volume; a remainder thinner than half a box joins its neighbour
  instead of becoming a sliver task of a few voxels);
- :func:`stratified_sample`: K boxes at random, one per stratum of the tiles in scan order, among
  the tiles that lie mostly inside a mask (a systematic uniform random sample, so the boxes
  spread over the region instead of clustering as K independent draws may);
- :func:`parse_boxes_csv`: a box table (:mod:`pipeline.box_table`, the format every command
  reads: the published ``bboxes/*.csv`` origin and size columns, or corners), with the line
  number of any bad row;
- :func:`boxes_around_points`: a box centred on each point (e.g. missed objects reported by
  proofreaders), shifted to lie inside the volume.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from pipeline.box_table import box_table_parse
from pipeline.errors import InvalidInputError

Triple = tuple[int, int, int]

MAX_BOXES = 100_000
MAX_NAME = 100


@dataclass(frozen=True)
class TaskBox:
    """A box in full-resolution voxel indices, z y x."""

    name: str
    start: Triple
    size: Triple

    @property
    def stop(self) -> Triple:
        return (
            self.start[0] + self.size[0],
            self.start[1] + self.size[1],
            self.start[2] + self.size[2],
        )

    @property
    def voxels(self) -> int:
        return self.size[0] * self.size[1] * self.size[2]


def overlaps(a: TaskBox, b: TaskBox) -> bool:
    """Whether two boxes share a voxel."""
    return all(
        lo_a < hi_b and lo_b < hi_a
        for lo_a, hi_a, lo_b, hi_b in zip(a.start, a.stop, b.start, b.stop, strict=True)
    )


def check_box(box: TaskBox, shape: Sequence[int]) -> None:
    """Refuse a box of zero size or one that is not wholly inside a volume of ``shape``."""
    if any(n <= 0 for n in box.size):
        raise InvalidInputError(f"box {box.name!r} has a size of zero voxels: {box.size}")
    if any(s < 0 for s in box.start) or any(e > n for e, n in zip(box.stop, shape, strict=True)):
        raise InvalidInputError(
            f"box {box.name!r} (start z y x {box.start}, size {box.size}) is not inside the "
            f"volume of shape {tuple(int(n) for n in shape)}"
        )


def box_size_voxels(
    box_size_um: Sequence[float], voxel_size_nm: Sequence[float], shape: Sequence[int]
) -> Triple:
    """A physical box size (z y x, um) in whole voxels, at least one and at most the volume."""
    if len(box_size_um) != 3 or len(voxel_size_nm) != 3 or len(shape) != 3:
        raise InvalidInputError("the box size, voxel size and shape need three values (z y x)")
    out = []
    for um, nm, n in zip(box_size_um, voxel_size_nm, shape, strict=True):
        if not (math.isfinite(um) and um > 0):
            raise InvalidInputError(f"the box size must be positive, got {list(box_size_um)} um")
        if not (math.isfinite(nm) and nm > 0):
            raise InvalidInputError(f"the voxel size must be positive, got {list(voxel_size_nm)}")
        out.append(int(min(max(1, round(um * 1000.0 / nm)), int(n))))
    return (out[0], out[1], out[2])


#: A suggested box is at least this many voxels deep along each axis (a box one slice deep is
#: no painting task), or the whole axis where it has fewer than four times as many.
MIN_BOX_VOXELS = 8


def _nice_floor(value: float) -> float:
    """The largest 1, 2 or 5 x 10^k not above ``value`` (a box size a person reads at once)."""
    decade = 10.0 ** math.floor(math.log10(value))
    step = max(m for m in (1.0, 2.0, 5.0) if m * decade <= value * (1 + 1e-9))
    return float(f"{step * decade:.6g}")


def suggested_box_size_um(
    voxel_size_um: Sequence[float],
    shape: Sequence[int],
    *,
    largest_um: float = 50.0,
    parts: int = 4,
) -> list[float]:
    """A new campaign's first box size (z y x, um) for a volume: about a ``parts``-th of it along
    each axis, so that tiling gives several boxes, at most ``largest_um`` (unless one voxel is
    larger), rounded down to 1, 2 or 5 x 10^k um and never below ``MIN_BOX_VOXELS`` voxels; an
    axis whose ``parts``-th would be thinner than that (a 2D image's one section, a stack of a few
    slices) is taken whole. A fixed 50 um made the 51.2 um demo volume one box."""
    if len(voxel_size_um) != 3 or len(shape) != 3:
        raise InvalidInputError("the voxel size and shape need three values (z y x)")
    out = []
    for um, n in zip(voxel_size_um, shape, strict=True):
        if not (math.isfinite(um) and um > 0) or int(n) < 1:
            raise InvalidInputError(f"no box size for voxels of {list(voxel_size_um)} um")
        extent = float(um) * int(n)
        if int(n) < parts * MIN_BOX_VOXELS:
            out.append(float(f"{extent:.6g}"))
            continue
        least = float(f"{MIN_BOX_VOXELS * um:.6g}")
        out.append(max(least, _nice_floor(min(largest_um, extent / parts))))
    return out


def _region(shape: Sequence[int], region: TaskBox | None) -> TaskBox:
    whole = TaskBox("volume", (0, 0, 0), (int(shape[0]), int(shape[1]), int(shape[2])))
    if region is None:
        return whole
    check_box(region, shape)
    return region


def _tile_starts(lo: int, extent: int, step: int, min_edge: float) -> list[int]:
    starts = list(range(lo, lo + extent, step))
    if len(starts) > 1 and lo + extent - starts[-1] < min_edge * step:
        starts.pop()  # the thin remainder joins the box before it
    return starts


def tile_boxes(
    shape: Sequence[int],
    box: Sequence[int],
    region: TaskBox | None = None,
    *,
    min_edge: float = 0.5,
) -> list[TaskBox]:
    """Cut ``region`` (the whole volume when None) into boxes of ``box`` voxels (z y x), in
    scan order. Boxes at the far edges are clipped to the region; a remainder thinner than
    ``min_edge`` of a box is added to the last box instead (a 6-voxel sliver is no task)."""
    area = _region(shape, region)
    size = tuple(int(n) for n in box)
    if len(size) != 3 or min(size) <= 0:
        raise InvalidInputError(f"the box size must be three positive voxel counts, got {box}")
    starts = [
        _tile_starts(lo, extent, step, min_edge)
        for lo, extent, step in zip(area.start, area.size, size, strict=True)
    ]
    count = len(starts[0]) * len(starts[1]) * len(starts[2])
    if count > MAX_BOXES:
        raise InvalidInputError(
            f"tiling gives {count:,} boxes, more than {MAX_BOXES:,}: choose a larger box or a "
            "smaller region"
        )
    out = []
    # Each box ends where the next begins, the last at the region's end.
    stops = [
        [*axis[1:], lo + extent]
        for axis, lo, extent in zip(starts, area.start, area.size, strict=True)
    ]
    for iz, (z, z1) in enumerate(zip(starts[0], stops[0], strict=True)):
        for iy, (y, y1) in enumerate(zip(starts[1], stops[1], strict=True)):
            for ix, (x, x1) in enumerate(zip(starts[2], stops[2], strict=True)):
                out.append(TaskBox(f"tile-{iz}-{iy}-{ix}", (z, y, x), (z1 - z, y1 - y, x1 - x)))
    return out


def mask_fraction(box: TaskBox, mask: npt.NDArray[np.generic], factor: Sequence[float]) -> float:
    """The fraction of ``box`` inside a (coarse) mask: nonzero voxels of ``mask`` in the box's
    footprint, where one mask voxel covers ``factor`` full-resolution voxels per axis."""
    lo = [math.floor(s / f) for s, f in zip(box.start, factor, strict=True)]
    hi = [max(math.ceil(e / f), low + 1) for e, f, low in zip(box.stop, factor, lo, strict=True)]
    part = mask[lo[0] : hi[0], lo[1] : hi[1], lo[2] : hi[2]]
    if part.size == 0:
        return 0.0
    return float(np.count_nonzero(part)) / float(part.size)


def stratified_sample(
    shape: Sequence[int],
    box: Sequence[int],
    count: int,
    seed: int,
    *,
    region: TaskBox | None = None,
    mask: npt.NDArray[np.generic] | None = None,
    mask_factor: Sequence[float] = (1.0, 1.0, 1.0),
    min_inside: float = 0.5,
) -> list[TaskBox]:
    """``count`` whole boxes drawn from the tiling of ``region``: the tiles (in scan order)
    that are whole and, with a mask, at least ``min_inside`` inside it, are split into
    ``count`` strata of consecutive tiles and one tile is drawn from each (seeded)."""
    if count <= 0:
        raise InvalidInputError("the number of boxes to sample must be positive")
    if not 0.0 <= min_inside <= 1.0:
        raise InvalidInputError("the part of a box inside the mask must be between 0 and 1")
    size = tuple(int(n) for n in box)
    tiles = [t for t in tile_boxes(shape, box, region, min_edge=0.0) if t.size == size]
    if mask is not None:
        if mask.ndim != 3:
            raise InvalidInputError(f"the mask must be 3D (z y x), got {mask.ndim}D")
        tiles = [t for t in tiles if mask_fraction(t, mask, mask_factor) >= max(min_inside, 1e-9)]
    if count > len(tiles):
        where = "inside the mask" if mask is not None else "in the region"
        raise InvalidInputError(
            f"asked for {count} boxes but only {len(tiles)} whole boxes of {size} voxels fit "
            f"{where}"
        )
    rng = np.random.default_rng(seed)
    edges = np.linspace(0, len(tiles), count + 1)
    out = []
    for k in range(count):
        lo, hi = math.floor(edges[k]), math.floor(edges[k + 1])
        pick = tiles[int(rng.integers(lo, max(hi, lo + 1)))]
        out.append(TaskBox(f"sample-{k + 1}", pick.start, pick.size))
    return out


def parse_boxes_csv(text: str, shape: Sequence[int], max_rows: int = MAX_BOXES) -> list[TaskBox]:
    """Boxes from a box table (:mod:`pipeline.box_table`: origin and size or corner columns, in
    voxels; ``z`` may be left out for a 2D image, a volume of depth 1). Every problem is reported
    with its line number (the header is line 1); names must be 1-100 characters."""
    boxes = box_table_parse(text, ndim=3, shape=shape, max_rows=max_rows)
    out = []
    for box in boxes:
        if len(box.name) > MAX_NAME:
            raise InvalidInputError(f"box {box.name[:20]!r}...: ids have 1-{MAX_NAME} characters")
        z, y, x = box.start
        d, h, w = box.size
        out.append(TaskBox(box.name, (z, y, x), (d, h, w)))
    return out


def boxes_around_points(
    points: Iterable[tuple[str, Sequence[float]]], box: Sequence[int], shape: Sequence[int]
) -> list[TaskBox]:
    """A box of ``box`` voxels centred on each named point (z y x voxel positions), shifted to
    lie inside the volume (clipped only where the volume is smaller than the box)."""
    size = [min(int(n), int(s)) for n, s in zip(box, shape, strict=True)]
    if min(size) <= 0:
        raise InvalidInputError(f"the box size must be positive, got {list(box)}")
    out = []
    for name, point in points:
        if len(point) != 3 or not all(math.isfinite(float(p)) for p in point):
            raise InvalidInputError(f"point {name!r} needs three finite coordinates (z y x)")
        start = []
        for p, n, s in zip(point, size, shape, strict=True):
            if not -0.5 <= float(p) < int(s) - 0.5 + 1e-9:
                raise InvalidInputError(f"point {name!r} at {list(point)} is outside the volume")
            lo = math.floor(float(p) + 0.5) - n // 2
            start.append(min(max(lo, 0), int(s) - n))
        out.append(TaskBox(name, (start[0], start[1], start[2]), (size[0], size[1], size[2])))
    return out
