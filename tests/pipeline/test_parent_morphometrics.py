"""Per-parent morphometrics on constructed cases whose answers are worked out by hand."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import zarr

from pipeline.cli import main
from pipeline.commands import parents as parents_command
from pipeline.errors import InvalidInputError
from pipeline.ome_zarr_io import create_single_level_image
from pipeline.parent_morphometrics import (
    DEFAULT_STEREOLOGY,
    SPHERE_SHAPE_COEFFICIENT,
    STEREOLOGY_METHODS,
    SectionModel,
    caliper_diameter_from_profiles,
    parent_morphometrics,
)

# 3D case, voxels 2 x 0.5 x 0.5 um (0.5 um^3): parents 5 and 7 are 10 x 20 x 20 voxel boxes side
# by side along x (2000 um^3 each), parent 9 a 10 x 10 x 10 box (500 um^3) with no child.
VOXEL_3D = (2.0, 0.5, 0.5)


def _scene_3d() -> tuple[np.ndarray, np.ndarray]:
    parents = np.zeros((12, 40, 40), np.uint16)
    parents[0:10, 0:20, 0:20] = 5
    parents[0:10, 0:20, 20:40] = 7
    parents[0:10, 25:35, 0:10] = 9
    children = np.zeros_like(parents, dtype=np.uint32)
    children[1:3, 2:4, 2:4] = 1  # centroid (1.5, 2.5, 2.5) voxels
    children[1:3, 2:4, 10:12] = 2  # 8 voxels (4 um) along x from child 1
    children[5:7, 2:4, 2:4] = 3  # 4 voxels (8 um) along z from child 1
    children[4:6, 10:12, 19:23] = 4  # 1 of 4 columns in parent 5, 3 in parent 7
    children[10:12, 36:38, 36:38] = 6  # outside every parent
    return children, parents


def test_3d_counts_densities_sizes_and_nearest_neighbours() -> None:
    children, parents = _scene_3d()
    result = parent_morphometrics(children, parents, VOXEL_3D, subject="s1")
    assert result.dims == 3 and result.caliper_diameter_um is None
    table = result.parents.set_index("parent_id")
    assert table.index.tolist() == [5, 7, 9]
    assert table["parent_volume_um3"].tolist() == [2000.0, 2000.0, 500.0]
    assert table["n_children"].tolist() == [3, 1, 0]
    assert table.loc[5, "child_density_per_um3"] == pytest.approx(3 / 2000)
    assert table.loc[7, "child_density_per_um3"] == pytest.approx(1 / 2000)
    assert table.loc[9, "child_density_per_um3"] == 0.0
    # Children of parent 5: 8 voxels = 4 um^3 each; nearest neighbours 4, 4 and 8 um
    # (1-3 is 8 um along z, 2-3 is sqrt(8^2 + 4^2) um).
    assert table.loc[5, "child_volume_mean_um3"] == pytest.approx(4.0)
    assert table.loc[5, "child_volume_fraction"] == pytest.approx(24 / 4000)
    assert table.loc[5, "nn_distance_mean_um"] == pytest.approx(16 / 3)
    assert table.loc[5, "nn_distance_median_um"] == pytest.approx(4.0)
    assert table.loc[5, "nn_distance_min_um"] == pytest.approx(4.0)
    assert table.loc[5, "parent_equivalent_diameter_um"] == pytest.approx(
        (6 * 2000 / math.pi) ** (1 / 3)
    )
    # The straddling child counts once, for parent 7 (3 of its 4 columns), measured whole: 16
    # voxels = 8 um^3, of which 12 voxels lie inside parent 7. An only child has no neighbour.
    assert table.loc[7, "child_volume_mean_um3"] == pytest.approx(8.0)
    assert table.loc[7, "child_volume_fraction"] == pytest.approx(12 / 4000)
    assert math.isnan(table.loc[7, "nn_distance_mean_um"])
    assert math.isnan(table.loc[9, "child_volume_mean_um3"])
    assert math.isnan(table.loc[9, "nn_distance_mean_um"])
    assert "child_density_est_per_um3" not in table.columns  # stereology is for 2D sections

    kids = result.children.set_index("child_id")
    assert kids["parent_id"].to_dict() == {1: 5, 2: 5, 3: 5, 4: 7, 6: 0}
    assert kids.loc[4, "inside_fraction"] == pytest.approx(0.75)
    assert kids.loc[1, "centroid_z_um"] == pytest.approx(3.0)
    assert kids.loc[2, "centroid_x_um"] == pytest.approx(5.25)
    assert kids.loc[[1, 2, 3], "nn_distance_um"].tolist() == pytest.approx([4.0, 4.0, 8.0])
    assert result.outside_children["child_id"].tolist() == [6]
    assert result.outside_children["volume_um3"].tolist() == [4.0]

    signature = result.signature.set_index("measure")
    assert (signature["subject"] == "s1").all()
    n = signature.loc["n_children"]
    assert (n["n"], n["min"], n["max"], n["median"]) == (3, 0.0, 3.0, 1.0)
    assert n["mean"] == pytest.approx(4 / 3) and n["variance"] == pytest.approx(7 / 3)
    nn = signature.loc["nn_distance_mean_um"]  # only parent 5 has neighbours
    assert nn["n"] == 1 and nn["mean"] == pytest.approx(16 / 3) and math.isnan(nn["variance"])
    assert "parent_id" not in signature.index and "parent_voxels" not in signature.index


def test_blocks_zarr_and_min_inside_fraction_agree_with_hand_answers(tmp_path: Path) -> None:
    children, parents = _scene_3d()
    whole = parent_morphometrics(children, parents, VOXEL_3D)
    store = zarr.open_array(
        str(tmp_path / "c.zarr"), mode="w", shape=children.shape, chunks=(5, 7, 9), dtype="u4"
    )
    store[:] = children
    blocked = parent_morphometrics(store, parents, VOXEL_3D, block_shape=(5, 7, 9))
    pd.testing.assert_frame_equal(blocked.parents, whole.parents)
    pd.testing.assert_frame_equal(blocked.children, whole.children)
    strict = parent_morphometrics(children, parents, VOXEL_3D, min_inside_fraction=0.8)
    assert strict.parents["n_children"].tolist() == [3, 0, 0]
    assert strict.outside_children["child_id"].tolist() == [4, 6]


def test_tie_goes_to_the_smaller_parent_and_no_children_at_all() -> None:
    parents = np.zeros((4, 4, 8), np.uint8)
    parents[:, :, :4], parents[:, :, 4:] = 3, 2
    children = np.zeros_like(parents)
    children[1:3, 1:3, 2:6] = 1  # half in each
    result = parent_morphometrics(children, parents, (1.0, 1.0, 1.0))
    assert result.children["parent_id"].tolist() == [2]
    empty = parent_morphometrics(np.zeros_like(parents), parents, (1.0, 1.0, 1.0))
    assert empty.parents["n_children"].tolist() == [0, 0] and empty.children.empty
    section = parent_morphometrics(
        np.zeros((4, 8), np.uint8), parents[0], (1.0, 1.0), section=SectionModel(thickness_um=3.0)
    )
    assert math.isnan(section.caliper_diameter_um or math.nan)  # no profile to measure D on
    assert section.parents["child_density_est_per_um3"].tolist() == [0.0, 0.0]


# 2D case: pixels 0.5 um; parent 1 a 40 x 40 square (400 um^2) with four 4 x 4 children (4 um^2
# each, area fraction 16 / 400 = 0.04, N_A = 0.01 per um^2), parent 2 a disc with one child.
def _scene_2d() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    parents = np.zeros((60, 100), np.uint8)
    parents[0:40, 0:40] = 1
    yy, xx = np.mgrid[0:60, 0:100]
    disc = (yy - 30) ** 2 + (xx - 75) ** 2 <= 15**2
    parents[disc] = 2
    children = np.zeros((60, 100), np.uint16)
    # centres (voxels) (10, 10), (10, 16), (18, 10): 3, 4 and 5 um apart; the fourth far away
    for i, (y, x) in enumerate([(10, 10), (10, 16), (18, 10), (34, 34)], start=1):
        children[y - 2 : y + 2, x - 2 : x + 2] = i
    children[28:32, 73:77] = 5
    return children, parents, disc


def test_2d_abercrombie_with_given_caliper_diameter() -> None:
    children, parents, disc = _scene_2d()
    section = SectionModel(thickness_um=4.0, caliper_diameter_um=6.0)
    result = parent_morphometrics(children, parents, (0.5, 0.5), section=section)
    assert result.dims == 2 and result.caliper_diameter_um == 6.0
    table = result.parents.set_index("parent_id")
    assert table.loc[1, "parent_area_um2"] == 400.0
    assert table.loc[1, "n_children"] == 4
    assert table.loc[1, "child_density_per_um2"] == pytest.approx(0.01)
    assert table.loc[1, "child_area_fraction"] == pytest.approx(0.04)
    assert table.loc[1, "child_area_mean_um2"] == pytest.approx(4.0)
    assert table.loc[1, "child_equivalent_diameter_mean_um"] == pytest.approx(
        4 / math.sqrt(math.pi)
    )
    # nearest neighbours 3, 3, 4 um and, for the far child at (34, 34), sqrt(16^2 + 24^2) / 2
    # = 14.42 um to (18, 10) (15 um to (10, 16), 16.97 um to (10, 10)).
    far = math.hypot(16, 24) / 2
    assert table.loc[1, "nn_distance_mean_um"] == pytest.approx((3 + 3 + 4 + far) / 4)
    assert table.loc[1, "nn_distance_median_um"] == pytest.approx(3.5)
    # N_V = N_A / (D + t) = 0.01 / 10; parent volume 1.382 * 400^1.5; number = product.
    assert table.loc[1, "child_density_est_per_um3"] == pytest.approx(0.001)
    volume = math.sqrt(6 / math.pi) * 8000.0
    assert table.loc[1, "parent_volume_est_um3"] == pytest.approx(volume)
    assert table.loc[1, "n_children_est"] == pytest.approx(0.001 * volume)
    assert table.loc[1, "n_children_est"] == pytest.approx(11.056, abs=1e-3)
    disc_area = disc.sum() * 0.25
    assert table.loc[2, "parent_area_um2"] == pytest.approx(disc_area)
    assert table.loc[2, "child_density_est_per_um3"] == pytest.approx(1 / disc_area / 10)
    assert math.isnan(table.loc[2, "nn_distance_mean_um"])
    assert {"centroid_y_um", "centroid_x_um"} <= set(result.children.columns)
    assert "centroid_z_um" not in result.children.columns


def test_2d_anisotropic_pixels() -> None:
    # pixels 0.5 um (y) x 0.25 um (x): a 20 x 40 pixel parent is 10 x 10 um; children 10 pixels
    # apart along y and 20 along x are both 5 um apart; 2 x 2 pixels = 4 x 0.125 = 0.5 um^2.
    parents = np.zeros((30, 50), np.uint8)
    parents[0:20, 0:40] = 1
    children = np.zeros_like(parents)
    children[4:6, 4:6], children[4:6, 24:26], children[14:16, 4:6] = 1, 2, 3
    section = SectionModel(method="none")
    result = parent_morphometrics(children, parents, (0.5, 0.25), section=section)
    row = result.parents.iloc[0]
    assert row["parent_area_um2"] == 100.0 and row["child_density_per_um2"] == pytest.approx(0.03)
    assert row["child_area_mean_um2"] == pytest.approx(0.5)
    assert result.children["nn_distance_um"].tolist() == pytest.approx([5.0, 5.0, 5.0])


def test_2d_weibel_gomez_against_a_hand_computed_value() -> None:
    children, parents, _ = _scene_2d()
    section = SectionModel(method="weibel-gomez")
    table = parent_morphometrics(children, parents, (0.5, 0.5), section=section).parents
    # (K / beta) N_A^1.5 / V_V^0.5 = 0.01^1.5 / (1.38198 * 0.04^0.5) = 0.001 / 0.276396
    assert table.loc[0, "child_density_est_per_um3"] == pytest.approx(0.0036180, rel=1e-4)
    none = parent_morphometrics(children, parents, (0.5, 0.5), section=SectionModel(method="none"))
    assert "child_density_est_per_um3" not in none.parents.columns
    # a 3D image of one plane is a section: the same figures
    plane = parent_morphometrics(children[None], parents[None], (4.0, 0.5, 0.5), section=section)
    assert plane.dims == 2
    pd.testing.assert_frame_equal(plane.parents, table)


def test_2d_caliper_diameter_estimated_from_the_profiles() -> None:
    children, parents, _ = _scene_2d()
    # every profile is 4 um^2: mean equivalent diameter d = 4 / sqrt(pi) = 2.2568 um; with t = 0
    # the sphere model gives D = 4 d / pi = 2.8735 um, so N_V = 0.01 / 2.8735 for parent 1.
    thin = parent_morphometrics(
        children, parents, (0.5, 0.5), section=SectionModel(thickness_um=0.0)
    )
    d = 4 / math.sqrt(math.pi)
    assert thin.caliper_diameter_um == pytest.approx(4 * d / math.pi)
    assert thin.parents.loc[0, "child_density_est_per_um3"] == pytest.approx(0.01 / 2.87352, 1e-4)
    thick = parent_morphometrics(
        children, parents, (0.5, 0.5), section=SectionModel(thickness_um=3.0)
    )
    big_d = thick.caliper_diameter_um
    assert big_d is not None and big_d == pytest.approx(2.5007, abs=1e-4)  # root of the quadratic
    assert big_d * (3.0 + math.pi * big_d / 4) / (3.0 + big_d) == pytest.approx(d)


def test_sphere_model_recovers_the_diameter_of_simulated_sections() -> None:
    """Equal spheres (D = 8 um) with random centres, projected through a 4 um section: the
    profiles' mean diameter gives back D."""
    rng = np.random.default_rng(0)
    diameter, thickness = 8.0, 4.0
    centres = rng.uniform(-diameter / 2, thickness + diameter / 2, 200_000)
    nearest_face = np.clip(centres, 0.0, thickness)
    profiles = 2 * np.sqrt(np.maximum((diameter / 2) ** 2 - (centres - nearest_face) ** 2, 0))
    estimate = caliper_diameter_from_profiles(float(profiles.mean()), thickness)
    assert estimate == pytest.approx(diameter, rel=0.005)


