"""A detections table as a Neuroglancer precomputed annotation source of points.

One point per detection, at its centroid, with the detection's volume and sphericity as
properties and its segment id as the ``segment_id`` relationship (Neuroglancer links a selected
point to that segment of a linked segmentation layer and can filter points by segment). The
format is Neuroglancer's ``neuroglancer_annotations_v1`` (``src/datasource/precomputed/
annotations.md`` in google/neuroglancer)::

    info                          JSON: dimensions, bounds, type, properties, the indexes below
    by_id/<shard>.shard           annotation id (= segment id) -> that point and its segment id
    rel_segment_id/<shard>.shard  segment id -> the list of its points (one)
    spatial<k>/<x>_<y>_<z>        level k's grid cell -> a random subset of the points in it

Both id indexes are sharded (``pipeline.precomputed_sharding``: a handful of files instead of
one per detection; Neuroglancer reads them with Range requests); the spatial levels are one file
per non-empty cell (a missing cell is an empty one).

Why not ``neuroglancer.write_annotations.AnnotationWriter`` (the 2.41.2 wheel's): it writes one
spatial level of a single cell holding every annotation (Neuroglancer then downloads all points
whatever the view), one file per annotation in each id index (200,000 files for 100,000 points),
and keeps every annotation as a Python object until it writes.

Spatial index: level 0 is one cell covering ``lower_bound``..``upper_bound``; each finer level
halves the cell along every axis whose physical length is within sqrt(2) of the longest (so
cells stay close to cubes with anisotropic voxels). As the specification says, a level emits
from each cell a uniformly random subset of the points not yet emitted that lie in it, a share
``min(1, limit / max_count)`` of them where ``max_count`` is the level's fullest cell; the rest go
down to the next level, until none remain. The share is taken as an exact count per cell
(``floor(count * limit / max_count)``) rather than a coin per point, so no cell ever holds more
than ``limit`` points; a level's ``limit`` in ``info`` is the most points one of its cells holds.
Neuroglancer reads levels coarse to fine and stops once the view is dense enough, so a zoomed-out
view fetches a few subsampled cells and a zoomed-in one the cells around it. Each cell's list is
in random order (Neuroglancer draws a leading fraction of a cell when it needs fewer points).

Coordinates: dimensions ``x y z``, each of one voxel of the label image (in metres), as the
site's viewer sets up its axes. A point lies at ``translation / voxel_size + centroid`` in those
units, i.e. at the centroid's physical position (the table's ``centroid_*_um``): Neuroglancer
puts an OME-Zarr voxel ``i``'s centre at ``translation + i * voxel_size`` (it shifts the NGFF
translation by half a voxel), and the meshes put it there too, so a point sits on its object.
Bounds are the label image's extent (voxel ``i`` spans ``i - 0.5`` to ``i + 0.5``) when its shape
is given, else the points' own.

Memory: a few arrays of one row per point and the two id indexes' bytes (36 and 32 bytes a
point), a few hundred bytes a point in all: writing 100,000 points takes ~0.5 s and ~30 MB
(``bench/annotation_points.py``).
"""

from __future__ import annotations

import json
import math
import os
import secrets
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd

from pipeline.detections import Geometry, open_label_zyx
from pipeline.errors import InvalidInputError
from pipeline.precomputed_sharding import (
    ShardingSpec,
    hash_keys,
    read_sharded,
    sharding_for,
    write_fixed_size_shards,
)
from pipeline.progress import ProgressCallback, no_progress

ANNOTATION_TYPE = "neuroglancer_annotations_v1"
#: Most points in one spatial-index cell (each point is 28 bytes in a cell file).
DEFAULT_LIMIT = 500
#: Levels stop here even if points remain (only for many points at one position): the last
#: level takes every point left, and its ``limit`` says how many that is.
MAX_LEVELS = 20
RELATIONSHIP = "segment_id"
BY_ID_KEY = "by_id"
RELATIONSHIP_KEY = f"rel_{RELATIONSHIP}"
AXES = ("x", "y", "z")


@dataclass(frozen=True)
class PointProperty:
    """A float32 property of every point, taken from a table column (NaN when missing)."""

    id: str
    column: str
    description: str

    def to_json(self) -> dict[str, str]:
        return {"id": self.id, "type": "float32", "description": self.description}


