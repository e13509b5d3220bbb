"""Whole-volume segmentation: block merging, thresholds, memory, executors, output and CLI."""

from __future__ import annotations

import subprocess
import sys
import tracemalloc
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import edt
import numpy as np
import pytest
import zarr

from pipeline import cli
from pipeline.errors import InvalidInputError
from pipeline.segment import SegmentResult, segment_volume
from pipeline.watershed import seeded_watershed

VOXEL = (200.0, 100.0, 100.0)
SHAPE = (32, 64, 64)
REPO = Path(__file__).resolve().parents[2]


def packed_spheres(
    shape: Sequence[int], voxel: Sequence[float], seed: int = 0, tries: int = 300
) -> tuple[np.ndarray, np.ndarray]:
    """Randomly packed spheres (radii 0.9-1.4 um) that may touch; truth labels and the signed
    distance in nm (positive inside)."""
    rng = np.random.default_rng(seed)
    extent = np.asarray(shape) * np.asarray(voxel)
    centres: list[np.ndarray] = []
    radii: list[float] = []
    for _ in range(tries):
        centre, radius = rng.uniform(0, 1, 3) * extent, float(rng.uniform(900, 1400))
        if all(
            np.linalg.norm(centre - c) > 0.9 * (radius + r)
            for c, r in zip(centres, radii, strict=True)
        ):
            centres.append(centre)
            radii.append(radius)
    grids = np.meshgrid(
        *(np.arange(n) * v for n, v in zip(shape, voxel, strict=True)), indexing="ij", sparse=True
    )
    labels = np.zeros(shape, dtype=np.uint32)
    best = np.full(shape, np.inf)
    for label, (centre, radius) in enumerate(zip(centres, radii, strict=True), start=1):
        depth = np.sqrt(sum((g - c) ** 2 for g, c in zip(grids, centre, strict=True))) / radius
        inside = (depth <= 1) & (depth < best)
        labels[inside] = label
        best[inside] = depth[inside]
    anisotropy = tuple(voxel)
    signed = edt.edt(labels, anisotropy=anisotropy, black_border=False) - edt.edt(
        labels == 0, anisotropy=anisotropy
    )
    return labels, signed.astype(np.float32)


def assert_same_partition(a: np.ndarray, b: np.ndarray) -> None:
    """Equal up to renaming ids: background agrees and ids map one to one."""
    assert ((a == 0) == (b == 0)).all()
    pairs = np.unique(np.stack([a.ravel(), b.ravel()]), axis=1)
    assert len(np.unique(pairs[0])) == len(np.unique(pairs[1])) == pairs.shape[1]


@pytest.fixture(scope="module")
def spheres() -> tuple[np.ndarray, np.ndarray]:
    return packed_spheres(SHAPE, VOXEL)


@pytest.mark.parametrize("block", [(8, 16, 16), (10, 20, 24)])
def test_blocks_merged_across_faces_equal_one_block(
    spheres: tuple[np.ndarray, np.ndarray], block: tuple[int, int, int], tmp_path: Path
) -> None:
    truth, distance = spheres
    whole = np.zeros(SHAPE, dtype=np.uint32)
    one = segment_volume(distance, whole, block_shape=SHAPE, voxel_size=VOXEL)
    assert one.n_merged == 0 and one.n_objects == len(np.unique(truth)) - 1
    assert_same_partition(whole, seeded_watershed(distance))
    out = tmp_path / "labels.zarr"
    cut = segment_volume(distance, out, block_shape=block, voxel_size=VOXEL)
    labels = np.asarray(zarr.open_array(str(out / "s0"), mode="r")[:])
    assert cut.n_objects == one.n_objects
    assert cut.n_merged > 20  # the grid really cuts objects, many of them several times
    assert cut.n_segments == cut.n_objects + cut.n_merged
    assert sorted(np.unique(labels)) == list(range(cut.n_objects + 1))  # consecutive ids
    assert_same_partition(labels, whole)


