"""Proofreading gallery cards: one small PNG per detection, rendered on the server.

A card shows a detection at a glance: three orthogonal mid-slices through the object (xy, zy,
xz) with its outline drawn bright and its neighbours' dimmed, and a shaded render of its mesh.
Layout of a 3D card (``CardStyle.tile`` pixels a tile, ``gap`` between)::

    +------+------+      xy: x to the right, y down (as Neuroglancer's xy panel)
    |  xy  |  zy  |      zy: z to the right, y down: shares its rows (y) with xy
    +------+------+      xz: x to the right, z down: shares its columns (x) with xy
    |  xz  |  3D  |      3D: the mesh, turned 30 degrees and tilted 25 from the xy view
    +------+------+

Every tile shows the same square field (``Card.field_nm``) centred on the object's box, so
shapes keep their physical aspect whatever the voxel anisotropy, and rows and columns line up.
The xy tile carries a scale bar. Pixels outside the volume are a flat dark blue. A 2D layer's card
is one tile of the whole card's size.

Why these choices: a proofreader decides from the card alone whether a detection is an object
of interest, a fragment, a merge or a false positive, so the object's boundary must be seen
against the raw data (outline only, never a fill) and against its neighbours (dimmed outlines).
The field is the object's box plus a margin, so one card shows its context and a gallery of
cards can be scanned at one zoom per card. The pyramid level read is the coarsest whose voxels
are still no larger than a tile pixel, so a large object costs no more to draw than a small one.

Cards are deterministic (same inputs, same bytes) and small: an 8-bit palette PNG (gray ramp,
mesh shades and a few overlay colours). Cached cards live in a directory named by
:func:`card_set_key` (renderer version, style, and the caller's version of the layers), so a
change of any of them renders into a new directory and a stale card is never served.

Each card comes with its geometry (:class:`CardGeometry`, written beside a cached card as
``<segment id>.json``): where its pixels lie in the layer, so that a point clicked on a slice
tile maps back to a voxel (:func:`card_pixel_to_voxel`; the gallery's missed-object points). It
must be stored, not recomputed: a slice moves off the object's centre when the object is not
there (:func:`_slice_with_object`), which only the label data tells.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import math
import os
import threading
import time
from collections import OrderedDict
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

from pipeline.card_image import (
    BACKGROUND,
    NEIGHBOUR,
    OUTLINE,
    OUTSIDE,
    encode_png,
    gray_indices,
    inner_boundary,
    shade_indices,
    stamp,
    text_mask,
    thicken,
)
from pipeline.errors import InvalidInputError, PipelineError
from pipeline.mesh_render import render_mesh
from pipeline.progress import ProgressCallback, no_progress

# Bump when a change to the drawing changes the pixels: cached card sets are keyed by it.
RENDERER_VERSION = "2"  # 2: a geometry sidecar beside every card
PERCENTILES = (1.0, 99.5)  # contrast window of a crop when none is given
# Decoded chunks kept while rendering many cards. On the demo (64^3 chunks, 300 nuclei, spatial
# order) 128 MB decodes every chunk once, 64 MB 1.3 times, 16 MB 5 times (bench/cards.py).
CHUNK_CACHE_BYTES = 128 << 20
PROGRESS_INTERVAL_S = 0.2
MAX_CHECK_VOXELS = 1 << 26  # a box read at full resolution to find a thin object (64 M voxels)
MIN_SCALE_BAR_TILE = 48  # on smaller tiles the bar and its label would hide the object

FloatArray = npt.NDArray[np.float64]
IndexArray = npt.NDArray[np.int64]
MeshSource = Literal["stored", "marching cubes", "none"]

# ---------------------------------------------------------------------------- inputs


@dataclass(frozen=True)
class Level:
    """One pyramid level: a spatial array (z y x, or y x) and where its voxels lie.

    ``origin_nm`` is the position of voxel 0's centre; voxel ``i`` is centred at
    ``origin_nm + i * voxel_size_nm`` (the convention of the project's meshes).
    """

    array: Any
    voxel_size_nm: tuple[float, ...]
    origin_nm: tuple[float, ...]

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(int(n) for n in self.array.shape)


@dataclass(frozen=True)
class Pyramid:
    """The levels of one layer, finest first. ``calibrated`` is False when the voxel size was
    not recorded (then 1 nm is assumed, and cards show no scale bar)."""

    levels: tuple[Level, ...]
    calibrated: bool = True

    @property
    def ndim(self) -> int:
        return len(self.levels[0].shape)


@dataclass(frozen=True)
class CardSource:
    """What cards of one segmentation layer are drawn from.

    ``window``: a fixed contrast window (image values) for every card, e.g. the layer's; without
    one each card stretches its own crop between robust percentiles. ``mesh_dir``: the layer's
    Neuroglancer precomputed meshes (multi-resolution or legacy); objects without a stored mesh
    get a marching-cubes mesh of their label crop.
    """

    image: Pyramid
    labels: Pyramid
    mesh_dir: Path | None = None
    window: tuple[float, float] | None = None


def pyramid_from_array(
    array: Any,
    voxel_size_nm: Sequence[float] | None = None,
    origin_nm: Sequence[float] | None = None,
) -> Pyramid:
    """A one-level pyramid over an array (numpy, memory map, zarr)."""
    ndim = len(array.shape)
    if ndim not in (2, 3):
        raise InvalidInputError(f"cards need a 2D or 3D volume, got shape {tuple(array.shape)}")
    voxel = _voxel_size(voxel_size_nm, ndim)
    origin = tuple(float(v) for v in origin_nm) if origin_nm is not None else (0.0,) * ndim
    return Pyramid((Level(array, voxel, origin),), calibrated=voxel_size_nm is not None)


def _voxel_size(voxel_size_nm: Sequence[float] | None, ndim: int) -> tuple[float, ...]:
    if voxel_size_nm is None:
        return (1.0,) * ndim
    voxel = tuple(float(v) for v in voxel_size_nm)
    if len(voxel) == 1:
        voxel = voxel * ndim
    if len(voxel) != ndim or not all(math.isfinite(v) and v > 0 for v in voxel):
        raise InvalidInputError(
            f"the voxel size must be {ndim} positive numbers (or one), got {voxel_size_nm}"
        )
    return voxel


def open_pyramid(
    path: Path, voxel_size_nm: Sequence[float] | None = None, what: str = "image"
) -> Pyramid:
    """Every level of an OME-Zarr image or label image (channel 0 of a multichannel image), or
    one level over a ``.npy`` file or a bare Zarr array. ``voxel_size_nm`` overrides a
    recorded voxel size (level 0; coarser levels keep their ratio to it)."""
    from pipeline.volumes import open_volume

    path = Path(path)
    if not path.exists():
        raise InvalidInputError(f"{what} {path}: no such file or directory")
    if path.suffix == ".npy" or not _is_multiscale(path):
        override = None if voxel_size_nm is None else tuple(float(v) for v in voxel_size_nm)
        volume = open_volume(path, 0, override, what)
        return pyramid_from_array(volume.array, volume.voxel_size)
    from pipeline.ome_zarr_io import SpatialView, open_multiscale
    from pipeline.units import nanometres_per_unit

    image = open_multiscale(path)
    spatial = image.spatial_indices
    if len(spatial) not in (2, 3):
        raise InvalidInputError(f"{what} {path.name} has {len(spatial)} spatial axes, need 2 or 3")
    to_nm = [nanometres_per_unit(image.units[i]) for i in spatial]
    base = tuple(image.scales[0][i] * f for i, f in zip(spatial, to_nm, strict=True))
    factor = (
        (1.0,) * len(spatial)
        if voxel_size_nm is None
        else tuple(
            a / b for a, b in zip(_voxel_size(voxel_size_nm, len(spatial)), base, strict=True)
        )
    )
    levels = []
    for index, array in enumerate(image.levels):
        voxel = tuple(
            image.scales[index][i] * f * k for i, f, k in zip(spatial, to_nm, factor, strict=True)
        )
        origin = tuple(
            image.translations[index][i] * f * k
            for i, f, k in zip(spatial, to_nm, factor, strict=True)
        )
        if any(not v > 0 for v in voxel):
            raise InvalidInputError(f"{what} {path.name}: the OME-Zarr scale must be positive")
        view = array if len(spatial) == array.ndim else SpatialView(array, spatial)
        levels.append(Level(view, voxel, origin))
    return Pyramid(tuple(levels))


def _is_multiscale(path: Path) -> bool:
    for name in ("zarr.json", ".zattrs"):
        meta = path / name
        if meta.is_file():
            try:
                payload = json.loads(meta.read_text())
            except (OSError, ValueError):
                return False
            attrs = payload.get("attributes", payload) if isinstance(payload, dict) else {}
            attrs = attrs.get("ome", attrs) if isinstance(attrs, dict) else {}
            return isinstance(attrs, dict) and "multiscales" in attrs
    return False


def open_card_source(
    image: Path,
    labels: Path,
    *,
    mesh_dir: Path | None = None,
    voxel_size_nm: Sequence[float] | None = None,
    window: tuple[float, float] | None = None,
) -> CardSource:
    """Open an image and its label image (OME-Zarr, bare Zarr or ``.npy``) for cards.

    ``voxel_size_nm`` overrides the recorded voxel size of both (needed for ``.npy`` inputs,
    which record none).
    """
    image_pyramid = open_pyramid(Path(image), voxel_size_nm, "image")
    labels_pyramid = open_pyramid(Path(labels), voxel_size_nm, "labels")
    if image_pyramid.ndim != labels_pyramid.ndim:
        raise InvalidInputError(
            f"the image is {image_pyramid.ndim}D but the labels are {labels_pyramid.ndim}D"
        )
    if np.dtype(labels_pyramid.levels[0].array.dtype).kind not in "ui":
        raise InvalidInputError(
            f"labels must hold integer ids, not {labels_pyramid.levels[0].array.dtype}"
        )
    if mesh_dir is not None and not Path(mesh_dir).is_dir():
        raise InvalidInputError(f"mesh directory {mesh_dir} does not exist")
    return CardSource(image_pyramid, labels_pyramid, Path(mesh_dir) if mesh_dir else None, window)


@dataclass(frozen=True)
class Detection:
    """One object: its id and bounding box in voxels of the label image's level 0 (z y x, or
    y x; ``bbox_max`` exclusive, as in the detections table). ``centre`` (voxels, e.g. the
    centroid) places the slices; the box's centre when not given."""

    segment_id: int
    bbox_min: tuple[int, ...]
    bbox_max: tuple[int, ...]
    centre: tuple[float, ...] | None = None


