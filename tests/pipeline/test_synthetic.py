"""The synthetic nuclei volume: reproducible, realistic enough to segment, labels consistent."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest

from pipeline.errors import InvalidInputError
from pipeline.synthetic import make_nuclei_volume

REPO = Path(__file__).resolve().parents[2]
SHAPE = (96, 96, 96)


@pytest.fixture(scope="module")
def volume() -> tuple[npt.NDArray[np.uint16], npt.NDArray[np.uint32]]:
    return make_nuclei_volume(SHAPE, n_nuclei=30, seed=1)


def touching_pairs(labels: npt.NDArray[np.uint32]) -> set[tuple[int, int]]:
    pairs: set[tuple[int, int]] = set()
    for axis in range(3):
        moved = np.moveaxis(labels, axis, 0)
        a, b = moved[1:].ravel(), moved[:-1].ravel()
        face = (a != b) & (a > 0) & (b > 0)
        pairs |= {(int(p), int(q)) for p, q in np.sort(np.stack([a[face], b[face]], 1), 1)}
    return pairs


def test_reproducible_and_seed_dependent(
    volume: tuple[npt.NDArray[np.uint16], npt.NDArray[np.uint32]],
) -> None:
    image, labels = volume
    again_image, again_labels = make_nuclei_volume(SHAPE, n_nuclei=30, seed=1)
    np.testing.assert_array_equal(image, again_image)
    np.testing.assert_array_equal(labels, again_labels)
    other_image, other_labels = make_nuclei_volume(SHAPE, n_nuclei=30, seed=2)
    assert not np.array_equal(labels, other_labels)
    assert not np.array_equal(image, other_image)


def test_labels_are_consecutive_varied_and_some_touch(
    volume: tuple[npt.NDArray[np.uint16], npt.NDArray[np.uint32]],
) -> None:
    image, labels = volume
    assert image.shape == labels.shape == SHAPE
    assert image.dtype == np.uint16 and labels.dtype == np.uint32
    n = int(labels.max())
    assert 24 <= n <= 30
    np.testing.assert_array_equal(np.unique(labels), np.arange(n + 1))
    sizes = np.bincount(labels.ravel())[1:]
    radii = (3 * sizes / (4 * np.pi)) ** (1 / 3)
    assert radii.max() <= 24 and np.median(radii) >= 6
    assert radii.max() / radii.min() > 1.5, "nuclei vary in size"
    assert len(touching_pairs(labels)) >= 2, "some nuclei touch with no background between"


def test_image_has_contrast_noise_and_drift(
    volume: tuple[npt.NDArray[np.uint16], npt.NDArray[np.uint32]],
) -> None:
    image, labels = volume
    nuclei = image[labels > 0].astype(np.float64)
    background = image[labels == 0].astype(np.float64)
    assert np.median(nuclei) > 1.5 * np.median(background)
    assert np.median(nuclei) - np.median(background) > 3 * background.std()
    assert background.std() > 10, "background is noisy and textured, not flat"
    top = np.median(image[-10:][labels[-10:] == 0])
    bottom = np.median(image[:10][labels[:10] == 0])
    assert top > 1.1 * bottom, "intensity drifts along z"


def test_realistic_defaults_scale_with_voxel_size() -> None:
    _, coarse = make_nuclei_volume((64, 64, 64), n_nuclei=5, seed=0, voxel_size_nm=400.0)
    _, fine = make_nuclei_volume((64, 64, 64), n_nuclei=5, seed=0, voxel_size_nm=200.0)
    assert np.bincount(fine.ravel())[1:].mean() > 4 * np.bincount(coarse.ravel())[1:].mean()
    with pytest.raises(InvalidInputError):
        make_nuclei_volume((4, 64, 64))


def test_cli_synth_writes_npy_files(tmp_path: Path) -> None:
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "pipeline",
            "synth",
            str(tmp_path / "demo"),
            "--shape",
            "48",
            "40",
            "44",
            "--nuclei",
            "4",
            "--seed",
            "3",
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    image = np.load(tmp_path / "demo" / "image.npy")
    labels = np.load(tmp_path / "demo" / "labels.npy")
    expected_image, expected_labels = make_nuclei_volume((48, 40, 44), 4, 3)
    np.testing.assert_array_equal(image, expected_image)
    np.testing.assert_array_equal(labels, expected_labels)


def test_sphere_labels_are_whole_disjoint_balls_inside_the_mask() -> None:
    from scipy import ndimage

    from pipeline.synthetic import make_sphere_labels

    mask = np.zeros((40, 60, 60), dtype=bool)
    mask[5:35, 5:55, 5:40] = True
    labels, centres, radii = make_sphere_labels(
        (40, 60, 60), 30, radius_voxels=(3.0, 5.0), seed=2, mask=mask
    )
    assert labels.max() == len(radii) == len(centres) > 10
    assert not labels[~mask].any()
    # Each label is one connected ball of about 4/3 pi r^3 voxels, touching no other.
    _, n_parts = ndimage.label(labels > 0)
    assert n_parts == len(radii)
    volumes = np.bincount(labels.ravel())[1:]
    assert np.allclose(volumes, 4 / 3 * np.pi * radii**3, rtol=0.25)
    again, _, _ = make_sphere_labels((40, 60, 60), 30, radius_voxels=(3.0, 5.0), seed=2, mask=mask)
    assert np.array_equal(again, labels)
