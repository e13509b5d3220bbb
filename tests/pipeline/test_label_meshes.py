"""Meshes of painted label versions: placement, volume, per-object reuse, concurrent builds."""

from __future__ import annotations

import json
import math
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

from pipeline.label_meshes import FRAGMENT_REF, VersionArray, version_meshes
from pipeline.label_store import LabelGeometry
from pipeline.label_volume import LabelVolume
from pipeline.morphometrics import mesh_volume
from pipeline.precomputed import MESH_INFO_TYPE, VOLUME_PROPERTY, read_fragment

GEOMETRY = LabelGeometry(
    shape=(40, 48, 56),
    chunk=(16, 16, 16),
    voxel_size_nm=(8.0, 4.0, 4.0),
    start=(10, 20, 30),
    image_origin_nm=(100.0, 200.0, 300.0),
)


def ball(
    shape: tuple[int, int, int], centre: tuple[float, float, float], radius_nm: float
) -> np.ndarray:
    """Voxels (z y x) within ``radius_nm`` of ``centre`` (voxels), anisotropic like GEOMETRY."""
    zz, yy, xx = np.indices(shape, dtype=np.float64)
    vz, vy, vx = GEOMETRY.voxel_size_nm
    d2 = ((zz - centre[0]) * vz) ** 2 + ((yy - centre[1]) * vy) ** 2 + ((xx - centre[2]) * vx) ** 2
    inside: np.ndarray = d2 <= radius_nm**2
    return inside


def fragment_of(path: Path, segment_id: int) -> tuple[np.ndarray, np.ndarray]:
    manifest = json.loads((path / f"{segment_id}:0").read_text())
    (name,) = manifest["fragments"]
    assert name.startswith(FRAGMENT_REF)
    return read_fragment(path / name)


def test_a_ball_meshes_at_its_physical_place_with_its_volume(tmp_path: Path) -> None:
    volume = LabelVolume.create(tmp_path / "labels", GEOMETRY, durable=False)
    labels = np.zeros(GEOMETRY.shape, dtype=np.uint32)
    centre = (20.0, 22.0, 30.0)
    labels[ball(GEOMETRY.shape, centre, 60.0)] = 7
    version = volume.save(
        0, {i: labels[GEOMETRY.chunk_slices(i)] for i in GEOMETRY.chunk_indices()}
    )

    built = version_meshes(volume.blobs, GEOMETRY, version.chunks, tmp_path / "cache")

    assert built.object_ids == (7,)
    assert json.loads((built.path / "info").read_text())["@type"] == MESH_INFO_TYPE
    vertices, faces = fragment_of(built.path, 7)
    # Box voxel (z, y, x) lies at origin + (start + voxel) * size, nm; vertices are x y z.
    expected_xyz = [
        GEOMETRY.image_origin_nm[a] + (GEOMETRY.start[a] + centre[a]) * GEOMETRY.voxel_size_nm[a]
        for a in (2, 1, 0)
    ]
    np.testing.assert_allclose(vertices.mean(axis=0), expected_xyz, atol=4.0)
    enclosed = abs(mesh_volume(vertices.astype(np.float64), faces.astype(np.int64)))
    assert enclosed == pytest.approx(4 / 3 * math.pi * 60.0**3, rel=0.08)
    props = json.loads((built.path / "segment_properties" / "info").read_text())["inline"]
    volume_prop = next(p for p in props["properties"] if p["id"] == VOLUME_PROPERTY)
    voxels = int((labels == 7).sum())
    assert props["ids"] == ["7"]
    assert volume_prop["values"][0] == pytest.approx(voxels * 8 * 4 * 4 * 1e-9)


