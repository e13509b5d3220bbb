"""The image inside a task box: read once, in its own dtype, or stretched to uint8 for display.

The painting editor draws the box's image under the labels and the assistance grows objects on
it; both read the same voxels through :func:`read_box`. A 2D image is read as a box one voxel
deep, so every caller sees (z, y, x).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from pipeline.errors import InvalidInputError

# A box larger than this many voxels is refused: the editor and the assistance hold it in memory.
MAX_BOX_VOXELS = 512 * 512 * 512


def read_box(
    image_path: Path, origin: Sequence[int], shape: Sequence[int], level: int = 0
) -> np.ndarray:
    """The (z, y, x) voxels of the image at ``image_path`` from ``origin`` over ``shape``.

    The box is clipped to the image (a box may reach past a volume's edge): the answer has the
    clipped shape. Raises :class:`InvalidInputError` for a box outside the image or too large.
    """
    from pipeline.ome_zarr_io import open_spatial_level  # imports dask: only when used

    opened = open_spatial_level(Path(image_path), level, what="image")
    array = opened.array
    image_shape = tuple(int(n) for n in array.shape)
    if len(image_shape) == 2:
        image_shape = (1, *image_shape)
    z0, y0, x0 = (int(v) for v in origin)
    d, h, w = (int(v) for v in shape)
    if min(z0, y0, x0) < 0 or min(d, h, w) <= 0:
        raise InvalidInputError(f"box origin {tuple(origin)} and shape {tuple(shape)} are invalid")
    if d * h * w > MAX_BOX_VOXELS:
        raise InvalidInputError(f"box of {d}x{h}x{w} voxels is larger than {MAX_BOX_VOXELS}")
    stop = [min(o + n, m) for o, n, m in zip((z0, y0, x0), (d, h, w), image_shape, strict=True)]
    if any(s <= o for s, o in zip(stop, (z0, y0, x0), strict=True)):
        raise InvalidInputError(f"box at {tuple(origin)} lies outside the image {image_shape}")
    if len(array.shape) == 2:
        block = np.asarray(array[y0 : stop[1], x0 : stop[2]])[np.newaxis]
    else:
        block = np.asarray(array[z0 : stop[0], y0 : stop[1], x0 : stop[2]])
    return block


def stretch_uint8(
    block: np.ndarray, low_percent: float = 0.5, high_percent: float = 99.5
) -> tuple[np.ndarray, tuple[float, float]]:
    """``block`` mapped linearly to 0-255 between two percentiles, and those two values.

    Microscopy rarely fills its dtype's range; a percentile window shows it as a person expects.
    A constant block maps to zeros.
    """
    data = np.asarray(block, dtype=np.float32)
    if data.size == 0:
        return np.zeros(block.shape, np.uint8), (0.0, 0.0)
    low, high = (float(v) for v in np.percentile(data, [low_percent, high_percent]))
    if high <= low:
        return np.zeros(block.shape, np.uint8), (low, high)
    scaled = (data - low) * (255.0 / (high - low))
    return np.clip(scaled, 0, 255).round().astype(np.uint8), (low, high)
