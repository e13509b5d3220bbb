"""Opening an input volume (image, labels, distance map) as a spatial array plus its voxel size.

One opener for every command: a ``.npy`` file (memory-mapped), a bare Zarr array, one level of
an OME-Zarr image or label image (:func:`pipeline.ome_zarr_io.open_spatial_level`), a TIFF or
OME-TIFF (read as :mod:`pipeline.importers` reads it, voxel size from its metadata), or a dataset
of an HDF5 file named ``file.h5:/path/to/dataset`` (the dataset may be left out when the file
holds only one; voxel size from an ``element_size_um`` or ``resolution`` (nm) attribute).
Images with several channels (for a U-Net with ``in_channels`` > 1) open with
``channels=C``: the array then has the channel axis first, ``(C, z, y, x)`` or ``(C, y, x)``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import zarr

from pipeline.errors import InvalidInputError

HDF5_SUFFIXES = (".h5", ".hdf5", ".hdf", ".he5")
TIFF_SUFFIXES = (".tif", ".tiff")


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


def split_hdf5_path(path: Path) -> tuple[Path, str] | None:
    """``(file, dataset)`` of an HDF5 volume path ``file.h5:/dataset`` (dataset ``""`` when
    not given); ``None`` for any other path."""
    text = str(path)
    for suffix in HDF5_SUFFIXES:
        at = text.lower().find(suffix + ":")
        if at >= 0:
            cut = at + len(suffix)
            return Path(text[:cut]), text[cut + 1 :]
        if text.lower().endswith(suffix):
            return Path(text), ""
    return None


def volume_path_exists(path: Path) -> bool:
    """Whether the file of a volume path exists (the file part of an HDF5 path)."""
    hdf5 = split_hdf5_path(path)
    return (hdf5[0] if hdf5 else Path(path)).exists()


class HDF5Array:
    """A dataset of an HDF5 file, opened lazily so that it pickles as its file and path."""

    def __init__(self, path: Path, dataset: str) -> None:
        self.path = path
        self.dataset = dataset
        self._data: Any = None
        data = self.data
        self.shape: tuple[int, ...] = tuple(int(n) for n in data.shape)
        self.dtype: np.dtype[Any] = np.dtype(data.dtype)
        self.attrs: dict[str, Any] = dict(data.attrs)

    @property
    def data(self) -> Any:
        if self._data is None:
            import h5py

            self._data = h5py.File(self.path, "r")[self.dataset]
        return self._data

    def __getitem__(self, key: Any) -> Any:
        return np.asarray(self.data[key])

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_data": None}


def _open_hdf5(file: Path, dataset: str, what: str) -> tuple[Any, tuple[float, ...] | None]:
    import h5py

    try:
        with h5py.File(file, "r") as handle:
            if not dataset:
                found: list[str] = []
                handle.visititems(
                    lambda name, node: (
                        found.append(name) if isinstance(node, h5py.Dataset) else None
                    )
                )
                if len(found) != 1:
                    raise InvalidInputError(
                        f"{what} {file.name} holds {len(found)} datasets ({', '.join(found[:5])}): "
                        f"name one as {file.name}:/path"
                    )
                dataset = found[0]
            if not isinstance(handle.get(dataset), h5py.Dataset):
                raise InvalidInputError(f"{what} {file.name} has no dataset {dataset!r}")
    except OSError as exc:
        raise InvalidInputError(f"{what} {file.name} is not a readable HDF5 file: {exc}") from None
    array = HDF5Array(file, dataset)
    voxel: tuple[float, ...] | None = None
    if "element_size_um" in array.attrs:
        voxel = tuple(float(v) * 1000.0 for v in np.ravel(array.attrs["element_size_um"]))
    elif "resolution" in array.attrs:
        voxel = tuple(float(v) for v in np.ravel(array.attrs["resolution"]))
    return array, voxel


class CanonicalArray:
    """An input of :mod:`pipeline.importers` (TIFF, OME-TIFF) read in c, z, y, x order with its
    singleton extra axes dropped; pickles as its path."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._source: Any = None
        info = self.source.info
        self.shape: tuple[int, ...] = tuple(int(n) for n in info.shape)
        self.dtype: np.dtype[Any] = np.dtype(info.dtype)
        self.axes: tuple[str, ...] = tuple(info.axes)

    @property
    def source(self) -> Any:
        if self._source is None:
            from pipeline.importers import open_source

            self._source = open_source(self.path)
        return self._source

    def __getitem__(self, key: Any) -> np.ndarray:
        key = key if isinstance(key, tuple) else (key,)
        key = key + (slice(None),) * (len(self.shape) - len(key))
        source = self.source
        raw_index: list[Any] = []
        kept: list[int] = []  # canonical position of each raw axis kept in the result
        for pos in source.axis_of:
            if pos is None:
                raw_index.append(0)
            elif isinstance(key[pos], int | np.integer):
                raw_index.append(key[pos])
            else:
                raw_index.append(key[pos])
                kept.append(pos)
        block = np.asarray(source.raw[tuple(raw_index)])
        return np.transpose(block, np.argsort(kept)) if kept else block

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_source": None}


