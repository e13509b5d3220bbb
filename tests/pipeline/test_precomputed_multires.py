"""Sharded multi-resolution meshes: what is written decodes (manifest, Draco fragments, octree)
into the surface that went in, placed in nanometres, with the constraints Neuroglancer relies on."""

from __future__ import annotations

import json
from pathlib import Path

import DracoPy
import numpy as np
import numpy.typing as npt
import pytest

from pipeline.errors import InvalidInputError
from pipeline.meshing import lod_meshes, mesh_mask, smooth_taubin
from pipeline.morphometrics import mesh_surface_area, mesh_volume
from pipeline.precomputed_multires import (
    LodMesh,
    Manifest,
    MultiresMeshWriter,
    lod_scales,
    octree_layout,
    quantize,
    read_multires_object,
    split_on_grid,
    zorder_key,
)
from pipeline.precomputed_sharding import ShardingSpec

BITS = 10


def ellipsoid_mesh(radii_vox: tuple[int, int, int], voxel_nm: float) -> LodMesh:
    """A smoothed marching-cubes ellipsoid (z y x radii in voxels), vertices in nm x y z."""
    shape = tuple(2 * r + 3 for r in radii_vox)
    z, y, x = np.indices(shape, dtype=np.float64)
    centre = [(n - 1) / 2 for n in shape]
    inside = sum(((g - c) / r) ** 2 for g, c, r in zip((z, y, x), centre, radii_vox, strict=True))
    vertices, faces = mesh_mask(np.pad(inside <= 1, 1), (voxel_nm,) * 3)
    return LodMesh(smooth_taubin(vertices, faces) + 5000.0, faces)


def write_one(tmp_path: Path, lods: list[LodMesh], voxel_nm: float, segment_id: int = 7) -> Path:
    layout = octree_layout(lods, (voxel_nm,) * 3)
    mesh_dir = tmp_path / "meshes"
    with MultiresMeshWriter(mesh_dir, ShardingSpec(minishard_bits=1)) as writer:
        writer.add(segment_id, lods, layout, lod_scales(len(lods), (voxel_nm,) * 3))
    return mesh_dir


def triangle_areas(vertices: npt.NDArray[np.float64], faces: npt.NDArray[np.int64]) -> float:
    return mesh_surface_area(vertices, faces)


def test_small_object_is_one_fragment_that_decodes_to_the_same_surface(tmp_path: Path) -> None:
    mesh = ellipsoid_mesh((9, 11, 10), 200.0)
    mesh_dir = write_one(tmp_path, [mesh], 200.0)
    info = json.loads((mesh_dir / "info").read_text())
    assert info == {
        "@type": "neuroglancer_multilod_draco",
        "vertex_quantization_bits": 10,
        "transform": [1.0, 0.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 0.0, 1.0, 0.0],
        "lod_scale_multiplier": 1.0,
        "sharding": ShardingSpec(minishard_bits=1).to_json(),
        "segment_properties": "segment_properties",
    }
    assert sorted(p.name for p in mesh_dir.iterdir()) == ["0.shard", "info"]
    stored = read_multires_object(mesh_dir, 7)
    assert stored is not None and read_multires_object(mesh_dir, 8) is None
    manifest = stored.manifest
    assert len(manifest.lod_scales) == 1 and manifest.lod_scales[0] == 200.0
    np.testing.assert_array_equal(manifest.positions[0], [[0, 0, 0]])
    # one node exactly around the object: origin at its low corner, as large as its box
    np.testing.assert_allclose(manifest.grid_origin, mesh.vertices.min(axis=0), atol=1.0)
    np.testing.assert_allclose(
        manifest.chunk_shape, np.ptp(mesh.vertices, axis=0), rtol=1e-3, atol=1.0
    )
    vertices, faces = stored.level_mesh(0)
    step = float(manifest.chunk_shape.max()) / (2**BITS - 1)
    assert len(faces) == len(mesh.faces)
    # every decoded vertex is an input vertex moved by at most half a quantization step per axis
    distances = np.abs(vertices[:, None, :] - mesh.vertices[None, :, :]).max(axis=2).min(axis=1)
    assert distances.max() <= 0.5 * step + 1.0
    assert mesh_volume(vertices, faces) == pytest.approx(
        mesh_volume(mesh.vertices, mesh.faces), rel=0.01
    )
    assert mesh_volume(vertices, faces) > 0, "winding is kept: faces point outwards"


def test_large_object_gets_an_octree_of_levels_cut_where_neuroglancer_needs(
    tmp_path: Path,
) -> None:
    voxel_nm = 100.0
    finest = ellipsoid_mesh((20, 24, 75), voxel_nm)  # 151 voxels along x: over 64
    depth = octree_layout([finest], (voxel_nm,) * 3).depth
    assert depth == 3
    lods = lod_meshes(finest.vertices, finest.faces, depth)
    assert [len(lod.faces) for lod in lods] == sorted(
        (len(lod.faces) for lod in lods), reverse=True
    )
    assert len(lods[2].faces) < len(lods[0].faces) / 8
    mesh_dir = write_one(tmp_path, lods, voxel_nm, segment_id=2**40 + 3)
    stored = read_multires_object(mesh_dir, 2**40 + 3)
    assert stored is not None
    manifest = stored.manifest
    assert list(manifest.lod_scales) == [100.0, 200.0, 400.0]
    chunk = manifest.chunk_shape.astype(np.float64)
    assert chunk[0] == pytest.approx(64 * voxel_nm, rel=1e-6)
    nodes = [len(p) for p in manifest.positions]
    assert nodes[0] > nodes[2] >= 1
    for lod, positions in enumerate(manifest.positions):
        keys = [zorder_key(tuple(int(v) for v in p)) for p in positions]
        assert keys == sorted(keys) and len(set(keys)) == len(keys), "z-order, no duplicates"
        if lod:
            parents = {tuple(int(v) for v in p) for p in positions}
            children = manifest.positions[lod - 1]
            assert all(tuple(int(v) >> 1 for v in c) in parents for c in children)
        # each fragment lies in its node box
        size = chunk * 2.0**lod
        for (vertices, _), position in zip(stored.levels[lod], positions, strict=False):
            lo = manifest.grid_origin + position * size
            assert np.all(vertices >= lo - 1e-3) and np.all(vertices <= lo + size + 1e-3)
        # cutting along the grid keeps the surface: same area and volume as what went in
        vertices, faces = stored.level_mesh(lod)
        assert triangle_areas(vertices, faces) == pytest.approx(
            mesh_surface_area(lods[lod].vertices, lods[lod].faces), rel=0.01
        )
        assert mesh_volume(vertices, faces) == pytest.approx(
            mesh_volume(lods[lod].vertices, lods[lod].faces), rel=0.01
        )
    assert_partitioned(mesh_dir, 2**40 + 3)