def detections_from_table(table: Any, ids: Iterable[int] | None = None) -> list[Detection]:
    """Detections from a detections/morphometrics table (pandas; columns ``id``,
    ``bbox_{z,y,x}{0,1}``, optionally ``centroid_{z,y,x}``), all or those of ``ids``."""
    axes = [a for a in "zyx" if f"bbox_{a}0" in table.columns]
    missing = [c for c in ["id"] + [f"bbox_{a}{e}" for a in axes for e in "01"] if c not in table]
    if missing or len(axes) < 2:
        raise InvalidInputError(f"the detections table lacks columns {missing or ['bbox_*']}")
    rows = table
    if ids is not None:
        wanted = [int(i) for i in ids]
        rows = table.set_index("id", drop=False)
        absent = [i for i in wanted if i not in rows.index]
        if absent:
            shown = ", ".join(str(i) for i in absent[:10])
            raise InvalidInputError(f"segments not in the detections table: {shown}")
        rows = rows.loc[wanted]
    has_centre = all(f"centroid_{a}" in table.columns for a in axes)
    out = []
    for row in rows.itertuples(index=False):
        values = row._asdict()
        out.append(
            Detection(
                int(values["id"]),
                tuple(int(values[f"bbox_{a}0"]) for a in axes),
                tuple(int(values[f"bbox_{a}1"]) for a in axes),
                tuple(float(values[f"centroid_{a}"]) for a in axes) if has_centre else None,
            )
        )
    return out


def detections_from_labels(labels: Pyramid, ids: Iterable[int] | None = None) -> list[Detection]:
    """Detections measured from a label image's level 0 (block by block): every object, or
    those of ``ids``; boxes and centroids in voxels."""
    from pipeline.morphometrics import DepthOneView, label_stats

    array = labels.levels[0].array
    stats = label_stats(array if labels.ndim == 3 else DepthOneView(array))
    axes = slice(0, 3) if labels.ndim == 3 else slice(1, 3)
    index = {int(i): k for k, i in enumerate(stats.ids.tolist())}
    wanted = list(index) if ids is None else [int(i) for i in ids]
    absent = [i for i in wanted if i not in index]
    if absent:
        shown = ", ".join(str(i) for i in absent[:10])
        raise InvalidInputError(f"segments not in the labels: {shown}")
    return [
        Detection(
            i,
            tuple(int(v) for v in stats.bbox_min[index[i], axes]),
            tuple(int(v) for v in stats.bbox_max[index[i], axes]),
            tuple(float(v) for v in stats.centroids[index[i], axes]),
        )
        for i in wanted
    ]


