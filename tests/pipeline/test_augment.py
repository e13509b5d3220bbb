"""Augmentation: geometry applied identically to image and targets, rotations only about z."""

from __future__ import annotations

import dataclasses

import numpy as np

from pipeline.augment import AugmentConfig, augment_sample, draw_geometric

GEOMETRY_ONLY = AugmentConfig.geometry_only()


def _centre(array: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    starts = [(n - s) // 2 for n, s in zip(array.shape, shape, strict=True)]
    return array[tuple(slice(a, a + s) for a, s in zip(starts, shape, strict=True))]


def test_image_and_targets_transformed_identically() -> None:
    rng = np.random.default_rng(0)
    image = rng.normal(size=(14, 18, 18)).astype(np.float32)
    target = _centre(image, (6, 10, 10)).copy()
    mask = (target > 0).astype(np.float32)
    seen = set()
    for seed in range(24):
        out, (t, m) = augment_sample(
            image, [target, mask], np.random.default_rng(seed), GEOMETRY_ONLY
        )
        assert out.shape == image.shape and t.shape == target.shape
        assert np.allclose(_centre(out, t.shape), t, atol=1e-6)
        assert np.array_equal(m, (t > 0).astype(np.float32))
        seen.add(tuple(np.round(t[0, 0, :2], 5)))
    assert len(seen) > 4  # the transforms really vary


def test_rotations_only_in_the_yx_plane() -> None:
    no_mirror = AugmentConfig(mirror=False)
    square = {
        draw_geometric(np.random.default_rng(s), (8, 6, 6), no_mirror).quarter_turns
        for s in range(40)
    }
    oblong = {
        draw_geometric(np.random.default_rng(s), (8, 6, 10), no_mirror).quarter_turns
        for s in range(40)
    }
    assert square == {0, 1, 2, 3}
    assert oblong == {0, 2}  # 90 degrees would change the patch shape
    image = np.arange(8 * 6 * 6, dtype=np.float32).reshape(8, 6, 6)
    config = dataclasses.replace(GEOMETRY_ONLY, mirror=False)
    for seed in range(12):
        out, _ = augment_sample(image, [], np.random.default_rng(seed), config)
        for z in range(8):  # every z plane stays a z plane
            assert np.allclose(np.sort(out[z], axis=None), np.sort(image[z], axis=None))


def test_intensity_changes_image_only() -> None:
    image = np.zeros((6, 8, 8), np.float32)
    target = np.ones((2, 4, 4), np.float32)
    config = AugmentConfig(mirror=False, rotate=False, noise_probability=1.0, noise_std=1.0)
    out, (t,) = augment_sample(image, [target], np.random.default_rng(3), config)
    assert out.dtype == np.float32 and out.std() > 0.05
    assert np.array_equal(t, target)