PROPERTIES: tuple[PointProperty, ...] = (
    PointProperty("volume", "volume", "volume (um^3)"),
    PointProperty("sphericity", "sphericity", "sphericity (1 for a sphere)"),
)


@dataclass(frozen=True)
class SpatialLevel:
    """One level of the spatial index as written."""

    key: str
    grid_shape: tuple[int, int, int]  # x y z cells
    chunk_size: tuple[float, float, float]  # x y z, in voxels of the dimensions
    limit: int  # the most points one cell holds
    cells: int  # cells with at least one point (one file each)
    points: int  # points this level holds

    def to_json(self) -> dict[str, Any]:
        return {
            "key": self.key,
            "grid_shape": list(self.grid_shape),
            "chunk_size": list(self.chunk_size),
            "limit": max(1, self.limit),
        }


@dataclass(frozen=True)
class PointsResult:
    """What was written: where, how many points, the spatial levels."""

    path: Path
    n_points: int
    levels: tuple[SpatialLevel, ...]
    lower_bound: tuple[float, float, float]
    upper_bound: tuple[float, float, float]


def record_dtype(n_properties: int) -> np.dtype[Any]:
    """One point's encoding: position (float32 x y z), then each float32 property (all
    4-byte aligned, so no padding)."""
    fields: list[Any] = [("position", "<f4", (3,))]
    fields += [(f"p{i}", "<f4") for i in range(n_properties)]
    return np.dtype(fields)


def _positions(table: pd.DataFrame, geometry: Geometry) -> npt.NDArray[np.float64]:
    """Centroids in the dimensions' units (voxels of the label image, origin included), x y z."""
    voxel = np.asarray(geometry.voxel_size_nm, dtype=np.float64)
    origin = np.asarray(geometry.translation_nm, dtype=np.float64) / voxel
    zyx: npt.NDArray[np.float64] = table[["centroid_z", "centroid_y", "centroid_x"]].to_numpy(
        dtype=np.float64
    )
    return np.ascontiguousarray((zyx + origin)[:, ::-1])


def _bounds(
    positions: npt.NDArray[np.float64], geometry: Geometry, shape: Sequence[int] | None
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    if shape is not None:
        if len(shape) != 3 or any(int(n) < 1 for n in shape):
            raise InvalidInputError(f"shape must be 3 positive sizes (z y x): {list(shape)}")
        voxel = np.asarray(geometry.voxel_size_nm, dtype=np.float64)
        origin = np.asarray(geometry.translation_nm, dtype=np.float64) / voxel
        lower = (origin - 0.5)[::-1].copy()
        upper = lower + np.asarray([int(n) for n in shape], dtype=np.float64)[::-1]
        return lower, upper
    if len(positions) == 0:
        return np.zeros(3), np.ones(3)
    lower = np.floor(positions.min(axis=0)) - 0.5
    upper = np.ceil(positions.max(axis=0)) + 0.5
    return lower, upper


def _finer(
    chunk: npt.NDArray[np.float64], grid: npt.NDArray[np.int64], scale: npt.NDArray[np.float64]
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.int64]]:
    """The next level's cell: halved along the axes within sqrt(2) of the longest, physically
    (the half closer to the longest's half, on a log scale)."""
    physical = chunk * scale
    halve = physical * math.sqrt(2.0) >= physical.max() * (1 - 1e-9)
    return np.where(halve, chunk / 2, chunk), np.where(halve, grid * 2, grid)


def _checked_table(table: pd.DataFrame) -> pd.DataFrame:
    missing = [
        c for c in ("segment_id", "centroid_z", "centroid_y", "centroid_x") if c not in table
    ]
    if missing:
        raise InvalidInputError(f"the detections table lacks the columns {missing}")
    ids = table["segment_id"].to_numpy()
    if len(ids) and (not np.issubdtype(ids.dtype, np.integer) or ids.min() < 1):
        raise InvalidInputError("segment ids must be positive integers")
    if len(np.unique(ids)) != len(ids):
        raise InvalidInputError("segment ids must be unique")
    return table


def replace_directory(built: Path, target: Path) -> None:
    """Swap a complete directory into place (two renames), then remove the previous one."""
    old = target.with_name(f".{target.name}.old-{os.getpid()}-{secrets.token_hex(4)}")
    target.parent.mkdir(parents=True, exist_ok=True)
    if os.path.lexists(target):
        os.replace(target, old)
    os.replace(built, target)
    shutil.rmtree(old, ignore_errors=True)


