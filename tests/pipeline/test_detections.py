"""The detections table: known answers on constructed volumes, blocks, anisotropy, memory."""

from __future__ import annotations

import json
import math
import tracemalloc
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pandas as pd
import pytest
import zarr

from pipeline.detections import (
    COLUMN_DESCRIPTIONS,
    DETECTION_COLUMNS,
    Geometry,
    image_matching,
    measure_detections,
    measure_detections_of_store,
    mesh_areas_um2,
)
from pipeline.errors import InvalidInputError
from pipeline.measure import measure_labels
from pipeline.meshing import build_meshes
from pipeline.morphometrics import label_stats
from pipeline.ome_zarr_io import create_single_level_image
from tests.pipeline.conftest import write_reference_ome_zarr

# Anisotropic voxels (nm, z y x) and an origin that is not zero.
VOXEL_NM = (2000.0, 500.0, 250.0)
ORIGIN_NM = (1000.0, -300.0, 40.0)


def constructed() -> tuple[npt.NDArray[np.uint32], npt.NDArray[np.uint16]]:
    """Three boxes and an L shape; the image is 10 * id inside objects plus a gradient."""
    labels = np.zeros((20, 30, 40), dtype=np.uint32)
    labels[0:4, 0:5, 0:6] = 5  # 120 voxels, at the corner
    labels[6:14, 10:22, 15:33] = 9  # crosses every 8-voxel block border
    labels[15:20, 25:30, 35:40] = 1_000_000  # a large id, at the far corner
    labels[2:3, 20:28, 2:3] = 12  # L shape: 8 voxels along y...
    labels[2:3, 27:28, 2:8] = 12  # ...and 5 more along x
    x = np.indices(labels.shape)[2]
    image = (10 * labels.astype(np.int64) % 60000 + (x % 3)).astype(np.uint16)
    return labels, image


def brute_force(
    labels: npt.NDArray[np.uint32], image: npt.NDArray[np.uint16]
) -> dict[int, dict[str, float]]:
    """Every column's expected value per id, computed on the whole volume."""
    out: dict[int, dict[str, float]] = {}
    voxel_um = np.array(VOXEL_NM) / 1000
    origin_um = np.array(ORIGIN_NM) / 1000
    for segment in np.unique(labels[labels > 0]).tolist():
        where = np.argwhere(labels == segment)
        centroid = where.mean(axis=0)
        lo, hi = where.min(axis=0), where.max(axis=0) + 1
        row: dict[str, float] = {
            "voxels": len(where),
            "volume": len(where) * float(np.prod(voxel_um)),
            "mean_intensity": float(image[labels == segment].astype(np.float64).mean()),
        }
        for axis, name in enumerate("zyx"):
            row[f"centroid_{name}"] = centroid[axis]
            row[f"centroid_{name}_um"] = origin_um[axis] + centroid[axis] * voxel_um[axis]
            row[f"bbox_{name}0"] = lo[axis]
            row[f"bbox_{name}1"] = hi[axis]
            row[f"bbox_{name}0_um"] = origin_um[axis] + (lo[axis] - 0.5) * voxel_um[axis]
            row[f"bbox_{name}1_um"] = origin_um[axis] + (hi[axis] - 0.5) * voxel_um[axis]
        out[int(segment)] = row
    return out


@pytest.mark.parametrize("block", [(8, 8, 8), (7, 11, 13), (20, 30, 40)])
def test_table_matches_the_whole_volume_answer_whatever_the_blocks(
    block: tuple[int, int, int],
) -> None:
    labels, image = constructed()
    table = measure_detections(
        labels, Geometry(VOXEL_NM, ORIGIN_NM), image=image, block_shape=block
    )
    assert list(table.columns) == list(DETECTION_COLUMNS)
    assert table["segment_id"].tolist() == [5, 9, 12, 1_000_000]
    expected = brute_force(labels, image)
    for row in table.to_dict("records"):
        want = expected[int(row["segment_id"])]
        for column, value in want.items():
            assert row[column] == pytest.approx(value, rel=1e-9, abs=1e-9), column
    # No areas given: surface and sphericity are missing, not zero; no probability yet.
    assert table["surface_area"].isna().all()
    assert table["sphericity"].isna().all()
    assert table["mean_probability"].isna().all()


