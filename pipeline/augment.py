"""Training augmentation applied consistently to an input patch and its (smaller) targets.

Geometric transforms (mirroring on any axis, 90-degree rotations in the y-x plane, i.e. about
z) act on the input and on every target alike; because the target window is the centre of the
input window, flipping or rotating both keeps them aligned. Rotations by 90 degrees need equal y
and x sizes; otherwise only 0 or 180 degrees are drawn. Intensity transforms (contrast,
brightness, Gaussian noise) act on the normalised input only.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float32]


@dataclass(frozen=True)
class AugmentConfig:
    """Probabilities and ranges; intensities are in units of the normalised image (std 1)."""

    mirror: bool = True
    rotate: bool = True
    contrast: tuple[float, float] = (0.75, 1.25)
    brightness: float = 0.2
    noise_std: float = 0.1
    noise_probability: float = 0.5


@dataclass(frozen=True)
class GeometricTransform:
    """Axes to flip and quarter turns in the plane of the last two axes."""

    flips: tuple[int, ...]
    quarter_turns: int

    def apply(self, array: np.ndarray) -> np.ndarray:
        """Apply to a purely spatial array (z, y, x or y, x)."""
        out = np.flip(array, axis=self.flips) if self.flips else array
        if self.quarter_turns % 4:
            out = np.rot90(out, k=self.quarter_turns, axes=(-2, -1))
        return np.ascontiguousarray(out)


def draw_geometric(
    rng: np.random.Generator, spatial_shape: Sequence[int], config: AugmentConfig
) -> GeometricTransform:
    """A random mirror/rotation; quarter turns only when the last two sizes are equal."""
    ndim = len(spatial_shape)
    flips = tuple(a for a in range(ndim) if config.mirror and rng.random() < 0.5)
    turns = 0
    if config.rotate:
        square = spatial_shape[-1] == spatial_shape[-2]
        turns = int(rng.integers(4)) if square else 2 * int(rng.integers(2))
    return GeometricTransform(flips=flips, quarter_turns=turns)


def augment_intensity(
    image: FloatArray, rng: np.random.Generator, config: AugmentConfig
) -> FloatArray:
    """Contrast around the patch mean, a brightness shift, then Gaussian noise (float32)."""
    scale = rng.uniform(*config.contrast)
    shift = rng.uniform(-config.brightness, config.brightness)
    mean = float(image.mean())
    out = (image - mean) * scale + mean + shift
    if config.noise_std > 0 and rng.random() < config.noise_probability:
        out = out + rng.normal(0.0, config.noise_std, size=image.shape)
    return out.astype(np.float32, copy=False)


def augment_sample(
    image: FloatArray,
    targets: Sequence[np.ndarray],
    rng: np.random.Generator,
    config: AugmentConfig,
) -> tuple[FloatArray, list[np.ndarray]]:
    """Augment one (image patch, targets) pair; all arrays are purely spatial (no channel axis)."""
    transform = draw_geometric(rng, image.shape, config)
    new_image = augment_intensity(transform.apply(image), rng, config)
    return new_image, [transform.apply(t) for t in targets]