def test_objects_touching_at_a_block_face_stay_apart() -> None:
    # Two spheres whose contact plane lies exactly between voxel 23 and 24, the block face.
    _, distance = _two_spheres_meeting_at_x(23.5)
    out = np.zeros(distance.shape, dtype=np.uint32)
    result = segment_volume(distance, out, block_shape=(24, 24, 24), voxel_size=(100.0,) * 3)
    assert result.n_objects == 2 and result.n_merged == 0
    assert set(np.unique(out[:, :, :24])) == {0, 1} and set(np.unique(out[:, :, 24:])) == {0, 2}


def _two_spheres_meeting_at_x(contact: float) -> tuple[np.ndarray, np.ndarray]:
    shape, radius = (24, 24, 48), 10.0
    z, y, x = np.meshgrid(*(np.arange(n, dtype=float) for n in shape), indexing="ij", sparse=True)
    left = np.sqrt((z - 12) ** 2 + (y - 12) ** 2 + (x - contact + radius) ** 2) <= radius
    right = np.sqrt((z - 12) ** 2 + (y - 12) ** 2 + (x - contact - radius) ** 2) <= radius
    labels = np.where(left, 1, np.where(right, 2, 0)).astype(np.uint32)
    signed = edt.edt(labels, anisotropy=(100.0,) * 3, black_border=False) - edt.edt(
        labels == 0, anisotropy=(100.0,) * 3
    )
    return labels, signed.astype(np.float32)


def _halves_overlapping_by(face_rows: int = 10) -> np.ndarray:
    """An object cut by the face x=24 whose two blocks see its face slab differently.

    The left half ends at x=23 over rows 0-9; the right half starts at x=24 over rows 5-9 and,
    separately, rows 11-19, which join the rest only deeper in the right block. With a one-voxel
    halo the left block sees rows 0-9 at x=23 and 5-9 at x=24 (15 rows), the right block all 24
    rows: IoU 15 / 24 = 0.625.
    """
    distance = np.full((6, 32, 48), -100.0, dtype=np.float32)
    distance[:, 0:face_rows, 4:24] = 500.0
    distance[:, 0:face_rows, 5:10] = 1000.0  # left seed, beyond the right block's halo
    distance[:, 5:10, 24] = 500.0
    distance[:, 11:20, 24] = 500.0
    distance[:, 5:20, 25:44] = 500.0
    distance[:, 5:20, 38:43] = 1000.0  # right seed
    return distance


@pytest.mark.parametrize(("iou", "objects"), [(0.75, 2), (0.6, 1)])
def test_halves_whose_face_footprints_overlap_too_little_are_not_merged(
    iou: float, objects: int
) -> None:
    distance = _halves_overlapping_by()
    out = np.zeros(distance.shape, dtype=np.uint32)
    result = segment_volume(distance, out, block_shape=(6, 32, 24), halo=1, iou_threshold=iou)
    assert result.n_segments == 2
    assert result.n_objects == objects and result.n_merged == 2 - objects
    assert len(np.unique(out[:, :, :24])) == 2 and len(np.unique(out[:, :, 24:])) == 2


def _lattice_distance(shape: tuple[int, int, int]) -> np.ndarray:
    z, y, x = np.meshgrid(
        *(np.arange(n, dtype=np.float32) for n in shape), indexing="ij", sparse=True
    )
    blobs = np.cos(z / 3.5) * np.cos(y / 3.5) * np.cos(x / 3.5)
    return (2000.0 * blobs - 400.0).astype(np.float32)


def _traced_peak(run: Callable[[], SegmentResult]) -> tuple[SegmentResult, int]:
    tracemalloc.start()
    try:
        result = run()
        return result, tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_memory_stays_bounded_by_the_block(tmp_path: Path) -> None:
    # Input and output are memory-mapped .npy files: on disk, never read or written whole.
    shape = (96, 96, 96)
    np.save(tmp_path / "distance.npy", _lattice_distance(shape))
    source = np.load(tmp_path / "distance.npy", mmap_mode="r")
    out = np.lib.format.open_memmap(
        tmp_path / "labels.npy", mode="w+", dtype=np.uint32, shape=shape
    )
    volume_bytes = int(np.prod(shape)) * 4
    blocked, blocked_peak = _traced_peak(
        lambda: segment_volume(source, out, block_shape=24, halo=3)
    )
    whole, whole_peak = _traced_peak(
        lambda: segment_volume(source, np.zeros(shape, np.uint32), block_shape=96, halo=3)
    )
    assert blocked.n_objects == whole.n_objects > 100 and blocked.n_merged > 100
    # Watershed working memory is ~40 bytes per voxel of block plus halo, ~10x the float32 input.
    assert blocked_peak < volume_bytes / 2, f"{blocked_peak / 2**20:.1f} MiB"
    assert blocked_peak < whole_peak / 10, f"{blocked_peak / 2**20:.1f} vs {whole_peak / 2**20:.1f}"


