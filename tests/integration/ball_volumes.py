"""Volumes for the import tests: bright balls on noise, with their label image, as TIFF bytes."""

from __future__ import annotations

import io
from collections.abc import Sequence

import numpy as np
import tifffile


def tiff_bytes(volume: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    tifffile.imwrite(buffer, volume)
    return buffer.getvalue()


def balls_and_labels(
    shape: tuple[int, int, int],
    balls: Sequence[tuple[int, int, int, int]],
    ids: Sequence[int] | None = None,
    seed: int = 0,
) -> tuple[np.ndarray, np.ndarray]:
    """A uint16 image with a bright ball per ``(z, y, x, radius)`` and the uint16 labels of the
    balls (ids 1, 2, ... unless ``ids`` are given)."""
    z, y, x = np.indices(shape)
    labels = np.zeros(shape, dtype=np.uint16)
    for label, (cz, cy, cx, r) in zip(ids or range(1, len(balls) + 1), balls, strict=True):
        labels[(z - cz) ** 2 + (y - cy) ** 2 + (x - cx) ** 2 <= r * r] = label
    image = np.random.default_rng(seed).normal(400, 40, shape) + (labels > 0) * 2000
    return image.clip(0, 65535).astype(np.uint16), labels
