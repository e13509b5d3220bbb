"""The one input opener of the commands: .npy, bare Zarr arrays and OME-Zarr levels."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest
import zarr

from pipeline.errors import InvalidInputError
from pipeline.segment import create_label_array
from pipeline.volumes import NpyArray, open_volume


def test_npy_and_bare_zarr_arrays_record_no_voxel_size(tmp_path: Path) -> None:
    data = np.arange(24, dtype=np.float32).reshape(2, 3, 4)
    np.save(tmp_path / "d.npy", data)
    volume = open_volume(tmp_path / "d.npy")
    assert isinstance(volume.array, NpyArray) and volume.voxel_size is None
    np.testing.assert_array_equal(pickle.loads(pickle.dumps(volume.array))[:], data)
    assert open_volume(tmp_path / "d.npy", voxel_size=(5.0,)).voxel_size == (5.0, 5.0, 5.0)
    zarr.create_array(str(tmp_path / "a.zarr"), data=data)
    volume = open_volume(tmp_path / "a.zarr")
    assert volume.voxel_size is None
    np.testing.assert_array_equal(volume.array[:], data)


def test_ome_zarr_levels_give_their_voxel_size_unless_overridden(tmp_path: Path) -> None:
    array = create_label_array(
        tmp_path / "l.ome.zarr", (4, 6, 8), chunks=(4, 6, 8), voxel_size=(400.0, 200.0, 100.0)
    )
    array[1, 2, 3] = 7
    volume = open_volume(tmp_path / "l.ome.zarr", what="labels")
    assert volume.voxel_size == (400.0, 200.0, 100.0) and volume.array[1, 2, 3] == 7
    assert open_volume(tmp_path / "l.ome.zarr", 0, (1.0, 2.0, 3.0)).voxel_size == (1.0, 2.0, 3.0)


def test_bad_inputs_are_named_in_the_errors(tmp_path: Path) -> None:
    with pytest.raises(InvalidInputError, match=r"mask .*nope\.npy: no such file"):
        open_volume(tmp_path / "nope.npy", what="mask")
    np.save(tmp_path / "flat.npy", np.zeros(10, np.float32))
    with pytest.raises(InvalidInputError, match=r"distance map flat\.npy must be 2D or 3D"):
        open_volume(tmp_path / "flat.npy", what="distance map")
    np.save(tmp_path / "cube.npy", np.zeros((2, 2, 2), np.float32))
    with pytest.raises(InvalidInputError, match="voxel size has 2 values for the 3D image"):
        open_volume(tmp_path / "cube.npy", voxel_size=(1.0, 2.0))
    (tmp_path / "broken.npy").write_text("not numpy")
    with pytest.raises(InvalidInputError, match=r"broken.npy is not a readable \.npy"):
        open_volume(tmp_path / "broken.npy")
    zarr.create_group(str(tmp_path / "empty.zarr"))
    with pytest.raises(InvalidInputError, match="no multiscales metadata"):
        open_volume(tmp_path / "empty.zarr")
