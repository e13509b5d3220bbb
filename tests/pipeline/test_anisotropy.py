"""Anisotropic voxels on synthetic volumes subsampled along z (z:xy 1 to 4): the U-Net's pooling
per level, physical-unit targets and scaled watershed settings, block-wise prediction, and a tiny
training run at z:xy 4 through the config (model.anisotropy: auto)."""

from __future__ import annotations

import csv
from pathlib import Path

import fastremap
import numpy as np
import pytest
import torch
import zarr
from torch import nn

from pipeline.anisotropy import anisotropic_patch_shape, anisotropic_unet_config
from pipeline.config import DataConfig, ModelConfig, PipelineConfig
from pipeline.errors import InvalidInputError
from pipeline.evaluation import detection_scores, match_objects
from pipeline.model_io import load_model, save_model
from pipeline.patches import read_normalised
from pipeline.predict import predict_volume
from pipeline.segment_params import derive_segment_params, smooth_sigma_voxels
from pipeline.synthetic import make_nuclei_volume
from pipeline.targets import instance_targets
from pipeline.training import TrainingBox, train
from pipeline.unet import UNet, UNetConfig
from pipeline.watershed import seeded_watershed

XY_NM = 250.0


@pytest.fixture(scope="module")
def isotropic() -> tuple[np.ndarray, np.ndarray]:
    """Touching synthetic nuclei on a 250 nm isotropic grid (radius ~3 um, ~12 voxels)."""
    return make_nuclei_volume((96, 96, 96), 40, seed=0, voxel_size_nm=XY_NM)


def subsample_z(
    volume: tuple[np.ndarray, np.ndarray], ratio: int
) -> tuple[np.ndarray, np.ndarray, tuple[float, float, float]]:
    """Every ``ratio``-th z plane: an acquisition with voxels ``(ratio * xy, xy, xy)``."""
    image, labels = volume
    sub, _ = fastremap.renumber(np.ascontiguousarray(labels[::ratio]), preserve_zero=True)
    return np.ascontiguousarray(image[::ratio]), sub, (ratio * XY_NM, XY_NM, XY_NM)


@pytest.mark.parametrize(
    ("ratio", "pool", "kernel"),
    [
        (1.0, ((2, 2, 2), (2, 2, 2)), ((3, 3, 3), (3, 3, 3), (3, 3, 3))),
        (1.9, ((2, 2, 2), (2, 2, 2)), ((3, 3, 3), (3, 3, 3), (3, 3, 3))),
        (2.0, ((1, 2, 2), (2, 2, 2)), ((1, 3, 3), (3, 3, 3), (3, 3, 3))),
        (2.2, ((1, 2, 2), (2, 2, 2)), ((1, 3, 3), (3, 3, 3), (3, 3, 3))),  # embryo confocal
        (3.0, ((1, 2, 2), (2, 2, 2)), ((1, 3, 3), (3, 3, 3), (3, 3, 3))),
        (4.0, ((1, 2, 2), (1, 2, 2)), ((1, 3, 3), (1, 3, 3), (3, 3, 3))),
    ],
)
def test_pooling_per_level_follows_the_physical_spacing(
    ratio: float, pool: tuple[tuple[int, ...], ...], kernel: tuple[tuple[int, ...], ...]
) -> None:
    voxel = (ratio * XY_NM, XY_NM, XY_NM)
    config = anisotropic_unet_config(UNetConfig(), voxel)
    assert (config.pool, config.kernel) == (pool, kernel)
    # The z spacing at the bottom never exceeds twice the xy one: z is not pooled past objects.
    bottom = [v * np.prod([p[a] for p in config.pools]) for a, v in enumerate(voxel)]
    assert bottom[0] <= 2 * bottom[1] * (1 + 1e-9) or ratio > 4
    # The default patch covers about the same length in nm along z as along y and x.
    patch = anisotropic_patch_shape(config, voxel, (116, 116, 112))
    assert patch[1:] == (116, 112)
    assert 116 <= patch[0] * ratio < 116 + (config.output_multiple[0] + 1) * ratio
    config.output_shape(patch)  # valid


