"""Automatic training settings: chosen from the objects' size, the boxes and the device."""

from __future__ import annotations

import numpy as np
import torch

from pipeline.training_auto import (
    SCHEDULE,
    auto_training,
    auto_unet,
    depth_for_radius,
    output_target,
    receptive_field,
)
from pipeline.unet import UNet, UNetConfig


def test_receptive_field_matches_a_forward_pass() -> None:
    # The published depth-2 network sees 41 voxels (tests/pipeline/test_end_to_end.py).
    assert receptive_field(2) == 41
    config = UNetConfig(dims=2, width=2, depth=2)
    model = UNet(config).eval()
    size = config.valid_input_shape((1, 1))
    with torch.inference_mode():
        out = model(torch.zeros(1, 1, *size))
    # Each output voxel sees input - output + 1 voxels per axis.
    assert size[0] - out["distance"].shape[-1] + 1 == receptive_field(2)


def test_depth_grows_with_the_objects() -> None:
    assert depth_for_radius(5) == 2
    assert depth_for_radius(20) == 3  # 60 voxels needed, depth 2 sees 41
    assert depth_for_radius(40) == 4
    assert depth_for_radius(1000) == 4  # capped


def test_given_values_win_and_the_rest_fit_the_boxes() -> None:
    unet = UNetConfig(**auto_unet({"width": 4}, dims=3, radius_voxels=6, device="cpu"))
    assert (unet.width, unet.depth) == (4, 2)
    values = auto_training(
        {"lr": 1e-3},
        unet,
        box_shapes=[(20, 30, 30), (24, 28, 28)],
        radius_nm=1200.0,
        voxel_size=(200.0, 200.0, 200.0),
        device="cpu",
    )
    assert values["lr"] == 1e-3
    assert values["lr_schedule"] == SCHEDULE["lr_schedule"]
    output = unet.output_shape(tuple(values["patch_shape"]))
    # Outputs cover the largest box (rounded to the pooling multiple), no more than one step over.
    assert all(24 <= o <= 36 for o in output)
    assert values["contact_nm"] == 400.0
    # No contact weight unless asked (4 held out worse on bench/accuracy.py's dsb2018 and touching).
    assert "contact_weight" not in values
    asked = auto_training(
        {"contact_weight": 4.0},
        unet,
        box_shapes=[(20, 30, 30)],
        radius_nm=1200.0,
        voxel_size=(200.0, 200.0, 200.0),
        device="cpu",
    )
    assert asked["contact_weight"] == 4.0


def test_cpu_and_gpu_sizes_differ_for_large_boxes() -> None:
    unet_cpu = UNetConfig(**auto_unet({}, dims=3, radius_voxels=6, device="cpu"))
    unet_gpu = UNetConfig(**auto_unet({}, dims=3, radius_voxels=6, device="cuda"))
    assert unet_cpu.width < unet_gpu.width
    # 2D steps are cheap: a CPU gets the published width there (dsb2018 held out better).
    assert auto_unet({}, dims=2, radius_voxels=6, device="cpu")["width"] == 16
    assert auto_unet({}, dims=3, radius_voxels=6, device="cpu")["width"] == 8
    kwargs = dict(box_shapes=[(256, 256, 256)], radius_nm=1200.0, voxel_size=(200.0,) * 3)
    cpu = auto_training({}, unet_cpu, device="cpu", **kwargs)  # type: ignore[arg-type]
    gpu = auto_training({}, unet_gpu, device="cuda", **kwargs)  # type: ignore[arg-type]
    assert unet_cpu.output_shape(tuple(cpu["patch_shape"]))[0] == 48
    assert unet_gpu.output_shape(tuple(gpu["patch_shape"]))[0] == 96
    assert (
        cpu["max_epochs"] * cpu["iterations_per_epoch"]
        < gpu["max_epochs"] * gpu["iterations_per_epoch"]
    )


