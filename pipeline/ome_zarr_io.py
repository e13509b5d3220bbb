"""Reading and writing OME-Zarr multiscale images chunk by chunk.

Writing goes level by level: level 0 from a region source (memory map, tifffile's Zarr view, a
Zarr array), each coarser level from the level just written. A small thread pool copies tiles of
whole chunks with at most two tiles per thread in flight, so memory stays bounded whatever the
volume size (no task graph grows with it). Arrays are written with zarr; the NGFF metadata by
ome-zarr-py (``write_multiscales_metadata``, ``write_label_metadata``).
"""

from __future__ import annotations

import itertools
import math
import os
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, TypeAlias, cast

import dask.array as da
import numpy as np
import zarr
from ome_zarr.format import FormatV05
from ome_zarr.writer import add_metadata, write_label_metadata, write_multiscales_metadata

from pipeline.errors import InvalidInputError
from pipeline.layout import LABELS_GROUP
from pipeline.progress import ProgressCallback, no_progress
from pipeline.units import nanometres_per_unit

ZarrArray: TypeAlias = "zarr.Array[Any]"
NGFF_WRITE_VERSION = "0.5"
SPATIAL_AXES = ("z", "y", "x")
CONTRAST_PERCENTILES = (0.5, 99.5)
CONTRAST_SAMPLE_EDGE = 256  # spatial edge of the central crop sampled for contrast
PROGRESS_MIN_INTERVAL_S = 0.2  # at most ~5 reports a second: a report may write a DB row
MAX_LEVELS = 16
MAX_WORKERS = 8
MEMORY_BUDGET_BYTES = 1 << 30  # for tiles in flight; a strip TIFF's tile is a stack of pages


def spatial_chunk_edge(n_spatial: int, chunk: int) -> int:
    """Chunk edge along spatial axes: ``chunk`` in 3D, four times it in 2D (e.g. 256^2)."""
    return chunk if n_spatial == 3 else chunk * 4


def chunk_shape(axes: Sequence[str], chunk: int) -> tuple[int, ...]:
    """Zarr chunk shape for ``axes``: one channel per chunk, cubes/squares in space."""
    edge = spatial_chunk_edge(sum(a in SPATIAL_AXES for a in axes), chunk)
    return tuple(edge if a in SPATIAL_AXES else 1 for a in axes)


@dataclass(frozen=True)
class Multiscale:
    """An opened OME-Zarr multiscale image (or label image): metadata plus lazy level arrays."""

    path: Path
    ngff_version: str
    name: str
    axes: tuple[str, ...]
    axis_types: tuple[str | None, ...]
    units: tuple[str | None, ...]
    scales: tuple[tuple[float, ...], ...]  # one per level, over all axes
    levels: tuple[ZarrArray, ...]
    translations: tuple[tuple[float, ...], ...]  # one per level, over all axes (origin)

    @property
    def spatial_indices(self) -> tuple[int, ...]:
        return tuple(i for i, t in enumerate(self.axis_types) if t == "space")

    @property
    def voxel_size(self) -> tuple[float, ...]:
        """Level-0 voxel size along the spatial axes, in axis order (z, y, x)."""
        return tuple(self.scales[0][i] for i in self.spatial_indices)

    @property
    def unit(self) -> str | None:
        """The spatial unit (the first spatial axis's; NGFF allows one per axis)."""
        for i in self.spatial_indices:
            if self.units[i]:
                return self.units[i]
        return None

    @property
    def channels(self) -> int:
        return int(self.levels[0].shape[self.axes.index("c")]) if "c" in self.axes else 1

    def level(self, index: int) -> da.Array:
        """A lazy dask view of one level, chunked like the store."""
        array = self.levels[index]
        return cast(da.Array, da.from_array(array, chunks=array.chunks))  # type: ignore[no-untyped-call]


def _ome_attributes(group: zarr.Group) -> tuple[dict[str, Any], str | None]:
    """The OME attributes of a group and the NGFF version they declare (0.5 nests them)."""
    attrs = dict(group.attrs)
    if "ome" in attrs and isinstance(attrs["ome"], dict):
        ome = dict(attrs["ome"])
        return ome, str(ome.get("version", NGFF_WRITE_VERSION))
    version = None
    multiscales = attrs.get("multiscales")
    if isinstance(multiscales, list) and multiscales and isinstance(multiscales[0], dict):
        version = multiscales[0].get("version")
    return attrs, str(version) if version is not None else None