def test_depth_three_pools_z_once_the_xy_spacing_catches_up() -> None:
    config = anisotropic_unet_config(UNetConfig(depth=3), (4.0, 1.0, 1.0))
    assert config.pool == ((1, 2, 2), (1, 2, 2), (2, 2, 2))
    assert anisotropic_unet_config(UNetConfig(dims=2), (1.0, 3.0)).pool == ((2, 1), (2, 2))
    with pytest.raises(InvalidInputError, match="voxel size"):
        anisotropic_unet_config(UNetConfig(), (1.0, 1.0))
    with pytest.raises(InvalidInputError, match="voxel size"):
        anisotropic_unet_config(UNetConfig(), (0.0, 1.0, 1.0))


@pytest.mark.parametrize("ratio", [1, 2, 3, 4])
def test_targets_and_scaled_watershed_recover_every_object(
    isotropic: tuple[np.ndarray, np.ndarray], ratio: int
) -> None:
    """The ground truth's own distance map, segmented with the settings derived from it, gives
    the objects back at every z:xy: the distances are in nm, so the seed threshold and smoothing
    (nm) mean the same thing along z as along xy."""
    _, labels, voxel = subsample_z(isotropic, ratio)
    params = derive_segment_params([labels], voxel)
    _, distance = instance_targets(labels, voxel, params.clamp_nm)
    # Physical units: the deepest point of the objects is the same depth in nm at every ratio.
    assert distance.max() == pytest.approx(params.object_radius_nm, rel=0.35)
    segmented = seeded_watershed(
        distance,
        seed_threshold=params.seed_threshold_nm,
        min_seed_voxels=params.min_seed_voxels,
        smooth_sigma=smooth_sigma_voxels(params.smooth_nm, voxel),
    )
    matching = match_objects(segmented, labels, 0.5)
    tp = len(matching.matched_a)
    n_pred, n_true = int(segmented.max()), int(labels.max())
    _, _, f1 = detection_scores(tp, n_pred - tp, n_true - tp)
    assert n_true >= 35 and f1 >= 0.95, (ratio, tp, n_pred, n_true)


def test_blockwise_prediction_is_exact_with_anisotropic_pooling(tmp_path: Path) -> None:
    config = anisotropic_unet_config(UNetConfig(width=2), (4 * XY_NM, XY_NM, XY_NM))
    torch.manual_seed(1)
    network = UNet(config)
    for head in network.heads.values():
        nn.init.normal_(head.weight, std=0.5)
    path = tmp_path / "model.pt"
    save_model(path, network, mean=100.0, std=20.0, voxel_size=(1000.0, 250.0, 250.0),
               metadata={"clamp_nm": 3000.0})  # fmt: skip
    model = load_model(path, "cpu")
    assert model.config == config  # pool and kernel travel in the model file
    image = np.random.default_rng(0).normal(100, 20, (11, 20, 24)).astype(np.float32)
    block = (5, 8, 12)  # z: any size is valid, since z is never pooled at z:xy 4
    result = predict_volume(model, image, tmp_path / "out", block_shape=block)
    assert result.blocks_done == 3 * 3 * 2
    out = config.output_shape(config.valid_input_shape(image.shape))
    region = tuple(slice(-m, n + m) for n, m in zip(out, config.margin, strict=True))
    x = torch.from_numpy(read_normalised(image, region, model.mean, model.std))[None, None]
    with torch.inference_mode():
        whole = model.model(x)["distance"][0, 0].numpy()[:11, :20, :24] * model.clamp_nm
    written = np.asarray(zarr.open_array(str(result.distance_path / "s0"), mode="r")[:])
    np.testing.assert_allclose(written, whole, atol=1e-2)
    assert whole.std() > 1.0


