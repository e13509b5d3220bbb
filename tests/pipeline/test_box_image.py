"""pipeline.box_image: the voxels of a task box, clipped to the image, and their uint8 display."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import tifffile

from pipeline.box_image import channel_composite, read_box, stretch_uint8
from pipeline.errors import InvalidInputError
from pipeline.importers import convert_to_ome_zarr
from pipeline.ome_zarr_io import create_single_level_image


def _image(path: Path, data: np.ndarray) -> Path:
    array = create_single_level_image(
        path, data.shape, dtype=data.dtype, chunks=(8,) * data.ndim, voxel_size=None, name="img"
    )
    array[...] = data
    return path


def test_read_box_returns_the_voxels_in_their_dtype_clipped_to_the_image(tmp_path: Path) -> None:
    data = np.arange(20 * 30 * 40, dtype=np.uint16).reshape(20, 30, 40)
    image = _image(tmp_path / "img.ome.zarr", data)
    block = read_box(image, (5, 10, 30), (10, 10, 20))
    assert block.dtype == np.uint16
    np.testing.assert_array_equal(block, data[5:15, 10:20, 30:40])


def test_read_box_of_a_2d_image_is_one_voxel_deep(tmp_path: Path) -> None:
    data = np.arange(30 * 40, dtype=np.float32).reshape(30, 40)
    image = _image(tmp_path / "img.ome.zarr", data)
    block = read_box(image, (0, 2, 3), (1, 4, 5))
    assert block.shape == (1, 4, 5)
    np.testing.assert_array_equal(block[0], data[2:6, 3:8])


def test_read_box_refuses_boxes_outside_or_too_large(tmp_path: Path) -> None:
    image = _image(tmp_path / "img.ome.zarr", np.zeros((8, 8, 8), np.uint8))
    with pytest.raises(InvalidInputError, match="outside"):
        read_box(image, (8, 0, 0), (4, 4, 4))
    with pytest.raises(InvalidInputError, match="larger"):
        read_box(image, (0, 0, 0), (1024, 1024, 1024))


def test_stretch_uint8_maps_the_percentile_window_to_the_full_range() -> None:
    block = np.linspace(100, 200, 1001, dtype=np.float32)
    stretched, (low, high) = stretch_uint8(block, 0.0, 100.0)
    assert (low, high) == (100.0, 200.0)
    assert stretched[0] == 0 and stretched[-1] == 255 and stretched[500] in (127, 128)
    flat, _ = stretch_uint8(np.full((4, 4), 7.0))
    assert not flat.any()


@pytest.mark.parametrize("axes", ["CYX", "CZYX"])
def test_a_multichannel_image_is_read_as_the_brightest_of_its_stretched_channels(
    tmp_path: Path, axes: str
) -> None:
    """Three channels as a user imports them (a TIFF, channels first): the box is one grey
    image where each channel's structure is as bright as in its own channel, not dimmed to a
    third by a mean, whatever the channels' ranges (a dim 12-bit marker beside bright nuclei)."""
    spatial = (4, 24, 32) if axes == "CZYX" else (24, 32)
    channels = np.zeros((3, *spatial), np.uint16)
    channels[0, ..., 2:8, 2:8] = 4000  # nuclei, bright
    channels[1, ..., 10:16, 10:16] = 300  # membranes, dim
    channels[2, ..., 18:22, 20:30] = 40  # a marker, dimmer
    tif = tmp_path / "if.tif"
    tifffile.imwrite(tif, channels, metadata={"axes": axes}, photometric="minisblack")
    result = convert_to_ome_zarr(tif, tmp_path / "if", voxel_size=(0.5,) * len(spatial))
    assert result.image.channels == 3
    image = tmp_path / "if" / result.image.path
    depth = 4 if axes == "CZYX" else 1
    block = read_box(image, (0, 0, 0), (depth, 24, 32))
    assert block.shape == (depth, 24, 32) and block.dtype == np.float32
    for y, x in ((4, 4), (12, 12), (20, 25)):  # each channel's structure at full brightness
        assert block[0, y, x] == pytest.approx(1.0), (y, x)
    assert block[0, 0, 31] == 0.0
    clipped = read_box(image, (0, 20, 28), (depth, 10, 10))  # past the edge: clipped
    assert clipped.shape == (depth, 4, 4)
    with pytest.raises(InvalidInputError, match="outside"):
        read_box(image, (0, 30, 0), (1, 4, 4))


def test_the_composite_keeps_a_sparse_channel_and_ignores_nan_and_constant_ones() -> None:
    """A marker in one pixel of a box (below the top half percent) still shows at full
    brightness; NaN voxels and a constant channel add nothing."""
    channels = np.zeros((4, 1, 40, 40), np.float32)
    channels[0, 0, 5:25, 5:25] = 1000.0  # nuclei, a quarter of the box
    channels[1, 0, 30, 30] = 50.0  # one bright pixel of a marker
    channels[2, 0, 0, 0] = np.nan
    channels[2, 0, 10, 30] = 7.0
    channels[3] = 12.0  # constant
    out = channel_composite(channels)
    assert out[0, 10, 10] == pytest.approx(1.0) and out[0, 30, 30] == pytest.approx(1.0)
    assert out[0, 10, 30] == pytest.approx(1.0)  # channel 2, its NaN left out of the range
    assert np.isfinite(out).all() and out[0, 35, 2] == 0.0