@dataclass(frozen=True)
class CardStyle:
    """How cards look. ``margin`` is the fraction of the object's largest extent shown on each
    side (at least ``min_margin_voxels`` of the finest voxel size); ``window`` overrides the
    source's contrast window."""

    tile: int = 96
    gap: int = 2
    margin: float = 0.25
    min_margin_voxels: float = 3.0
    outline_width: int = 1
    neighbours: bool = True
    scale_bar: bool = True
    mesh: bool = True
    azimuth_deg: float = 30.0
    elevation_deg: float = 25.0
    window: tuple[float, float] | None = None

    def __post_init__(self) -> None:
        if not 16 <= self.tile <= 1024 or not 0 <= self.gap <= 64:
            raise InvalidInputError("a card tile must be 16-1024 pixels and the gap 0-64")
        if not 0 <= self.margin <= 4 or not 0 <= self.min_margin_voxels <= 1000:
            raise InvalidInputError("the margin must be 0-4 (fraction) and 0-1000 voxels")
        if not 1 <= self.outline_width <= 4:
            raise InvalidInputError("the outline width must be 1-4 pixels")
        if self.window is not None and not self.window[1] > self.window[0]:
            raise InvalidInputError(f"the contrast window {self.window} must have high > low")

    @property
    def size(self) -> int:
        """Edge of the whole (square) card in pixels."""
        return 2 * self.tile + self.gap


@dataclass(frozen=True)
class Card:
    """A rendered card and what it shows."""

    segment_id: int
    png: bytes
    level: int  # label pyramid level read
    image_level: int
    field_nm: float  # edge of the square field every tile shows
    pixel_nm: float  # field_nm / tile
    centre_nm: tuple[float, ...]  # the field's centre (z y x, nm, the layer's coordinates)
    slices_nm: tuple[float, ...]  # position of each slice plane along its normal (z, y, x)
    window: tuple[float, float]
    mesh_source: MeshSource
    geometry: CardGeometry


@dataclass(frozen=True)
class CardGeometry:
    """Where a card's pixels lie in the layer: what maps a card pixel back to a voxel
    (:func:`card_pixel_to_voxel`), stored beside a cached card (:func:`write_card`).

    ``tile``, ``gap`` and ``size`` are the style's (pixels; a 2D card's one tile is ``size``
    wide); ``field_nm``, ``centre_nm`` and ``slices_nm`` are the card's (z y x, or y x; no
    slices in 2D); ``voxel_size_nm``, ``origin_nm`` and ``shape`` describe the label image's
    level 0, in whose voxels positions are given (voxel ``i``'s centre at ``i``).
    """

    ndim: int
    tile: int
    gap: int
    size: int
    field_nm: float
    centre_nm: tuple[float, ...]
    slices_nm: tuple[float, ...]
    voxel_size_nm: tuple[float, ...]
    origin_nm: tuple[float, ...]
    shape: tuple[int, ...]

    def to_json(self) -> dict[str, Any]:
        """Plain JSON values (lists for the tuples)."""
        return {
            key: list(value) if isinstance(value, tuple) else value
            for key, value in asdict(self).items()
        }

    @classmethod
    def from_json(cls, payload: Any) -> CardGeometry:
        """The geometry :meth:`to_json` wrote; :class:`InvalidInputError` for anything else."""

        def floats(name: str) -> tuple[float, ...]:
            return tuple(float(v) for v in payload[name])

        try:
            geometry = cls(
                ndim=int(payload["ndim"]),
                tile=int(payload["tile"]),
                gap=int(payload["gap"]),
                size=int(payload["size"]),
                field_nm=float(payload["field_nm"]),
                centre_nm=floats("centre_nm"),
                slices_nm=floats("slices_nm"),
                voxel_size_nm=floats("voxel_size_nm"),
                origin_nm=floats("origin_nm"),
                shape=tuple(int(v) for v in payload["shape"]),
            )
        except (KeyError, TypeError, ValueError) as error:
            raise InvalidInputError(f"not a card geometry: {error!r}") from None
        ndim = geometry.ndim
        lengths = (
            len(geometry.centre_nm),
            len(geometry.voxel_size_nm),
            len(geometry.origin_nm),
            len(geometry.shape),
        )
        values = (
            geometry.field_nm, *geometry.centre_nm, *geometry.slices_nm,
            *geometry.voxel_size_nm, *geometry.origin_nm,
        )  # fmt: skip
        if (
            ndim not in (2, 3)
            or lengths != (ndim,) * 4
            or len(geometry.slices_nm) != (3 if ndim == 3 else 0)
            or not all(math.isfinite(v) for v in values)
            or geometry.field_nm <= 0
            or geometry.tile <= 0
            or geometry.size <= 0
            or geometry.gap < 0
            or any(v <= 0 for v in geometry.voxel_size_nm)
        ):
            raise InvalidInputError("not a card geometry: sizes or values out of range")
        return geometry


def card_tile_at(geometry: CardGeometry, px: float, py: float) -> tuple[int, float, float] | None:
    """Which tile a card position falls on, and where in it: (tile index, x, y in that tile's
    pixels). Tiles: 0 xy, 1 zy, 2 xz (3D); 0 the one tile (2D). None on a 3D card's mesh tile,
    a gap, or outside the card. Positions are continuous: pixel ``(c, r)`` spans
    ``[c, c + 1) x [r, r + 1)``."""
    if not (0 <= px < geometry.size and 0 <= py < geometry.size):
        return None
    if geometry.ndim == 2:
        return 0, float(px), float(py)
    step = geometry.tile + geometry.gap
    col, x = divmod(float(px), step)
    row, y = divmod(float(py), step)
    if x >= geometry.tile or y >= geometry.tile:
        return None
    position = (int(row), int(col))
    if position not in _TILE_POSITIONS:
        return None
    return _TILE_POSITIONS.index(position), x, y


