"""The image inside a task box: read once, in its own dtype, or stretched to uint8 for display.

The painting editor draws the box's image under the labels and the assistance grows objects on
it; both read the same voxels through :func:`read_box`. A 2D image is read as a box one voxel
deep, so every caller sees (z, y, x). A multichannel image (immunofluorescence: nuclei, membranes
and a marker in three channels) is read as one grey image, :func:`channel_composite`, so that an
annotator paints on every stained structure at once.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from pipeline.errors import InvalidInputError

if TYPE_CHECKING:
    from pipeline.ome_zarr_io import Multiscale

# A box larger than this many voxels is refused: the editor and the assistance hold it in memory.
MAX_BOX_VOXELS = 512 * 512 * 512


def read_box(
    image_path: Path, origin: Sequence[int], shape: Sequence[int], level: int = 0
) -> np.ndarray:
    """The (z, y, x) voxels of the image at ``image_path`` from ``origin`` over ``shape``: in
    the image's dtype, or, for a multichannel image, :func:`channel_composite` of its channels.

    The box is clipped to the image (a box may reach past a volume's edge): the answer has the
    clipped shape. Raises :class:`InvalidInputError` for a box outside the image or too large.
    """
    from pipeline.ome_zarr_io import open_multiscale, spatial_level  # imports dask

    image = open_multiscale(Path(image_path))
    channels = image.axes.index("c") if "c" in image.axes else None
    levels = image.levels
    if channels is not None and 0 <= level < len(levels) and levels[level].shape[channels] > 1:
        return channel_composite(_read_channels(image, level, origin, shape))
    array = spatial_level(image, level, what="image").array
    spatial_shape = tuple(int(n) for n in array.shape)
    block = np.asarray(array[_clipped(origin, shape, spatial_shape)[-len(spatial_shape) :]])
    return block if len(spatial_shape) == 3 else block[np.newaxis]


def _clipped(
    origin: Sequence[int], shape: Sequence[int], image_shape: tuple[int, ...]
) -> tuple[slice, slice, slice]:
    """The box's (z, y, x) slices clipped to a 2D or 3D image's spatial shape (a 2D image is
    one voxel deep); refuses a box that is invalid, too large or outside the image."""
    full = image_shape if len(image_shape) == 3 else (1, *image_shape)
    z0, y0, x0 = (int(v) for v in origin)
    d, h, w = (int(v) for v in shape)
    if min(z0, y0, x0) < 0 or min(d, h, w) <= 0:
        raise InvalidInputError(f"box origin {tuple(origin)} and shape {tuple(shape)} are invalid")
    if d * h * w > MAX_BOX_VOXELS:
        raise InvalidInputError(f"box of {d}x{h}x{w} voxels is larger than {MAX_BOX_VOXELS}")
    stop = [min(o + n, m) for o, n, m in zip((z0, y0, x0), (d, h, w), full, strict=True)]
    if any(e <= o for e, o in zip(stop, (z0, y0, x0), strict=True)):
        raise InvalidInputError(f"box at {tuple(origin)} lies outside the image {full}")
    return slice(z0, stop[0]), slice(y0, stop[1]), slice(x0, stop[2])


def _read_channels(
    image: Multiscale, level: int, origin: Sequence[int], shape: Sequence[int]
) -> np.ndarray:
    """The box of every channel of a multichannel OME-Zarr level as (c, z, y, x), clipped as
    :func:`read_box` clips it (any other non-spatial axis must be single)."""
    array = image.levels[level]
    spatial, channel = image.spatial_indices, image.axes.index("c")
    if any(int(n) != 1 for i, n in enumerate(array.shape) if i not in (*spatial, channel)):
        raise InvalidInputError(
            f"image {image.path.name} has axes {''.join(image.axes)} with shape "
            f"{tuple(array.shape)}: only its channel and spatial axes may be longer than one"
        )
    ranges = _clipped(origin, shape, tuple(int(array.shape[i]) for i in spatial))
    index: list[Any] = [0] * array.ndim
    index[channel] = slice(None)
    for i, r in zip(spatial, ranges[-len(spatial) :], strict=True):
        index[i] = r
    block = np.asarray(array[tuple(index)])  # c and the spatial axes, in the store's order
    kept = [i for i, r in enumerate(index) if isinstance(r, slice)]
    block = np.moveaxis(block, kept.index(channel), 0)
    return block if len(spatial) == 3 else block[:, np.newaxis]


def channel_composite(
    channels: np.ndarray, low_percent: float = 0.5, high_percent: float = 99.5
) -> np.ndarray:
    """One grey image (float32, 0-1) from channels first: each channel stretched between its own
    percentiles, then the brightest of them at each voxel. A plain mean would dim a structure
    stained in one channel of three; the maximum keeps each as bright as in its channel."""
    out = np.zeros(channels.shape[1:], np.float32)
    for channel in channels:
        data = np.asarray(channel, dtype=np.float32)
        if not np.isfinite(data).any():
            continue
        low, high = (float(v) for v in np.nanpercentile(data, [low_percent, high_percent]))
        if high <= low:  # a structure smaller than the top percentile: its full range instead
            low, high = float(np.nanmin(data)), float(np.nanmax(data))
        if high > low:  # a constant channel shows nothing
            stretched = np.clip((data - low) / (high - low), 0.0, 1.0)
            np.fmax(out, np.nan_to_num(stretched, nan=0.0), out=out)
    return out


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