def _open_group(path: Path) -> zarr.Group:
    if not path.is_dir():
        raise InvalidInputError(f"{path.name}: no OME-Zarr directory at this path")
    try:
        node = zarr.open(store=str(path), mode="r")
    except Exception as exc:
        raise InvalidInputError(f"{path.name} is not a readable Zarr store: {exc}") from exc
    if not isinstance(node, zarr.Group):
        raise InvalidInputError(f"{path.name} is a Zarr array, not an OME-Zarr image group")
    return node


def _transforms_of(
    transforms: Any, ndim: int, where: str
) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """The scale and translation of a list of NGFF coordinate transformations (identity if none)."""
    found = {"scale": (1.0,) * ndim, "translation": (0.0,) * ndim}
    if transforms is not None and not isinstance(transforms, list):
        raise InvalidInputError(f"{where}: coordinateTransformations must be a list")
    for transform in transforms or []:
        kind = transform.get("type") if isinstance(transform, dict) else None
        if kind in found:
            values = transform.get(kind)
            if not isinstance(values, list) or len(values) != ndim:
                raise InvalidInputError(f"{where}: {kind} transform does not match the axes")
            try:
                found[kind] = tuple(float(v) for v in values)
            except (TypeError, ValueError):
                raise InvalidInputError(f"{where}: {kind} transform values must be numbers")
    return found["scale"], found["translation"]


def level_path_check(level_path: Any, where: str) -> str:
    """A multiscale level's ``path``, if it names an array inside the image group.

    NGFF level paths are relative to the image ("0", "s1"); an absolute path, ``..`` or ``.``
    segments, backslashes or empty segments could reach files outside the store (or nothing at
    all), so they are refused with a message instead of failing deep inside zarr.
    """
    if not isinstance(level_path, str) or not level_path:
        raise InvalidInputError(f"{where}: a pyramid level has no path")
    shown = ascii(level_path)
    if level_path.startswith("/") or "\\" in level_path or "\x00" in level_path:
        raise InvalidInputError(
            f"{where}: pyramid level path {shown} must be relative to the image, inside it"
        )
    segments = level_path.split("/")
    if any(segment in ("", ".", "..") for segment in segments):
        raise InvalidInputError(
            f"{where}: pyramid level path {shown} may not contain '..', '.' or empty parts: "
            "levels must lie inside the image"
        )
    return level_path


def open_multiscale(path: Path) -> Multiscale:
    """Open the first multiscale image of an OME-Zarr 0.4 (Zarr v2) or 0.5 (Zarr v3) group."""
    group = _open_group(path)
    ome, version = _ome_attributes(group)
    multiscales = ome.get("multiscales")
    if not isinstance(multiscales, list) or not multiscales:
        raise InvalidInputError(f"{path.name} is not an OME-Zarr image: no multiscales metadata")
    if version not in ("0.4", "0.5"):
        raise InvalidInputError(
            f"{path.name}: OME-Zarr version {version} is not supported (use 0.4 or 0.5)"
        )
    meta = multiscales[0]
    if not isinstance(meta, dict):
        raise InvalidInputError(f"{path.name}: multiscales metadata is not an object")
    raw_axes = meta.get("axes")
    datasets = meta.get("datasets")
    if not isinstance(raw_axes, list) or not isinstance(datasets, list) or not datasets:
        raise InvalidInputError(f"{path.name}: multiscales metadata lacks axes or datasets")
    if any(isinstance(a, dict) and "name" not in a for a in raw_axes):
        raise InvalidInputError(f"{path.name}: an axis in the multiscales metadata has no name")
    if not all(isinstance(d, dict) for d in datasets):
        raise InvalidInputError(f"{path.name}: multiscales datasets must be objects with a path")
    axes = tuple(str(a["name"] if isinstance(a, dict) else a) for a in raw_axes)
    types = tuple(a.get("type") if isinstance(a, dict) else None for a in raw_axes)
    types = tuple(
        t if t else {"c": "channel", "t": "time"}.get(n, "space")
        for n, t in zip(axes, types, strict=True)
    )
    units = tuple(a.get("unit") if isinstance(a, dict) else None for a in raw_axes)
    ndim = len(axes)
    global_scale, global_shift = _transforms_of(
        meta.get("coordinateTransformations"), ndim, path.name
    )
    levels: list[ZarrArray] = []
    scales: list[tuple[float, ...]] = []
    translations: list[tuple[float, ...]] = []
    for dataset in datasets:
        level_path = level_path_check(dataset.get("path"), path.name)
        try:
            array = group[level_path]
        except (KeyError, ValueError, FileNotFoundError):
            raise InvalidInputError(f"{path.name}: pyramid level {level_path!r} is missing")
        if not isinstance(array, zarr.Array) or array.ndim != ndim:
            raise InvalidInputError(f"{path.name}: level {level_path!r} does not match the axes")
        scale, shift = _transforms_of(dataset.get("coordinateTransformations"), ndim, path.name)
        levels.append(array)
        # The level's own transforms apply first, then the multiscale-wide ones.
        scales.append(tuple(a * b for a, b in zip(scale, global_scale, strict=True)))
        translations.append(
            tuple(t * g + u for t, g, u in zip(shift, global_scale, global_shift, strict=True))
        )
    return Multiscale(
        path=path,
        ngff_version=version,
        name=str(meta.get("name") or path.name),
        axes=axes,
        axis_types=types,
        units=units,
        scales=tuple(scales),
        levels=tuple(levels),
        translations=tuple(translations),
    )


