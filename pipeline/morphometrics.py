"""Per-object measurements of a 3D label image: voxel counts, centroids, boxes, volume, sphericity.

Statistics are gathered block by block (a zarr array is read one chunk or shard at a time) and
merged per id, so objects that cross block borders are measured exactly and memory is bounded by a
block plus one row per object, not by the volume. Given an image of the same shape, the same pass
sums its values per object (the mean image intensity of each object).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import cc3d
import fastremap
import numpy as np
import numpy.typing as npt
import pandas as pd

from pipeline.errors import InvalidInputError
from pipeline.progress import ProgressCallback, no_progress

TABLE_COLUMNS: tuple[str, ...] = (
    "id",
    "voxels",
    "volume",
    "surface_area",
    "sphericity",
    "centroid_z",
    "centroid_y",
    "centroid_x",
    "bbox_z0",
    "bbox_y0",
    "bbox_x0",
    "bbox_z1",
    "bbox_y1",
    "bbox_x1",
)
DEFAULT_BLOCK = (128, 128, 128)
_COMPACT_ROWS = 1_000_000  # merge partial rows once this many have piled up


class LabelArray(Protocol):
    """Anything sliceable with a shape: a numpy array, a zarr array."""

    @property
    def shape(self) -> tuple[int, ...]: ...

    def __getitem__(self, key: Any) -> Any: ...


class DepthOneView:
    """A 2D (y, x) array read as (1, y, x): the block-wise statistics are 3D only, and a 2D
    image is the one-voxel-deep volume the site's campaigns make of it."""

    def __init__(self, array: LabelArray) -> None:
        self._array = array
        self.shape: tuple[int, ...] = (1, *(int(n) for n in array.shape))
        self.dtype = np.dtype(getattr(array, "dtype", np.uint32))
        for attr in ("chunks", "shards"):
            inner = getattr(array, attr, None)
            setattr(self, attr, None if inner is None else (1, *(int(n) for n in inner)))

    def __getitem__(self, key: Any) -> np.ndarray:
        key = key if isinstance(key, tuple) else (key,)
        if any(k is Ellipsis for k in key):
            at = next(i for i, k in enumerate(key) if k is Ellipsis)
            fill = (slice(None),) * (3 - len(key) + 1)
            key = key[:at] + fill + key[at + 1 :]
        first, rest = key[0], key[1:]
        if isinstance(first, int | np.integer):
            if first not in (0, -1):
                raise IndexError(f"index {first} is out of bounds for a depth of one")
            return np.asarray(self._array[rest])
        return np.asarray(np.asarray(self._array[rest])[None][first])


def sphericity(volume: float, area: float) -> float:
    """Sphericity pi^(1/3) (6V)^(2/3) / A: 1 for a sphere, about 0.806 for a cube."""
    if area <= 0 or volume <= 0:
        return float("nan")
    return float(math.pi ** (1 / 3) * (6.0 * volume) ** (2 / 3) / area)


def mesh_surface_area(vertices: npt.ArrayLike, faces: npt.ArrayLike) -> float:
    """Total area of a triangle mesh, in the square of the vertices' unit."""
    v = np.asarray(vertices, dtype=np.float64)
    f = np.asarray(faces, dtype=np.int64)
    if f.size == 0:
        return 0.0
    cross = np.cross(v[f[:, 1]] - v[f[:, 0]], v[f[:, 2]] - v[f[:, 0]])
    return float(0.5 * np.linalg.norm(cross, axis=1).sum())


def mesh_volume(vertices: npt.ArrayLike, faces: npt.ArrayLike) -> float:
    """Signed volume enclosed by a closed mesh (positive when faces wind outwards)."""
    v = np.asarray(vertices, dtype=np.float64)
    f = np.asarray(faces, dtype=np.int64)
    if f.size == 0:
        return 0.0
    return float(np.einsum("ij,ij->i", v[f[:, 0]], np.cross(v[f[:, 1]], v[f[:, 2]])).sum() / 6.0)


@dataclass(frozen=True)
class LabelStats:
    """Per-id statistics; rows sorted by id. Boxes are half-open voxel ranges, z y x order."""

    ids: npt.NDArray[np.uint64]
    voxels: npt.NDArray[np.int64]
    centroids: npt.NDArray[np.float64]  # (N, 3) voxel coordinates z y x
    bbox_min: npt.NDArray[np.int64]  # (N, 3) inclusive
    bbox_max: npt.NDArray[np.int64]  # (N, 3) exclusive
    # (N,) sum of the image's values over each object's voxels, when an image was given
    intensity_sums: npt.NDArray[np.float64] | None = None

    def __len__(self) -> int:
        return len(self.ids)

    @property
    def mean_intensity(self) -> npt.NDArray[np.float64] | None:
        """Mean image value per object (None when measured without an image)."""
        if self.intensity_sums is None:
            return None
        result: npt.NDArray[np.float64] = self.intensity_sums / self.voxels
        return result


