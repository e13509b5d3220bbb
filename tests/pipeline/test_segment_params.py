"""Segmentation parameters derived from the ground truth's object size."""

from __future__ import annotations

import math

import numpy as np
import pytest

from pipeline.errors import InvalidInputError
from pipeline.segment_params import (
    SegmentParams,
    choose_segment_params,
    derive_segment_params,
    median_object_radius_nm,
    preset,
)


def _balls(shape: tuple[int, ...], centres: list[tuple[int, ...]], radius: float) -> np.ndarray:
    grid = np.indices(shape)
    labels = np.zeros(shape, dtype=np.uint32)
    for i, c in enumerate(centres, start=1):
        d2 = sum((g - ci) ** 2 for g, ci in zip(grid, c, strict=True))
        labels[d2 <= radius**2] = i
    return labels


def test_radius_of_balls_is_recovered_in_nm() -> None:
    labels = _balls((40, 40, 40), [(10, 10, 10), (28, 28, 28)], 6)
    radius, voxels = median_object_radius_nm([labels], (100.0, 100.0, 100.0))
    assert radius == pytest.approx(600.0, rel=0.05)
    assert voxels == pytest.approx(4 / 3 * math.pi * 6**3, rel=0.1)


def test_anisotropic_voxels_scale_the_radius_by_physical_volume() -> None:
    labels = _balls((40, 40, 40), [(20, 20, 20)], 8)
    iso, _ = median_object_radius_nm([labels], (50.0, 50.0, 50.0))
    aniso, _ = median_object_radius_nm([labels], (200.0, 50.0, 50.0))
    assert aniso == pytest.approx(iso * 4 ** (1 / 3), rel=1e-6)


def test_2d_radius_uses_the_disc_area() -> None:
    labels = _balls((64, 64), [(20, 20), (40, 44)], 9)
    radius, _ = median_object_radius_nm([labels], (10.0, 10.0))
    assert radius == pytest.approx(90.0, rel=0.05)


def test_derived_parameters_scale_with_the_objects() -> None:
    small = derive_segment_params([_balls((40,) * 3, [(20,) * 3], 5)], (100.0,) * 3)
    large = derive_segment_params([_balls((40,) * 3, [(20,) * 3], 10)], (100.0,) * 3)
    assert large.seed_threshold_nm == pytest.approx(2 * small.seed_threshold_nm, rel=0.1)
    assert large.clamp_nm > large.object_radius_nm  # type: ignore[operator]
    assert large.min_seed_voxels > small.min_seed_voxels >= 1
    assert SegmentParams.from_dict(large.to_dict()) == large


def test_no_objects_and_unknown_preset_are_clear_errors() -> None:
    with pytest.raises(InvalidInputError, match="no objects"):
        derive_segment_params([np.zeros((8, 8, 8), np.uint32)], (1.0, 1.0, 1.0))
    with pytest.raises(InvalidInputError, match="xray-nuclei"):
        preset("nope")
    assert preset("xray-nuclei").seed_threshold_nm == 705.6


def test_model_files_from_before_the_peak_dynamic_seed_by_threshold_alone() -> None:
    recorded = {
        "seed_threshold_nm": 400.0, "smooth_nm": 100.0, "min_seed_voxels": 3, "clamp_nm": 3000.0,
        "source": "fitted",
    }  # fmt: skip
    assert SegmentParams.from_dict(recorded).seed_dynamic_nm == 0.0
    derived = derive_segment_params([np.pad(np.ones((9, 9, 9), np.uint32), 4)], (100.0,) * 3)
    assert derived.object_radius_nm is not None
    assert derived.seed_dynamic_nm == pytest.approx(0.1 * derived.object_radius_nm)
    assert SegmentParams.from_dict(derived.to_dict()) == derived
    chosen = choose_segment_params(model=derived, seed_dynamic_nm=0.0)
    assert chosen.params.seed_dynamic_nm == 0.0 and chosen.overrides == ("seed_dynamic_nm",)
    assert "peak dynamic 0.0 nm" in chosen.describe()
    with pytest.raises(InvalidInputError, match="negative"):
        choose_segment_params(model=derived, seed_dynamic_nm=-1.0)