def test_changing_one_object_re_meshes_only_it(tmp_path: Path) -> None:
    volume = LabelVolume.create(tmp_path / "labels", GEOMETRY, durable=False)
    labels = np.zeros(GEOMETRY.shape, dtype=np.uint32)
    for n, centre in enumerate([(10.0, 12.0, 12.0), (28.0, 12.0, 40.0), (20.0, 36.0, 28.0)], 1):
        labels[ball(GEOMETRY.shape, centre, 36.0)] = n
    whole = {i: labels[GEOMETRY.chunk_slices(i)] for i in GEOMETRY.chunk_indices()}
    first = volume.save(0, whole)
    cache = tmp_path / "cache"
    built = version_meshes(volume.blobs, GEOMETRY, first.chunks, cache)
    assert built.meshed == (1, 2, 3) and built.reused == ()
    again = version_meshes(volume.blobs, GEOMETRY, first.chunks, cache)
    assert again.path == built.path and again.meshed == ()

    changed = labels.copy()
    changed[ball(GEOMETRY.shape, (28.0, 12.0, 40.0), 44.0)] = 2  # object 2 grows
    second = volume.save(
        first.number, {i: changed[GEOMETRY.chunk_slices(i)] for i in GEOMETRY.chunk_indices()}
    )
    rebuilt = version_meshes(volume.blobs, GEOMETRY, second.chunks, cache)

    assert rebuilt.path != built.path
    assert rebuilt.meshed == (2,) and rebuilt.reused == (1, 3)
    for unchanged in (1, 3):
        assert (rebuilt.path / f"{unchanged}:0").read_text() == (
            built.path / f"{unchanged}:0"
        ).read_text()
    old_v, _ = fragment_of(built.path, 2)
    new_v, _ = fragment_of(rebuilt.path, 2)
    assert np.ptp(new_v[:, 0]) > np.ptp(old_v[:, 0])
    # The earlier version's source is untouched.
    assert fragment_of(built.path, 2)[0].shape == old_v.shape


def test_concurrent_requests_build_a_version_once(tmp_path: Path) -> None:
    volume = LabelVolume.create(tmp_path / "labels", GEOMETRY, durable=False)
    labels = np.zeros(GEOMETRY.shape, dtype=np.uint32)
    labels[ball(GEOMETRY.shape, (20.0, 24.0, 28.0), 50.0)] = 3
    version = volume.save(
        0, {i: labels[GEOMETRY.chunk_slices(i)] for i in GEOMETRY.chunk_indices()}
    )
    cache = tmp_path / "cache"

    with ThreadPoolExecutor(max_workers=4) as pool:
        results = list(
            pool.map(
                lambda _: version_meshes(volume.blobs, GEOMETRY, version.chunks, cache), range(4)
            )
        )

    assert len({r.path for r in results}) == 1
    assert sum(len(r.meshed) for r in results) == 1  # one builder meshed it, the others waited
    assert [p.name for p in cache.iterdir() if p.name.startswith(".") and p.name != ".locks"] == []


def test_an_empty_version_has_a_source_without_objects(tmp_path: Path) -> None:
    volume = LabelVolume.create(tmp_path / "labels", GEOMETRY, durable=False)
    built = version_meshes(volume.blobs, GEOMETRY, volume.current().chunks, tmp_path / "cache")
    assert built.object_ids == ()
    assert (built.path / "info").is_file()


def test_a_version_read_chunk_by_chunk_is_the_version(tmp_path: Path) -> None:
    volume = LabelVolume.create(tmp_path / "labels", GEOMETRY, durable=False)
    rng = np.random.default_rng(5)
    labels = rng.integers(0, 4, GEOMETRY.shape, dtype=np.uint32)
    labels[:16, :16, :16] = 0  # an all-zero chunk, absent from the map
    version = volume.save(
        0, {i: labels[GEOMETRY.chunk_slices(i)] for i in GEOMETRY.chunk_indices()}
    )
    assert (0, 0, 0) not in version.chunks
    array = VersionArray(volume.blobs, GEOMETRY, version.chunks, cache_bytes=2 * 16**3 * 4)
    assert array.shape == GEOMETRY.shape
    for _ in range(20):
        lo = [int(rng.integers(0, n - 1)) for n in GEOMETRY.shape]
        hi = [int(rng.integers(a + 1, n + 1)) for a, n in zip(lo, GEOMETRY.shape, strict=True)]
        region = (slice(lo[0], hi[0]), slice(lo[1], hi[1]), slice(lo[2], hi[2]))
        np.testing.assert_array_equal(array[region], labels[region])
    assert len(array._decoded) <= 2  # the cache stays within its bytes