@dataclass
class _Partial:
    ids: npt.NDArray[np.uint64]
    voxels: npt.NDArray[np.int64]
    sums: npt.NDArray[np.float64]
    lo: npt.NDArray[np.int64]
    hi: npt.NDArray[np.int64]
    intensity: npt.NDArray[np.float64] | None = None


def block_shape_of(labels: LabelArray) -> tuple[int, ...]:
    """The natural read unit of an array: its zarr shard or chunk shape, else a default."""
    for attr in ("shards", "chunks"):
        shape = getattr(labels, attr, None)
        if isinstance(shape, tuple) and len(shape) == len(labels.shape):
            return tuple(int(s) for s in shape)
    return DEFAULT_BLOCK[: len(labels.shape)]


def iter_blocks(shape: Sequence[int], block: Sequence[int]) -> Iterator[tuple[slice, slice, slice]]:
    """Slices covering a 3D shape in blocks of ``block`` (the last ones may be smaller)."""
    ranges = [range(0, n, b) for n, b in zip(shape, block, strict=True)]
    for z, y, x in itertools.product(*ranges):
        yield (
            slice(z, min(z + block[0], shape[0])),
            slice(y, min(y + block[1], shape[1])),
            slice(x, min(x + block[2], shape[2])),
        )


def _block_partial(
    block: npt.NDArray[Any],
    offset: npt.NDArray[np.int64],
    image: npt.NDArray[Any] | None = None,
) -> _Partial | None:
    if block.dtype.kind not in "ui":
        raise InvalidInputError(f"label images must hold integers, not {block.dtype}")
    if block.dtype.kind == "i" and block.size and int(block.min()) < 0:
        raise InvalidInputError("label images must not hold negative ids")
    if not block.any():
        return None
    # cc3d.statistics needs ids below the voxel count: renumber densely, then map back.
    dense, mapping = fastremap.renumber(block, preserve_zero=True, in_place=False)
    stats = cc3d.statistics(np.ascontiguousarray(dense), no_slice_conversion=True)
    n = len(stats["voxel_counts"])
    original = np.zeros(n, dtype=np.uint64)
    for old, new in mapping.items():
        original[int(new)] = int(old)
    keep = np.arange(1, n)
    counts = np.asarray(stats["voxel_counts"], dtype=np.int64)[keep]
    centroids = np.asarray(stats["centroids"], dtype=np.float64)[keep]
    boxes = np.asarray(stats["bounding_boxes"], dtype=np.int64)[keep]
    present = counts > 0
    lo = boxes[:, 0::2] + offset
    hi = boxes[:, 1::2] + offset + 1
    sums = (centroids + offset) * counts[:, None]
    intensity = None
    if image is not None:
        if image.shape != block.shape:
            raise InvalidInputError(
                f"the image block has shape {image.shape}, the label block {block.shape}"
            )
        # Float64 sums are exact for integer images up to 2**53 per object.
        per_id = np.bincount(
            dense.ravel(), weights=image.ravel().astype(np.float64, copy=False), minlength=n
        )
        intensity = np.asarray(per_id[keep][present], dtype=np.float64)
    return _Partial(
        original[keep][present],
        counts[present],
        sums[present],
        lo[present],
        hi[present],
        intensity,
    )


def _merge(parts: list[_Partial]) -> _Partial:
    ids = np.concatenate([p.ids for p in parts])
    unique, inverse = np.unique(ids, return_inverse=True)
    n = len(unique)
    voxels = np.zeros(n, dtype=np.int64)
    sums = np.zeros((n, 3), dtype=np.float64)
    lo = np.full((n, 3), np.iinfo(np.int64).max, dtype=np.int64)
    hi = np.full((n, 3), np.iinfo(np.int64).min, dtype=np.int64)
    np.add.at(voxels, inverse, np.concatenate([p.voxels for p in parts]))
    np.add.at(sums, inverse, np.concatenate([p.sums for p in parts]))
    np.minimum.at(lo, inverse, np.concatenate([p.lo for p in parts]))
    np.maximum.at(hi, inverse, np.concatenate([p.hi for p in parts]))
    intensity = None
    if all(p.intensity is not None for p in parts):
        intensity = np.zeros(n, dtype=np.float64)
        np.add.at(intensity, inverse, np.concatenate([p.intensity for p in parts]))
    return _Partial(unique.astype(np.uint64), voxels, sums, lo, hi, intensity)


