"""Morphometrics: formulas, and chunked statistics equal to a brute-force whole-volume answer."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pandas as pd
import pytest
import zarr

from pipeline.errors import InvalidInputError
from pipeline.morphometrics import (
    TABLE_COLUMNS,
    label_stats,
    mesh_surface_area,
    mesh_volume,
    object_table,
    sphericity,
    write_table,
)

UNIT_CUBE_V = np.array(
    [[0, 0, 0], [1, 0, 0], [1, 1, 0], [0, 1, 0], [0, 0, 1], [1, 0, 1], [1, 1, 1], [0, 1, 1]],
    dtype=np.float64,
)
UNIT_CUBE_F = np.array(
    [
        [0, 2, 1],
        [0, 3, 2],
        [4, 5, 6],
        [4, 6, 7],
        [0, 1, 5],
        [0, 5, 4],
        [2, 3, 7],
        [2, 7, 6],
        [1, 2, 6],
        [1, 6, 5],
        [0, 4, 7],
        [0, 7, 3],
    ]
)


def test_sphericity_of_ideal_shapes() -> None:
    r = 3.0
    assert sphericity(4 / 3 * math.pi * r**3, 4 * math.pi * r**2) == pytest.approx(1.0)
    assert sphericity(8.0, 24.0) == pytest.approx(0.806, abs=5e-4)
    assert math.isnan(sphericity(1.0, 0.0))


def test_mesh_area_and_volume_of_a_cube() -> None:
    scaled = UNIT_CUBE_V * 2.0
    assert mesh_surface_area(scaled, UNIT_CUBE_F) == pytest.approx(24.0)
    assert mesh_volume(scaled, UNIT_CUBE_F) == pytest.approx(8.0)
    assert mesh_surface_area(scaled, np.zeros((0, 3), np.int64)) == 0.0


def objects_volume() -> npt.NDArray[np.uint64]:
    """Objects of several shapes crossing 16^3 block borders, plus a huge id."""
    labels = np.zeros((40, 37, 45), dtype=np.uint64)
    z, y, x = np.indices(labels.shape)
    labels[((z - 16) ** 2 + (y - 15) ** 2 + (x - 17) ** 2) <= 49] = 3
    labels[10:30, 30:37, 0:45] = 12  # touches the far y edge, spans every x block
    labels[33:40, 2:9, 40:45] = 2**40
    labels[0, 0, 0] = 5  # a single voxel at the origin
    labels[20:22, 20:22, 31:33] = 3  # a second, disjoint piece of id 3
    return labels


def brute_force(labels: npt.NDArray[np.uint64]) -> pd.DataFrame:
    rows = []
    for i in np.unique(labels[labels > 0]):
        coords = np.argwhere(labels == i)
        rows.append(
            {
                "id": int(i),
                "voxels": len(coords),
                **dict(
                    zip(["centroid_z", "centroid_y", "centroid_x"], coords.mean(0), strict=True)
                ),
                **dict(zip(["bbox_z0", "bbox_y0", "bbox_x0"], coords.min(0), strict=True)),
                **dict(zip(["bbox_z1", "bbox_y1", "bbox_x1"], coords.max(0) + 1, strict=True)),
            }
        )
    return pd.DataFrame(rows)


def test_chunked_table_equals_whole_volume_answer(tmp_path: Path) -> None:
    labels = objects_volume()
    store = zarr.create_array(
        str(tmp_path / "l.zarr"), shape=labels.shape, chunks=(16, 16, 16), dtype=labels.dtype
    )
    store[...] = labels
    expected = brute_force(labels)
    whole = object_table(labels, (2.0, 1.0, 1.0), {3: 10.0}, block_shape=labels.shape)
    for table in (
        object_table(store, (2.0, 1.0, 1.0), {3: 10.0}),  # the zarr chunks: 16^3
        object_table(labels, (2.0, 1.0, 1.0), {3: 10.0}, block_shape=(7, 9, 11)),
        whole,
    ):
        assert list(table.columns) == list(TABLE_COLUMNS)
        pd.testing.assert_frame_equal(table, whole)
        for column in expected.columns:
            np.testing.assert_allclose(table[column], expected[column], err_msg=column)
    assert list(whole["id"]) == [3, 5, 12, 2**40]
    row = whole.set_index("id").loc[3]
    assert row["volume"] == pytest.approx(row["voxels"] * 2.0)
    assert row["surface_area"] == 10.0
    assert row["sphericity"] == pytest.approx(sphericity(row["volume"], 10.0))
    assert whole.set_index("id")["surface_area"].isna().sum() == 3


def test_empty_and_bad_label_images() -> None:
    empty = object_table(np.zeros((5, 6, 7), np.uint8), (1.0, 1.0, 1.0), {})
    assert len(empty) == 0 and list(empty.columns) == list(TABLE_COLUMNS)
    assert len(label_stats(np.zeros((3, 3, 3), np.uint16))) == 0
    with pytest.raises(InvalidInputError, match="integers"):
        label_stats(np.ones((3, 3, 3), np.float32))
    with pytest.raises(InvalidInputError, match="negative"):
        label_stats(-np.ones((3, 3, 3), np.int32))
    with pytest.raises(InvalidInputError, match="3D"):
        label_stats(np.ones((3, 3), np.uint8))
    with pytest.raises(InvalidInputError, match="voxel size"):
        object_table(np.ones((2, 2, 2), np.uint8), (1.0, 0.0, 1.0), {})


def test_write_table_writes_csv_and_parquet(tmp_path: Path) -> None:
    table = object_table(objects_volume(), (1.0, 1.0, 1.0), {3: 5.0})
    csv_path, parquet_path = write_table(table, tmp_path / "out" / "morphometrics")
    assert (csv_path.name, parquet_path.name) == ("morphometrics.csv", "morphometrics.parquet")
    pd.testing.assert_frame_equal(pd.read_parquet(parquet_path), table)
    pd.testing.assert_frame_equal(pd.read_csv(csv_path), table, check_dtype=False)