class SpatialView:
    """A zarr array read with its singleton non-spatial axes (t, c) dropped."""

    def __init__(self, array: ZarrArray, spatial: Sequence[int]) -> None:
        self._array = array
        self._spatial = tuple(spatial)
        self.shape: tuple[int, ...] = tuple(int(array.shape[i]) for i in self._spatial)
        self.dtype: np.dtype[Any] = np.dtype(array.dtype)
        self.chunks: tuple[int, ...] = tuple(int(array.chunks[i]) for i in self._spatial)
        shards = getattr(array, "shards", None)
        self.shards: tuple[int, ...] | None = (
            None if shards is None else tuple(int(shards[i]) for i in self._spatial)
        )

    def __getitem__(self, key: Any) -> np.ndarray:
        key = key if isinstance(key, tuple) else (key,)
        index: list[Any] = [0] * len(self._array.shape)
        for axis, k in zip(self._spatial, key, strict=False):
            index[axis] = k
        for axis in self._spatial[len(key) :]:
            index[axis] = slice(None)
        return np.asarray(self._array[tuple(index)])


@dataclass(frozen=True)
class SpatialLevel:
    """One pyramid level seen as a spatial array (z, y, x or y, x), its geometry in nanometres."""

    array: ZarrArray | SpatialView  # the zarr array itself when it has only spatial axes
    axes: tuple[str, ...]
    voxel_size_nm: tuple[float, ...]
    translation_nm: tuple[float, ...]


def open_spatial_level(path: Path, level: int = 0, what: str = "image") -> SpatialLevel:
    """Open level ``level`` of an OME-Zarr image or label image as a spatial array.

    Non-spatial axes (channel, time) must have length 1 and are dropped. Voxel size and origin
    are converted to nanometres axis by axis; an axis without a unit is taken as nanometres.
    ``what`` names the input in error messages.
    """
    return spatial_level(open_multiscale(Path(path)), level, what)


def spatial_level(image: Multiscale, level: int = 0, what: str = "image") -> SpatialLevel:
    """:func:`open_spatial_level` of an image already opened (its metadata read once)."""
    name = f"{what} {image.path.name}"
    if not 0 <= level < len(image.levels):
        raise InvalidInputError(f"{name} has no level {level}: it has {len(image.levels)} levels")
    array = image.levels[level]
    spatial = image.spatial_indices
    if any(int(array.shape[i]) != 1 for i in range(array.ndim) if i not in spatial):
        raise InvalidInputError(
            f"{name} has axes {''.join(image.axes)} with shape {tuple(array.shape)}: "
            "the pipeline needs a single channel and time point"
        )
    to_nm = [nanometres_per_unit(image.units[i]) for i in spatial]
    voxel = tuple(image.scales[level][i] * f for i, f in zip(spatial, to_nm, strict=True))
    if any(v <= 0 for v in voxel):
        raise InvalidInputError(f"{name}: the OME-Zarr scale must be positive, not {voxel}")
    origin = tuple(image.translations[level][i] * f for i, f in zip(spatial, to_nm, strict=True))
    return SpatialLevel(
        array=array if len(spatial) == array.ndim else SpatialView(array, spatial),
        axes=tuple(image.axes[i] for i in spatial),
        voxel_size_nm=voxel,
        translation_nm=origin,
    )


