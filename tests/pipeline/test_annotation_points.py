"""Detections as Neuroglancer precomputed point annotations: known positions read back by id, by
segment and by spatial cell; bytes checked against the neuroglancer wheel's own writer; bounded
cells at every level; 1,000 and 100,000 points; atomic replacement; the CLI."""

from __future__ import annotations

import json
import math
import tracemalloc
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from pipeline.annotation_points import (
    BY_ID_KEY,
    DEFAULT_LIMIT,
    MAX_LEVELS,
    RELATIONSHIP_KEY,
    read_point,
    read_points_info,
    read_related_points,
    read_spatial_cell,
    write_detection_points,
    write_detection_points_of_store,
)
from pipeline.cli import main as cli_main
from pipeline.detections import Geometry, measure_detections_of_store
from pipeline.errors import InvalidInputError
from pipeline.precomputed_sharding import ShardingSpec, read_sharded
from tests.pipeline.conftest import make_image, make_labels, write_reference_ome_zarr

# Anisotropic voxels and an origin off zero (nm, z y x).
VOXEL_NM = (400.0, 250.0, 125.0)
ORIGIN_NM = (800.0, -500.0, 250.0)
SHAPE = (60, 200, 300)


def synthetic_table(n: int, seed: int = 0, shape: tuple[int, int, int] = SHAPE) -> pd.DataFrame:
    """``n`` detections with ids 3, 6, 9, ... at random centroids inside ``shape``."""
    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {
            "segment_id": np.arange(1, n + 1, dtype=np.int64) * 3,
            "centroid_z": rng.uniform(0, shape[0] - 1, n),
            "centroid_y": rng.uniform(0, shape[1] - 1, n),
            "centroid_x": rng.uniform(0, shape[2] - 1, n),
            "volume": rng.uniform(1, 100, n),
            "sphericity": np.where(rng.random(n) < 0.1, np.nan, rng.uniform(0.4, 1, n)),
        }
    )


def expected_xyz(table: pd.DataFrame) -> np.ndarray:
    """Where each point must be: the centroid's physical position over the voxel size, x y z."""
    physical_nm = np.asarray(ORIGIN_NM) + table[
        ["centroid_z", "centroid_y", "centroid_x"]
    ].to_numpy() * np.asarray(VOXEL_NM)
    return (physical_nm / np.asarray(VOXEL_NM))[:, ::-1]


def all_cells(source: Path) -> list[tuple[int, tuple[int, ...], np.ndarray, np.ndarray]]:
    """(level, cell, positions, ids) of every spatial-index file, decoded here as arrays
    (count, 20-byte records, ids) rather than through the module's reader."""
    info = read_points_info(source)
    record = np.dtype([("position", "<f4", (3,)), ("volume", "<f4"), ("sphericity", "<f4")])
    out = []
    for level, spatial in enumerate(info["spatial"]):
        for file in sorted((source / spatial["key"]).iterdir()):
            data = file.read_bytes()
            count = int(np.frombuffer(data, "<u8", 1)[0])
            assert len(data) == 8 + count * (record.itemsize + 8)
            records = np.frombuffer(data, record, count, 8)
            ids = np.frombuffer(data, "<u8", count, 8 + count * record.itemsize)
            cell = tuple(int(c) for c in file.name.split("_"))
            out.append((level, cell, records["position"].astype(np.float64), ids.astype(np.int64)))
    return out