def card_pixel_to_voxel(
    geometry: CardGeometry, px: float, py: float
) -> tuple[float, float, float] | None:
    """The voxel position (z, y, x of the label image's level 0, voxel ``i``'s centre at ``i``)
    that card position ``(px, py)`` (pixels from the card's top-left corner, see
    :func:`card_tile_at`) shows; along a slice tile's normal, the voxel of its slice. A 2D
    card's positions have z = 0. None on the mesh tile, a gap, outside the card, or on a pixel
    outside the volume. The gallery's script mirrors this (frontend/src/gallery/card_geometry.ts).
    """
    found = card_tile_at(geometry, px, py)
    if found is None:
        return None
    index, x, y = found
    if geometry.ndim == 2:
        normal: int | None
        normal, row_axis, col_axis = None, 0, 1
        edge = geometry.size
    else:
        normal, row_axis, col_axis = _TILES_3D[index]
        edge = geometry.tile
    pixel_nm = geometry.field_nm / edge
    nm = list(geometry.centre_nm)
    nm[row_axis] += y * pixel_nm - geometry.field_nm / 2
    nm[col_axis] += x * pixel_nm - geometry.field_nm / 2
    voxel = [
        (v - o) / s for v, o, s in zip(nm, geometry.origin_nm, geometry.voxel_size_nm, strict=True)
    ]
    if normal is not None:
        plane = (geometry.slices_nm[normal] - geometry.origin_nm[normal]) / geometry.voxel_size_nm[
            normal
        ]
        voxel[normal] = float(math.floor(plane + 0.5))
    if not all(-0.5 <= v < n - 0.5 for v, n in zip(voxel, geometry.shape, strict=True)):
        return None
    if geometry.ndim == 2:
        return (0.0, voxel[0], voxel[1])
    return (voxel[0], voxel[1], voxel[2])


# ---------------------------------------------------------------------------- reading


class ChunkCache:
    """Decoded chunks of chunked (zarr) arrays, least recently used dropped past a byte budget.

    Why: neighbouring detections share chunks, and zarr decodes a whole chunk for any read that
    touches it; rendering cards in spatial order through this cache decodes most chunks once.
    """

    def __init__(self, budget_bytes: int = CHUNK_CACHE_BYTES) -> None:
        self.budget = budget_bytes
        self.bytes = 0
        self.reads = 0
        self.hits = 0
        self._chunks: OrderedDict[tuple[int, tuple[int, ...]], npt.NDArray[Any]] = OrderedDict()

    def chunk(
        self, array: Any, index: tuple[int, ...], chunks: tuple[int, ...]
    ) -> npt.NDArray[Any]:
        key = (id(array), index)
        found = self._chunks.get(key)
        if found is not None:
            self._chunks.move_to_end(key)
            self.hits += 1
            return found
        region = tuple(
            slice(i * c, min((i + 1) * c, n))
            for i, c, n in zip(index, chunks, array.shape, strict=True)
        )
        data = np.asarray(array[region])
        self.reads += 1
        self._chunks[key] = data
        self.bytes += data.nbytes
        while self.bytes > self.budget and len(self._chunks) > 1:
            _, dropped = self._chunks.popitem(last=False)
            self.bytes -= dropped.nbytes
        return data


def _chunks_of(array: Any) -> tuple[int, ...] | None:
    chunks = getattr(array, "chunks", None)
    if (
        isinstance(chunks, tuple)
        and len(chunks) == len(array.shape)
        and all(isinstance(c, int | np.integer) for c in chunks)
    ):
        return tuple(int(c) for c in chunks)
    return None