def test_known_answers_of_one_box_in_anisotropic_voxels() -> None:
    labels = np.zeros((10, 10, 10), dtype=np.uint8)
    labels[2:6, 3:5, 1:9] = 3  # 4 x 2 x 8 = 64 voxels
    table = measure_detections(labels, Geometry(VOXEL_NM, ORIGIN_NM), block_shape=(3, 3, 3))
    row = table.iloc[0]
    assert row["voxels"] == 64
    # 64 voxels of 2 x 0.5 x 0.25 um^3
    assert row["volume"] == pytest.approx(64 * 0.25)
    assert (row["centroid_z"], row["centroid_y"], row["centroid_x"]) == (3.5, 3.5, 4.5)
    assert row["centroid_z_um"] == pytest.approx(1.0 + 3.5 * 2.0)
    assert row["centroid_x_um"] == pytest.approx(0.04 + 4.5 * 0.25)
    # Box edges: half a voxel outside the first and last voxel centres.
    assert row["bbox_z0_um"] == pytest.approx(1.0 + 1.5 * 2.0)
    assert row["bbox_z1_um"] == pytest.approx(1.0 + 5.5 * 2.0)
    assert row["bbox_z1_um"] - row["bbox_z0_um"] == pytest.approx(4 * 2.0)
    assert row["bbox_y1_um"] - row["bbox_y0_um"] == pytest.approx(2 * 0.5)
    assert row["bbox_x1_um"] - row["bbox_x0_um"] == pytest.approx(8 * 0.25)
    assert math.isnan(row["mean_intensity"])


def test_areas_give_sphericity_and_missing_areas_stay_empty() -> None:
    labels = np.zeros((6, 6, 6), dtype=np.uint16)
    labels[0:2, 0:2, 0:2] = 1
    labels[3:5, 3:5, 3:5] = 2
    geometry = Geometry((1000.0, 1000.0, 1000.0))
    table = measure_detections(labels, geometry, areas_um2={1: 24.0})
    cube = table.set_index("segment_id")
    assert cube.loc[1, "surface_area"] == 24.0
    assert cube.loc[1, "sphericity"] == pytest.approx(0.806, abs=5e-4)  # an 8 um^3 cube
    assert math.isnan(cube.loc[2, "surface_area"])
    assert math.isnan(cube.loc[2, "sphericity"])


def test_empty_volume_and_bad_input() -> None:
    table = measure_detections(np.zeros((4, 4, 4), np.uint8), Geometry((1.0, 1.0, 1.0)))
    assert len(table) == 0 and list(table.columns) == list(DETECTION_COLUMNS)
    with pytest.raises(InvalidInputError, match="voxel size"):
        Geometry((1.0, 0.0, 1.0))
    with pytest.raises(InvalidInputError, match="must match"):
        measure_detections(
            np.zeros((4, 4, 4), np.uint8),
            Geometry((1.0, 1.0, 1.0)),
            image=np.zeros((4, 4, 5), np.uint8),
        )
    with pytest.raises(InvalidInputError, match="negative"):
        measure_detections(np.full((2, 2, 2), -1, np.int16), Geometry((1.0, 1.0, 1.0)))
    assert set(COLUMN_DESCRIPTIONS) == set(DETECTION_COLUMNS)