def test_process_pool_gives_the_sequential_result(tmp_path: Path) -> None:
    _, distance = packed_spheres((16, 48, 48), VOXEL, seed=3)
    source = zarr.create_array(
        str(tmp_path / "d.zarr"), shape=distance.shape, chunks=(8, 16, 16), dtype=np.float32
    )
    source[:] = distance
    sequential = segment_volume(
        source, tmp_path / "a.zarr", block_shape=(8, 16, 16), voxel_size=VOXEL
    )
    with ProcessPoolExecutor(max_workers=2) as pool:
        pooled = segment_volume(
            source, tmp_path / "b.zarr", block_shape=(8, 16, 16), voxel_size=VOXEL, executor=pool
        )
    assert pooled == sequential and sequential.n_merged > 0
    a = zarr.open_array(str(tmp_path / "a.zarr" / "s0"), mode="r")[:]
    b = zarr.open_array(str(tmp_path / "b.zarr" / "s0"), mode="r")[:]
    np.testing.assert_array_equal(a, b)


def test_bad_inputs_raise_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(InvalidInputError, match="2D or 3D"):
        segment_volume(np.zeros((2, 4, 4, 4), np.float32), np.zeros((2, 4, 4, 4), np.uint32))
    with pytest.raises(InvalidInputError, match="differs"):
        segment_volume(np.zeros((4, 4, 4), np.float32), np.zeros((4, 4, 5), np.uint32))
    chunked = zarr.create_array(
        str(tmp_path / "o.zarr"), shape=(32, 32, 32), chunks=(10, 10, 10), dtype=np.uint32
    )
    with pytest.raises(InvalidInputError, match="multiple of the output chunks"):
        segment_volume(np.zeros((32, 32, 32), np.float32), chunked, block_shape=16)


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    # The real entry point, as a user runs it.
    return subprocess.run(
        [sys.executable, "-m", "pipeline", "segment", *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_cli_writes_an_ome_zarr_label_image(tmp_path: Path) -> None:
    _, distance = packed_spheres((16, 40, 40), VOXEL, seed=5)
    np.save(tmp_path / "d.npy", distance)
    out = tmp_path / "labels.zarr"
    block = ["--block", "8", "16", "16"]
    done = _cli(str(tmp_path / "d.npy"), str(out), *block, "--voxel-size", *map(str, VOXEL))
    assert done.returncode == 0, done.stderr
    assert "objects" in done.stdout and "watershed" in done.stderr  # summary and progress bars
    group = zarr.open_group(str(out), mode="r")
    ome = group.attrs["ome"]
    assert ome["version"] == "0.5" and "image-label" in ome
    scale = ome["multiscales"][0]["datasets"][0]["coordinateTransformations"][0]["scale"]
    assert scale == list(VOXEL)
    assert [a["name"] for a in ome["multiscales"][0]["axes"]] == ["z", "y", "x"]
    assert_same_partition(np.asarray(group["s0"][:]), seeded_watershed(distance))


def test_cli_rejects_wrong_dimensions_and_missing_inputs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    np.save(tmp_path / "cube.npy", np.zeros((4, 4, 4), np.float32))
    (tmp_path / "taken.zarr").mkdir()
    assert cli.main(["segment", str(tmp_path / "cube.npy"), str(tmp_path / "taken.zarr")]) == 2
    assert "already exists" in capsys.readouterr().err
    np.save(tmp_path / "flat.npy", np.zeros(10, np.float32))
    assert cli.main(["segment", str(tmp_path / "flat.npy"), str(tmp_path / "x.zarr")]) == 2
    assert "2D or 3D" in capsys.readouterr().err
    assert cli.main(["segment", str(tmp_path / "nope.npy"), str(tmp_path / "y.zarr")]) == 2
    assert "no such file" in capsys.readouterr().err
    zarr.create_group(str(tmp_path / "empty.zarr"))
    assert cli.main(["segment", str(tmp_path / "empty.zarr"), str(tmp_path / "z.zarr")]) == 2
    assert "multiscales" in capsys.readouterr().err
    args = [str(tmp_path / "cube.npy"), str(tmp_path / "w.zarr"), "--block", "4", "4"]
    assert cli.main(["segment", *args]) == 2
    assert "--block needs 1 or 3 values" in capsys.readouterr().err
    assert not (tmp_path / "x.zarr").exists() and not (tmp_path / "w.zarr").exists()


def test_2d_maps_are_segmented_block_by_block_too() -> None:
    yy, xx = np.meshgrid(np.arange(60.0), np.arange(90.0), indexing="ij", sparse=True)
    centres = [(20, 20, 12), (20, 43, 11), (42, 30, 12), (40, 62, 14)]  # y, x, radius (voxels)
    labels = np.zeros((60, 90), dtype=np.uint32)
    for label, (cy, cx, r) in enumerate(centres, start=1):
        labels[((yy - cy) ** 2 + (xx - cx) ** 2 <= r**2) & (labels == 0)] = label
    distance = (
        edt.edt(labels, anisotropy=(100.0, 100.0), black_border=False)
        - edt.edt(labels == 0, anisotropy=(100.0, 100.0))
    ).astype(np.float32)
    out = np.zeros(labels.shape, dtype=np.uint32)
    result = segment_volume(distance, out, block_shape=(16, 16), voxel_size=(100.0, 100.0))
    assert result.n_objects == 4 and result.n_merged > 4
    assert_same_partition(out, seeded_watershed(distance))


def test_smoothing_and_small_seed_removal_match_the_whole_map(
    spheres: tuple[np.ndarray, np.ndarray], tmp_path: Path
) -> None:
    _, distance = spheres
    noisy = distance + np.random.default_rng(3).normal(0, 150, distance.shape).astype(np.float32)
    whole = seeded_watershed(noisy, smooth_sigma=(0.5, 1.0, 1.0), min_seed_voxels=4)
    assert len(np.unique(seeded_watershed(noisy))) > len(np.unique(whole))  # noise seeds gone
    out = tmp_path / "labels.zarr"
    segment_volume(
        noisy, out, block_shape=(16, 32, 32), voxel_size=VOXEL, smooth_nm=100.0, min_seed_voxels=4
    )
    assert_same_partition(np.asarray(zarr.open_array(str(out / "s0"), mode="r")[:]), whole)
    with pytest.raises(InvalidInputError, match="voxel size"):
        segment_volume(noisy, np.zeros(SHAPE, np.uint32), smooth_nm=100.0)


def test_a_peak_dynamic_gives_the_whole_maps_result_block_by_block(
    spheres: tuple[np.ndarray, np.ndarray], tmp_path: Path
) -> None:
    # Seeds at a low threshold, kept only on peaks rising 500 nm above their saddles: the noise
    # maxima go without any smoothing or minimum size, and blocks agree with the whole map.
    truth, distance = spheres
    noisy = distance + np.random.default_rng(3).normal(0, 150, distance.shape).astype(np.float32)
    whole = seeded_watershed(noisy, seed_threshold=300.0, seed_dynamic=500.0)
    assert len(np.unique(seeded_watershed(noisy, seed_threshold=300.0))) > len(np.unique(whole))
    assert len(np.unique(whole)) == len(np.unique(truth))
    out = tmp_path / "labels.zarr"
    cut = segment_volume(
        noisy, out, block_shape=(16, 32, 32), voxel_size=VOXEL, seed_threshold=300.0,
        seed_dynamic_nm=500.0,
    )  # fmt: skip
    assert cut.n_merged > 0
    assert_same_partition(np.asarray(zarr.open_array(str(out / "s0"), mode="r")[:]), whole)
