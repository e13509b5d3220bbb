"""Training targets from instance labels: foreground with separated objects, signed distance.

Touching objects are split by a one-voxel background border: a voxel becomes background when its
next neighbour along any axis belongs to a different object (only one side of each interface, so
the border is one voxel thick). The signed Euclidean distance in physical units is then positive
inside objects (distance to the nearest background voxel), negative outside (minus the distance
to the nearest object voxel) and clamped at +-``clamp_nm``.
"""

from __future__ import annotations

from collections.abc import Sequence

import edt
import numpy as np
import numpy.typing as npt

from pipeline.errors import InvalidInputError

DEFAULT_CLAMP_NM = 4000.0


def separate_touching(labels: np.ndarray) -> npt.NDArray[np.bool_]:
    """Foreground mask of ``labels`` with a one-voxel background line between touching objects."""
    foreground = labels != 0
    border = np.zeros_like(foreground)
    for axis in range(labels.ndim):
        here = [slice(None)] * labels.ndim
        after = [slice(None)] * labels.ndim
        here[axis] = slice(0, -1)
        after[axis] = slice(1, None)
        a, b = labels[tuple(here)], labels[tuple(after)]
        border[tuple(here)] |= (a != 0) & (b != 0) & (a != b)
    separated: npt.NDArray[np.bool_] = foreground & ~border
    return separated


def signed_distance(
    foreground: np.ndarray, voxel_size: Sequence[float], clamp_nm: float = DEFAULT_CLAMP_NM
) -> npt.NDArray[np.float32]:
    """Signed Euclidean distance (nm) of a binary mask, clamped at +-``clamp_nm``.

    Data beyond the array's edge counts as continuing the edge voxels (no border is assumed).
    """
    anisotropy = tuple(float(v) for v in voxel_size)
    fg = np.ascontiguousarray(foreground, dtype=np.uint8)
    inside = edt.edt(fg, anisotropy=anisotropy, black_border=False, parallel=1)
    outside = edt.edt(1 - fg, anisotropy=anisotropy, black_border=False, parallel=1)
    distance: npt.NDArray[np.float32] = np.where(fg != 0, inside, -outside).astype(np.float32)
    # With no background (or no object) at all, edt reports huge values: the clamp covers them.
    np.nan_to_num(distance, copy=False, posinf=clamp_nm, neginf=-clamp_nm)
    np.clip(distance, -clamp_nm, clamp_nm, out=distance)
    return distance


def instance_targets(
    labels: np.ndarray, voxel_size: tuple[float, ...], clamp_nm: float = DEFAULT_CLAMP_NM
) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.float32]]:
    """(foreground 0/1, signed distance in nm) for an instance label array, both float32."""
    labels = np.asarray(labels)
    if labels.ndim not in (2, 3):
        raise InvalidInputError(f"labels must be 2D or 3D, got shape {labels.shape}")
    if len(voxel_size) != labels.ndim or min(voxel_size) <= 0:
        raise InvalidInputError(f"voxel size {voxel_size} does not fit {labels.ndim}D labels")
    if clamp_nm <= 0:
        raise InvalidInputError("the distance clamp must be positive")
    foreground = separate_touching(labels)
    distance = signed_distance(foreground, voxel_size, clamp_nm)
    return foreground.astype(np.float32), distance
