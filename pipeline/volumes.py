"""Opening an input volume (image, labels, distance map) as a spatial array plus its voxel size.

One opener for every command: a ``.npy`` file (memory-mapped), a bare Zarr array, or one level
of an OME-Zarr image or label image (:func:`pipeline.ome_zarr_io.open_spatial_level`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import zarr

from pipeline.errors import InvalidInputError


class NpyArray:
    """A ``.npy`` file read through a memory map opened lazily, so it pickles as its path."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._data: np.ndarray | None = None
        self.shape: tuple[int, ...] = tuple(self.data.shape)
        self.dtype: np.dtype[Any] = self.data.dtype

    @property
    def data(self) -> np.ndarray:
        if self._data is None:
            self._data = np.load(self.path, mmap_mode="r", allow_pickle=False)
        return self._data

    def __getitem__(self, key: Any) -> Any:
        return self.data[key]

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_data": None}


@dataclass(frozen=True)
class Volume:
    """A (z, y, x) or (y, x) array with its voxel size in nm (``None``: not recorded)."""

    path: Path
    array: Any
    voxel_size: tuple[float, ...] | None


def _open_recorded(path: Path, level: int, what: str) -> tuple[Any, tuple[float, ...] | None]:
    """The array at ``path`` and the voxel size it records (nm), if any."""
    if path.suffix == ".npy":
        try:
            return NpyArray(path), None
        except (OSError, ValueError) as exc:
            raise InvalidInputError(f"{what} {path.name} is not a readable .npy file: {exc}")
    if path.is_dir():
        try:
            node = zarr.open(store=str(path), mode="r")
        except Exception:  # not Zarr at all: the OME-Zarr reader below says why
            node = None
        if isinstance(node, zarr.Array):
            return node, None
    # ome_zarr_io imports dask and ome_zarr (seconds): only OME-Zarr inputs pay for it.
    from pipeline.ome_zarr_io import open_spatial_level

    opened = open_spatial_level(path, level, what)
    return opened.array, opened.voxel_size_nm


def open_volume(
    path: Path, level: int = 0, voxel_size: tuple[float, ...] | None = None, what: str = "image"
) -> Volume:
    """Open a 2D or 3D volume: ``.npy``, a bare Zarr array, or level ``level`` of an OME-Zarr.

    ``voxel_size`` (nm; one value for every axis, or one per axis) overrides the recorded one.
    Singleton channel and time axes of an OME-Zarr are dropped. ``what`` names the input in
    error messages.
    """
    path = Path(path)
    if not path.exists():
        raise InvalidInputError(f"{what} {path}: no such file or directory")
    array, recorded = _open_recorded(path, level, what)
    shape = tuple(int(n) for n in array.shape)
    if len(shape) not in (2, 3):
        raise InvalidInputError(f"{what} {path.name} must be 2D or 3D, has shape {shape}")
    if voxel_size is not None and len(voxel_size) == 1:
        voxel_size = voxel_size * len(shape)
    if voxel_size is not None and len(voxel_size) != len(shape):
        raise InvalidInputError(
            f"the voxel size has {len(voxel_size)} values for the {len(shape)}D {what} {path.name}"
        )
    chosen = voxel_size if voxel_size is not None else recorded
    return Volume(path, array, None if chosen is None else tuple(float(v) for v in chosen))
