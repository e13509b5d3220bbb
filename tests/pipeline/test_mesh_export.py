"""Meshes read back from both precomputed formats and written as PLY, OBJ, GLB and a zip."""

from __future__ import annotations

import io
import json
import shutil
import zipfile
from pathlib import Path

import numpy as np
import pytest
import trimesh

from pipeline.detections import Geometry, measure_detections
from pipeline.errors import InvalidInputError
from pipeline.mesh_export import (
    MESH_FILE_FORMATS,
    iter_meshes_zip,
    mesh_file_bytes,
    mesh_ids,
    read_object_mesh,
)
from pipeline.meshing import build_meshes
from tests.pipeline.test_meshing import ball, write_label_zarr

VOXEL_NM = (400.0, 200.0, 100.0)


@pytest.fixture(scope="module")
def layer(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path, np.ndarray]:
    """Two objects (one crossing chunk borders, one large enough for several octree nodes),
    meshed in both formats."""
    root = tmp_path_factory.mktemp("meshes")
    labels = np.zeros((40, 80, 160), dtype=np.uint32)
    labels[ball(labels.shape, (20, 40, 80), 7000.0, VOXEL_NM)] = 4
    labels[2:10, 60:75, 10:40] = 11
    path = write_label_zarr(root / "t.zarr", labels, VOXEL_NM, chunks=32)
    build_meshes(path, root / "multires")
    build_meshes(path, root / "legacy", mesh_format="legacy")
    return path, root / "multires", root / "legacy", labels


@pytest.mark.parametrize("which", ["multires", "legacy"])
@pytest.mark.parametrize("file_format", MESH_FILE_FORMATS)
def test_each_format_loads_in_trimesh_with_its_vertices_inside_the_box(
    layer: tuple[Path, Path, Path, np.ndarray], which: str, file_format: str
) -> None:
    _, multires, legacy, labels = layer
    mesh_dir = multires if which == "multires" else legacy
    table = measure_detections(labels, Geometry(VOXEL_NM)).set_index("segment_id")
    for segment_id in (4, 11):
        mesh = read_object_mesh(mesh_dir, segment_id)
        assert mesh is not None
        data = mesh_file_bytes(mesh, file_format)
        loaded = trimesh.load(io.BytesIO(data), file_type=file_format, force="mesh", process=False)
        assert len(loaded.vertices) == len(mesh.vertices)
        assert len(loaded.faces) == len(mesh.faces)
        # Micrometres, x y z, within the object's physical box (plus the quantization step).
        row = table.loc[segment_id]
        lo = np.array([row[f"bbox_{a}0_um"] for a in "xyz"])
        hi = np.array([row[f"bbox_{a}1_um"] for a in "xyz"])
        slack = 0.02 * (hi - lo)
        assert np.all(loaded.bounds[0] >= lo - slack), (loaded.bounds, lo)
        assert np.all(loaded.bounds[1] <= hi + slack), (loaded.bounds, hi)
        # and it fills most of it
        assert np.all(loaded.bounds[1] - loaded.bounds[0] > 0.8 * (hi - lo))


def test_multires_pieces_are_joined_into_one_closed_surface(
    layer: tuple[Path, Path, Path, np.ndarray],
) -> None:
    _, multires, _, _ = layer
    mesh = read_object_mesh(multires, 4)
    assert mesh is not None
    surface = trimesh.Trimesh(mesh.vertices, mesh.faces, process=False)
    assert len(np.unique(mesh.vertices, axis=0)) == len(mesh.vertices)
    # the sphere of radius 7 um: volume within a few per cent of 4/3 pi r^3 (in nm^3)
    assert abs(surface.volume) == pytest.approx(4 / 3 * np.pi * 7000.0**3, rel=0.06)


def test_absent_objects_and_bad_formats(layer: tuple[Path, Path, Path, np.ndarray]) -> None:
    _, multires, legacy, _ = layer
    assert read_object_mesh(multires, 999) is None
    assert read_object_mesh(legacy, 999) is None
    mesh = read_object_mesh(legacy, 4)
    assert mesh is not None
    with pytest.raises(InvalidInputError, match="unknown mesh format"):
        mesh_file_bytes(mesh, "stl")
    with pytest.raises(InvalidInputError, match="unknown mesh format"):
        list(iter_meshes_zip(multires, [4], "stl"))
    with pytest.raises(InvalidInputError, match="mesh info"):
        read_object_mesh(multires.parent / "nowhere", 4)


def test_zip_streams_one_file_per_object(layer: tuple[Path, Path, Path, np.ndarray]) -> None:
    _, multires, _, _ = layer
    assert mesh_ids(multires) == [4, 11]
    chunks = list(iter_meshes_zip(multires, [*mesh_ids(multires), 999], "ply", name_prefix="m/"))
    assert len(chunks) >= 2  # handed out object by object, not built whole
    archive = zipfile.ZipFile(io.BytesIO(b"".join(chunks)))
    assert archive.testzip() is None
    assert archive.namelist() == ["m/4.ply", "m/11.ply"]
    for name, segment_id in (("m/4.ply", 4), ("m/11.ply", 11)):
        loaded = trimesh.load(io.BytesIO(archive.read(name)), file_type="ply", process=False)
        expected = read_object_mesh(multires, segment_id)
        assert expected is not None and len(loaded.vertices) == len(expected.vertices)


def test_zip_leaves_out_unreadable_meshes_and_names_them(
    layer: tuple[Path, Path, Path, np.ndarray], tmp_path: Path
) -> None:
    """A damaged object must not break the stream mid-way (no error status can follow)."""

    _, _, legacy, _ = layer
    damaged = tmp_path / "legacy"
    shutil.copytree(legacy, damaged)
    manifest = damaged / "11:0"
    for name in json.loads(manifest.read_text())["fragments"]:
        (damaged / name).unlink()
    archive = zipfile.ZipFile(io.BytesIO(b"".join(iter_meshes_zip(damaged, [4, 11], "obj"))))
    assert archive.namelist() == ["4.obj", "unreadable.txt"]
    assert archive.read("unreadable.txt").decode().splitlines()[1].startswith("11: ")