def check_spatial_index(source: Path, table: pd.DataFrame, limit: int) -> dict[int, int]:
    """Every point once over all levels, where the table puts it and inside its cell; no cell
    over ``limit``, each level's ``limit`` its fullest cell; returns points per level."""
    info = read_points_info(source)
    lower = np.asarray(info["lower_bound"])
    order = np.argsort(table["segment_id"].to_numpy())
    sorted_ids = table["segment_id"].to_numpy()[order]
    xyz = expected_xyz(table)[order]
    seen_ids: list[np.ndarray] = []
    per_level: dict[int, int] = {}
    most: dict[int, int] = {}
    for level, cell, positions, ids in all_cells(source):
        spatial = info["spatial"][level]
        size = np.asarray(spatial["chunk_size"])
        assert np.prod(size * spatial["grid_shape"]) == pytest.approx(
            np.prod(np.asarray(info["upper_bound"]) - lower)
        )
        low = lower + np.asarray(cell) * size
        assert 0 < len(ids) <= min(limit, spatial["limit"])
        most[level] = max(most.get(level, 0), len(ids))
        per_level[level] = per_level.get(level, 0) + len(ids)
        rows = np.searchsorted(sorted_ids, ids)
        assert np.array_equal(sorted_ids[rows], ids)
        assert np.allclose(positions, xyz[rows], atol=1e-3)
        assert np.all(positions >= low - 1e-3) and np.all(positions <= low + size + 1e-3)
        seen_ids.append(ids)
    seen = np.concatenate(seen_ids) if seen_ids else np.zeros(0, dtype=np.int64)
    assert len(seen) == len(np.unique(seen)), "a point is in two cells"
    assert np.array_equal(np.sort(seen), sorted_ids)
    # Each level's limit is the most points one of its cells holds.
    assert {lv: s["limit"] for lv, s in enumerate(info["spatial"]) if lv in most} == most
    return per_level


def test_thousand_points_by_id_segment_and_cell(tmp_path: Path) -> None:
    table = synthetic_table(1000)
    result = write_detection_points(
        table, tmp_path / "points", Geometry(VOXEL_NM, ORIGIN_NM), shape=SHAPE, limit=100
    )
    source = tmp_path / "points"
    assert result.path == source and result.n_points == 1000
    info = read_points_info(source)
    # Axes x y z of one voxel each (metres), as the viewer's dimensions.
    assert info["dimensions"] == {"x": [1.25e-7, "m"], "y": [2.5e-7, "m"], "z": [4e-7, "m"]}
    assert info["annotation_type"] == "point"
    assert [p["id"] for p in info["properties"]] == ["volume", "sphericity"]
    assert info["relationships"][0]["id"] == "segment_id"
    # Bounds: the label image's voxels, voxel i spanning i - 0.5 .. i + 0.5 (origin included).
    origin = np.asarray(ORIGIN_NM) / np.asarray(VOXEL_NM)
    assert info["lower_bound"] == pytest.approx(list((origin - 0.5)[::-1]))
    assert info["upper_bound"] == pytest.approx(list((origin - 0.5 + SHAPE)[::-1]))
    assert info["spatial"][0]["grid_shape"] == [1, 1, 1]
    assert len(info["spatial"]) >= 3

    xyz = expected_xyz(table)
    for row, (sid, volume, spher) in enumerate(
        table[["segment_id", "volume", "sphericity"]].itertuples(index=False)
    ):
        point = read_point(source, sid)
        assert point is not None
        assert point.position == pytest.approx(tuple(xyz[row]), abs=1e-4)
        assert point.segments == (sid,)
        assert point.properties["volume"] == pytest.approx(volume, rel=1e-6)
        if math.isnan(spher):
            assert math.isnan(point.properties["sphericity"])
        else:
            assert point.properties["sphericity"] == pytest.approx(spher, rel=1e-6)
        related = read_related_points(source, sid)
        assert [p.id for p in related] == [sid]
        assert related[0].position == point.position
    assert read_point(source, 4) is None  # not a detection
    assert read_related_points(source, 4) == []

    per_level = check_spatial_index(source, table, limit=100)
    assert per_level[0] == 100  # the coarsest level: a random 100 of the 1,000
    # Each point's physical position is its table row's centroid in um.
    point = read_point(source, 3)
    assert point is not None
    um = [point.position[i] * VOXEL_NM[2 - i] / 1000 for i in range(3)]
    row = table.iloc[0]
    assert um == pytest.approx(
        [ORIGIN_NM[2 - i] / 1000 + row[f"centroid_{a}"] * VOXEL_NM[2 - i] / 1000
         for i, a in enumerate("xyz")],
        abs=1e-4,
    )  # fmt: skip