def _open_canonical(path: Path, what: str) -> tuple[Any, tuple[float, ...] | None]:
    from pipeline.units import UNIT_METRES, normalise_unit

    array = CanonicalArray(path)
    info = array.source.info
    voxel: tuple[float, ...] | None = None
    if info.voxel_size is not None:
        unit = normalise_unit(info.unit or "micrometer")
        factor = UNIT_METRES.get(unit, math.nan) / UNIT_METRES["nanometer"]
        if math.isfinite(factor):
            voxel = tuple(float(v) * factor for v in info.voxel_size)
    return array, voxel


@dataclass(frozen=True)
class Volume:
    """A (z, y, x) or (y, x) array with its voxel size in nm (``None``: not recorded)."""

    path: Path
    array: Any
    voxel_size: tuple[float, ...] | None


def _open_recorded(path: Path, level: int, what: str) -> tuple[Any, tuple[float, ...] | None]:
    """The array at ``path`` and the voxel size it records (nm), if any."""
    hdf5 = split_hdf5_path(path)
    if hdf5 is not None:
        return _open_hdf5(hdf5[0], hdf5[1], what)
    if path.is_file() and path.suffix.lower() in TIFF_SUFFIXES:
        return _open_canonical(path, what)
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
    path: Path,
    level: int = 0,
    voxel_size: tuple[float, ...] | None = None,
    what: str = "image",
    *,
    channels: int = 1,
) -> Volume:
    """Open a 2D or 3D volume: ``.npy``, a bare Zarr array, level ``level`` of an OME-Zarr, a
    TIFF, or an HDF5 dataset (``file.h5:/dataset``).

    ``voxel_size`` (nm; one value for every axis, or one per axis) overrides the recorded one.
    Singleton channel and time axes are dropped; with ``channels`` > 1 the first axis must hold
    that many channels (it is kept; the voxel size has one value per spatial axis). ``what``
    names the input in error messages.
    """
    path = Path(path)
    if not volume_path_exists(path):
        raise InvalidInputError(f"{what} {path}: no such file or directory")
    if channels > 1 and path.is_dir():  # a multi-channel OME-Zarr: its c axis is kept
        if level != 0:
            raise InvalidInputError(f"{what} {path.name}: several channels are read at level 0")
        array, recorded = _open_canonical(path, what)
    else:
        array, recorded = _open_recorded(path, level, what)
    full = tuple(int(n) for n in array.shape)
    if channels > 1:
        if len(full) not in (3, 4) or full[0] != channels:
            raise InvalidInputError(
                f"{what} {path.name} has shape {full}: expected {channels} channels first, then "
                "2 or 3 spatial axes"
            )
        shape = full[1:]
    else:
        shape = full
    if len(shape) not in (2, 3):
        raise InvalidInputError(f"{what} {path.name} must be 2D or 3D, has shape {full}")
    if recorded is not None and len(recorded) != len(shape):
        recorded = None
    if voxel_size is not None and len(voxel_size) == 1:
        voxel_size = voxel_size * len(shape)
    if voxel_size is not None and len(voxel_size) != len(shape):
        raise InvalidInputError(
            f"the voxel size has {len(voxel_size)} values for the {len(shape)}D {what} {path.name}"
        )
    chosen = voxel_size if voxel_size is not None else recorded
    return Volume(path, array, None if chosen is None else tuple(float(v) for v in chosen))