def label_stats(
    labels: LabelArray,
    block_shape: Sequence[int] | None = None,
    progress: ProgressCallback = no_progress,
    *,
    image: LabelArray | None = None,
) -> LabelStats:
    """Voxel counts, centroids and bounding boxes of every non-zero id, one block at a time.

    With ``image`` (same shape as ``labels``, read block by block at the same places), also the
    sum of its values over each object (``LabelStats.intensity_sums``).
    """
    shape = tuple(int(s) for s in labels.shape)
    if len(shape) != 3:
        raise InvalidInputError(f"expected a 3D label image (z, y, x), got shape {shape}")
    if image is not None and tuple(int(s) for s in image.shape) != shape:
        raise InvalidInputError(
            f"the image has shape {tuple(image.shape)}, the labels {shape}: they must match"
        )
    block = tuple(block_shape) if block_shape is not None else block_shape_of(labels)
    blocks = list(iter_blocks(shape, block))
    parts: list[_Partial] = []
    rows = 0
    for done, slices in enumerate(blocks, start=1):
        offset = np.array([s.start for s in slices], dtype=np.int64)
        image_block = None if image is None else np.asarray(image[slices])
        part = _block_partial(np.asarray(labels[slices]), offset, image_block)
        if part is not None:
            parts.append(part)
            rows += len(part.ids)
            if rows > _COMPACT_ROWS:
                parts = [_merge(parts)]
                rows = len(parts[0].ids)
        progress("measuring", done, len(blocks))
    if not parts:
        empty3 = np.zeros((0, 3), dtype=np.int64)
        return LabelStats(
            np.zeros(0, np.uint64),
            np.zeros(0, np.int64),
            empty3.astype(np.float64),
            empty3,
            empty3,
            None if image is None else np.zeros(0, np.float64),
        )
    merged = _merge(parts)
    return LabelStats(
        ids=merged.ids,
        voxels=merged.voxels,
        centroids=merged.sums / merged.voxels[:, None],
        bbox_min=merged.lo,
        bbox_max=merged.hi,
        intensity_sums=merged.intensity,
    )


def object_table(
    labels: LabelArray | LabelStats,
    voxel_size: Sequence[float],
    meshes_areas: Mapping[int, float] | None = None,
    *,
    block_shape: Sequence[int] | None = None,
) -> pd.DataFrame:
    """One row per object: see ``TABLE_COLUMNS``.

    ``voxel_size`` is z y x in some unit; ``volume`` is then in unit^3 and ``meshes_areas`` (id ->
    mesh surface area) must be in unit^2. Objects without an area get NaN surface and sphericity.
    Centroids and boxes are in voxels (boxes half-open). ``labels`` may be a precomputed
    :class:`LabelStats` to avoid a second pass over the volume.
    """
    stats = labels if isinstance(labels, LabelStats) else label_stats(labels, block_shape)
    if len(voxel_size) != 3 or any(not (v > 0) for v in voxel_size):
        raise InvalidInputError(f"voxel size must be three positive numbers, got {voxel_size}")
    areas = meshes_areas or {}
    voxel_volume = float(np.prod(np.asarray(voxel_size, dtype=np.float64)))
    volume = stats.voxels.astype(np.float64) * voxel_volume
    surface = np.array([float(areas.get(int(i), np.nan)) for i in stats.ids], dtype=np.float64)
    spher = np.array(
        [
            sphericity(v, a) if np.isfinite(a) else np.nan
            for v, a in zip(volume, surface, strict=True)
        ],
        dtype=np.float64,
    )
    data: dict[str, npt.NDArray[Any]] = {
        "id": stats.ids.astype(np.int64),
        "voxels": stats.voxels,
        "volume": volume,
        "surface_area": surface,
        "sphericity": spher,
    }
    for axis, name in enumerate("zyx"):
        data[f"centroid_{name}"] = stats.centroids[:, axis]
    for axis, name in enumerate("zyx"):
        data[f"bbox_{name}0"] = stats.bbox_min[:, axis]
    for axis, name in enumerate("zyx"):
        data[f"bbox_{name}1"] = stats.bbox_max[:, axis]
    return pd.DataFrame(data, columns=list(TABLE_COLUMNS))


def write_table(df: pd.DataFrame, path_without_suffix: Path) -> tuple[Path, Path]:
    """Write ``<path>.csv`` and ``<path>.parquet``; return both paths."""
    base = Path(path_without_suffix)
    base.parent.mkdir(parents=True, exist_ok=True)
    csv_path = base.with_name(base.name + ".csv")
    parquet_path = base.with_name(base.name + ".parquet")
    df.to_csv(csv_path, index=False)
    df.to_parquet(parquet_path, index=False)
    return csv_path, parquet_path
