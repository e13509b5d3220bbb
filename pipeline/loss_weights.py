"""Per-voxel loss weights that make narrow gaps between objects count: the U-Net border weight map.

Ronneberger, Fischer and Brox (2015, "U-Net: convolutional networks for biomedical image
segmentation", MICCAI, eq. 2) weigh each pixel by ``w0 * exp(-(d1 + d2)^2 / (2 sigma^2))``, d1 and
d2 the distances to the nearest and the second-nearest object: high in the thin background
between two close objects, which is a tiny share of all voxels but decides whether they come out
separate; the podometrics study used it with a class-balanced cross-entropy, as
``pipeline.training`` does. Here d1 and d2 are in nm (anisotropic voxels weigh by their physical
size), the map is ``1 + w0 * exp(...)`` on background voxels and 1 inside objects (class balance is
applied separately), and it is computed per object inside its bounding box grown by the reach of the
Gaussian (``REACH_SIGMAS`` sigma), so a box with many objects costs about one distance transform of
each object's neighbourhood.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import edt
import numpy as np
import numpy.typing as npt
from scipy import ndimage

REACH_SIGMAS = 3.0


def border_weights(
    labels: np.ndarray, voxel_size: Sequence[float], w0: float, sigma_nm: float
) -> npt.NDArray[np.float32]:
    """``1 + w0 exp(-(d1 + d2)^2 / (2 sigma^2))`` on background voxels, 1 inside objects."""
    labels = np.asarray(labels)
    sizes = tuple(float(v) for v in voxel_size)
    out = np.ones(labels.shape, dtype=np.float32)
    if w0 <= 0 or labels.max() == 0:
        return out
    # Two smallest distances to distinct objects, per voxel (inf where none is within reach).
    d1 = np.full(labels.shape, np.inf, dtype=np.float32)
    d2 = np.full(labels.shape, np.inf, dtype=np.float32)
    reach = [math.ceil(REACH_SIGMAS * sigma_nm / v) for v in sizes]
    for index, where in enumerate(ndimage.find_objects(labels), start=1):
        if where is None:
            continue
        region = tuple(
            slice(max(0, s.start - r), min(n, s.stop + r))
            for s, r, n in zip(where, reach, labels.shape, strict=True)
        )
        outside = np.ascontiguousarray(labels[region] != index, dtype=np.uint8)
        distance = edt.edt(outside, anisotropy=sizes, black_border=False, parallel=1)
        distance = np.asarray(distance, dtype=np.float32)
        first, second = d1[region], d2[region]
        closer = distance < first
        second[:] = np.where(closer, first, np.minimum(second, distance))
        first[:] = np.where(closer, distance, first)
    background = labels == 0
    gap = d1[background] + d2[background]
    out[background] += np.float32(w0) * np.exp(-np.square(gap) / (2.0 * sigma_nm**2)).astype(
        np.float32
    )
    return out
