"""Meshes and morphometrics through the whole build_meshes path on real OME-Zarr label images."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pandas as pd
import pytest
import zarr
from ome_zarr.format import FormatV04
from ome_zarr.writer import write_labels

from pipeline.errors import InvalidInputError
from pipeline.meshing import build_meshes, open_label_level, simplify_mesh, smooth_taubin
from pipeline.morphometrics import mesh_surface_area, mesh_volume
from pipeline.precomputed import read_fragment, stored_segment_ids
from pipeline.precomputed_multires import read_multires_object

REPO = Path(__file__).resolve().parents[2]


def write_label_zarr(
    root: Path,
    labels: npt.NDArray[np.integer],
    voxel_size: tuple[float, float, float],
    *,
    ngff04: bool = False,
    chunks: int = 32,
) -> Path:
    """Write ``labels`` as ``root/labels/nuclei`` (NGFF 0.5, or 0.4 on Zarr v2)."""
    group = zarr.open_group(str(root), mode="w", zarr_format=2 if ngff04 else 3)
    write_labels(
        labels,
        group,
        name="nuclei",
        scaler=None,
        scale_factors=(),
        axes="zyx",
        scale=dict(zip("zyx", voxel_size, strict=True)),
        axes_units=dict.fromkeys("zyx", "nanometer"),
        storage_options={"chunks": (chunks,) * 3},
        fmt=FormatV04() if ngff04 else None,
    )
    return root / "labels" / "nuclei"


def ball(
    shape: tuple[int, int, int],
    centre: tuple[float, float, float],
    radius: float,
    voxel_size: tuple[float, float, float] = (1.0, 1.0, 1.0),
) -> npt.NDArray[np.bool_]:
    z, y, x = np.indices(shape, dtype=np.float64)
    d2 = sum(((g - c) * v) ** 2 for g, c, v in zip((z, y, x), centre, voxel_size, strict=True))
    return np.asarray(d2 <= radius**2)


def read_object(
    mesh_dir: Path, segment_id: int
) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.int64]]:
    """An object's finest level as Neuroglancer would decode it, one vertex per position."""
    stored = read_multires_object(mesh_dir, segment_id)
    assert stored is not None, f"no mesh for {segment_id}"
    vertices, faces = stored.level_mesh(0)
    unique, inverse = np.unique(vertices, axis=0, return_inverse=True)
    return unique.astype(np.float32), inverse.reshape(-1)[faces]


def edge_use_counts(faces: npt.NDArray[np.integer]) -> npt.NDArray[np.int64]:
    """How many faces share each undirected edge."""
    edges = np.sort(np.concatenate([faces[:, [0, 1]], faces[:, [1, 2]], faces[:, [2, 0]]]), axis=1)
    _, counts = np.unique(edges, axis=0, return_counts=True)
    return counts


def test_sphere_mesh_is_watertight_round_and_placed_in_nm_xyz(tmp_path: Path) -> None:
    labels = np.zeros((56, 52, 50), dtype=np.uint32)
    centre = (27.0, 25.0, 24.0)
    labels[ball(labels.shape, centre, 20)] = 7
    vs = 100.0
    result = build_meshes(
        write_label_zarr(tmp_path / "s.zarr", labels, (vs, vs, vs)), tmp_path / "meshes"
    )
    assert (result.n_objects, result.path, result.properties_csv) == (
        1,
        "meshes",
        "morphometrics.csv",
    )
    out = tmp_path / "meshes"
    assert json.loads((out / "info").read_text())["@type"] == "neuroglancer_multilod_draco"
    assert sorted(p.name for p in out.glob("*.shard")) == ["0.shard"]
    vertices, faces = read_object(out, 7)
    assert len(faces) >= 128 and int(faces.max()) < len(vertices)
    assert np.all(edge_use_counts(faces) == 2), "every edge must be shared by exactly two faces"
    assert mesh_volume(vertices, faces) > 0, "faces wind outwards"
    # x y z order in nm, voxel centres at index * voxel size
    expected_centre_xyz = np.array(centre[::-1]) * vs
    np.testing.assert_allclose(vertices.mean(axis=0), expected_centre_xyz, atol=0.5 * vs)
    np.testing.assert_allclose(
        vertices.max(axis=0) - vertices.min(axis=0), 2 * 20.5 * vs, rtol=0.03
    )
    table = pd.read_csv(out / "morphometrics.csv")
    row = table.iloc[0]
    assert row["id"] == 7 and row["voxels"] == int(labels.astype(bool).sum())
    assert row["volume"] == pytest.approx(row["voxels"] * (vs / 1000) ** 3)
    assert row["sphericity"] == pytest.approx(1.0, abs=0.05)
    assert pd.read_parquet(out / "morphometrics.parquet").equals(table)