def test_bytes_match_the_neuroglancer_wheels_writer(tmp_path: Path) -> None:
    """Every by-id entry and relationship list is byte for byte what the wheel's own
    ``AnnotationWriter`` writes for the same points (it writes one file per id); the spatial
    cells decode with the wheel's record layout."""
    from neuroglancer import coordinate_space, viewer_state, write_annotations

    table = synthetic_table(300, seed=4)
    write_detection_points(table, tmp_path / "ours", Geometry(VOXEL_NM, ORIGIN_NM), shape=SHAPE)
    info = read_points_info(tmp_path / "ours")
    space = coordinate_space.CoordinateSpace(info["dimensions"])
    props = [viewer_state.AnnotationPropertySpec(p) for p in info["properties"]]
    reference = write_annotations.AnnotationWriter(
        space, "point", relationships=["segment_id"], properties=props
    )
    xyz = expected_xyz(table).astype(np.float32)
    for row, (sid, volume, spher) in enumerate(
        table[["segment_id", "volume", "sphericity"]].itertuples(index=False)
    ):
        reference.add_point(
            xyz[row].tolist(), id=sid, volume=volume, sphericity=spher, segment_id=sid
        )
    reference.write(tmp_path / "reference")

    by_id = ShardingSpec.from_json(info["by_id"]["sharding"])
    related = ShardingSpec.from_json(info["relationships"][0]["sharding"])
    for sid in table["segment_id"].tolist():
        ours = read_sharded(tmp_path / "ours" / BY_ID_KEY, by_id, sid)
        assert ours is not None
        assert ours.data == (tmp_path / "reference" / "by_id" / str(sid)).read_bytes()
        ours = read_sharded(tmp_path / "ours" / RELATIONSHIP_KEY, related, sid)
        assert ours is not None
        assert ours.data == (tmp_path / "reference" / "rel_segment_id" / str(sid)).read_bytes()

    # A spatial cell through the wheel's record dtype (geometry, then properties by alignment).
    dtype = np.dtype(
        write_annotations._get_dtype_for_geometry("point", 3)
        + write_annotations._get_dtype_for_properties(props)
    )
    data = (tmp_path / "ours" / "spatial0" / "0_0_0").read_bytes()
    count = int(np.frombuffer(data, "<u8", 1)[0])
    records = np.frombuffer(data, dtype, count, 8)
    ids = np.frombuffer(data, "<u8", count, 8 + count * dtype.itemsize)
    assert len(data) == 8 + count * (dtype.itemsize + 8)
    rows = {sid: i for i, sid in enumerate(table["segment_id"].tolist())}
    for record, sid in zip(records, ids.tolist(), strict=True):
        assert np.array_equal(record["geometry"], xyz[rows[sid]])
        assert record["property0"] == np.float32(table["volume"].iloc[rows[sid]])


