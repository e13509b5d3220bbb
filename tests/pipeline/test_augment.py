"""Augmentation: geometry applied identically to image and targets, rotations only about z;
intensity transforms (gamma, contrast, noise, blur) change the image as intended and only it."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from pipeline.augment import AugmentConfig, augment_intensity, augment_sample, draw_geometric
from pipeline.errors import InvalidInputError

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


ALL_INTENSITY = AugmentConfig(
    contrast_probability=1.0, gamma_probability=1.0, noise_probability=1.0, blur_probability=1.0
)


def _only(**changes: object) -> AugmentConfig:
    """No geometry and no intensity transform except those ``changes`` switch on."""
    base = dataclasses.replace(GEOMETRY_ONLY, mirror=False, rotate=False)
    return dataclasses.replace(base, **changes)  # type: ignore[arg-type]


def test_gamma_bends_the_curve_and_keeps_the_range() -> None:
    image = np.random.default_rng(0).uniform(0.2, 1.4, (6, 10, 10)).astype(np.float32)
    config = _only(gamma_probability=1.0, gamma=(2.0, 2.0))
    out = augment_intensity(image, np.random.default_rng(1), config)
    assert (out.min(), out.max()) == pytest.approx((image.min(), image.max()), abs=1e-5)
    assert np.median(out) < np.median(image) - 0.1  # x^2 on [0, 1] pulls the middle down
    assert np.array_equal(np.argsort(out, axis=None), np.argsort(image, axis=None))


def test_contrast_scales_about_the_mean_and_brightness_shifts() -> None:
    image = np.random.default_rng(0).normal(0.5, 0.2, (6, 10, 10)).astype(np.float32)
    contrast = _only(contrast_probability=1.0, contrast=(1.5, 1.5), brightness=0.0)
    out = augment_intensity(image, np.random.default_rng(1), contrast)
    assert out.std() == pytest.approx(1.5 * image.std(), rel=1e-4)
    assert out.mean() == pytest.approx(image.mean(), abs=1e-5)
    shift = _only(contrast_probability=1.0, contrast=(1.0, 1.0), brightness=0.3)
    shifts = [
        float((augment_intensity(image, np.random.default_rng(s), shift) - image).mean())
        for s in range(40)
    ]
    assert max(np.abs(shifts)) <= 0.3 + 1e-6 and np.std(shifts) > 0.1


def test_noise_is_additive_zero_mean_and_bounded() -> None:
    image = np.zeros((16, 32, 32), np.float32)
    config = _only(noise_probability=1.0, noise_std=0.2)
    sigmas = [
        float(augment_intensity(image, np.random.default_rng(s), config).std()) for s in range(20)
    ]
    assert max(sigmas) <= 0.2 * 1.02 and max(sigmas) - min(sigmas) > 0.05  # drawn in [0, 0.2]
    out = augment_intensity(image, np.random.default_rng(0), config)
    assert abs(float(out.mean())) < 0.01


def test_blur_smooths_and_keeps_the_mean() -> None:
    image = np.random.default_rng(0).normal(0.0, 1.0, (16, 32, 32)).astype(np.float32)
    config = _only(blur_probability=1.0, blur_sigma=(1.0, 1.0))
    out = augment_intensity(image, np.random.default_rng(1), config)
    assert out.std() < 0.3 * image.std()  # white noise under a 1-voxel Gaussian: ~0.17
    assert out.mean() == pytest.approx(image.mean(), abs=0.01)


def test_each_transform_fires_at_its_probability() -> None:
    image = np.random.default_rng(0).uniform(0, 1, (4, 8, 8)).astype(np.float32)
    for name in ("contrast", "gamma", "noise", "blur"):
        config = _only(**{f"{name}_probability": 0.3})
        changed = [
            not np.array_equal(augment_intensity(image, np.random.default_rng(s), config), image)
            for s in range(400)
        ]
        assert np.mean(changed) == pytest.approx(0.3, abs=0.07), name


def test_intensity_transforms_leave_targets_alone_and_repeat_with_a_seed() -> None:
    rng = np.random.default_rng(0)
    image = rng.uniform(0, 1, (14, 18, 18)).astype(np.float32)
    target = _centre(image, (6, 10, 10)).copy()
    labels = (target > 0.5).astype(np.float32)
    for seed in range(8):
        out, (t, m) = augment_sample(
            image, [target, labels], np.random.default_rng(seed), ALL_INTENSITY
        )
        _, (t_geometry, m_geometry) = augment_sample(
            image, [target, labels], np.random.default_rng(seed), GEOMETRY_ONLY
        )
        assert np.array_equal(t, t_geometry) and np.array_equal(m, m_geometry)  # untouched
        assert not np.allclose(_centre(out, t.shape), t, atol=1e-3)  # the image did change
        again, _ = augment_sample(
            image, [target, labels], np.random.default_rng(seed), ALL_INTENSITY
        )
        assert np.array_equal(out, again)
    first, _ = augment_sample(image, [], np.random.default_rng(1), ALL_INTENSITY)
    second, _ = augment_sample(image, [], np.random.default_rng(2), ALL_INTENSITY)
    assert not np.array_equal(first, second)


def test_settings_from_a_config_file_are_checked() -> None:
    config = AugmentConfig.from_dict({"gamma": [0.5, 2.0], "blur_probability": 0.0})
    assert config.gamma == (0.5, 2.0) and config.blur_probability == 0.0
    with pytest.raises(InvalidInputError, match="gamma_probabilty"):
        AugmentConfig.from_dict({"gamma_probabilty": 0.5})
    with pytest.raises(InvalidInputError, match="noise_probability"):
        AugmentConfig(noise_probability=1.5)
    with pytest.raises(InvalidInputError, match="contrast"):
        AugmentConfig(contrast=(1.2, 0.8))
