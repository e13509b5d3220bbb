"""Per-volume intensity normalisation: percentiles from bounded samples, masks, model files."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import zarr

from pipeline.errors import InvalidInputError
from pipeline.model_io import load_model, save_model
from pipeline.normalise import (
    Normalisation,
    Scaling,
    percentile_scaling,
    robust_range,
    sample_intensities,
)
from pipeline.patches import read_normalised
from pipeline.predict import predict_volume
from pipeline.unet import UNet, UNetConfig

VOXEL = (200.0, 200.0, 200.0)


class HugeVolume:
    """A virtual (z, y, x) array of 2 x 10^12 voxels, uniform over 0..999; counts what is read."""

    def __init__(self, shape: tuple[int, ...] = (10_000, 20_000, 10_000)) -> None:
        self.shape = shape
        self.dtype = np.dtype(np.uint16)
        self.voxels_read = 0
        self.reads = 0

    def __getitem__(self, key: Any) -> np.ndarray:
        assert isinstance(key, tuple) and all(isinstance(s, slice) for s in key)
        grids = np.meshgrid(
            *(np.arange(s.start, s.stop, dtype=np.uint64) for s in key), indexing="ij"
        )
        primes = (np.uint64(7919), np.uint64(104729), np.uint64(1299709))
        mixed = sum(g * p for g, p in zip(grids, primes, strict=True))
        values = (mixed * np.uint64(2654435761) >> np.uint64(7)) % np.uint64(1000)  # a hash
        self.voxels_read += values.size
        self.reads += 1
        return values.astype(np.uint16)


def test_small_volume_uses_every_voxel() -> None:
    image = np.random.default_rng(0).gamma(2.0, 100.0, (20, 30, 40)).astype(np.float32)
    scaling = percentile_scaling(image, (1.0, 99.8))
    low, high = np.percentile(image, [1.0, 99.8])
    assert scaling.offset == pytest.approx(low) and scaling.scale == pytest.approx(high - low)
    normalised = scaling.apply(image)
    assert np.mean(normalised < 0) == pytest.approx(0.01, abs=0.002)
    assert np.mean(normalised > 1) == pytest.approx(0.002, abs=0.001)


def test_huge_array_read_is_bounded_and_percentiles_hold() -> None:
    volume = HugeVolume()
    scaling = percentile_scaling(volume, (1.0, 99.8), max_voxels=1 << 18)
    assert volume.voxels_read <= 1 << 18  # of 2e12
    assert volume.reads >= 64  # spread over the volume, not one corner
    assert scaling.offset == pytest.approx(10, abs=2)  # uniform 0..999
    assert scaling.offset + scaling.scale == pytest.approx(998, abs=2)
    again = percentile_scaling(HugeVolume(), (1.0, 99.8), max_voxels=1 << 18)
    assert again == scaling  # a fixed seed: the same volume always gives the same map


def test_zarr_sample_is_chunk_aligned_and_close_to_the_exact_percentiles(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    data = rng.lognormal(5.0, 0.5, (64, 128, 128)).astype(np.float32)
    array = zarr.create_array(
        store=str(tmp_path / "a.zarr"), shape=data.shape, chunks=(16, 32, 32), dtype="float32"
    )
    array[...] = data
    sample = sample_intensities(array, max_voxels=1 << 16)
    assert 1 << 15 < sample.size <= 1 << 16
    exact = np.percentile(data, [1.0, 99.8])
    estimate = robust_range(sample, (1.0, 99.8))
    np.testing.assert_allclose(estimate, exact, rtol=0.05)


def test_zeros_outside_the_tissue_are_left_out() -> None:
    rng = np.random.default_rng(2)
    tissue = rng.normal(500.0, 50.0, (32, 64, 64)).clip(1, None).astype(np.uint16)
    masked = tissue.copy()
    masked[:, :, 40:] = 0  # 37.5 % of the volume: outside the tissue
    masked[:20, :, :] = 0  # and most of the rest: 80 % zeros in all
    inside = masked[masked > 0]
    expected = np.percentile(inside, [1.0, 99.8])
    got = percentile_scaling(masked, (1.0, 99.8))
    assert (got.offset, got.offset + got.scale) == pytest.approx(tuple(expected))
    # Without leaving them out, the zeros decide the low end (and squash the tissue's range).
    counted = percentile_scaling(masked, (1.0, 99.8), ignore_value=None)
    assert counted.offset == 0.0
    # A volume that is nearly all zeros keeps its zeros rather than a handful of voxels.
    sparse = np.zeros((20, 20, 20), np.uint16)
    sparse[0, 0, :5] = 7
    assert percentile_scaling(sparse) == Scaling(0.0, 7.0)  # the flat range's fallback


def test_two_dimensional_images_and_flat_volumes() -> None:
    image = np.random.default_rng(3).uniform(0, 100, (3000, 2000)).astype(np.float32)
    scaling = percentile_scaling(image, (2.0, 98.0), max_voxels=1 << 16)
    assert scaling.offset == pytest.approx(2.0, abs=0.5)
    assert scaling.offset + scaling.scale == pytest.approx(98.0, abs=0.5)
    flat = np.full((8, 8, 8), 42.0, np.float32)
    assert percentile_scaling(flat) == Scaling(42.0, 1.0)  # defined, not a division by zero


def test_a_brighter_session_gives_the_same_normalised_input() -> None:
    rng = np.random.default_rng(4)
    image = rng.gamma(3.0, 50.0, (24, 40, 40)).astype(np.float32) + 20.0
    brighter = image * 3.0 + 400.0
    first, second = Normalisation().scaling(image), Normalisation().scaling(brighter)
    np.testing.assert_allclose(second.apply(brighter), first.apply(image), atol=1e-4)
    # The training image's mean and std, applied to the brighter session, do not.
    fixed = Normalisation.mean_std(float(image.mean()), float(image.std())).scaling(brighter)
    assert float(np.abs(fixed.apply(brighter) - fixed.apply(image)).mean()) > 5.0


def test_settings_are_checked_and_round_trip() -> None:
    normalisation = Normalisation(percentiles=(0.5, 99.5), ignore_value=None, values=(1.0, 9.0))
    assert Normalisation.from_dict(normalisation.to_dict()) == normalisation
    with pytest.raises(InvalidInputError, match="percentiles"):
        Normalisation(percentiles=(99.0, 1.0))
    with pytest.raises(InvalidInputError, match="method"):
        Normalisation(method="zscore")  # type: ignore[arg-type]
    with pytest.raises(InvalidInputError, match="unknown normalisation keys: low"):
        Normalisation.from_dict({"low": 1})
    with pytest.raises(InvalidInputError, match="no mean and std"):
        Normalisation(method="meanstd").scaling(np.zeros((4, 4)))


def _network() -> UNet:
    torch.manual_seed(2)  # seed 0 leaves this tiny network dead on these inputs
    network = UNet(UNetConfig(width=2, depth=1))
    for head in network.heads.values():  # untrained heads are zero: make the outputs vary
        torch.nn.init.normal_(head.weight, std=0.5)
    return network


def _prediction(path: Path, image: np.ndarray, out: Path) -> np.ndarray:
    result = predict_volume(path, image, out, block_shape=(12, 12, 12), device="cpu")
    return np.asarray(zarr.open_array(str(result.distance_path / "s0"), mode="r")[:])


def test_an_old_model_file_loads_and_predicts_with_its_mean_and_std(tmp_path: Path) -> None:
    network = _network()
    path = tmp_path / "old.pt"
    save_model(path, network, mean=100.0, std=20.0, voxel_size=VOXEL, metadata={})
    payload = torch.load(path, weights_only=True)
    del payload["normalisation"]  # as files were written before percentile normalisation
    torch.save(payload, path)
    loaded = load_model(path, "cpu")
    assert loaded.normalisation == Normalisation.mean_std(100.0, 20.0)
    image = np.random.default_rng(5).normal(100.0, 20.0, (12, 12, 12)).astype(np.float32)
    got = _prediction(path, image, tmp_path / "old")
    margin = loaded.config.margin
    region = tuple(slice(-m, 12 + m) for m in margin)
    with torch.inference_mode():
        x = torch.from_numpy(read_normalised(image, region, 100.0, 20.0))[None, None]
        expected = loaded.model(x)["distance"][0, 0].numpy() * loaded.clamp_nm
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-3)
    # Scaled intensities change an old model's prediction (it has no per-volume map).
    assert not np.allclose(_prediction(path, image * 3, tmp_path / "old3"), got, atol=1.0)


def test_a_percentile_model_predicts_each_volume_by_its_own_range(tmp_path: Path) -> None:
    path = tmp_path / "new.pt"
    normalisation = Normalisation(values=(80.0, 160.0))
    save_model(path, _network(), normalisation=normalisation, voxel_size=VOXEL, metadata={})
    loaded = load_model(path, "cpu")
    assert loaded.normalisation == normalisation
    assert (loaded.mean, loaded.std) == (80.0, 80.0)  # what older code applies: low, high - low
    image = np.random.default_rng(6).gamma(4.0, 25.0, (12, 12, 12)).astype(np.float32)
    base = _prediction(path, image, tmp_path / "a")
    brighter = _prediction(path, image * 3.0 + 250.0, tmp_path / "b")
    assert float(np.abs(base).max()) > 1.0  # not a vacuous comparison
    np.testing.assert_allclose(brighter, base, rtol=1e-4, atol=1e-2)
    with pytest.raises(InvalidInputError, match="normalisation"):
        save_model(path, _network(), voxel_size=VOXEL, metadata={})