def test_cube_sphericity_with_anisotropic_voxels_in_ngff_04(tmp_path: Path) -> None:
    labels = np.zeros((24, 40, 40), dtype=np.uint16)
    labels[4:19, 5:35, 5:35] = 3  # 15 x 30 x 30 voxels of 400 x 200 x 200 nm: a 6 um cube
    path = write_label_zarr(tmp_path / "c.zarr", labels, (400.0, 200.0, 200.0), ngff04=True)
    assert zarr.open_group(str(path), mode="r").metadata.zarr_format == 2
    build_meshes(path, tmp_path / "m")
    row = pd.read_csv(tmp_path / "m" / "morphometrics.csv").iloc[0]
    assert row["volume"] == pytest.approx(216.0)
    assert row["sphericity"] == pytest.approx(0.806, rel=0.05)
    vertices, _ = read_object(tmp_path / "m", 3)
    extent = vertices.max(axis=0) - vertices.min(axis=0)  # x, y, z in nm
    np.testing.assert_allclose(extent, [30 * 200, 30 * 200, 15 * 400], rtol=0.03)


def test_objects_touching_and_crossing_chunks_get_closed_meshes_and_properties(
    tmp_path: Path,
) -> None:
    labels = np.zeros((40, 40, 40), dtype=np.uint32)
    labels[ball(labels.shape, (20, 14, 20), 8)] = 1
    labels[ball(labels.shape, (20, 28, 20), 8) & (labels == 0)] = 2  # touches 1
    labels[2:5, 30:33, 30:33] = 9  # a tiny object: 27 voxels
    seen: list[tuple[str, int, int]] = []
    result = build_meshes(
        write_label_zarr(tmp_path / "t.zarr", labels, (200.0, 200.0, 200.0), chunks=16),
        tmp_path / "m",
        progress=lambda stage, done, total: seen.append((stage, done, total)),
    )
    assert result.n_objects == 3
    assert seen[-1] == ("meshing", 3, 3)
    for segment_id in (1, 2, 9):
        _, faces = read_object(tmp_path / "m", segment_id)
        assert len(faces) > 0 and np.all(edge_use_counts(faces) == 2)
    info = json.loads((tmp_path / "m" / "info").read_text())
    assert info["@type"] == "neuroglancer_multilod_draco"
    assert info["segment_properties"] == "segment_properties"
    props = json.loads((tmp_path / "m" / "segment_properties" / "info").read_text())
    assert props["@type"] == "neuroglancer_segment_properties"
    assert props["inline"]["ids"] == ["1", "2", "9"]
    by_id = {p["id"]: p for p in props["inline"]["properties"]}
    assert by_id["label"]["type"] == "label"
    assert by_id["description"]["type"] == "description"
    assert [p["type"] for p in props["inline"]["properties"]].count("label") == 1
    table = pd.read_csv(tmp_path / "m" / "morphometrics.csv")
    for key, column in (
        ("volume_um3", "volume"),
        ("surface_um2", "surface_area"),
        ("sphericity", "sphericity"),
    ):
        assert by_id[key]["type"] == "number" and by_id[key]["data_type"] == "float32"
        np.testing.assert_allclose(by_id[key]["values"], table[column], rtol=1e-6)
    assert table.set_index("id").loc[9, "voxels"] == 27
    assert list(
        table.loc[
            table["id"] == 9, ["bbox_z0", "bbox_y0", "bbox_x0", "bbox_z1", "bbox_y1", "bbox_x1"]
        ].iloc[0]
    ) == [2, 30, 30, 5, 33, 33]


def test_empty_label_image_gives_valid_empty_output_and_rebuild_replaces(tmp_path: Path) -> None:
    labels = np.zeros((20, 20, 20), dtype=np.uint8)
    labels[5:10, 5:10, 5:10] = 4
    out = tmp_path / "m"
    build_meshes(
        write_label_zarr(tmp_path / "a.zarr", labels, (1.0, 1.0, 1.0)), out, mesh_format="legacy"
    )
    assert (out / "4:0").exists()
    result = build_meshes(
        write_label_zarr(tmp_path / "e.zarr", np.zeros_like(labels), (1.0, 1.0, 1.0)), out
    )
    assert result.n_objects == 0
    assert not (out / "4:0").exists(), "a rebuild must not leave stale meshes behind"
    assert not list(out.glob("*.shard")) and stored_segment_ids(out) == []
    assert json.loads((out / "info").read_text())["@type"] == "neuroglancer_multilod_draco"
    props = json.loads((out / "segment_properties" / "info").read_text())
    assert props["inline"]["ids"] == []
    assert all(p["values"] == [] for p in props["inline"]["properties"])
    table = pd.read_csv(out / "morphometrics.csv")
    assert len(table) == 0 and "sphericity" in table.columns
    assert not [p.name for p in tmp_path.iterdir() if p.name.startswith(".")], "no leftovers"


def test_simplification_keeps_area_and_never_empties() -> None:
    mask = np.pad(ball((44, 44, 44), (21.5, 21.5, 21.5), 20), 1)
    from pipeline.meshing import mesh_mask

    vertices, faces = mesh_mask(mask, (1.0, 1.0, 1.0))
    smooth = smooth_taubin(vertices, faces)
    v2, f2 = simplify_mesh(smooth, faces, ratio=0.01)
    assert 128 <= len(f2) < len(faces) / 10
    assert mesh_surface_area(v2, f2) == pytest.approx(mesh_surface_area(smooth, faces), rel=0.02)
    assert np.all(edge_use_counts(f2) == 2)
    tiny_v, tiny_f = mesh_mask(np.pad(np.ones((1, 1, 1), bool), 1), (1.0, 1.0, 1.0))
    _, kept_f = simplify_mesh(tiny_v, tiny_f, ratio=0.01)
    assert len(kept_f) == len(tiny_f) > 0