def test_tiny_training_at_z_to_xy_four_runs_end_to_end(
    isotropic: tuple[np.ndarray, np.ndarray], tmp_path: Path
) -> None:
    image, labels, voxel = subsample_z(isotropic, 4)
    assert image.shape == (24, 96, 96)
    config = PipelineConfig(
        data=DataConfig(image=tmp_path),
        model=ModelConfig(unet=UNetConfig(width=4)),
        training={
            "patch_shape": (16, 60, 60),
            "batch_size": 2,
            "lr": 3e-3,
            "warmup_steps": 8,
            "lr_schedule": "cosine",
            "grad_clip_norm": 1.0,
            "max_epochs": 6,
            "iterations_per_epoch": 8,
            "patience": 10,
            "max_val_patches": 2,
            "augment": False,
            "num_threads": 1,
            "device": "cpu",
            "seed": 0,
            "health_epochs": 0,  # too few steps to pass the heads' health check; shapes matter
        },
    )
    train_config = config.train_config(voxel)
    assert train_config.unet.pool == ((1, 2, 2), (1, 2, 2))  # chosen from the voxel size
    boxes = [
        TrainingBox(image, labels, (0, 0, 0, 24, 96, 64), "left"),
        TrainingBox(image, labels, (0, 0, 64, 24, 96, 96), "right"),
    ]
    result = train(boxes, train_config, tmp_path / "model")
    with result.history_csv.open() as handle:
        losses = [float(row["train_loss"]) for row in csv.DictReader(handle)]
    assert len(losses) == 6 and min(losses[-2:]) < 0.9 * losses[0], losses
    model = load_model(result.best_checkpoint, "cpu")
    assert model.config.pool == ((1, 2, 2), (1, 2, 2))
    predicted = predict_volume(model, image, tmp_path / "prediction", num_threads=1)
    assert predicted.block_shape[0] >= image.shape[0]  # one block along z covers the volume
    probability = np.asarray(zarr.open_array(str(predicted.probability_path / "s0"))[:])
    inside, outside = probability[labels > 0].mean(), probability[labels == 0].mean()
    assert inside > outside + 0.05, (inside, outside)  # it learnt where the nuclei are


def test_blockwise_prediction_is_exact_off_the_pooling_period(tmp_path: Path) -> None:
    """Three poolings: valid outputs are 4, 12, 20, ... but shifts commute only by 8, so blocks
    at multiples of 12 would sit off the whole-volume pooling grid without the realignment."""
    config = UNetConfig(dims=2, width=2, depth=3)
    assert config.output_multiple == (8, 8) and config.output_shape((100, 108)) == (12, 20)
    torch.manual_seed(2)
    network = UNet(config)
    for head in network.heads.values():
        nn.init.normal_(head.weight, std=0.5)
    path = tmp_path / "model.pt"
    save_model(path, network, mean=100.0, std=20.0, voxel_size=(250.0, 250.0),
               metadata={"clamp_nm": 3000.0})  # fmt: skip
    model = load_model(path, "cpu")
    image = np.random.default_rng(3).normal(100, 20, (36, 52)).astype(np.float32)
    # One forward pass, as the whole-volume reference (2D predicts with flips by default).
    result = predict_volume(model, image, tmp_path / "out", block_shape=(12, 20), flips=False)
    assert result.blocks_done == 3 * 3
    out = config.output_shape(config.valid_input_shape(image.shape))
    region = tuple(slice(-m, n + m) for n, m in zip(out, config.margin, strict=True))
    x = torch.from_numpy(read_normalised(image, region, model.mean, model.std))[None, None]
    with torch.inference_mode():
        whole = model.model(x)["distance"][0, 0].numpy()[:36, :52] * model.clamp_nm
    written = np.asarray(zarr.open_array(str(result.distance_path / "s0"), mode="r")[:])
    np.testing.assert_allclose(written, whole, atol=1e-2)
    assert whole.std() > 1.0