def test_hundred_thousand_points_bounded_cells_and_area_queries(tmp_path: Path) -> None:
    n = 100_000
    table = synthetic_table(n, seed=1, shape=(400, 1000, 1000))
    tracemalloc.start()
    result = write_detection_points(
        table, tmp_path / "points", Geometry(VOXEL_NM, ORIGIN_NM), shape=(400, 1000, 1000)
    )
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert peak < 60 * 2**20, f"peak {peak / 2**20:.0f} MiB"  # a few arrays of one row a point
    source = result.path
    assert result.n_points == n
    # Several levels; the finest holds most points, in cells of at most the limit.
    assert len(result.levels) >= 3
    finest = result.levels[-1]
    assert 0 < finest.limit <= DEFAULT_LIMIT
    assert all(level.limit <= DEFAULT_LIMIT for level in result.levels)
    assert sum(level.points for level in result.levels) == n
    assert result.levels[0].points == DEFAULT_LIMIT
    # Files: the cells plus a few shards, not one file per point.
    files = [f for f in source.rglob("*") if f.is_file()]
    assert len(files) < 1 + sum(level.cells for level in result.levels) + 40
    assert len(list((source / BY_ID_KEY).iterdir())) <= 16

    per_level = check_spatial_index(source, table, DEFAULT_LIMIT)
    assert sum(per_level.values()) == n

    # An area query the way Neuroglancer makes one (every level's cells that meet the box)
    # finds exactly the points inside it.
    info = read_points_info(source)
    lower = np.asarray(info["lower_bound"])
    box_lo, box_hi = np.array([100.0, 200.0, 50.0]), np.array([300.0, 260.0, 90.0])
    found = set()
    for level, spatial in enumerate(info["spatial"]):
        size = np.asarray(spatial["chunk_size"])
        first = np.floor((box_lo - lower) / size).astype(int)
        last = np.floor((box_hi - lower) / size).astype(int)
        for cell in np.ndindex(*(last - first + 1)):
            for point in read_spatial_cell(source, level, tuple(first + cell)):
                if np.all(np.asarray(point.position) >= box_lo) and np.all(
                    np.asarray(point.position) < box_hi
                ):
                    found.add(point.id)
    xyz = expected_xyz(table)
    inside = np.all((xyz >= box_lo) & (xyz < box_hi), axis=1)
    assert found == set(table["segment_id"][inside].tolist())
    assert len(found) > 50

    # Spot checks by id and segment.
    for row in (0, 12_345, n - 1):
        sid = int(table["segment_id"].iloc[row])
        point = read_point(source, sid)
        assert point is not None and point.segments == (sid,)
        assert point.position == pytest.approx(tuple(xyz[row]), abs=1e-3)


def test_clustered_points_stay_bounded_and_finish(tmp_path: Path) -> None:
    """Dense clusters go down more levels; 3,000 points at one position drain at ``limit`` a
    level; 5,000 need more levels than there are, so the last takes what is left and says so
    in its limit."""
    rng = np.random.default_rng(7)
    table = synthetic_table(6000, seed=2)
    table.loc[:2999, ["centroid_z", "centroid_y", "centroid_x"]] = rng.normal(
        (30, 100, 150), (0.5, 1.0, 1.0), (3000, 3)
    )
    result = write_detection_points(
        table, tmp_path / "clusters", Geometry(VOXEL_NM, ORIGIN_NM), shape=SHAPE, limit=200
    )
    check_spatial_index(result.path, table, limit=200)

    same = synthetic_table(3000, seed=3)
    same[["centroid_z", "centroid_y", "centroid_x"]] = (10.0, 20.0, 30.0)
    result = write_detection_points(
        same, tmp_path / "same", Geometry(VOXEL_NM, ORIGIN_NM), shape=SHAPE, limit=200
    )
    assert sum(level.points for level in result.levels) == 3000
    assert [level.limit for level in result.levels] == [200] * 15

    same = synthetic_table(5000, seed=3)
    same[["centroid_z", "centroid_y", "centroid_x"]] = (10.0, 20.0, 30.0)
    result = write_detection_points(
        same, tmp_path / "same", Geometry(VOXEL_NM, ORIGIN_NM), shape=SHAPE, limit=200
    )
    assert len(result.levels) == MAX_LEVELS
    assert result.levels[-1].limit == 5000 - (MAX_LEVELS - 1) * 200