def test_anisotropic_outputs_keep_the_isotropic_voxel_count_over_a_physical_cube() -> None:
    assert output_target(48, (200.0, 200.0, 200.0)) == [48, 48, 48]
    assert output_target(160, (500.0, 500.0)) == [160, 160]
    coarse = output_target(48, (600.0, 200.0, 200.0))
    assert coarse == [23, 69, 69]  # 48 * 3 ** (1 / 3) = 69 voxels of 200 nm, 23 of 600 nm
    assert abs(np.prod(coarse) / 48**3 - 1) < 0.05
    # The same physical length along every axis (to a voxel).
    assert abs(coarse[0] * 600 - coarse[1] * 200) <= 600


def test_2d_patches_are_2d() -> None:
    unet = UNetConfig(**auto_unet({}, dims=2, radius_voxels=10, device="cpu"))
    values = auto_training(
        {}, unet, box_shapes=[(512, 512)], radius_nm=100.0, voxel_size=(10.0, 10.0), device="cpu"
    )
    assert len(values["patch_shape"]) == 2
    assert unet.output_shape(tuple(values["patch_shape"])) == (160, 160)


def test_choose_train_config_from_the_boxes_objects_and_voxels() -> None:
    from pipeline.synthetic import make_sphere_labels
    from pipeline.training import TrainingBox
    from pipeline.training_auto import choose_train_config

    labels, _, _ = make_sphere_labels((24, 64, 64), 8, radius_voxels=(5.0, 6.0), seed=1)
    image = (labels > 0).astype(np.float32)
    boxes = [TrainingBox(image, labels, (0, 0, 0, 24, 64, 64), "all")]
    config = choose_train_config(
        UNetConfig(), (), {"seed": 3}, voxel_size=(300.0, 100.0, 100.0), boxes=boxes
    )
    assert config.seed == 3 and config.unet.width == 8  # CPU
    assert config.unet.pool is not None  # z:xy 3: not pooled along z at the first level
    output = config.unet.output_shape(config.patch_shape)
    # The same physical length per axis, capped by the box (24 z slices, 64 y/x voxels).
    assert output[1] == output[2] and output[0] < output[1]
    assert output[0] <= 24 + config.unet.output_multiple[0]
    total = config.max_epochs * config.iterations_per_epoch
    assert config.warmup_steps == min(100, total // 10)
    given = choose_train_config(
        UNetConfig(width=4, depth=1),
        ("width", "depth"),
        {"warmup_steps": 0, "patch_shape": (44, 44, 44)},
        voxel_size=(100.0, 100.0, 100.0),
        boxes=boxes,
        anisotropy="off",
    )
    assert (given.unet.width, given.unet.depth, given.warmup_steps) == (4, 1, 0)
    assert given.patch_shape == (44, 44, 44)


def test_choose_train_config_refuses_empty_ground_truth() -> None:
    import pytest

    from pipeline.errors import InvalidInputError
    from pipeline.training import TrainingBox
    from pipeline.training_auto import choose_train_config

    empty = np.zeros((8, 16, 16), np.uint32)
    box = TrainingBox(empty.astype(np.float32), empty, (0, 0, 0, 8, 16, 16), "b")
    with pytest.raises(InvalidInputError, match="no object"):
        choose_train_config(UNetConfig(), (), {}, voxel_size=(1.0, 1.0, 1.0), boxes=[box])


def test_a_given_patch_keeps_the_depth_it_was_chosen_for() -> None:
    from pipeline.synthetic import make_sphere_labels
    from pipeline.training import TrainingBox
    from pipeline.training_auto import choose_train_config

    # Large objects (radius 20 voxels) ask for depth 3, where a 52^3 patch is not valid.
    labels, _, _ = make_sphere_labels((64, 64, 64), 1, radius_voxels=(20.0, 20.0), seed=0)
    boxes = [TrainingBox(labels.astype(np.float32), labels, (0, 0, 0, 64, 64, 64), "b")]
    chosen = choose_train_config(UNetConfig(), (), {}, voxel_size=(100.0,) * 3, boxes=boxes)
    assert chosen.unet.depth == 3
    given = choose_train_config(
        UNetConfig(), (), {"patch_shape": (52, 52, 52)}, voxel_size=(100.0,) * 3, boxes=boxes
    )
    assert given.unet.depth == 2 and given.patch_shape == (52, 52, 52)