def test_store_with_image_pyramid_meshes_and_a_coarser_label_level(tmp_path: Path) -> None:
    """The table of a label image in a real OME-Zarr: intensities from the image level of the
    same shape, areas from the meshes' morphometrics."""
    labels, image = constructed()
    store = write_reference_ome_zarr(
        tmp_path / "image.ome.zarr",
        image,
        {"nuclei": labels},
        version="0.5",
        scale={"z": 2.0, "y": 0.5, "x": 0.25},
    )
    label_path = store / "labels" / "nuclei"
    build_meshes(label_path, tmp_path / "meshes")
    # A run's probability map (here the image scaled into 0-1), in a store of its own.
    probability = tmp_path / "probability.ome.zarr"
    create_single_level_image(
        probability, labels.shape, dtype=np.float32, chunks=(8, 8, 8),
        voxel_size=(2000.0, 500.0, 250.0), name="probability",
    )[...] = image / 1000.0  # fmt: skip
    table = measure_detections_of_store(
        label_path,
        image_path=store,
        meshes_dir=tmp_path / "meshes",
        probability_path=probability,
        block_shape=(8, 8, 8),
    )
    expected = brute_force(labels, image)
    assert table["mean_probability"].tolist() == pytest.approx(
        [expected[i]["mean_intensity"] / 1000.0 for i in sorted(expected)], rel=1e-5
    )
    plain = measure_detections_of_store(label_path, image_path=store)
    assert plain["mean_probability"].isna().all()
    # The pipeline's measure step (a run's) puts the same means into the detections table and
    # into the meshes' segment properties, which Neuroglancer shows per object.
    measured = measure_labels(label_path, tmp_path / "measured", probability_path=probability)
    written = pd.read_csv(measured.detections_csv).set_index("id")["mean_probability"]
    assert written.to_dict() == pytest.approx(
        table.set_index("segment_id")["mean_probability"].to_dict(), rel=1e-5
    )
    info = json.loads((measured.meshes_dir / "segment_properties" / "info").read_text())
    properties = {p["id"]: p for p in info["inline"]["properties"]}
    assert properties["mean_probability"]["type"] == "number"
    by_id = dict(
        zip(map(int, info["inline"]["ids"]), properties["mean_probability"]["values"], strict=True)
    )
    assert by_id == pytest.approx(written.to_dict(), rel=1e-5)
    assert "mean probability" in properties["description"]["values"][0]
    bare = measure_labels(label_path, tmp_path / "bare")
    bare_info = json.loads((bare.meshes_dir / "segment_properties" / "info").read_text())
    assert "mean_probability" not in {p["id"] for p in bare_info["inline"]["properties"]}
    assert table["segment_id"].tolist() == sorted(expected)
    for row in table.to_dict("records"):
        want = expected[int(row["segment_id"])]
        assert row["mean_intensity"] == pytest.approx(want["mean_intensity"])
        # the store has no translation: only the voxel size counts here
        assert row["centroid_y_um"] == pytest.approx(row["centroid_y"] * 0.5)
    areas = mesh_areas_um2(tmp_path / "meshes")
    assert set(areas) == set(expected)
    assert table.set_index("segment_id")["surface_area"].to_dict() == pytest.approx(areas)
    assert (table["sphericity"] > 0).all()  # a one-voxel-thin L may pass 1 once smoothed
    # The coarser image level matches a label image of its shape, not of another.
    coarse = image_matching(store, (10, 15, 20))
    assert coarse is not None and tuple(coarse.shape) == (10, 15, 20)
    assert image_matching(store, (11, 15, 20)) is None
    assert mesh_areas_um2(tmp_path / "nowhere") == {}


# --- 100,000 objects with bounded memory ---------------------------------------------------

CELL = (5, 10, 10)  # each object a 4 x 9 x 9 box in its own cell
CELLS = (40, 50, 50)  # 100,000 objects
BOX = (4, 9, 9)


def _write_many_objects(path: Path) -> tuple[zarr.Array, zarr.Array]:
    shape = tuple(c * n for c, n in zip(CELL, CELLS, strict=True))
    labels = zarr.create_array(
        str(path / "labels"), shape=shape, chunks=(25, 100, 100), dtype="uint32"
    )
    image = zarr.create_array(
        str(path / "image"), shape=shape, chunks=(25, 100, 100), dtype="uint16"
    )
    slab = 25  # five layers of cells at a time
    y, x = np.indices(shape[1:])
    for z0 in range(0, shape[0], slab):
        z = np.arange(z0, z0 + slab)[:, None, None]
        cz, cy, cx = z // CELL[0], y // CELL[1], x // CELL[2]
        inside = (z % CELL[0] < BOX[0]) & (y % CELL[1] < BOX[1]) & (x % CELL[2] < BOX[2])
        ids = (cz * CELLS[1] * CELLS[2] + cy * CELLS[2] + cx + 1).astype(np.uint32)
        labels[z0 : z0 + slab] = np.where(inside, ids, 0)
        image[z0 : z0 + slab] = np.where(inside, ids % 1000, 7).astype(np.uint16)
    return labels, image