def test_bad_input_is_refused_with_a_message() -> None:
    children, parents, _ = _scene_2d()
    with pytest.raises(InvalidInputError, match="thickness"):
        parent_morphometrics(children, parents, (0.5, 0.5))
    with pytest.raises(InvalidInputError, match="same grid"):
        parent_morphometrics(children, parents[:, :50], (0.5, 0.5))
    with pytest.raises(InvalidInputError, match="voxel size"):
        parent_morphometrics(children, parents, (0.5, 0.5, 0.5))
    with pytest.raises(InvalidInputError, match="stereology method"):
        SectionModel(method="disector")
    with pytest.raises(InvalidInputError, match="integers"):
        parent_morphometrics(
            children.astype(np.float32), parents, (0.5, 0.5), section=SectionModel(method="none")
        )


def test_command_constants_match_the_module() -> None:
    assert parents_command.STEREOLOGY_METHODS == STEREOLOGY_METHODS
    assert parents_command.DEFAULT_STEREOLOGY == DEFAULT_STEREOLOGY
    assert parents_command.SPHERE_SHAPE_COEFFICIENT == SPHERE_SHAPE_COEFFICIENT


def _write_labels(path: Path, data: np.ndarray, voxel_nm: tuple[float, ...]) -> Path:
    array = create_single_level_image(
        path,
        data.shape,
        dtype=data.dtype,
        chunks=tuple(min(n, 16) for n in data.shape),
        voxel_size=voxel_nm,
        name=path.stem,
        label=True,
    )
    array[...] = data
    return path


