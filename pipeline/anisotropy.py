"""U-Net pooling, kernels and patch shape chosen for anisotropic voxels (e.g. confocal z:xy 2-4).

With 2x2x2 pooling and 3x3x3 kernels at every level, a z voxel four times the xy one gives each
kernel a z reach four times its xy reach in physical terms, and two poolings leave z sampled at
16x the xy voxel, past the size of a nucleus. The rule here is nnU-Net's (Isensee et al., "nnU-Net:
a self-configuring method for deep learning-based biomedical image segmentation", Nature Methods
18:203-211, 2021; ``get_pool_and_conv_props`` in nnunetv2's experiment planning): at each level,
an axis whose current spacing is within a factor 2 of the finest current spacing (ratio < 2) is
pooled by 2 and convolved with kernel 3; a coarser axis is pooled by 1 and convolved with kernel 1,
so its spacing waits until pooling of the fine axes has caught up. The bottom block uses kernel 3
along every axis, as nnU-Net does, so every axis gets some context even when it is never pooled.
Isotropic voxels give the published network (pool 2, kernel 3 everywhere).

Examples (z:xy, depth 2): 1 -> pool (2,2,2),(2,2,2); 2 or 3 -> (1,2,2),(2,2,2) with kernel 1 along z
at the first level (2.2, the embryo confocal data, too); 4 -> (1,2,2),(1,2,2), z convolved only in
the bottom block.

The distance targets are already in physical units (:mod:`pipeline.targets`); the training patch
for anisotropic data covers a similar physical length along every axis instead of the same number
of voxels along each: the published patch scaled down along the coarse axis
(:func:`anisotropic_patch_shape`, a config without training boxes), and with the automatic
settings a physical cube holding as many voxels as the isotropic patch
(:func:`pipeline.training_auto.output_target`; at z:xy 3 it held out better than the
published patch scaled down, see bench/README.md).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from typing import Any

from pipeline.errors import InvalidInputError
from pipeline.unet import KERNEL, POOL, UNetConfig

ANISOTROPY_FACTOR = 2.0  # pool an axis while its spacing is below this times the finest one
_RELATIVE_TOLERANCE = 1e-6  # so that 2 x 0.1 nm read back as 0.20000001 still counts as 2


def _check_voxel_size(voxel_size: Sequence[float], dims: int) -> tuple[float, ...]:
    spacing = tuple(float(v) for v in voxel_size)
    if len(spacing) != dims or not all(math.isfinite(v) and v > 0 for v in spacing):
        raise InvalidInputError(
            f"voxel size {tuple(voxel_size)} must be {dims} positive values (nm) for this U-Net"
        )
    return spacing


def _fine_axes(spacing: Sequence[float]) -> list[bool]:
    finest = min(spacing)
    limit = ANISOTROPY_FACTOR * (1.0 - _RELATIVE_TOLERANCE)
    return [s / finest < limit for s in spacing]


def anisotropic_unet_config(base: UNetConfig, voxel_size: Sequence[float]) -> UNetConfig:
    """``base`` with per-level ``pool`` and ``kernel`` chosen from the voxel size (nnU-Net's rule).

    Always fills both explicitly (isotropic voxels give all 2s and 3s); see the module docstring.
    """
    spacing = list(_check_voxel_size(voxel_size, base.dims))
    pools: list[tuple[int, ...]] = []
    kernels: list[tuple[int, ...]] = []
    for _ in range(base.depth):
        fine = _fine_axes(spacing)
        kernels.append(tuple(KERNEL if f else 1 for f in fine))
        pool = tuple(POOL if f else 1 for f in fine)
        pools.append(pool)
        spacing = [s * p for s, p in zip(spacing, pool, strict=True)]
    kernels.append((KERNEL,) * base.dims)
    return dataclasses.replace(base, pool=tuple(pools), kernel=tuple(kernels))


def is_anisotropic(voxel_size: Sequence[float]) -> bool:
    """Whether the voxel's edges differ (beyond float rounding)."""
    return max(voxel_size) > min(voxel_size) * (1.0 + _RELATIVE_TOLERANCE)


def anisotropic_patch_shape(
    unet: UNetConfig, voxel_size: Sequence[float], reference: Sequence[int]
) -> tuple[int, ...]:
    """The smallest valid input patch covering about the physical length of ``reference``.

    ``reference`` is the patch (voxels) one would use for isotropic voxels of the finest edge;
    each axis gets ``reference * finest / spacing`` voxels (at least 1), rounded up to a valid
    U-Net input. The finest axes keep their reference size; a z four times coarser gets a
    quarter of the voxels, for the same length in nm.
    """
    spacing = _check_voxel_size(voxel_size, unet.dims)
    if len(reference) != unet.dims:
        raise InvalidInputError(f"reference patch {tuple(reference)} is not {unet.dims}D")
    finest = min(spacing)
    wanted = tuple(
        max(1, math.ceil(int(r) * finest / s - 1e-9))
        for r, s in zip(reference, spacing, strict=True)
    )
    return unet.valid_input_at_least(wanted)


def unet_and_patch_for_voxel_size(
    unet: UNetConfig,
    training: Mapping[str, Any],
    voxel_size: Sequence[float],
    default_patch: Sequence[int],
    mode: str = "auto",
) -> tuple[UNetConfig, dict[str, Any]]:
    """The U-Net and training keywords a run uses for images of ``voxel_size``.

    With ``mode`` ``auto``, a U-Net whose ``pool`` and ``kernel`` are not given gets them from
    :func:`anisotropic_unet_config` (left unset when that yields the isotropic network, so
    isotropic model files do not change); when the pooling did change and ``training`` has no
    ``patch_shape``, the patch is :func:`anisotropic_patch_shape` of ``default_patch``.
    ``off`` changes nothing (the published isotropic network whatever the voxel size).
    """
    if mode not in ("auto", "off"):
        raise InvalidInputError(f"model.anisotropy must be auto or off, not {mode!r}")
    values = dict(training)
    if mode == "off" or unet.pool is not None or unet.kernel is not None:
        return unet, values
    chosen = anisotropic_unet_config(unet, voxel_size)
    if chosen.is_isotropic:
        return unet, values
    if "patch_shape" not in values and len(default_patch) == unet.dims:
        values["patch_shape"] = anisotropic_patch_shape(chosen, voxel_size, default_patch)
    return chosen, values