def assert_partitioned(mesh_dir: Path, segment_id: int) -> None:
    """Every triangle of a ``lod > 0`` fragment lies in one octant of its node (the spec's
    2x2x2 rule), with integer positions; the mid-plane value 2**(bits-1) belongs to both."""
    from pipeline.precomputed_sharding import read_sharded

    spec = ShardingSpec.from_json(json.loads((mesh_dir / "info").read_text())["sharding"])
    found = read_sharded(mesh_dir, spec, segment_id)
    assert found is not None
    manifest = Manifest.decode(found.data)
    data = found.shard_path.read_bytes()
    offset = found.offset - sum(int(s.sum()) for s in manifest.sizes)
    mid = 2 ** (BITS - 1)
    checked = 0
    for lod, sizes in enumerate(manifest.sizes):
        for size in sizes.tolist():
            chunk, offset = data[offset : offset + size], offset + size
            if lod == 0 or not size:
                continue
            decoded = DracoPy.decode(chunk)
            points = np.asarray(decoded.points).reshape(-1, 3)
            assert np.array_equal(points, np.round(points)), "positions are integers"
            corners = points[np.asarray(decoded.faces).reshape(-1, 3)]  # (faces, 3 vertices, xyz)
            low_ok = np.all(corners <= mid, axis=1)
            high_ok = np.all(corners >= mid, axis=1)
            assert np.all(low_ok | high_ok), "a triangle crosses a mid-plane"
            checked += len(corners)
    assert checked > 0


def test_split_on_grid_cuts_triangles_at_the_planes() -> None:
    mesh = ellipsoid_mesh((10, 10, 10), 1.0)
    origin = mesh.vertices.min(axis=0) - 0.5
    pieces = split_on_grid(mesh.vertices, mesh.faces, origin, np.array([7.0, 9.0, 11.0]))
    assert len(pieces) > 8
    total = 0.0
    for cell, (v, f) in pieces.items():
        lo = origin + np.array(cell) * [7.0, 9.0, 11.0]
        assert np.all(v >= lo - 1e-9) and np.all(v <= lo + [7.0, 9.0, 11.0] + 1e-9)
        total += mesh_surface_area(v, f)
    assert total == pytest.approx(mesh_surface_area(mesh.vertices, mesh.faces), rel=1e-9)


def test_quantization_snaps_mid_plane_vertices_for_partitioned_levels() -> None:
    node_lo, node_size = np.zeros(3), np.full(3, 10.0)
    points = np.array([[0.0, 10.0, 5.0], [5.0 - 1e-7, 2.5, 7.5]])
    plain = quantize(points, node_lo, node_size, BITS, partitioned=False)
    split = quantize(points, node_lo, node_size, BITS, partitioned=True)
    assert plain.tolist()[0] == [0, 1023, 512] and split.tolist()[0] == [0, 1023, 512]
    assert plain[1, 0] == 511 and split[1, 0] == 512  # on the x mid-plane, up to rounding


def test_zorder_key_interleaves_x_lowest() -> None:
    assert [zorder_key(p) for p in [(1, 0, 0), (0, 1, 0), (0, 0, 1), (1, 1, 1), (2, 0, 0)]] == [
        1,
        2,
        4,
        7,
        8,
    ]


def test_manifest_round_trip_and_malformed_input() -> None:
    manifest = Manifest(
        chunk_shape=np.array([1.0, 2.0, 3.0], np.float32),
        grid_origin=np.array([-5.0, 0.0, 5.0], np.float32),
        lod_scales=np.array([1.0, 2.0], np.float32),
        vertex_offsets=np.zeros((2, 3), np.float32),
        positions=[np.array([[0, 0, 0], [1, 0, 0]], np.uint32), np.array([[0, 0, 0]], np.uint32)],
        sizes=[np.array([10, 20], np.uint32), np.array([5], np.uint32)],
    )
    data = manifest.encode()
    assert len(data) == 28 + 2 * 20 + 3 * 16
    again = Manifest.decode(data)
    assert [p.tolist() for p in again.positions] == [[[0, 0, 0], [1, 0, 0]], [[0, 0, 0]]]
    assert [s.tolist() for s in again.sizes] == [[10, 20], [5]]
    assert again.grid_origin.tolist() == [-5.0, 0.0, 5.0]
    with pytest.raises(InvalidInputError):
        Manifest.decode(data[:-4])
    with pytest.raises(InvalidInputError):
        Manifest.decode(b"\0" * 8)