def read_box(
    array: Any, lo: Sequence[int], hi: Sequence[int], cache: ChunkCache | None = None
) -> npt.NDArray[Any]:
    """``array[lo:hi]`` (inside the array), through ``cache`` when the array is chunked."""
    chunks = _chunks_of(array) if cache is not None else None
    if cache is None or chunks is None:
        return np.asarray(array[tuple(slice(a, b) for a, b in zip(lo, hi, strict=True))])
    out = np.empty(tuple(b - a for a, b in zip(lo, hi, strict=True)), dtype=array.dtype)
    ranges = [range(a // c, (b - 1) // c + 1) for a, b, c in zip(lo, hi, chunks, strict=True)]
    for index in itertools.product(*ranges):
        data = cache.chunk(array, index, chunks)
        src, dst = [], []
        for i, c, a, b in zip(index, chunks, lo, hi, strict=True):
            start, stop = max(a, i * c), min(b, (i + 1) * c)
            src.append(slice(start - i * c, stop - i * c))
            dst.append(slice(start - a, stop - a))
        out[tuple(dst)] = data[tuple(src)]
    return out


# ---------------------------------------------------------------------------- geometry


def _choose_level(pyramid: Pyramid, pixel_nm: float) -> int:
    """The coarsest level whose finest voxel edge is at most a tile pixel (level 0 if none)."""
    chosen = 0
    for index, level in enumerate(pyramid.levels):
        if min(level.voxel_size_nm) <= pixel_nm * (1 + 1e-6):
            chosen = index
    return chosen


class _Strided:
    """Every ``step``-th voxel of an array along each axis: a coarser level made on the fly
    when a store has no pyramid level coarse enough, so a crop never holds more than about two
    tiles of voxels per axis."""

    def __init__(self, array: Any, step: tuple[int, ...]) -> None:
        self._array = array
        self._step = step
        self.shape = tuple(-(-int(n) // s) for n, s in zip(array.shape, step, strict=True))
        self.dtype = array.dtype

    def __getitem__(self, key: tuple[slice, ...]) -> npt.NDArray[Any]:
        region = tuple(
            slice(k.start * s, k.stop * s, s) for k, s in zip(key, self._step, strict=True)
        )
        return np.asarray(self._array[region])


def _level_for(pyramid: Pyramid, index: int, pixel_nm: float) -> Level:
    """Level ``index``, strided along the axes whose voxels are still under half a pixel."""
    level = pyramid.levels[index]
    step = tuple(max(1, int(pixel_nm * (1 + 1e-6) // v)) for v in level.voxel_size_nm)
    if all(s == 1 for s in step):
        return level
    return Level(
        _Strided(level.array, step),
        tuple(v * s for v, s in zip(level.voxel_size_nm, step, strict=True)),
        level.origin_nm,
    )


@dataclass(frozen=True)
class _Crop:
    """A box of one level read into memory: ``data[i]`` is level voxel ``lo + i``."""

    data: npt.NDArray[Any]
    lo: tuple[int, ...]
    level: Level


def _read_field(
    level: Level, centre_nm: FloatArray, half_nm: float, cache: ChunkCache | None
) -> _Crop | None:
    """The voxels of ``level`` within ``half_nm`` of ``centre_nm`` (plus a voxel each side for
    interpolation), clipped to the level; None when none is inside."""
    voxel = np.asarray(level.voxel_size_nm)
    origin = np.asarray(level.origin_nm)
    shape = np.asarray(level.shape)
    lo = np.floor((centre_nm - half_nm - origin) / voxel).astype(np.int64) - 1
    hi = np.ceil((centre_nm + half_nm - origin) / voxel).astype(np.int64) + 2
    lo, hi = np.clip(lo, 0, shape), np.clip(hi, 0, shape)
    if np.any(hi <= lo):
        return None
    data = read_box(level.array, lo.tolist(), hi.tolist(), cache)
    return _Crop(data, tuple(int(v) for v in lo), level)


def _nearest(index: Any) -> Any:
    """The nearest voxel of a fractional index, halves rounded up: unlike ``np.rint`` (halves
    to even) the same voxel whatever the crop's offset."""
    return np.floor(np.asarray(index, dtype=np.float64) + 0.5).astype(np.int64)


# Tiles of a 3D card: (normal axis, row axis, column axis), axes 0=z 1=y 2=x; position.
_TILES_3D = ((0, 1, 2), (2, 1, 0), (1, 0, 2))
_TILE_POSITIONS = ((0, 0), (0, 1), (1, 0))  # (row, column) in the 2 x 2 grid
_MESH_POSITION = (1, 1)


def _tile_steps(field_nm: float, tile: int) -> FloatArray:
    """Offsets (nm) of a tile's pixel centres from the field's centre, along either axis."""
    return np.asarray((np.arange(tile) + 0.5) * (field_nm / tile) - field_nm / 2)


def _sample_plane(
    crop: _Crop,
    normal: int | None,
    plane_nm: float,
    rows: tuple[int, FloatArray],
    cols: tuple[int, FloatArray],
    order: int,
) -> tuple[npt.NDArray[Any], npt.NDArray[np.bool_]]:
    """A tile sampled from a crop: values at the pixel positions (``order`` 1: bilinear within
    the slice nearest the plane; 0: nearest voxel), and the mask of pixels inside the volume."""
    level = crop.level
    voxel = level.voxel_size_nm
    origin = level.origin_nm
    shape = level.shape
    row_axis, row_nm = rows
    col_axis, col_nm = cols
    row_idx = (row_nm - origin[row_axis]) / voxel[row_axis]
    col_idx = (col_nm - origin[col_axis]) / voxel[col_axis]
    inside = ((row_idx >= -0.5) & (row_idx < shape[row_axis] - 0.5))[:, None] & (
        (col_idx >= -0.5) & (col_idx < shape[col_axis] - 0.5)
    )[None, :]
    data = crop.data
    if normal is not None:
        global_plane = int(_nearest((plane_nm - origin[normal]) / voxel[normal]))
        if not 0 <= global_plane < shape[normal]:
            inside[:] = False  # the plane misses this array (an image smaller than its labels)
        plane = int(np.clip(global_plane - crop.lo[normal], 0, data.shape[normal] - 1))
        data = np.take(data, plane, axis=normal)
        # np.take drops the normal axis: the remaining axes keep their order.
        remaining = [a for a in range(crop.data.ndim) if a != normal]
    else:
        remaining = list(range(crop.data.ndim))
    local_rows = row_idx - crop.lo[row_axis]
    local_cols = col_idx - crop.lo[col_axis]
    transpose = remaining.index(row_axis) > remaining.index(col_axis)
    plane_data = data.T if transpose else data
    if order == 0:
        r = np.clip(_nearest(local_rows), 0, plane_data.shape[0] - 1)
        c = np.clip(_nearest(local_cols), 0, plane_data.shape[1] - 1)
        return plane_data[np.ix_(r, c)], inside
    return _bilinear(plane_data, local_rows, local_cols), inside


def _bilinear(
    plane: npt.NDArray[Any], rows: FloatArray, cols: FloatArray
) -> npt.NDArray[np.float32]:
    """Bilinear samples of a 2D array on the grid ``rows`` x ``cols`` (fractional indices,
    clamped to the array): the grid is separable, so four gathers do it."""
    r = np.clip(rows, 0, plane.shape[0] - 1)
    c = np.clip(cols, 0, plane.shape[1] - 1)
    r0 = np.minimum(np.floor(r).astype(np.int64), plane.shape[0] - 1)
    c0 = np.minimum(np.floor(c).astype(np.int64), plane.shape[1] - 1)
    r1 = np.minimum(r0 + 1, plane.shape[0] - 1)
    c1 = np.minimum(c0 + 1, plane.shape[1] - 1)
    fr = (r - r0).astype(np.float32)[:, None]
    fc = (c - c0).astype(np.float32)[None, :]
    data = np.asarray(plane, dtype=np.float32)
    top = data[np.ix_(r0, c0)] * (1 - fc) + data[np.ix_(r0, c1)] * fc
    bottom = data[np.ix_(r1, c0)] * (1 - fc) + data[np.ix_(r1, c1)] * fc
    return np.asarray(top * (1 - fr) + bottom * fr, dtype=np.float32)


def _nice_length(max_nm: float) -> float:
    """The largest 1, 2 or 5 x 10^k nm not above ``max_nm``."""
    exponent = math.floor(math.log10(max_nm))
    for mantissa in (5, 2, 1):
        value = mantissa * 10.0**exponent
        if value <= max_nm:
            return value
    return 10.0**exponent


def _length_text(nm: float) -> str:
    if nm >= 1000:
        return f"{nm / 1000:g} µm"
    return f"{nm:g} nm"


# ---------------------------------------------------------------------------- meshes


def _stored_mesh(
    mesh_dir: Path, segment_id: int, pixel_nm: float
) -> tuple[FloatArray, IndexArray] | None:
    """The stored mesh (nm, x y z) of a segment at the level of detail a tile pixel needs."""
    from pipeline.precomputed import read_segment_mesh

    return read_segment_mesh(mesh_dir, segment_id, detail_nm=pixel_nm)


def _label_mesh(crop: _Crop, mask: npt.NDArray[np.bool_]) -> tuple[FloatArray, IndexArray] | None:
    """Marching cubes of the object (``mask`` over a label crop), nm x y z, lightly smoothed."""
    from pipeline.meshing import mesh_mask, smooth_taubin

    if not mask.any():
        return None
    where = np.nonzero(mask)
    lo = [int(w.min()) for w in where]
    hi = [int(w.max()) + 1 for w in where]
    sub = np.pad(mask[tuple(slice(a, b) for a, b in zip(lo, hi, strict=True))], 1)
    vertices, faces = mesh_mask(sub, crop.level.voxel_size_nm)
    if not len(faces):
        return None
    voxel = np.asarray(crop.level.voxel_size_nm)
    origin = np.asarray(crop.level.origin_nm) + (np.asarray(crop.lo) + np.asarray(lo) - 1) * voxel
    vertices = smooth_taubin(vertices + origin[::-1], faces)
    return vertices, faces


# ---------------------------------------------------------------------------- a card


def _check_detection(detection: Detection, labels: Pyramid) -> None:
    shape = labels.levels[0].shape
    sid = detection.segment_id
    if isinstance(sid, bool) or not isinstance(sid, int | np.integer) or sid <= 0:
        raise InvalidInputError(f"segment id {sid!r} must be a positive integer")
    lo, hi = detection.bbox_min, detection.bbox_max
    if len(lo) != len(shape) or len(hi) != len(shape):
        raise InvalidInputError(
            f"segment {sid}: the bounding box needs {len(shape)} values per corner, got "
            f"{list(lo)} to {list(hi)}"
        )
    if any(a >= b for a, b in zip(lo, hi, strict=True)):
        raise InvalidInputError(
            f"segment {sid}: the bounding box {list(lo)} to {list(hi)} is empty"
        )
    if any(a < 0 for a in lo) or any(b > n for b, n in zip(hi, shape, strict=True)):
        raise InvalidInputError(
            f"segment {sid}: the bounding box {list(lo)} to {list(hi)} (voxels, end exclusive) "
            f"is not inside the labels, whose shape is {list(shape)}"
        )
    if detection.centre is not None and len(detection.centre) != len(shape):
        raise InvalidInputError(f"segment {sid}: the centre needs {len(shape)} values")


def _window_of(
    values: Sequence[npt.NDArray[Any]], masks: Sequence[npt.NDArray[np.bool_]]
) -> tuple[float, float]:
    sample = np.concatenate([v[m].ravel() for v, m in zip(values, masks, strict=True)])
    sample = sample[np.isfinite(sample)]
    if not sample.size:
        return (0.0, 1.0)
    low, high = (float(p) for p in np.percentile(sample, PERCENTILES))
    return (low, high) if high > low else (low, low + 1.0)


def _outlines(
    tile_labels: npt.NDArray[Any], segment_id: int, width: int, neighbours: bool
) -> tuple[npt.NDArray[np.bool_], npt.NDArray[np.bool_]]:
    """Pixels of this object's outline (its own boundary pixels, ``width`` thick) and of the
    other objects' outlines."""
    target = tile_labels == segment_id
    own = thicken(inner_boundary(target) & target, target, width)
    if not neighbours:
        return own, np.zeros_like(own)
    others = (tile_labels != 0) & ~target
    theirs = inner_boundary(np.where(target, 0, tile_labels)) & others
    return own, theirs


def _slice_with_object(
    crop: _Crop, object_mask: npt.NDArray[np.bool_], normal: int, plane_nm: float
) -> float:
    """``plane_nm`` moved, if the object is not in that slice of the crop, to the nearest slice
    that holds it (a curved object's centre may lie outside it)."""
    level = crop.level
    index = int(_nearest((plane_nm - level.origin_nm[normal]) / level.voxel_size_nm[normal]))
    local = index - crop.lo[normal]
    others = tuple(a for a in range(crop.data.ndim) if a != normal)
    present = np.flatnonzero(object_mask.any(axis=others))
    if not len(present) or local in set(present.tolist()):
        return plane_nm
    nearest = int(present[np.argmin(np.abs(present - local))])
    return level.origin_nm[normal] + (nearest + crop.lo[normal]) * level.voxel_size_nm[normal]


def _read_labels(
    labels: Pyramid,
    detection: Detection,
    centre_nm: FloatArray,
    half_nm: float,
    pixel_nm: float,
    cache: ChunkCache | None,
) -> tuple[int, _Crop, npt.NDArray[np.bool_]]:
    """The label crop around a detection (level, crop, the object's mask in it): the coarsest
    level that resolves a tile pixel, or a finer one if the object vanished there (a thin
    object can fall between a coarse level's strided voxels).

    An object seen at no level (strided) is looked for at full resolution inside its box, when
    the box is small enough to read: found there, the card is drawn from the finest crop (the
    object too thin to show); found nowhere, the detection is refused.
    """
    sid = int(detection.segment_id)
    crop: _Crop | None = None
    for index in range(_choose_level(labels, pixel_nm), -1, -1):
        crop = _read_field(_level_for(labels, index, pixel_nm), centre_nm, half_nm, cache)
        if crop is not None:
            mask = crop.data == sid
            if mask.any():
                return index, crop, mask
    lo, hi = detection.bbox_min, detection.bbox_max
    affordable = math.prod(b - a for a, b in zip(lo, hi, strict=True)) <= MAX_CHECK_VOXELS
    if crop is not None and affordable:
        thin = np.any(read_box(labels.levels[0].array, lo, hi, cache) == sid)
        if thin:
            return 0, crop, np.zeros(crop.data.shape, dtype=bool)
    raise InvalidInputError(
        f"segment {sid} is not in the labels around its bounding box "
        f"{list(detection.bbox_min)} to {list(detection.bbox_max)}: is the detections table "
        "older than the labels?"
    )


def _draw_slices(
    canvas: npt.NDArray[np.uint8],
    style: CardStyle,
    source: CardSource,
    sid: int,
    label_crop: _Crop,
    object_mask: npt.NDArray[np.bool_],
    image_crop: _Crop | None,
    box_centre: FloatArray,
    centre: FloatArray,
    field_nm: float,
) -> tuple[tuple[float, ...], tuple[float, float]]:
    """Draw the slice tiles (three in 3D, one large in 2D) with their outlines; return the
    slice positions (nm, by normal axis) and the contrast window used."""
    ndim = label_crop.data.ndim
    tile = style.tile if ndim == 3 else style.size
    gray_tiles: list[npt.NDArray[Any]] = []
    inside_tiles: list[npt.NDArray[np.bool_]] = []
    label_tiles: list[npt.NDArray[Any]] = []
    slices = [0.0] * ndim if ndim == 3 else []
    plan = _TILES_3D if ndim == 3 else ((None, 0, 1),)
    for normal, row_axis, col_axis in plan:
        rows = (row_axis, box_centre[row_axis] + _tile_steps(field_nm, tile))
        cols = (col_axis, box_centre[col_axis] + _tile_steps(field_nm, tile))
        plane_nm = 0.0
        if normal is not None:
            plane_nm = _slice_with_object(label_crop, object_mask, normal, float(centre[normal]))
            slices[normal] = plane_nm
        lab, inside = _sample_plane(label_crop, normal, plane_nm, rows, cols, 0)
        values = np.zeros((tile, tile), np.float32)
        image_inside = np.zeros((tile, tile), bool)
        if image_crop is not None:
            values, image_inside = _sample_plane(image_crop, normal, plane_nm, rows, cols, 1)
        label_tiles.append(np.where(inside, lab, 0))
        gray_tiles.append(values)
        inside_tiles.append(inside & image_inside)
    window = style.window or source.window or _window_of(gray_tiles, inside_tiles)
    positions = _TILE_POSITIONS if ndim == 3 else ((0, 0),)
    for (row, col), values, inside, lab in zip(
        positions, gray_tiles, inside_tiles, label_tiles, strict=True
    ):
        pixels = np.where(inside, gray_indices(values, window), OUTSIDE).astype(np.uint8)
        own, theirs = _outlines(lab, sid, style.outline_width, style.neighbours)
        pixels[theirs] = NEIGHBOUR
        pixels[own] = OUTLINE
        y0, x0 = row * (style.tile + style.gap), col * (style.tile + style.gap)
        canvas[y0 : y0 + tile, x0 : x0 + tile] = pixels
    return tuple(slices), (float(window[0]), float(window[1]))


def _draw_mesh(
    canvas: npt.NDArray[np.uint8],
    style: CardStyle,
    source: CardSource,
    sid: int,
    label_crop: _Crop,
    object_mask: npt.NDArray[np.bool_],
    box_centre: FloatArray,
    field_nm: float,
    finest_voxel_nm: float,
) -> MeshSource:
    """Draw the mesh tile: the stored mesh, else marching cubes of the label crop."""
    pixel_nm = field_nm / style.tile
    mesh = _stored_mesh(source.mesh_dir, sid, pixel_nm) if source.mesh_dir else None
    mesh_source: MeshSource = "stored"
    # Fragments of a stored multi-resolution mesh duplicate their cut vertices: weld them so the
    # cuts do not show as seams in the shading.
    weld: float | None = 1e-3 * finest_voxel_nm
    if mesh is None:
        mesh, mesh_source, weld = _label_mesh(label_crop, object_mask), "marching cubes", None
    if mesh is None:
        return "none"
    raster = render_mesh(
        mesh[0],
        mesh[1],
        centre_xyz=[float(c) for c in box_centre[::-1]],
        field=field_nm,
        size=style.tile,
        azimuth_deg=style.azimuth_deg,
        elevation_deg=style.elevation_deg,
        weld_tolerance=weld,
    )
    row, col = _MESH_POSITION
    y0, x0 = row * (style.tile + style.gap), col * (style.tile + style.gap)
    canvas[y0 : y0 + style.tile, x0 : x0 + style.tile] = np.where(
        raster.mask, shade_indices(raster.intensity), BACKGROUND
    )
    return mesh_source


def render_card(
    source: CardSource,
    detection: Detection,
    style: CardStyle | None = None,
    *,
    cache: ChunkCache | None = None,
) -> Card:
    """Render one detection's card (see the module docstring for what it shows).

    Raises :class:`InvalidInputError` when the box is not inside the labels or the segment is
    not in its box (a stale detections table). ``cache`` shares decoded chunks between cards.
    """
    style = style or CardStyle()
    labels, image = source.labels, source.image
    _check_detection(detection, labels)
    sid = int(detection.segment_id)
    ndim = labels.ndim
    base = labels.levels[0]
    v0 = np.asarray(base.voxel_size_nm)
    o0 = np.asarray(base.origin_nm)
    lo = np.asarray(detection.bbox_min, dtype=np.float64)
    hi = np.asarray(detection.bbox_max, dtype=np.float64)
    box_centre = o0 + (lo + hi - 1) / 2 * v0
    extent = float(np.max((hi - lo) * v0))
    margin = max(style.margin * extent, style.min_margin_voxels * float(v0.min()))
    field_nm = extent + 2 * margin
    tile = style.tile if ndim == 3 else style.size
    pixel_nm = field_nm / tile
    centre = (
        o0 + np.asarray(detection.centre, dtype=np.float64) * v0
        if detection.centre is not None
        else box_centre
    )

    level_index, label_crop, object_mask = _read_labels(
        labels, detection, box_centre, field_nm / 2, pixel_nm, cache
    )
    image_index = _choose_level(image, pixel_nm)
    image_crop = _read_field(
        _level_for(image, image_index, pixel_nm), box_centre, field_nm / 2, cache
    )
    canvas = np.full((style.size, style.size), BACKGROUND, dtype=np.uint8)
    slices, window = _draw_slices(
        canvas, style, source, sid, label_crop, object_mask, image_crop, box_centre, centre,
        field_nm,
    )  # fmt: skip
    mesh_source: MeshSource = "none"
    if ndim == 3 and style.mesh:
        mesh_source = _draw_mesh(
            canvas, style, source, sid, label_crop, object_mask, box_centre, field_nm,
            float(v0.min()),
        )  # fmt: skip
    if style.scale_bar and labels.calibrated and tile >= MIN_SCALE_BAR_TILE:
        _draw_scale_bar(canvas, tile, pixel_nm)
    return Card(
        segment_id=sid,
        png=encode_png(canvas),
        level=level_index,
        image_level=image_index,
        field_nm=field_nm,
        pixel_nm=pixel_nm,
        centre_nm=tuple(float(c) for c in box_centre),
        slices_nm=slices,
        window=window,
        mesh_source=mesh_source,
        geometry=CardGeometry(
            ndim=ndim,
            tile=style.tile,
            gap=style.gap,
            size=style.size,
            field_nm=field_nm,
            centre_nm=tuple(float(c) for c in box_centre),
            slices_nm=slices,
            voxel_size_nm=tuple(float(v) for v in v0),
            origin_nm=tuple(float(o) for o in o0),
            shape=base.shape,
        ),
    )


def _draw_scale_bar(canvas: npt.NDArray[np.uint8], tile: int, pixel_nm: float) -> None:
    """A bar of a round length (at most a quarter of the tile) and its length, bottom left of
    the first tile, with a dark halo so it reads on any background."""
    length_nm = _nice_length(tile * pixel_nm / 4)
    length_px = max(1, round(length_nm / pixel_nm))
    bar = np.ones((2, length_px), dtype=bool)
    bottom = tile - 4
    stamp(canvas, bar, bottom - 2, 4)
    stamp(canvas, text_mask(_length_text(length_nm)), bottom - 2 - 2 - 6, 4)


# ---------------------------------------------------------------------------- many cards


def card_set_key(source_version: str, style: CardStyle | None = None) -> str:
    """Name of a set of cards: a hash of the renderer's version, the style, and the caller's
    version of the layers (e.g. the layer's id and when its data last changed, or
    :func:`store_version`). Anything that changes the pixels changes the key."""
    style = style or CardStyle()
    payload = json.dumps(
        {"renderer": RENDERER_VERSION, "style": asdict(style), "source": source_version},
        sort_keys=True,
    )
    return hashlib.sha256(payload.encode()).hexdigest()[:16]


def store_version(*paths: Path | None) -> str:
    """A cheap version of stores on disk: the sizes and modification times of their metadata
    files (``zarr.json``, ``.zarray``, ``.zattrs``, a mesh ``info``) and of the directories
    holding them. A re-import or a republished layer rewrites those; a writer that changes
    chunks in place must pass its own version to :func:`card_set_key` instead. An image's
    ``labels`` group is not walked: a label image added beside it (a curated layer) changes no
    pixel of the image, and a label image that matters is passed as a path of its own."""
    parts: list[str] = []
    names = {"zarr.json", ".zarray", ".zattrs", ".zgroup", "info"}
    for path in paths:
        if path is None:
            continue
        path = Path(path)
        stat = path.stat()
        parts.append(f"{path.resolve()}:{stat.st_size}:{stat.st_mtime_ns}")
        if path.is_dir():
            for root, dirs, files in os.walk(path):
                # Chunk directories (numeric names) hold no metadata: do not walk them.
                dirs[:] = sorted(
                    d
                    for d in dirs
                    if not d.isdigit() and d != "c" and not (root == str(path) and d == "labels")
                )
                for name in sorted(files):
                    if name in names:
                        st = os.stat(os.path.join(root, name))
                        rel = os.path.relpath(os.path.join(root, name), path)
                        parts.append(f"{rel}:{st.st_size}:{st.st_mtime_ns}")
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:16]


def card_path(out_dir: Path, segment_id: int) -> Path:
    """Where a segment's card lives in a card directory."""
    return Path(out_dir) / f"{int(segment_id)}.png"


def card_geometry_path(out_dir: Path, segment_id: int) -> Path:
    """Where a segment's card geometry lives in a card directory (beside its PNG)."""
    return Path(out_dir) / f"{int(segment_id)}.json"


def _write_atomic(target: Path, data: bytes) -> None:
    tmp = target.with_name(f".{target.name}.{os.getpid()}-{threading.get_ident()}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, target)


def write_card(out_dir: Path, card: Card) -> Path:
    """Write a card into a card directory, each file atomically: its geometry first, then the
    PNG, so that whoever finds the PNG finds the geometry too. Returns the PNG's path."""
    geometry = json.dumps(card.geometry.to_json(), separators=(",", ":"))
    _write_atomic(card_geometry_path(out_dir, card.segment_id), geometry.encode())
    target = card_path(out_dir, card.segment_id)
    _write_atomic(target, card.png)
    return target


def read_card_geometry(out_dir: Path, segment_id: int) -> CardGeometry | None:
    """The geometry of a cached card; None when it is absent or unreadable."""
    try:
        payload = json.loads(card_geometry_path(out_dir, segment_id).read_text())
        return CardGeometry.from_json(payload)
    except (OSError, ValueError, InvalidInputError):
        return None


@dataclass(frozen=True)
class CardsResult:
    """What :func:`render_cards` did."""

    out_dir: Path
    written: int
    skipped: int  # already present (skip_existing)
    failed: dict[int, str] = field(default_factory=dict)  # segment id -> message
    seconds: float = 0.0
    bytes_written: int = 0
    chunk_reads: int = 0


def _morton(cell: Sequence[int]) -> int:
    key = 0
    for bit in range(21):
        for axis, value in enumerate(cell):
            key |= ((int(value) >> bit) & 1) << (bit * len(cell) + axis)
    return key


def spatial_order(detections: Sequence[Detection], block: Sequence[int]) -> list[Detection]:
    """Detections sorted along a Z-order curve over ``block``-sized cells of their box centres,
    so that consecutive cards read neighbouring chunks."""

    def key(d: Detection) -> tuple[int, int]:
        cell = [
            ((a + b) // 2) // max(1, int(s))
            for a, b, s in zip(d.bbox_min, d.bbox_max, block, strict=False)
        ]
        return (_morton(cell), d.segment_id)

    return sorted(detections, key=key)


def render_cards(
    source: CardSource,
    detections: Sequence[Detection],
    out_dir: Path,
    style: CardStyle | None = None,
    *,
    skip_existing: bool = False,
    progress: ProgressCallback = no_progress,
    cache_bytes: int = CHUNK_CACHE_BYTES,
) -> CardsResult:
    """Render cards of many detections into ``out_dir/<segment id>.png`` (with their geometry in
    ``<segment id>.json``, :func:`write_card`).

    Detections are drawn in spatial order through one chunk cache of ``cache_bytes``, so memory
    stays bounded and clustered detections decode their chunks once. Files are written
    atomically; with ``skip_existing`` a card already in ``out_dir`` is kept (``out_dir`` named by
    :func:`card_set_key` makes that a cache). A detection that cannot be drawn (bad box, segment
    absent) is reported in ``failed`` and the others go on.
    """
    style = style or CardStyle()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    block = _chunks_of(source.labels.levels[0].array) or (64,) * source.labels.ndim
    ordered = spatial_order(detections, block)
    cache = ChunkCache(cache_bytes)
    written = skipped = total_bytes = 0
    failed: dict[int, str] = {}
    total = len(ordered)
    last_report = -math.inf
    progress("cards", 0, total)
    for done, detection in enumerate(ordered, start=1):
        target = card_path(out_dir, detection.segment_id)
        if skip_existing and target.exists():
            skipped += 1
        else:
            try:
                card = render_card(source, detection, style, cache=cache)
            except PipelineError as error:
                failed[int(detection.segment_id)] = str(error)
            else:
                write_card(out_dir, card)
                written += 1
                total_bytes += len(card.png)
        now = time.monotonic()
        if done == total or now - last_report >= PROGRESS_INTERVAL_S:
            last_report = now
            progress("cards", done, total)
    return CardsResult(
        out_dir=out_dir,
        written=written,
        skipped=skipped,
        failed=failed,
        seconds=time.perf_counter() - start,
        bytes_written=total_bytes,
        chunk_reads=cache.reads,
    )
