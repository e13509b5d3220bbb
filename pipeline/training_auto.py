"""Training settings chosen from the data and the machine for what the config leaves out.

The published settings (width 16, 116x116x112 patches, batch 4, lr 1e-4 for up to 100 x 50 steps)
were made for a GPU and 200 nm nuclei: on this project's 2-core CPU one such step takes 22-26 s, so
they would train for a day and a half, and a 116-voxel patch does not fit a small box at all. A new
user who gives only an image, labels and boxes should get a model that works in minutes on a CPU
and in the published way on a GPU. Every value the config gives explicitly wins; the rest are:

- **Schedule** (measured in ``tests/pipeline/test_end_to_end.py``): lr 3e-3 with a 100-step linear
  warm-up, cosine decay and gradient clipping at 1.0. At a constant 1e-4 a small network had not
  learnt in 1,000 steps; at a constant 3e-3 the best epoch varied a lot between seeds.
- **Depth** from the objects' size: the receptive field must span about three equivalent radii
  (``RECEPTIVE_RADII``) of the median ground-truth object along the finest axis, so the distance
  head can see the border that sets the distance up to the clamp (1.5 r); at least the published
  two poolings, at most four.
- **Width, patch and steps** from the device: on a CPU, width 8 (3D) or 16 (2D), outputs of 48
  (3D) or 160 (2D) voxels per axis, batch 2, 60 epochs of 20 steps; on a GPU the published width
  16, outputs of 96 (3D) or 256 (2D), batch 4, 100 epochs of 50 steps. Outputs never exceed the
  largest box much: beyond it a window only adds padding. Anisotropic voxels keep the voxel
  count of the isotropic output, over the same physical length along every axis
  (:func:`output_target`). A 2D step is cheap enough for width 16
  on a CPU (a 160^2 output is a quarter of a 48^3 one), and on ``dsb2018`` it held out better
  than 8 (mean F1 0.905 against 0.893, minimum 0.867 against 0.833, same ten seeds).
- **Touching objects**: no extra loss weight at contacts (``contact_weight`` 0, the training
  default). Weighing voxels within a third of the median radius of a contact 5x (4, the former
  default) held out worse on ``bench/accuracy.py``: on ``dsb2018`` mean object F1 0.871 against
  0.893 unweighted over ten seeds (minimum 0.725 against 0.833), and on the synthetic ``touching``
  set too (bench/README.md). ``contact_nm`` is still derived, for a config that turns it on.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Mapping, Sequence
from dataclasses import fields, replace
from typing import Any

import numpy as np

from pipeline.errors import InvalidInputError
from pipeline.unet import CONVS_PER_BLOCK, KERNEL, POOL, UNetConfig

RECEPTIVE_RADII = 3.0
MIN_DEPTH, MAX_DEPTH = 2, 4
CONTACT_RADII = 1.0 / 3.0

SCHEDULE: dict[str, Any] = {
    "lr": 3e-3,
    "warmup_steps": 100,
    "lr_schedule": "cosine",
    "grad_clip_norm": 1.0,
}
DEVICE_SIZES: dict[str, dict[str, Any]] = {
    "cpu": dict(width={2: 16, 3: 8}, output={2: 160, 3: 48}, batch_size=2, epochs=60, steps=20),
    "gpu": dict(width={2: 16, 3: 16}, output={2: 256, 3: 96}, batch_size=4, epochs=100, steps=50),
}


def receptive_field(depth: int) -> int:
    """Receptive field (voxels per axis) of the valid-convolution U-Net of this depth."""
    per_conv = KERNEL - 1
    down = sum(CONVS_PER_BLOCK * per_conv * POOL**level for level in range(depth + 1))
    up = sum(CONVS_PER_BLOCK * per_conv * POOL**level for level in range(depth))
    return int(1 + down + up)


def depth_for_radius(radius_voxels: float) -> int:
    """The shallowest depth whose receptive field spans ``RECEPTIVE_RADII`` object radii."""
    for depth in range(MIN_DEPTH, MAX_DEPTH + 1):
        if receptive_field(depth) >= RECEPTIVE_RADII * radius_voxels:
            return depth
    return MAX_DEPTH


def device_kind(device: str) -> str:
    """``gpu`` when training will run on a CUDA device, else ``cpu``."""
    if device.startswith("cuda"):
        return "gpu"
    if device != "auto":
        return "cpu"
    import torch

    return "gpu" if torch.cuda.is_available() else "cpu"


def _round_output(unet: UNetConfig, wanted: int, axis: int) -> int:
    multiple = unet.output_multiple[axis]
    return max(multiple, math.ceil(wanted / multiple) * multiple)


def output_target(isotropic: int, voxel_size: Sequence[float]) -> list[int]:
    """The training output (voxels per axis) before it is capped by the boxes: as many voxels as
    an isotropic ``isotropic``-voxel cube, spread so that every axis spans the same physical
    length. A z voxel three times the xy one gives (isotropic / 3, isotropic, isotropic) times
    the cube root of 3: at 600 x 200 x 200 nm, 23 x 69 x 69 (24 x 72 x 72 once rounded to the
    pooling multiples) for the isotropic 48^3. Keeping the isotropic cube's physical length
    instead (16 x 48 x 48) gave a coarse-z model a third of the voxels, and of the objects, per
    step, and it held out worse (``bench/README.md``)."""
    finest = min(float(v) for v in voxel_size)
    ratios = [finest / float(v) for v in voxel_size]
    grow = math.prod(ratios) ** (-1.0 / len(ratios))
    return [max(1, round(isotropic * grow * r)) for r in ratios]


def auto_unet(
    given: Mapping[str, Any], *, dims: int, radius_voxels: float, device: str
) -> dict[str, Any]:
    """U-Net keyword arguments: the given ones, plus width and depth chosen as documented."""
    sizes = DEVICE_SIZES[device_kind(device)]
    values = {"dims": dims, "width": sizes["width"][dims], "depth": depth_for_radius(radius_voxels)}
    values.update(given)
    return values


def auto_training(
    given: Mapping[str, Any],
    unet: UNetConfig,
    *,
    box_shapes: Sequence[Sequence[int]],
    radius_nm: float,
    voxel_size: Sequence[float],
    device: str,
) -> dict[str, Any]:
    """TrainConfig keyword arguments: the given ones, plus the rest chosen as documented."""
    sizes = DEVICE_SIZES[device_kind(str(given.get("device", device)))]
    dims = unet.dims
    largest = [max(int(shape[a]) for shape in box_shapes) for a in range(dims)]
    # At most the largest box (plus one step of the pooling multiple): beyond it, only padding.
    target = output_target(sizes["output"][dims], voxel_size)
    output = tuple(
        _round_output(unet, min(target[a], largest[a] + unet.output_multiple[a]), a)
        for a in range(dims)
    )
    values: dict[str, Any] = {
        **SCHEDULE,
        "patch_shape": unet.valid_input_shape(output),
        "batch_size": sizes["batch_size"],
        "max_epochs": sizes["epochs"],
        "iterations_per_epoch": sizes["steps"],
        "patience": 15,
        "contact_nm": max(float(min(voxel_size)), CONTACT_RADII * radius_nm),
    }
    values.update(given)
    return values


def median_radius_nm(boxes: Sequence[Any], voxel_size: Sequence[float]) -> float:
    """Median equivalent radius (nm) of the ground-truth objects inside the training boxes."""
    from pipeline.patches import box_region
    from pipeline.segment_params import equivalent_radius_nm, object_volumes_nm

    volumes = []
    for box in boxes:
        sizes = tuple(box.voxel_size or voxel_size)
        labels = np.asarray(box.labels[box_region(box.box, box.labels.shape)])
        volumes.append(object_volumes_nm(labels, sizes))
    every = np.concatenate(volumes) if volumes else np.zeros(0)
    if every.size == 0:
        raise InvalidInputError("the ground truth is empty: no object in any training box")
    return float(np.median(equivalent_radius_nm(every, len(voxel_size))))


def _fits(unet: UNetConfig, given: Mapping[str, Any]) -> bool:
    """Whether the given patch is a valid input of ``unet``."""
    try:
        unet.output_shape(tuple(int(n) for n in given["patch_shape"]))
    except (InvalidInputError, TypeError):
        return False
    return True


def choose_train_config(
    unet: UNetConfig,
    unet_given: Collection[str] | None,
    given: Mapping[str, Any],
    *,
    voxel_size: Sequence[float],
    boxes: Sequence[Any],
    anisotropy: str = "auto",
) -> Any:
    """The :class:`pipeline.training.TrainConfig` a run trains with: what the config gives, the
    U-Net pooling for the voxel size (:mod:`pipeline.anisotropy`), and the rest as documented."""
    from pipeline.anisotropy import unet_and_patch_for_voxel_size
    from pipeline.training import TrainConfig

    voxel = tuple(float(v) for v in voxel_size)
    radius_nm = median_radius_nm(boxes, voxel)
    if unet_given is None:  # a U-Net built in code is taken whole
        unet_given = [f.name for f in fields(unet)]
    device = str(given.get("device", "auto"))
    if given.get("init_model") is not None:
        # A fine-tune trains its parent's network as it is: only the schedule and patch are
        # chosen (the caller passes the parent's U-Net).
        shapes = [tuple(b.box[len(b.box) // 2 :][i] - b.box[i] for i in range(len(b.box) // 2))
                  for b in boxes]  # fmt: skip
        values = auto_training(
            given, unet, box_shapes=shapes, radius_nm=radius_nm, voxel_size=voxel, device=device
        )
        return TrainConfig(unet=unet, voxel_size=voxel, **values)
    chosen = auto_unet(
        {k: getattr(unet, k) for k in unet_given},
        dims=unet.dims,
        radius_voxels=radius_nm / min(voxel),
        device=device,
    )
    # Pooling and kernels for the voxel size (no default patch passed: it is chosen below).
    base = unet
    unet, _ = unet_and_patch_for_voxel_size(
        replace(base, width=chosen["width"], depth=chosen["depth"]), {}, voxel, (), anisotropy
    )
    if "patch_shape" in given and "depth" not in unet_given and not _fits(unet, given):
        # A given patch was chosen for the given (or published) depth: keep that depth.
        unet, _ = unet_and_patch_for_voxel_size(
            replace(base, width=chosen["width"]), {}, voxel, (), anisotropy
        )
    shapes = [tuple(b.box[len(b.box) // 2 :][i] - b.box[i] for i in range(len(b.box) // 2))
              for b in boxes]  # fmt: skip
    values = auto_training(
        given, unet, box_shapes=shapes, radius_nm=radius_nm, voxel_size=voxel, device=device
    )
    if "warmup_steps" not in given:
        total = int(values["max_epochs"]) * int(values["iterations_per_epoch"])
        values["warmup_steps"] = min(int(SCHEDULE["warmup_steps"]), total // 10)
    return TrainConfig(unet=unet, voxel_size=voxel, **values)