def test_empty_table_and_bounds_from_the_points(tmp_path: Path) -> None:
    empty = synthetic_table(0)
    result = write_detection_points(
        empty, tmp_path / "empty", Geometry(VOXEL_NM, ORIGIN_NM), shape=SHAPE
    )
    info = read_points_info(result.path)
    assert result.n_points == 0 and len(info["spatial"]) == 1
    assert info["spatial"][0]["limit"] == 1  # the format's minimum
    assert list((result.path / "spatial0").iterdir()) == []
    assert read_point(result.path, 3) is None

    # Without a shape the bounds are the points' own.
    table = synthetic_table(50)
    result = write_detection_points(
        table, tmp_path / "unbounded", Geometry(VOXEL_NM, ORIGIN_NM), limit=10
    )
    xyz = expected_xyz(table)
    assert np.all(np.asarray(result.lower_bound) <= xyz.min(axis=0))
    assert np.all(np.asarray(result.upper_bound) > xyz.max(axis=0))
    check_spatial_index(result.path, table, limit=10)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda t: t.drop(columns=["centroid_x"]), "lacks the columns"),
        (lambda t: t.assign(segment_id=[3] * len(t)), "unique"),
        (lambda t: t.assign(segment_id=t["segment_id"] - 3), "positive"),
        (lambda t: t.assign(centroid_z=t["centroid_z"] + 1000), "outside"),
        (lambda t: t.assign(centroid_y=np.nan), "finite"),
    ],
)
def test_bad_tables_are_refused_and_the_old_source_stays(
    tmp_path: Path, change: Any, message: str
) -> None:
    good = synthetic_table(20)
    target = tmp_path / "out" / "points"
    write_detection_points(good, target, Geometry(VOXEL_NM, ORIGIN_NM), shape=SHAPE)
    before = (target / "info").read_bytes()
    with pytest.raises(InvalidInputError, match=message):
        write_detection_points(change(good), target, Geometry(VOXEL_NM, ORIGIN_NM), shape=SHAPE)
    assert (target / "info").read_bytes() == before
    assert sorted(p.name for p in target.parent.iterdir()) == ["points"]  # no partial left


def test_rewrite_replaces_the_whole_directory(tmp_path: Path) -> None:
    target = tmp_path / "out" / "points"
    write_detection_points(
        synthetic_table(2000), target, Geometry(VOXEL_NM, ORIGIN_NM), shape=SHAPE
    )
    write_detection_points(
        synthetic_table(10, seed=9), target, Geometry(VOXEL_NM, ORIGIN_NM), shape=SHAPE
    )
    info = json.loads((target / "info").read_text())
    assert len(info["spatial"]) == 1  # the old finer levels are gone
    assert not (target / "spatial2").exists()
    assert sorted(p.name for p in target.parent.iterdir()) == ["points"]
    assert read_point(target, 30 * 3) is None and read_point(target, 3) is not None


def test_of_store_and_cli_use_the_label_images_geometry(tmp_path: Path) -> None:
    shape = (40, 70, 90)
    store = write_reference_ome_zarr(
        tmp_path / "in.ome.zarr",
        make_image(shape),
        {"cells": make_labels(shape)},
        version="0.5",
        scale={"z": 2.0, "y": 0.5, "x": 0.25},
    )
    labels = store / "labels" / "cells"
    table = measure_detections_of_store(labels)
    result = write_detection_points_of_store(table, labels, tmp_path / "points")
    info = read_points_info(result.path)
    assert info["dimensions"]["z"] == [pytest.approx(2e-6), "m"]
    assert info["dimensions"]["x"] == [pytest.approx(2.5e-7), "m"]
    assert info["upper_bound"] == pytest.approx([90 - 0.5, 70 - 0.5, 40 - 0.5])
    for row in table.itertuples(index=False):
        point = read_point(result.path, int(row.segment_id))
        assert point is not None
        # The point's physical position (um) is the table's centroid in um.
        assert point.position[0] * 0.25 == pytest.approx(row.centroid_x_um, abs=1e-4)
        assert point.position[2] * 2.0 == pytest.approx(row.centroid_z_um, abs=1e-4)

    table.to_parquet(tmp_path / "table.parquet")
    out = tmp_path / "cli-points"
    assert (
        cli_main(["annotation-points", str(tmp_path / "table.parquet"), str(labels), str(out)]) == 0
    )
    assert (out / "info").read_bytes() == (result.path / "info").read_bytes()
    assert cli_main(["annotation-points", str(tmp_path / "nope.csv"), str(labels), str(out)]) == 2