@pytest.mark.slow
def test_one_hundred_thousand_objects_with_bounded_memory(tmp_path: Path) -> None:
    labels, image = _write_many_objects(tmp_path)
    whole_bytes = labels.nbytes + image.nbytes  # 300 MB held whole
    tracemalloc.start()
    try:
        table = measure_detections(
            labels, Geometry((1000.0, 500.0, 500.0)), image=image, block_shape=(64, 64, 64)
        )
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    print(f"100,000 objects: tracemalloc peak {peak / 1e6:.1f} MB, volume {whole_bytes / 1e6} MB")
    assert peak < whole_bytes / 4, f"peak {peak / 1e6:.0f} MB"
    assert len(table) == 100_000
    assert table["segment_id"].tolist() == list(range(1, 100_001))
    assert (table["voxels"] == 4 * 9 * 9).all()
    ids = table["segment_id"].to_numpy() - 1
    cz = ids // (CELLS[1] * CELLS[2])
    np.testing.assert_allclose(table["centroid_z"], cz * CELL[0] + 1.5)
    np.testing.assert_allclose(table["mean_intensity"], (ids + 1) % 1000)
    assert (table["bbox_x1"] - table["bbox_x0"] == 9).all()


def test_label_stats_without_image_has_no_intensity() -> None:
    labels, _ = constructed()
    stats = label_stats(labels, (8, 8, 8))
    assert stats.intensity_sums is None and stats.mean_intensity is None
    frame = pd.DataFrame({"id": stats.ids})
    assert len(frame) == 4


def test_cli_writes_the_table(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from pipeline.cli import main

    labels, image = constructed()
    store = write_reference_ome_zarr(
        tmp_path / "image.ome.zarr", image, {"nuclei": labels}, version="0.4",
        scale={"z": 2.0, "y": 0.5, "x": 0.25},
    )  # fmt: skip
    out = tmp_path / "out" / "detections"
    assert (
        main(["detections", str(store / "labels" / "nuclei"), str(out), "--image", str(store)]) == 0
    )
    assert "4 objects" in capsys.readouterr().out
    table = pd.read_parquet(out.with_suffix(".parquet"))
    assert table["segment_id"].tolist() == [5, 9, 12, 1_000_000]
    assert table["mean_intensity"].notna().all()
    assert main(["detections", str(tmp_path / "missing"), str(out)]) == 2


def test_a_2d_label_image_is_measured_as_one_voxel_deep(tmp_path: Path) -> None:
    """A 2D segmentation (a run on a 2D image publishes one) has a table: each object's pixels
    as voxels one pixel deep, at z 0, its area in the volume column (um^2), with the image's
    and the probability's means."""
    labels3, image3 = constructed()
    labels, image = labels3[2], image3[2]  # a plane holding parts of several objects
    store = write_reference_ome_zarr(
        tmp_path / "image.ome.zarr", image, {"nuclei": labels}, version="0.5",
        scale={"y": 0.5, "x": 0.25},
    )  # fmt: skip
    probability = tmp_path / "probability.ome.zarr"
    create_single_level_image(
        probability, labels.shape, dtype=np.float32, chunks=(8, 8), voxel_size=(500.0, 250.0),
        name="probability",
    )[...] = image / 1000.0  # fmt: skip
    table = measure_detections_of_store(
        store / "labels" / "nuclei", image_path=store, probability_path=probability,
        block_shape=(1, 8, 8),
    )  # fmt: skip
    ids = sorted(int(i) for i in np.unique(labels[labels > 0]))
    assert table["segment_id"].tolist() == ids and len(ids) >= 2
    for row in table.to_dict("records"):
        where = np.argwhere(labels == row["segment_id"])
        assert row["voxels"] == len(where)
        assert row["volume"] == pytest.approx(len(where) * 0.5 * 0.25)  # its area, um^2
        assert (row["centroid_z"], row["bbox_z0"], row["bbox_z1"]) == (0, 0, 1)
        assert row["centroid_y"] == pytest.approx(where[:, 0].mean())
        assert row["centroid_x_um"] == pytest.approx(where[:, 1].mean() * 0.25)
        mean = image[labels == row["segment_id"]].astype(np.float64).mean()
        assert row["mean_intensity"] == pytest.approx(mean)
        assert row["mean_probability"] == pytest.approx(mean / 1000.0, rel=1e-5)