def write_detection_points(
    table: pd.DataFrame,
    out_dir: Path,
    geometry: Geometry,
    *,
    shape: Sequence[int] | None = None,
    limit: int = DEFAULT_LIMIT,
    seed: int = 0,
    progress: ProgressCallback = no_progress,
) -> PointsResult:
    """Write ``table``'s detections (``segment_id``, ``centroid_z/y/x`` in voxels; ``volume``
    and ``sphericity`` when present) as a precomputed point annotation source at ``out_dir``.

    ``geometry`` is the label image's voxel size and origin (nm, z y x), ``shape`` its size in
    voxels (z y x; the bounds of the spatial index). The directory is built beside ``out_dir``
    and swapped in whole, so a reader sees the old source or the new one. ``seed`` makes the
    spatial index's subsampling reproducible. See the module docstring.
    """
    if limit < 1:
        raise InvalidInputError(f"the per-cell limit must be at least 1, not {limit}")
    table = _checked_table(table)
    out_dir = Path(out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    partial = out_dir.with_name(f".{out_dir.name}.partial-{os.getpid()}-{secrets.token_hex(4)}")
    try:
        result = _write(table, partial, geometry, shape, limit, seed, progress)
        replace_directory(partial, out_dir)
    finally:
        shutil.rmtree(partial, ignore_errors=True)
    return PointsResult(
        out_dir, result.n_points, result.levels, result.lower_bound, result.upper_bound
    )


def _write(
    table: pd.DataFrame,
    out: Path,
    geometry: Geometry,
    shape: Sequence[int] | None,
    limit: int,
    seed: int,
    progress: ProgressCallback,
) -> PointsResult:
    n = len(table)
    positions = _positions(table, geometry)
    if not np.all(np.isfinite(positions)):
        raise InvalidInputError("every detection needs a finite centroid")
    lower, upper = _bounds(positions, geometry, shape)
    if n and (np.any(positions < lower) or np.any(positions >= upper)):
        raise InvalidInputError("a centroid lies outside the label image")
    ids = table["segment_id"].to_numpy(dtype=np.uint64)
    dtype = record_dtype(len(PROPERTIES))
    records = np.zeros(n, dtype=dtype)
    records["position"] = positions.astype(np.float32)
    for i, prop in enumerate(PROPERTIES):
        column = table.get(prop.column)
        values = (
            np.full(n, np.nan)
            if column is None
            else pd.to_numeric(column, errors="coerce").to_numpy(dtype=np.float64)
        )
        records[f"p{i}"] = values.astype(np.float32)

    out.mkdir(parents=True)
    progress("annotation points", 0, n)
    scale_nm = np.asarray(geometry.voxel_size_nm, dtype=np.float64)[::-1]
    levels = _write_spatial(out, positions, records, ids, lower, upper, scale_nm, limit, seed)
    progress("annotation points", n // 2, n)
    sharding = sharding_for(n)
    _write_id_indexes(out, sharding, records, ids)
    info = {
        "@type": ANNOTATION_TYPE,
        "dimensions": {a: [float(s) / 1e9, "m"] for a, s in zip(AXES, scale_nm, strict=True)},
        "lower_bound": [float(v) for v in lower],
        "upper_bound": [float(v) for v in upper],
        "annotation_type": "point",
        "properties": [p.to_json() for p in PROPERTIES],
        "relationships": [
            {"id": RELATIONSHIP, "key": RELATIONSHIP_KEY, "sharding": sharding.to_json()}
        ],
        "by_id": {"key": BY_ID_KEY, "sharding": sharding.to_json()},
        "spatial": [level.to_json() for level in levels],
    }
    (out / "info").write_text(json.dumps(info, indent=1))
    progress("annotation points", n, n)
    low = (float(lower[0]), float(lower[1]), float(lower[2]))
    high = (float(upper[0]), float(upper[1]), float(upper[2]))
    return PointsResult(out, n, tuple(levels), low, high)


def _write_spatial(
    out: Path,
    positions: npt.NDArray[np.float64],
    records: npt.NDArray[Any],
    ids: npt.NDArray[np.uint64],
    lower: npt.NDArray[np.float64],
    upper: npt.NDArray[np.float64],
    scale: npt.NDArray[np.float64],
    limit: int,
    seed: int,
) -> list[SpatialLevel]:
    """The levels, coarse to fine (module docstring); one file per non-empty cell."""
    priority = np.random.default_rng(seed).random(len(ids))  # a random order, fixed per point
    remaining = np.arange(len(ids))
    chunk = upper - lower
    grid = np.ones(3, dtype=np.int64)
    levels: list[SpatialLevel] = []
    for level in range(MAX_LEVELS):
        if level:
            if remaining.size == 0:
                break
            chunk, grid = _finer(chunk, grid, scale)
        key = f"spatial{level}"
        (out / key).mkdir()
        cells = np.floor((positions[remaining] - lower) / chunk).astype(np.int64)
        cells = np.clip(cells, 0, grid - 1)
        linear = np.ravel_multi_index((cells[:, 0], cells[:, 1], cells[:, 2]), tuple(grid))
        order = np.lexsort((priority[remaining], linear))
        linear, members = linear[order], remaining[order]
        starts = (
            np.flatnonzero(np.r_[True, linear[1:] != linear[:-1]])
            if len(linear)
            else np.zeros(0, dtype=np.int64)
        )
        counts = np.diff(np.r_[starts, len(linear)]).astype(np.int64)
        most = int(counts.max()) if len(counts) else 0
        last = level == MAX_LEVELS - 1
        take = counts if most <= limit or last else counts * limit // most
        for start, count in zip(starts.tolist(), take.tolist(), strict=True):
            if count == 0:
                continue
            chosen = members[start : start + count]
            cell = np.unravel_index(int(linear[start]), tuple(grid))
            name = "_".join(str(int(c)) for c in cell)
            with (out / key / name).open("wb") as handle:
                handle.write(np.uint64(count).astype("<u8").tobytes())
                handle.write(records[chosen].tobytes())
                handle.write(ids[chosen].astype("<u8").tobytes())
        rank = np.arange(len(members)) - np.repeat(starts, counts)
        emitted = rank < np.repeat(take, counts)
        remaining = members[~emitted]
        levels.append(
            SpatialLevel(
                key=key,
                grid_shape=(int(grid[0]), int(grid[1]), int(grid[2])),
                chunk_size=(float(chunk[0]), float(chunk[1]), float(chunk[2])),
                limit=int(take.max()) if len(take) else 0,
                cells=int(np.count_nonzero(take)),
                points=int(emitted.sum()),
            )
        )
    return levels


def _write_id_indexes(
    out: Path, spec: ShardingSpec, records: npt.NDArray[Any], ids: npt.NDArray[np.uint64]
) -> None:
    """The by-id index (id -> the point, then its relationship: uint32 count 1, the uint64
    segment id) and the relationship index (segment id -> a list of one point: uint64 count,
    the point, its uint64 id). Annotation id and segment id are the same number, so both
    indexes share their keys and hashes."""
    hashed = hash_keys(spec, ids)
    by_id = np.zeros(len(ids), dtype=[("record", records.dtype), ("n", "<u4"), ("segment", "<u8")])
    by_id["record"], by_id["n"], by_id["segment"] = records, 1, ids
    write_fixed_size_shards(out / BY_ID_KEY, spec, ids, _as_bytes(by_id), hashed=hashed)
    related = np.zeros(len(ids), dtype=[("count", "<u8"), ("record", records.dtype), ("id", "<u8")])
    related["count"], related["record"], related["id"] = 1, records, ids
    write_fixed_size_shards(out / RELATIONSHIP_KEY, spec, ids, _as_bytes(related), hashed=hashed)


def _as_bytes(rows: npt.NDArray[Any]) -> npt.NDArray[np.uint8]:
    """A packed structured array as ``(n, itemsize)`` bytes."""
    return np.frombuffer(rows.tobytes(), dtype=np.uint8).reshape(len(rows), rows.dtype.itemsize)


def write_detection_points_of_store(
    table: pd.DataFrame,
    labels_path: Path,
    out_dir: Path,
    *,
    limit: int = DEFAULT_LIMIT,
    seed: int = 0,
    progress: ProgressCallback = no_progress,
) -> PointsResult:
    """:func:`write_detection_points` with the geometry and bounds of the OME-Zarr label image
    at ``labels_path`` (its full resolution, the table's voxels)."""
    level = open_label_zyx(labels_path)  # a 2D image's is one voxel deep, as its table
    return write_detection_points(
        table, out_dir, level.geometry, shape=level.shape, limit=limit, seed=seed,
        progress=progress,
    )  # fmt: skip


# --- reading back (tests, checks) -------------------------------------------------------------


@dataclass(frozen=True)
class Point:
    """One point read back: id, position (x y z, the dimensions' units), properties, segments."""

    id: int
    position: tuple[float, float, float]
    properties: dict[str, float]
    segments: tuple[int, ...] = ()


def read_points_info(path: Path) -> dict[str, Any]:
    """The source's ``info``."""
    try:
        info: dict[str, Any] = json.loads((Path(path) / "info").read_text())
    except (OSError, ValueError) as exc:
        raise InvalidInputError(f"no readable annotation info in {path}: {exc}") from None
    if info.get("@type") != ANNOTATION_TYPE:
        raise InvalidInputError(f"{path} is not a precomputed annotation source")
    return info


def _index_value(path: Path, index: dict[str, Any], key: int) -> bytes | None:
    directory = Path(path) / str(index["key"])
    if "sharding" in index:
        found = read_sharded(directory, ShardingSpec.from_json(index["sharding"]), key)
        return None if found is None else found.data
    file = directory / str(key)
    return file.read_bytes() if file.is_file() else None


def _decode_list(info: dict[str, Any], data: bytes) -> list[Point]:
    names = [str(p["id"]) for p in info["properties"]]
    dtype = record_dtype(len(names))
    count = int(np.frombuffer(data, dtype="<u8", count=1)[0])
    if len(data) != 8 + count * (dtype.itemsize + 8):
        raise InvalidInputError(f"an annotation list of {count} has {len(data)} bytes")
    records = np.frombuffer(data, dtype=dtype, count=count, offset=8)
    ids = np.frombuffer(data, dtype="<u8", count=count, offset=8 + count * dtype.itemsize)
    return [
        Point(
            int(i),
            (float(r["position"][0]), float(r["position"][1]), float(r["position"][2])),
            {name: float(r[f"p{k}"]) for k, name in enumerate(names)},
        )
        for r, i in zip(records, ids, strict=True)
    ]


def read_point(path: Path, annotation_id: int) -> Point | None:
    """The point stored under ``annotation_id`` in the by-id index, with its segment ids."""
    info = read_points_info(path)
    data = _index_value(path, info["by_id"], annotation_id)
    if data is None:
        return None
    names = [str(p["id"]) for p in info["properties"]]
    dtype = record_dtype(len(names))
    record = np.frombuffer(data, dtype=dtype, count=1)[0]
    offset, segments = dtype.itemsize, []
    for _ in info.get("relationships", []):
        count = int(np.frombuffer(data, dtype="<u4", count=1, offset=offset)[0])
        segments += np.frombuffer(data, dtype="<u8", count=count, offset=offset + 4).tolist()
        offset += 4 + 8 * count
    if offset != len(data):
        raise InvalidInputError(f"annotation {annotation_id} has {len(data)} bytes, not {offset}")
    position = (
        float(record["position"][0]),
        float(record["position"][1]),
        float(record["position"][2]),
    )
    props = {name: float(record[f"p{k}"]) for k, name in enumerate(names)}
    return Point(annotation_id, position, props, tuple(int(s) for s in segments))


def read_related_points(
    path: Path, segment_id: int, relationship: str = RELATIONSHIP
) -> list[Point]:
    """The points related to ``segment_id`` (empty when none)."""
    info = read_points_info(path)
    index = next((r for r in info.get("relationships", []) if r["id"] == relationship), None)
    if index is None:
        raise InvalidInputError(f"no relationship {relationship!r}")
    data = _index_value(path, index, segment_id)
    return [] if data is None else _decode_list(info, data)


def read_spatial_cell(path: Path, level: int, cell: Sequence[int]) -> list[Point]:
    """The points of spatial-index cell ``cell`` (x y z) of ``level`` (empty when none)."""
    info = read_points_info(path)
    spatial = info["spatial"][level]
    if "sharding" in spatial:
        raise InvalidInputError("sharded spatial levels are not read here")
    file = Path(path) / str(spatial["key"]) / "_".join(str(int(c)) for c in cell)
    return _decode_list(info, file.read_bytes()) if file.is_file() else []