def test_command_line_writes_csv_and_parquet(tmp_path: Path) -> None:
    children, parents = _scene_3d()
    voxel_nm = tuple(v * 1000 for v in VOXEL_3D)
    child_path = _write_labels(tmp_path / "nuclei.zarr", children, voxel_nm)
    parent_path = _write_labels(tmp_path / "glomeruli.zarr", parents, voxel_nm)
    out = tmp_path / "out"
    assert main(["parents", str(child_path), str(parent_path), str(out)]) == 0
    for name in ("parents", "children", "outside_children", "signature"):
        csv, parquet = pd.read_csv(out / f"{name}.csv"), pd.read_parquet(out / f"{name}.parquet")
        pd.testing.assert_frame_equal(csv, parquet, check_dtype=False)
    table = pd.read_parquet(out / "parents.parquet")
    assert table["n_children"].tolist() == [3, 1, 0]
    assert table["child_density_per_um3"].tolist() == pytest.approx([3 / 2000, 1 / 2000, 0])
    assert set(pd.read_csv(out / "signature.csv")["subject"]) == {"nuclei"}

    flat_children, flat_parents, _ = _scene_2d()
    np.save(tmp_path / "c.npy", flat_children)
    np.save(tmp_path / "p.npy", flat_parents)
    argv = ["parents", str(tmp_path / "c.npy"), str(tmp_path / "p.npy"), str(tmp_path / "o2")]
    assert main(argv) == 2  # no voxel size recorded in .npy
    assert main([*argv, "--voxel-size", "500"]) == 2  # 2D without a section thickness
    argv += ["--voxel-size", "500", "--section-thickness", "4", "--caliper-diameter", "6"]
    assert main(argv) == 0
    estimates = pd.read_csv(tmp_path / "o2" / "parents.csv")["child_density_est_per_um3"]
    assert estimates[0] == pytest.approx(0.001)
    assert main(["parents", str(child_path), str(tmp_path / "p.npy"), str(tmp_path / "o3")]) == 2

    # A semantic mask of the parents (all 1): its connected components are the parents.
    np.save(tmp_path / "mask.npy", (flat_parents > 0).astype(np.uint8))
    argv[2] = str(tmp_path / "mask.npy")
    argv[3] = str(tmp_path / "o4")
    assert main([*argv, "--parents-mask"]) == 0
    from_mask = pd.read_csv(tmp_path / "o4" / "parents.csv")
    assert from_mask["n_children"].tolist() == [4, 1]
    assert (
        from_mask["parent_area_um2"].tolist()
        == pd.read_csv(tmp_path / "o2" / "parents.csv")["parent_area_um2"].tolist()
    )
