"""Seeded watershed on a signed distance map (positive inside objects, in nm).

Seeds are the connected components of ``distance > seed_threshold``; they grow over ``-distance``
within ``distance > mask_threshold`` (and ``probability >= probability_threshold`` when a
probability map is given). Seeds use full connectivity (26 in 3D, 8 in 2D): two objects' seed
regions both lie more than ``seed_threshold`` inside their objects, so they are at least twice that
apart and never touch diagonally, while a thin or slanted seed of one object (anisotropic voxels)
can be face-disconnected and would otherwise split one object into two.

With ``smooth_sigma`` (voxels, per axis or one for all; default 0: off, as published) the distance
map is first smoothed with a Gaussian: a network's prediction is noisy at the voxel scale, and a
thin ridge of noise above the threshold across the contact of two nuclei joins their seeds.

Seeds of fewer than ``min_seed_voxels`` voxels (default 0: none, as published) are dropped before
flooding: single-voxel maxima where a noisy prediction pokes above the threshold inside an object
would otherwise each grow into a speck; their voxels go to the neighbouring objects instead.

With ``seed_dynamic`` (nm; default 0: off, as published) a seed must also lie on the cap of a
peak of the distance map that rises at least that far above the saddle towards any higher peak
(the peak's dynamic; an h-maxima transform): the cap is where the map is within ``seed_dynamic``
of its peak, found as the regional maxima of the map reconstructed by dilation from itself minus
``seed_dynamic`` (``skimage.morphology.reconstruction``). A threshold alone separates two touching
objects only if it lies above the saddle between them and below both peaks, a band that shifts
with every model and image; a dynamic keeps one seed per peak that stands out by the given depth
at whatever height the peaks and saddles lie, so the fitted settings carry over from the
validation boxes to new images better (see ``pipeline.segment_fit``). In block-wise processing the
map rising to a block's cut face counts as a peak there (its dynamic is judged from what the block
sees); the halo keeps the peaks of the objects reaching into the block's core inside the block.
Tried and dropped: padding cut faces with their own values plus the dynamic, so that a peak beyond
the face counts as high enough; the padded layer joins every object along the face at a raised
saddle and merged them (4 of 8 touching balls seeded in a block instead of 8).

Mask components that contain no seed are dropped, as in the published pipeline: they are thinner
than ``2 * seed_threshold`` (not nuclei), and in block-wise processing they are mostly pieces of
objects cut by the block's outer boundary, whose seed lies in a neighbouring block.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import cc3d
import numpy as np
from scipy import ndimage
from skimage.morphology import local_maxima, reconstruction
from skimage.segmentation import watershed

DEFAULT_SEED_THRESHOLD_NM = 705.6


def seeded_watershed(
    distance: np.ndarray,
    *,
    seed_threshold: float = DEFAULT_SEED_THRESHOLD_NM,
    mask_threshold: float = 0.0,
    probability: np.ndarray | None = None,
    probability_threshold: float = 0.5,
    min_seed_voxels: int = 0,
    smooth_sigma: float | Sequence[float] = 0.0,
    seed_dynamic: float = 0.0,
) -> np.ndarray:
    """Label objects of a 2D or 3D distance map; 0 is background, ids are 1..n (uint32)."""
    if distance.ndim not in (2, 3):
        raise ValueError(f"distance map must be 2D or 3D, got {distance.ndim} dimensions")
    if probability is not None and probability.shape != distance.shape:
        raise ValueError("probability and distance maps differ in shape")
    sigmas = np.broadcast_to(np.asarray(smooth_sigma, dtype=np.float64), (distance.ndim,))
    if sigmas.any():
        distance = ndimage.gaussian_filter(np.asarray(distance, dtype=np.float32), tuple(sigmas))
    mask = distance > mask_threshold
    if probability is not None:
        mask &= probability >= probability_threshold
    seeds = seed_labels(distance, mask, seed_threshold, min_seed_voxels, seed_dynamic)
    return flood_seeds(distance, seeds, mask)


def peak_caps(distance: np.ndarray, dynamic: float) -> np.ndarray:
    """Where the map lies within ``dynamic`` of a peak whose dynamic is at least ``dynamic``
    (boolean; the regional maxima of the map's h-maxima reconstruction, plateaus kept whole)."""
    image = np.asarray(distance, dtype=np.float64)
    rebuilt = reconstruction(image - float(dynamic), image, method="dilation")  # type: ignore[no-untyped-call]
    # Full connectivity, as the seeds: a cap is one plateau of the rebuilt map.
    caps = local_maxima(rebuilt, connectivity=image.ndim, allow_borders=True)  # type: ignore[no-untyped-call]
    return np.asarray(caps, dtype=bool)


def seed_labels(
    distance: np.ndarray,
    mask: np.ndarray,
    seed_threshold: float,
    min_seed_voxels: int = 0,
    seed_dynamic: float = 0.0,
    caps: np.ndarray | None = None,
) -> np.ndarray:
    """Seeds (uint32 ids) of an already smoothed map: components deeper than the threshold of at
    least ``min_seed_voxels``, and with ``seed_dynamic`` only their voxels on the cap of a peak of
    that dynamic (``caps`` passes :func:`peak_caps` already computed). The size is judged before
    the caps: a cap is only about the dynamic's share of its object's radius across, and would
    fall under a minimum meant for the noise above the threshold."""
    connectivity: Literal[8, 26] = 26 if distance.ndim == 3 else 8
    core = (distance > seed_threshold) & mask
    if min_seed_voxels > 1:
        core = np.asarray(
            cc3d.dust(core, threshold=min_seed_voxels, connectivity=connectivity, in_place=True)
        )
    if seed_dynamic > 0:
        core &= peak_caps(distance, seed_dynamic) if caps is None else caps
    return np.asarray(
        cc3d.connected_components(core, connectivity=connectivity, out_dtype=np.uint32)
    )


def flood_seeds(distance: np.ndarray, seeds: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Grow the seeds over ``-distance`` within the mask (uint32 labels; all 0 without seeds)."""
    if not seeds.any():
        return np.zeros(distance.shape, dtype=np.uint32)
    # float32 keeps the flooding priorities exact enough and halves the queue's memory.
    landscape = -np.asarray(distance, dtype=np.float32)
    labels = watershed(landscape, markers=seeds, mask=mask)  # type: ignore[no-untyped-call]
    return np.asarray(labels, dtype=np.uint32)