def test_meshes_follow_the_origin_and_unit_of_the_label_image(tmp_path: Path) -> None:
    labels = np.zeros((24, 24, 24), dtype=np.uint32)
    labels[ball(labels.shape, (12, 12, 12), 6)] = 3
    path = write_label_zarr(tmp_path / "t.zarr", labels, (0.2, 0.2, 0.2))
    group = zarr.open_group(str(path), mode="r+")
    ome = group.attrs["ome"]
    meta = ome["multiscales"][0]
    for axis in meta["axes"]:
        axis["unit"] = "micrometer"
    meta["datasets"][0]["coordinateTransformations"].append(
        {"type": "translation", "translation": [1.0, 2.0, 3.0]}
    )
    group.attrs["ome"] = ome
    level = open_label_level(path)
    assert level.voxel_size_nm == pytest.approx((200.0, 200.0, 200.0))
    assert level.translation_nm == pytest.approx((1000.0, 2000.0, 3000.0))
    build_meshes(path, tmp_path / "meshes")
    vertices, _ = read_object(tmp_path / "meshes", 3)
    # x y z in nm: the voxel centre times the voxel size, plus the origin
    np.testing.assert_allclose(vertices.mean(axis=0), [5400.0, 4400.0, 3400.0], atol=100.0)


def test_bad_input_is_reported(tmp_path: Path) -> None:
    zarr.open_group(str(tmp_path / "plain.zarr"), mode="w")
    with pytest.raises(InvalidInputError, match="multiscales"):
        open_label_level(tmp_path / "plain.zarr")
    path = write_label_zarr(tmp_path / "x.zarr", np.ones((4, 4, 4), np.uint8), (1.0, 1.0, 1.0))
    with pytest.raises(InvalidInputError, match="level 3"):
        open_label_level(path, level=3)


def test_cli_mesh_runs(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    labels = np.zeros((24, 24, 24), dtype=np.uint32)
    labels[ball(labels.shape, (12, 12, 12), 6)] = 5
    path = write_label_zarr(tmp_path / "l.zarr", labels, (200.0, 200.0, 200.0))
    for fmt in ("multires", "legacy"):
        done = subprocess.run(
            [sys.executable, "-m", "pipeline", "mesh", str(path), str(tmp_path / fmt),
             "--format", fmt],
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=120,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
        assert "1 objects" in done.stdout
    assert read_object(tmp_path / "multires", 5)[1].size > 0
    assert read_fragment(tmp_path / "legacy" / "5.frag")[1].size > 0
    from pipeline.cli import main

    assert main(["mesh", str(tmp_path / "nope"), str(tmp_path / "o2")]) == 2
    assert "error:" in capsys.readouterr().err


def test_cli_default_matches_the_library_default() -> None:
    from pipeline.commands import mesh as mesh_command
    from pipeline.meshing import DEFAULT_SIMPLIFY_RATIO, MESH_FORMATS

    assert mesh_command.DEFAULT_SIMPLIFY_RATIO == DEFAULT_SIMPLIFY_RATIO
    assert mesh_command.MESH_FORMATS == MESH_FORMATS


def test_legacy_format_still_writes_a_manifest_and_a_fragment_per_object(tmp_path: Path) -> None:
    labels = np.zeros((30, 30, 30), dtype=np.uint32)
    labels[ball(labels.shape, (15, 15, 15), 8)] = 7
    out = tmp_path / "legacy"
    path = write_label_zarr(tmp_path / "l.zarr", labels, (200.0,) * 3)
    build_meshes(path, out, mesh_format="legacy")
    assert json.loads((out / "info").read_text()) == {
        "@type": "neuroglancer_legacy_mesh",
        "segment_properties": "segment_properties",
    }
    assert json.loads((out / "7:0").read_text()) == {"fragments": ["7.frag"]}
    vertices, faces = read_fragment(out / "7.frag")
    assert vertices.dtype == np.float32 and faces.dtype == np.uint32
    assert np.all(edge_use_counts(faces) == 2)
    # the same object in both formats: the same surface up to the quantization of the new one
    build_meshes(path, tmp_path / "multires")
    mv, mf = read_object(tmp_path / "multires", 7)
    assert len(mf) == len(faces)
    assert mesh_volume(mv, mf) == pytest.approx(mesh_volume(vertices, faces), rel=0.005)
    np.testing.assert_allclose(mv.min(axis=0), vertices.min(axis=0), atol=5.0)
    np.testing.assert_allclose(mv.max(axis=0), vertices.max(axis=0), atol=5.0)
    with pytest.raises(InvalidInputError, match="format"):
        build_meshes(path, tmp_path / "x", mesh_format="obj")  # type: ignore[arg-type]