def list_labels(path: Path) -> list[str]:
    """Names of the label images an OME-Zarr image lists under ``labels/`` (empty if none)."""
    labels_dir = path / LABELS_GROUP
    if not labels_dir.is_dir():
        return []
    ome, _ = _ome_attributes(_open_group(labels_dir))
    names = ome.get("labels", [])
    if not isinstance(names, list):
        raise InvalidInputError(f"{path.name}: labels metadata is not a list")
    return [str(n) for n in names]


def compute_contrast(array: ZarrArray | np.ndarray) -> tuple[float, float]:
    """Percentile contrast window of an image, from a central crop of at most 256 per axis."""
    region = tuple(
        slice(
            max(0, (n - CONTRAST_SAMPLE_EDGE) // 2),
            max(0, (n - CONTRAST_SAMPLE_EDGE) // 2) + CONTRAST_SAMPLE_EDGE,
        )
        for n in array.shape
    )
    sample = np.asarray(array[region], dtype=np.float64)
    sample = sample[np.isfinite(sample)]
    if sample.size == 0:
        return (0.0, 1.0)
    low, high = np.percentile(sample, CONTRAST_PERCENTILES)
    low, high = float(low), float(high)
    if high <= low:
        high = low + 1.0
    return (low, high)


def pyramid_factors(
    spatial_shape: Sequence[int], voxel_size: Sequence[float], edge: int
) -> list[tuple[int, ...]]:
    """Per-level downsampling factors (1 or 2 per spatial axis) until every axis fits a chunk.

    An axis is halved only while its voxel is less than twice the finest one, so anisotropic
    stacks (thick z sections) first become isotropic, then shrink evenly.
    """
    shape = [int(n) for n in spatial_shape]
    sizes = [float(v) for v in voxel_size]
    plan: list[tuple[int, ...]] = []
    while max(shape) > edge and len(plan) < MAX_LEVELS - 1:
        finest = min(s for s, n in zip(sizes, shape, strict=True) if n > 1)
        factors = tuple(
            2 if n > 1 and s < 2 * finest else 1 for s, n in zip(sizes, shape, strict=True)
        )
        plan.append(factors)
        shape = [math.ceil(n / f) for n, f in zip(shape, factors, strict=True)]
        sizes = [s * f for s, f in zip(sizes, factors, strict=True)]
    return plan


class _ThrottledReporter:
    """Counts written chunks from worker threads and reports at most ~5 times a second."""

    def __init__(self, progress: ProgressCallback, stage: str, total: int) -> None:
        self._progress = progress
        self._stage = stage
        self._total = total
        self._done = 0
        self._last = 0.0
        self._lock = threading.Lock()

    def start(self) -> None:
        self._progress(self._stage, 0, self._total)
        self._last = time.monotonic()

    def tick(self) -> None:
        with self._lock:
            self._done += 1
            now = time.monotonic()
            if self._done < self._total and now - self._last < PROGRESS_MIN_INTERVAL_S:
                return
            self._last = now
            done = self._done
            self._progress(self._stage, done, self._total)


class RegionSource(Protocol):
    """Anything a pyramid level can be written from: regions read on demand."""

    @property
    def shape(self) -> tuple[int, ...]: ...

    @property
    def dtype(self) -> np.dtype[Any]: ...

    @property
    def read_tile(self) -> tuple[int, ...]:
        """The region size that is cheap to read at once (e.g. a stack of TIFF pages)."""
        ...

    def read(self, region: tuple[slice, ...]) -> np.ndarray: ...


@dataclass(frozen=True)
class ArrayRegions:
    """Regions of an array-like (memory map, zarr array, tifffile Zarr view) in c, z, y, x order.

    ``axis_of`` gives, for each source axis, its position in the output (``None``: a singleton
    axis that is dropped); ``convert`` turns a read block into the stored dtype.
    """

    array: Any
    axis_of: tuple[int | None, ...]
    dtype: np.dtype[Any]
    read_tile: tuple[int, ...]
    convert: Callable[[np.ndarray], np.ndarray] | None = None

    @property
    def shape(self) -> tuple[int, ...]:
        out = [0] * sum(a is not None for a in self.axis_of)
        for n, pos in zip(self.array.shape, self.axis_of, strict=True):
            if pos is not None:
                out[pos] = int(n)
        return tuple(out)

    def read(self, region: tuple[slice, ...]) -> np.ndarray:
        index = tuple(0 if pos is None else region[pos] for pos in self.axis_of)
        block = np.asarray(self.array[index])
        kept = [pos for pos in self.axis_of if pos is not None]
        block = block.transpose(np.argsort(kept))
        return self.convert(block) if self.convert else block.astype(self.dtype, copy=False)


def zarr_regions(array: ZarrArray) -> ArrayRegions:
    """Read a zarr array as-is, tile by tile along its own chunks."""
    return ArrayRegions(array, tuple(range(array.ndim)), np.dtype(array.dtype), array.chunks)


@dataclass(frozen=True)
class DownsampledRegions:
    """A written level halved along some axes: averaged for images, strided for labels."""

    level: ZarrArray
    factors: tuple[int, ...]
    labels: bool

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(math.ceil(n / f) for n, f in zip(self.level.shape, self.factors, strict=True))

    @property
    def dtype(self) -> np.dtype[Any]:
        return np.dtype(self.level.dtype)

    @property
    def read_tile(self) -> tuple[int, ...]:
        return tuple(self.level.chunks)

    def read(self, region: tuple[slice, ...]) -> np.ndarray:
        source = tuple(
            slice(r.start * f, min(r.stop * f, n))
            for r, f, n in zip(region, self.factors, self.level.shape, strict=True)
        )
        block = np.asarray(self.level[source])
        if self.labels:
            return _downsample_stride(block, self.factors)
        return _downsample_mean(block, self.factors)


def _tiles(shape: Sequence[int], tile: Sequence[int]) -> Iterator[tuple[slice, ...]]:
    ranges = [range(0, n, t) for n, t in zip(shape, tile, strict=True)]
    for starts in itertools.product(*ranges):
        yield tuple(slice(a, min(a + t, n)) for a, t, n in zip(starts, tile, shape, strict=True))


def _worker_count(tile_bytes: int) -> int:
    # A tile is held decoded plus a copy or two while it is split into chunks.
    by_memory = MEMORY_BUDGET_BYTES // max(1, 3 * tile_bytes)
    return max(1, min(os.cpu_count() or 1, MAX_WORKERS, by_memory))


def write_level(
    source: RegionSource,
    target: ZarrArray,
    progress: ProgressCallback = no_progress,
    stage: str = "level",
) -> None:
    """Copy ``source`` into ``target`` tile by tile on a few threads, with bounded memory.

    Tiles are whole multiples of the target's chunks covering the source's cheap read unit, so
    each source region is read once and every chunk is written by exactly one thread. At most
    two tiles per thread are in flight, so memory does not grow with the volume.
    """
    chunks = tuple(int(c) for c in target.chunks)
    shape = tuple(int(n) for n in source.shape)
    tile = tuple(
        min(n, math.ceil(max(r, 1) / c) * c)
        for n, r, c in zip(shape, source.read_tile, chunks, strict=True)
    )
    tile_bytes = math.prod(tile) * max(np.dtype(source.dtype).itemsize, 1)
    total = math.prod(math.ceil(n / c) for n, c in zip(shape, chunks, strict=True))
    reporter = _ThrottledReporter(progress, stage, total)

    def copy(region: tuple[slice, ...]) -> None:
        data = source.read(region)
        for sub in _tiles(data.shape, chunks):
            target[
                tuple(
                    slice(r.start + s.start, r.start + s.stop)
                    for r, s in zip(region, sub, strict=True)
                )
            ] = data[sub]
            reporter.tick()

    workers = _worker_count(tile_bytes)
    reporter.start()
    with ThreadPoolExecutor(max_workers=workers) as pool:
        pending: set[Future[None]] = set()
        try:
            for region in _tiles(shape, tile):
                pending.add(pool.submit(copy, region))
                if len(pending) >= 2 * workers:
                    finished, pending = wait(pending, return_when=FIRST_COMPLETED)
                    for future in finished:
                        future.result()
            for future in pending:
                future.result()
        except BaseException:
            for future in pending:
                future.cancel()
            raise


def _downsample_mean(block: np.ndarray, factors: tuple[int, ...]) -> np.ndarray:
    # Summing strided views keeps the float accumulator at the output's size, not the input's.
    pad = [(0, (-n) % f) for n, f in zip(block.shape, factors, strict=True)]
    if any(p for _, p in pad):
        block = np.pad(block, pad, mode="edge")
    out_shape = tuple(n // f for n, f in zip(block.shape, factors, strict=True))
    total = np.zeros(out_shape, dtype=np.float64)
    for offsets in itertools.product(*(range(f) for f in factors)):
        total += block[tuple(slice(o, None, f) for o, f in zip(offsets, factors, strict=True))]
    total /= math.prod(factors)
    if np.issubdtype(block.dtype, np.integer):
        info = np.iinfo(block.dtype)
        np.clip(np.rint(total, out=total), info.min, info.max, out=total)
    return total.astype(block.dtype)


def _downsample_stride(block: np.ndarray, factors: tuple[int, ...]) -> np.ndarray:
    # Labels are ids: pick voxels, never average them.
    return block[tuple(slice(None, None, f) for f in factors)]


def axes_metadata(axes: Sequence[str], unit: str | None) -> list[dict[str, str]]:
    """NGFF axis entries: name, type, and the unit (if any) on spatial axes."""
    out: list[dict[str, str]] = []
    for name in axes:
        if name in SPATIAL_AXES:
            out.append({"name": name, "type": "space", **({"unit": unit} if unit else {})})
        elif name == "c":
            out.append({"name": name, "type": "channel"})
        else:
            raise ValueError(f"unsupported axis {name!r}")
    return out


def level_scales(
    axes: Sequence[str], voxel_size: Sequence[float], plan: Sequence[tuple[int, ...]]
) -> list[list[float]]:
    """Scale per level over all axes: the voxel size, doubled on each halved axis."""
    spatial = [float(v) for v in voxel_size]
    scales: list[list[float]] = []
    for level in range(len(plan) + 1):
        if level:
            spatial = [s * f for s, f in zip(spatial, plan[level - 1], strict=True)]
        it = iter(spatial)
        scales.append([next(it) if a in SPATIAL_AXES else 1.0 for a in axes])
    return scales


def write_pyramid_metadata(
    group: zarr.Group,
    *,
    axes: Sequence[str],
    unit: str | None,
    scales: Sequence[Sequence[float]],
    name: str,
    translations: Sequence[Sequence[float]] | None = None,
) -> None:
    """NGFF 0.5 multiscales metadata for levels ``s0..sN`` of ``group``, one scale per level
    (and one translation per level when given)."""
    datasets: list[dict[str, Any]] = [
        {
            "path": f"s{i}",
            "coordinateTransformations": [{"type": "scale", "scale": [float(v) for v in scale]}],
        }
        for i, scale in enumerate(scales)
    ]
    for dataset, shift in zip(datasets, translations or [], strict=False):
        dataset["coordinateTransformations"].append(
            {"type": "translation", "translation": [float(v) for v in shift]}
        )
    write_multiscales_metadata(
        group, datasets=datasets, fmt=FormatV05(), axes=axes_metadata(axes, unit), name=name
    )


@dataclass(frozen=True)
class WrittenPyramid:
    """What :func:`write_pyramid` wrote."""

    levels: tuple[ZarrArray, ...]
    scales: tuple[tuple[float, ...], ...]


def write_pyramid(
    source: RegionSource,
    group: zarr.Group,
    *,
    axes: Sequence[str],
    voxel_size: Sequence[float],
    unit: str,
    plan: Sequence[tuple[int, ...]],
    chunk: int = 64,
    labels: bool = False,
    name: str = "image",
    stage: str = "image",
    progress: ProgressCallback = no_progress,
    extra_metadata: dict[str, Any] | None = None,
) -> WrittenPyramid:
    """Write ``source`` as levels ``s0..sN`` of an NGFF 0.5 multiscale in ``group``.

    ``plan`` gives the spatial factors of each coarser level (see :func:`pyramid_factors`);
    channels are never downsampled. Images are averaged, labels strided.
    """
    axes = tuple(axes)
    if len(source.shape) != len(axes):
        raise ValueError(f"array has {len(source.shape)} dimensions but axes are {axes}")
    chunks = chunk_shape(axes, chunk)
    spatial_positions = [i for i, a in enumerate(axes) if a in SPATIAL_AXES]
    levels: list[ZarrArray] = []
    current: RegionSource = source
    for index in range(len(plan) + 1):
        if index:
            factors = [1] * len(axes)
            for pos, f in zip(spatial_positions, plan[index - 1], strict=True):
                factors[pos] = f
            current = DownsampledRegions(levels[-1], tuple(factors), labels)
        target = group.create_array(
            name=f"s{index}",
            shape=current.shape,
            dtype=current.dtype,
            chunks=tuple(min(c, max(n, 1)) for c, n in zip(chunks, current.shape, strict=True)),
            dimension_names=axes,
            fill_value=0,
        )
        write_level(current, target, progress, f"{stage} level {index}")
        levels.append(target)
    scales = level_scales(axes, voxel_size, plan)
    write_pyramid_metadata(group, axes=axes, unit=unit, scales=scales, name=name)
    if extra_metadata:
        add_metadata(group, extra_metadata, fmt=FormatV05())
    return WrittenPyramid(levels=tuple(levels), scales=tuple(tuple(s) for s in scales))


def write_omero(
    group: zarr.Group, channels: int, dtype: np.dtype[Any], contrast: tuple[float, float]
) -> None:
    """Add ``omero`` rendering hints: a grey window per channel set to ``contrast``."""
    if np.issubdtype(dtype, np.integer):
        info = np.iinfo(dtype)
        lo, hi = float(info.min), float(info.max)
    else:
        lo, hi = contrast
    window = {"min": lo, "max": hi, "start": contrast[0], "end": contrast[1]}
    omero = {
        "channels": [
            {"color": "FFFFFF", "window": dict(window), "active": True, "label": f"channel {i}"}
            for i in range(channels)
        ],
        "rdefs": {"model": "greyscale" if channels == 1 else "color"},
    }
    add_metadata(group, {"omero": omero}, fmt=FormatV05())


def create_image_group(path: Path) -> zarr.Group:
    """Create an empty Zarr v3 group for an NGFF 0.5 image (fails if it exists)."""
    return zarr.open_group(str(path), mode="w-", zarr_format=3)


def create_single_level_image(
    path: Path,
    shape: Sequence[int],
    *,
    dtype: Any,
    chunks: Sequence[int],
    voxel_size: Sequence[float] | None,
    unit: str = "nanometer",
    name: str,
    fill_value: float = 0,
    label: bool = False,
    translation: Sequence[float] | None = None,
) -> ZarrArray:
    """Create an NGFF 0.5 image of spatial axes with one level ``s0`` that the caller fills.

    Without ``voxel_size`` the scale is 1 and no unit is recorded; ``translation`` (in the
    voxel size's unit) is the physical position of voxel 0; ``label`` marks it as a label image
    (``image-label``). Fails if ``path`` exists.
    """
    axes = SPATIAL_AXES[-len(shape) :]
    group = create_image_group(path)
    array = group.create_array(
        name="s0",
        shape=tuple(shape),
        dtype=dtype,
        chunks=tuple(chunks),
        dimension_names=axes,
        fill_value=fill_value,
    )
    write_pyramid_metadata(
        group,
        axes=axes,
        unit=unit if voxel_size is not None else None,
        scales=[voxel_size if voxel_size is not None else [1.0] * len(shape)],
        name=name,
        translations=None if translation is None else [translation],
    )
    if label:
        fmt = FormatV05()
        add_metadata(group, {"image-label": {"version": fmt.version}}, fmt=fmt)
    return array


def write_label_image(
    image_group: zarr.Group,
    name: str,
    source: RegionSource,
    *,
    axes: Sequence[str],
    voxel_size: Sequence[float],
    unit: str,
    plan: Sequence[tuple[int, ...]],
    chunk: int = 64,
    progress: ProgressCallback = no_progress,
) -> WrittenPyramid:
    """Write one label image under ``labels/<name>`` and list it in ``labels``' metadata."""
    labels_group = image_group.require_group(LABELS_GROUP)
    label_group = labels_group.create_group(name)
    written = write_pyramid(
        source,
        label_group,
        axes=axes,
        voxel_size=voxel_size,
        unit=unit,
        plan=plan,
        chunk=chunk,
        labels=True,
        name=name,
        stage=f"labels {name}",
        progress=progress,
    )
    fmt = FormatV05()
    write_label_metadata(labels_group, name, fmt=fmt, source={"image": "../../"})
    add_metadata(labels_group, {"version": fmt.version}, fmt=fmt)  # 0.5 wants it on every group
    return written
