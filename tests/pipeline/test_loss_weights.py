"""The U-Net border weight map: high in narrow gaps between objects, 1 elsewhere."""

from __future__ import annotations

import math

import numpy as np
import pytest

from pipeline.loss_weights import border_weights


def _two_bars(gap: int) -> np.ndarray:
    labels = np.zeros((1, 40, 60), dtype=np.uint32)
    labels[0, 10:30, 5:25] = 1
    labels[0, 10:30, 25 + gap : 45 + gap] = 2
    return labels


def test_weight_in_a_gap_follows_the_formula() -> None:
    labels = _two_bars(gap=4)
    w = border_weights(labels, (100.0, 100.0, 100.0), w0=10.0, sigma_nm=500.0)
    # The first gap column: 100 nm from object 1, 400 nm from object 2.
    expected = 1 + 10.0 * math.exp(-((100.0 + 400.0) ** 2) / (2 * 500.0**2))
    assert w[0, 20, 25] == pytest.approx(expected, rel=1e-4)
    assert (w[labels != 0] == 1).all()
    assert w[0, 0, 55] == pytest.approx(1.0, abs=1e-3)  # far from both


def test_a_narrower_gap_weighs_more_and_w0_zero_is_off() -> None:
    narrow = border_weights(_two_bars(2), (100.0,) * 3, w0=10.0, sigma_nm=500.0)
    wide = border_weights(_two_bars(8), (100.0,) * 3, w0=10.0, sigma_nm=500.0)
    assert narrow[0, 20, 25] > wide[0, 20, 27] > 1.0
    assert (border_weights(_two_bars(2), (100.0,) * 3, w0=0.0, sigma_nm=500.0) == 1).all()


def test_lone_object_has_no_border_weight_beyond_its_own_edge() -> None:
    labels = np.zeros((1, 30, 30), dtype=np.uint32)
    labels[0, 10:20, 10:20] = 1
    w = border_weights(labels, (100.0,) * 3, w0=10.0, sigma_nm=500.0)
    assert np.allclose(w, 1.0)  # d2 is infinite with one object


def test_anisotropic_voxels_measure_gaps_in_nm() -> None:
    labels = np.zeros((12, 4, 4), dtype=np.uint32)
    labels[0:4] = 1
    labels[6:10] = 2  # a two-slice gap along z
    fine = border_weights(labels, (100.0, 100.0, 100.0), w0=10.0, sigma_nm=300.0)
    coarse = border_weights(labels, (400.0, 100.0, 100.0), w0=10.0, sigma_nm=300.0)
    assert fine[4, 2, 2] > coarse[4, 2, 2]
