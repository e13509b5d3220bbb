"""Seeded watershed on signed distance maps of touching spheres with anisotropic voxels."""

from __future__ import annotations

from collections.abc import Sequence

import edt
import numpy as np

from pipeline.watershed import seeded_watershed


def touching_spheres(
    shape: tuple[int, ...],
    voxel_size: Sequence[float],
    centres: Sequence[Sequence[float]],
    radii: Sequence[float],
) -> tuple[np.ndarray, np.ndarray]:
    """Truth labels and the signed distance (nm, positive inside) of spheres given in nm.

    A voxel inside several spheres goes to the one it is relatively deepest in, so spheres touch.
    """
    grids = np.meshgrid(
        *(np.arange(n) * v for n, v in zip(shape, voxel_size, strict=True)),
        indexing="ij",
        sparse=True,
    )
    labels = np.zeros(shape, dtype=np.uint32)
    best = np.full(shape, np.inf)
    for label, (centre, radius) in enumerate(zip(centres, radii, strict=True), start=1):
        depth = np.sqrt(sum((g - c) ** 2 for g, c in zip(grids, centre, strict=True))) / radius
        inside = (depth <= 1) & (depth < best)
        labels[inside] = label
        best[inside] = depth[inside]
    anisotropy = tuple(float(v) for v in voxel_size)
    distance = edt.edt(labels, anisotropy=anisotropy, black_border=False) - edt.edt(
        labels == 0, anisotropy=anisotropy
    )
    return labels, distance.astype(np.float32)


def best_iou(truth: np.ndarray, found: np.ndarray, label: int) -> tuple[int, float]:
    """The found label overlapping ``label`` most, and their IoU."""
    inside = truth == label
    match = int(np.bincount(found[inside]).argmax())
    other = found == match
    return match, float((inside & other).sum() / (inside | other).sum())


def test_touching_spheres_each_become_one_label() -> None:
    voxel = (200.0, 100.0, 100.0)  # z twice as coarse
    centres = [(4000, 4000, 2500), (4000, 4000, 6000), (4000, 6500, 4500)]
    truth, distance = touching_spheres((40, 80, 120), voxel, centres, [1500, 2000, 1800])
    assert ((truth == 1) & np.roll(truth == 2, -1, axis=2)).any(), "spheres 1 and 2 must touch"
    labels = seeded_watershed(distance)
    assert labels.dtype == np.uint32
    assert sorted(np.unique(labels)) == [0, 1, 2, 3]
    matches = set()
    for label in (1, 2, 3):
        match, iou = best_iou(truth, labels, label)
        assert match != 0 and iou > 0.9
        matches.add(match)
    assert len(matches) == 3
    assert not labels[truth == 0].any()


def test_2d_and_unseeded_objects() -> None:
    truth, distance = touching_spheres(
        (60, 90), (100.0, 100.0), [(3000, 2500), (3000, 5500)], [1500, 1500]
    )
    distance[5:8, 80:83] = 150.0  # a blob thinner than the seed depth: no seed, dropped
    labels = seeded_watershed(distance)
    assert sorted(np.unique(labels)) == [0, 1, 2]
    assert not labels[5:8, 80:83].any()
    for label in (1, 2):
        assert best_iou(truth, labels, label)[1] > 0.9


def test_thresholds_and_probability_mask() -> None:
    _, distance = touching_spheres((20, 40, 40), (100.0, 100.0, 100.0), [(1000, 2000, 2000)], [900])
    assert sorted(np.unique(seeded_watershed(distance))) == [0, 1]
    assert not seeded_watershed(distance, seed_threshold=950.0).any()  # deeper than the sphere
    probability = np.ones_like(distance)
    probability[:, :, :20] = 0.2
    labels = seeded_watershed(distance, probability=probability)
    assert labels[:, :, 21:].any() and not labels[:, :, :20].any()


def test_small_seeds_are_dropped_and_flooded_by_neighbours() -> None:
    _, distance = touching_spheres((40, 40, 40), (100.0,) * 3, [(2000.0,) * 3], [1500.0])
    noisy = distance.copy()
    noisy[20, 20, 34] = 900.0  # a one-voxel spike above the seed threshold near the surface
    assert seeded_watershed(noisy, seed_threshold=705.6).max() == 2
    cleaned = seeded_watershed(noisy, seed_threshold=705.6, min_seed_voxels=8)
    assert cleaned.max() == 1
    np.testing.assert_array_equal(cleaned > 0, noisy > 0)


def cones(shape: tuple[int, int], peaks: Sequence[tuple[float, float, float]]) -> np.ndarray:
    """A 2D distance-like map (nm, 100 nm pixels): the upper envelope of cones (row, col, top)."""
    rows, cols = np.indices(shape, dtype=np.float64)
    return np.max([h - 100.0 * np.hypot(rows - r, cols - c) for r, c, h in peaks], axis=0).astype(
        np.float32
    )


def test_a_peak_dynamic_splits_what_no_threshold_can() -> None:
    # Two fused objects (peaks 1500 nm, saddle 1000 nm) and a small, two-lobed one (lobes 600 nm,
    # dip 400 nm): a threshold above 1000 nm splits the pair and loses the small object, one
    # below merges the pair; a dynamic of 300 nm keeps one seed per peak that rises 300 nm above
    # its saddle (the pair's 500 nm) and joins the lobes (200 nm).
    distance = cones((80, 100), [(40, 25, 1500), (40, 35, 1500), (40, 70, 600), (40, 74, 600)])

    def right(labels: np.ndarray) -> bool:
        pair, lobes = labels[40, [25, 35]], labels[40, [70, 74]]
        return bool(pair.all() and pair[0] != pair[1] and lobes[0] == lobes[1] != 0)

    assert not any(right(seeded_watershed(distance, seed_threshold=t)) for t in range(0, 1500, 25))
    labels = seeded_watershed(distance, seed_threshold=200.0, seed_dynamic=300.0)
    assert labels.max() == 3 and right(labels)
    # A dynamic above the pair's 500 nm joins it too; none (0) is the threshold alone.
    assert seeded_watershed(distance, seed_threshold=200.0, seed_dynamic=600.0).max() == 2
    np.testing.assert_array_equal(
        seeded_watershed(distance, seed_threshold=200.0, seed_dynamic=0.0),
        seeded_watershed(distance, seed_threshold=200.0),
    )


def test_the_minimum_seed_size_is_judged_before_the_caps() -> None:
    # A peak's cap is a small disc near its top; the minimum is meant for noise above the
    # threshold, so a large object keeps its seed while a one-pixel spike is still dropped.
    distance = cones((60, 60), [(30, 30, 1500)])
    distance[30, 50] = 900.0  # a spike above the threshold, outside the cone's top
    labels = seeded_watershed(
        distance, seed_threshold=300.0, seed_dynamic=100.0, min_seed_voxels=20
    )
    assert labels.max() == 1 and labels[30, 30] == 1
