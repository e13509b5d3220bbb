"""Import volumes (TIFF, OME-TIFF, NumPy ``.npy``, OME-Zarr 0.4/0.5) as OME-Zarr 0.5 pyramids.

Sources are opened lazily (memory maps, tifffile's Zarr view, Zarr arrays) and written chunk by
chunk, so a volume larger than memory converts with bounded memory. Everything about the input is
checked before the first byte is written, and a failed conversion leaves nothing behind: the store
is built under a hidden temporary name and renamed into place only when complete.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import math
import os
import re
import shutil
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal
from xml.etree import ElementTree

import numpy as np
import tifffile
import zarr

from pipeline.errors import InvalidInputError
from pipeline.layout import IMAGE_STORE, LABELS_GROUP, label_group_path, label_store_path
from pipeline.naming import label_name_check
from pipeline.ome_zarr_io import (
    NGFF_WRITE_VERSION,
    SPATIAL_AXES,
    ArrayRegions,
    Multiscale,
    compute_contrast,
    create_image_group,
    list_labels,
    open_multiscale,
    pyramid_factors,
    spatial_chunk_edge,
    write_label_image,
    write_omero,
    write_pyramid,
)
from pipeline.progress import ProgressCallback, no_progress
from pipeline.units import DEFAULT_UNIT, UNIT_METRES, normalise_unit
from pipeline.volume_info import ConversionResult, LayerInfo

SourceKind = Literal["tiff", "ome-tiff", "npy", "ome-zarr"]
DEFAULT_MAX_VOXELS = 1 << 40  # about 1.1e12: anything larger is a mistake, not a volume
TIFF_MAGIC = (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+")
NPY_MAGIC = b"\x93NUMPY"
CANONICAL_ORDER = ("c", "z", "y", "x")
# tifffile axis codes: S (samples, e.g. RGB) are channels; Q/I are unnamed stack axes.
TIFF_AXIS_NAMES = {"Z": "z", "C": "c", "S": "c", "T": "t", "Y": "y", "X": "x"}
LABEL_DTYPES: dict[np.dtype[Any], np.dtype[Any]] = {
    np.dtype(np.int8): np.dtype(np.uint8),
    np.dtype(np.int16): np.dtype(np.uint16),
    np.dtype(np.int32): np.dtype(np.uint32),
    np.dtype(np.int64): np.dtype(np.uint64),
}


@dataclass(frozen=True)
class SourceInfo:
    """What an input file holds, in canonical axis order (c, z, y, x subsets)."""

    kind: SourceKind
    shape: tuple[int, ...]
    dtype: str
    axes: tuple[str, ...]
    voxel_size: tuple[float, ...] | None = None
    unit: str | None = None
    ngff_version: str | None = None


@dataclass
class _Source:
    """An opened input: its description, a lazy array in canonical axes, and what to close."""

    info: SourceInfo
    raw: Any  # array-like in the file's own axis order, reads guarded
    axis_of: tuple[int | None, ...]  # raw axis -> canonical position (None: dropped singleton)
    read_tile: tuple[int, ...]  # canonical axes
    name: str
    labels: dict[str, _Source] = field(default_factory=dict)
    closers: list[Callable[[], None]] = field(default_factory=list)

    def close(self) -> None:
        for label in self.labels.values():
            label.close()
        for closer in self.closers:
            closer()
        self.closers.clear()


class _GuardedReads:
    """An array-like whose read failures (corrupt chunks, truncated data) become input errors."""

    def __init__(self, array: Any, name: str) -> None:
        self._array = array
        self._name = name
        self.shape = tuple(int(n) for n in array.shape)
        self.dtype = np.dtype(array.dtype)
        self.ndim = len(self.shape)

    def __getitem__(self, key: Any) -> np.ndarray:
        try:
            return np.asarray(self._array[key])
        except InvalidInputError:
            raise
        except Exception as exc:
            raise InvalidInputError(f"could not read {self._name}: {exc}") from exc


# ---------------------------------------------------------------------------- axes and dtypes


@dataclass(frozen=True)
class _Layout:
    """How a file's axes map to canonical c, z, y, x order."""

    axes: tuple[str, ...]
    shape: tuple[int, ...]
    axis_of: tuple[int | None, ...]
    read_tile: tuple[int, ...]


def _canonicalise(
    raw_axes: Sequence[str], raw_shape: Sequence[int], raw_tile: Sequence[int], where: str
) -> _Layout:
    """Drop singleton extra axes (and singleton c, z), refuse the rest, order as c, z, y, x."""
    keep: dict[str, int] = {}
    for i, (name, size) in enumerate(zip(raw_axes, raw_shape, strict=True)):
        if name in CANONICAL_ORDER and not (name in ("c", "z") and size == 1):
            if name in keep:
                raise InvalidInputError(f"{where}: axis {name!r} appears twice")
            keep[name] = i
        elif size == 1:
            continue
        elif name == "t":
            raise InvalidInputError(f"{where}: time series ({size} time points) are not supported")
        else:
            raise InvalidInputError(f"{where}: axis {name!r} of size {size} is not supported")
    if "y" not in keep or "x" not in keep:
        raise InvalidInputError(f"{where}: an image needs y and x axes, found {tuple(raw_axes)}")
    order = [a for a in CANONICAL_ORDER if a in keep]
    position = {keep[a]: pos for pos, a in enumerate(order)}
    return _Layout(
        axes=tuple(order),
        shape=tuple(int(raw_shape[keep[a]]) for a in order),
        axis_of=tuple(position.get(i) for i in range(len(raw_axes))),
        read_tile=tuple(int(raw_tile[keep[a]]) for a in order),
    )


def _parse_axes_override(axes: str, ndim: int, where: str) -> list[str]:
    names = list(axes.strip().lower())
    if len(names) != ndim or not set(names) <= {"t", "c", "z", "y", "x"}:
        raise InvalidInputError(
            f"{where}: axes {axes!r} do not fit a {ndim}-dimensional array "
            "(use letters from t, c, z, y, x, one per dimension)"
        )
    return names


def _check_dtype(dtype: np.dtype[Any], where: str) -> None:
    if dtype.kind in "biu" or (dtype.kind == "f" and dtype.itemsize <= 8):
        return
    what = {
        "c": "complex numbers",
        "O": "Python objects",
        "U": "text",
        "S": "bytes",
        "V": "structured records",
        "M": "dates",
        "m": "time spans",
    }.get(dtype.kind, str(dtype))
    raise InvalidInputError(
        f"{where}: data type {dtype} ({what}) is not supported; "
        "use integers (8-64 bit), floats (16-64 bit) or booleans"
    )


def image_output_dtype(dtype: np.dtype[Any]) -> np.dtype[Any]:
    """The stored dtype of an image: booleans become uint8, other floats float32 (Neuroglancer)."""
    if dtype.kind == "b":
        return np.dtype(np.uint8)
    if dtype.kind == "f" and dtype != np.float32:
        return np.dtype(np.float32)
    return dtype


def label_output_dtype(dtype: np.dtype[Any], where: str) -> np.dtype[Any]:
    """The stored dtype of a label image: unsigned integers (ids are never negative)."""
    if dtype.kind == "b":
        return np.dtype(np.uint8)
    if dtype.kind == "u":
        return dtype
    if dtype.kind == "i":
        return LABEL_DTYPES[np.dtype(dtype)]
    raise InvalidInputError(f"{where}: label images need an integer or boolean type, not {dtype}")


def _as_label_ids(block: np.ndarray, out: np.dtype[Any], where: str) -> np.ndarray:
    if block.dtype.kind == "i" and block.size and block.min() < 0:
        raise InvalidInputError(f"{where}: label images may not hold negative ids")
    return block.astype(out, copy=False)


# ---------------------------------------------------------------------------- TIFF


@contextlib.contextmanager
def _tifffile_warnings() -> Iterator[list[str]]:
    """Collect tifffile's logged warnings: it logs, rather than raises, on broken IFD chains."""
    messages: list[str] = []

    class Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            messages.append(record.getMessage())

    logger = logging.getLogger("tifffile")
    handler = Collect(level=logging.WARNING)
    previous = logger.propagate
    logger.addHandler(handler)
    logger.propagate = False
    try:
        yield messages
    finally:
        logger.removeHandler(handler)
        logger.propagate = previous


def _check_tiff_complete(
    tif: tifffile.TiffFile, series: Any, path: Path, warnings: list[str]
) -> None:
    name = path.name
    broken = [m for m in warnings if re.search(r"invalid|corrupt|fail|truncat", m, re.I)]
    if broken:
        raise InvalidInputError(f"{name} is truncated or corrupt: {broken[0].split('> ')[-1]}")
    size = path.stat().st_size
    if series.dataoffset is not None and series.dataoffset + series.nbytes > size:
        raise InvalidInputError(
            f"{name} is truncated: its image data runs past the end of the file"
        )
    for page in tif.pages:
        if page is None or not hasattr(page, "dataoffsets"):
            continue
        for offset, count in zip(page.dataoffsets, page.databytecounts, strict=False):
            if offset + count > size:
                raise InvalidInputError(
                    f"{name} is truncated: image data runs past the end of the file"
                )


def _ome_physical_size(
    tif: tifffile.TiffFile, axes: Sequence[str]
) -> tuple[tuple[float, ...] | None, str | None]:
    """PhysicalSize{Z,Y,X} of the first OME image (OME's default unit is the micrometre)."""
    try:
        root = ElementTree.fromstring(tif.ome_metadata or "")
    except ElementTree.ParseError as exc:
        raise InvalidInputError(f"OME-XML metadata is not valid XML: {exc}") from exc
    pixels = next(
        (el for el in root.iter() if el.tag.endswith("}Pixels") or el.tag == "Pixels"), None
    )
    if pixels is None:
        return None, None
    sizes: list[float] = []
    units: list[str] = []
    for axis in (a for a in axes if a in SPATIAL_AXES):
        value = pixels.get(f"PhysicalSize{axis.upper()}")
        if value is None:
            return None, None
        sizes.append(float(value))
        raw = pixels.get(f"PhysicalSize{axis.upper()}Unit", "µm")
        units.append(normalise_unit(raw))
    return _common_unit(sizes, units, "OME-XML")


def _common_unit(
    sizes: Sequence[float], units: Sequence[str], where: str
) -> tuple[tuple[float, ...], str]:
    if len(set(units)) <= 1:
        return tuple(sizes), units[0] if units else DEFAULT_UNIT
    if not all(u in UNIT_METRES for u in units):
        raise InvalidInputError(f"{where}: spatial axes use different units {sorted(set(units))}")
    return tuple(
        s * UNIT_METRES[u] / UNIT_METRES["nanometer"] for s, u in zip(sizes, units, strict=True)
    ), "nanometer"


def _imagej_physical_size(
    tif: tifffile.TiffFile, axes: Sequence[str]
) -> tuple[tuple[float, ...] | None, str | None]:
    """Pixel size from the resolution tags and ImageJ's ``unit`` / ``spacing`` (z) entries."""
    meta = tif.imagej_metadata or {}
    unit = meta.get("unit")
    tags = tif.pages.first.tags
    if not unit or unit in ("pixel", "pixels") or "XResolution" not in tags:
        return None, None
    try:
        unit = normalise_unit(str(unit))
    except InvalidInputError:
        return None, None

    def pixel(tag: str) -> float:
        num, den = tags[tag].value
        return float(den) / float(num) if num else 1.0

    sizes = {
        "y": pixel("YResolution") if "YResolution" in tags else pixel("XResolution"),
        "x": pixel("XResolution"),
    }
    sizes["z"] = float(meta.get("spacing", 1.0))
    return tuple(sizes[a] for a in axes if a in SPATIAL_AXES), unit


def _tiff_axes(series_axes: str, shape: Sequence[int]) -> list[str]:
    names = [TIFF_AXIS_NAMES.get(a, a.lower()) for a in series_axes]
    unnamed = [i for i, a in enumerate(series_axes) if a in "QI" and shape[i] > 1]
    if len(unnamed) == 1 and "z" not in names:
        names[unnamed[0]] = "z"  # a plain multi-page TIFF is a z stack
    return names


def _open_tiff(path: Path, axes: str | None) -> _Source:
    name = path.name
    with _tifffile_warnings() as warnings:
        try:
            tif = tifffile.TiffFile(path)
        except Exception as exc:
            raise InvalidInputError(f"{name} is not a readable TIFF file: {exc}") from exc
        try:
            series = tif.series[0]
            shape = tuple(int(n) for n in series.shape)
            _check_tiff_complete(tif, series, path, warnings)
            raw_axes = (
                _parse_axes_override(axes, len(shape), name)
                if axes
                else _tiff_axes(series.axes, shape)
            )
            kind: SourceKind = "ome-tiff" if tif.is_ome else "tiff"
            try:
                data: Any = tifffile.memmap(path, mode="r")
                if tuple(data.shape) != shape:
                    raise ValueError("memory map does not match the series")
                tile: tuple[int, ...] = (1,) * len(shape)  # any region is cheap
            except Exception:
                store = series.aszarr()
                data = zarr.open_array(store, mode="r")
                tile = tuple(data.chunks)
        except InvalidInputError:
            tif.close()
            raise
        except Exception as exc:
            tif.close()
            raise InvalidInputError(f"{name} is not a readable TIFF image: {exc}") from exc
    try:
        _check_dtype(np.dtype(data.dtype), name)
        layout = _canonicalise(raw_axes, shape, tile, name)
        if tif.is_ome:
            voxel, unit = _ome_physical_size(tif, layout.axes)
        elif tif.is_imagej:
            voxel, unit = _imagej_physical_size(tif, layout.axes)
        else:
            voxel, unit = None, None
    except BaseException:
        tif.close()
        raise
    info = SourceInfo(kind, layout.shape, str(data.dtype), layout.axes, voxel, unit)
    return _Source(
        info,
        _GuardedReads(data, name),
        layout.axis_of,
        layout.read_tile,
        path.name.split(".")[0],
        closers=[tif.close],
    )


# ---------------------------------------------------------------------------- NumPy, OME-Zarr


def _open_npy(path: Path, axes: str | None) -> _Source:
    name = path.name
    try:
        data = np.load(path, mmap_mode="r", allow_pickle=False)
    except ValueError as exc:
        if "allow_pickle" in str(exc) or "object" in str(exc).lower():
            raise InvalidInputError(f"{name}: data type object (Python objects) is not supported")
        raise InvalidInputError(f"{name} is not a readable .npy file: {exc}") from exc
    except Exception as exc:
        raise InvalidInputError(f"{name} is not a readable .npy file: {exc}") from exc
    if not isinstance(data, np.ndarray):
        raise InvalidInputError(f"{name} is an .npz archive; save one array with numpy.save")
    _check_dtype(data.dtype, name)
    default = {2: "yx", 3: "zyx", 4: "czyx"}.get(data.ndim)
    if axes is None and default is None:
        raise InvalidInputError(
            f"{name} has {data.ndim} dimensions; images need 2 (y, x), 3 (z, y, x) "
            "or 4 (c, z, y, x)"
        )
    raw_axes = _parse_axes_override(axes or default or "", data.ndim, name)
    layout = _canonicalise(raw_axes, data.shape, (1,) * data.ndim, name)
    info = SourceInfo("npy", layout.shape, str(data.dtype), layout.axes)
    return _Source(info, _GuardedReads(data, name), layout.axis_of, layout.read_tile, path.stem)


def _multiscale_source(ms: Multiscale, name: str) -> _Source:
    where = ms.path.name
    raw_axes = list(ms.axes)
    spatial = list(ms.spatial_indices)
    if len(spatial) not in (2, 3):
        raise InvalidInputError(f"{where}: expected 2 or 3 spatial axes, found {len(spatial)}")
    for pos, axis_name in zip(spatial, SPATIAL_AXES[-len(spatial) :], strict=True):
        raw_axes[pos] = axis_name  # NGFF lets space axes have other names
    for i, t in enumerate(ms.axis_types):
        if t == "channel":
            raw_axes[i] = "c"
        elif t == "time":
            raw_axes[i] = "t"
    level0 = ms.levels[0]
    _check_dtype(np.dtype(level0.dtype), where)
    layout = _canonicalise(raw_axes, level0.shape, level0.chunks, where)
    canonical = layout.axes
    units = [ms.units[i] for i in spatial]
    sizes = [ms.scales[0][i] for i in spatial]
    kept = [i for i, pos in enumerate(spatial) if raw_axes[pos] in canonical]
    voxel: tuple[float, ...] | None = None
    unit: str | None = None
    if all(units[i] for i in kept):
        voxel, unit = _common_unit(
            [sizes[i] for i in kept], [normalise_unit(str(units[i])) for i in kept], where
        )
    elif not any(units):
        voxel = tuple(sizes[i] for i in kept)
    info = SourceInfo(
        "ome-zarr", layout.shape, str(level0.dtype), canonical, voxel, unit, ms.ngff_version
    )
    return _Source(info, _GuardedReads(level0, where), layout.axis_of, layout.read_tile, name)


def _label_name_allowed(name: str, store: str) -> None:
    """A store's own label image must follow the naming rule too (it becomes a layer)."""
    try:
        label_name_check(name)
    except InvalidInputError as exc:
        raise InvalidInputError(f"{store}: label name {name!r} is not allowed. {exc}") from None


def _open_ome_zarr(path: Path) -> _Source:
    source = _multiscale_source(open_multiscale(path), path.name.split(".")[0])
    for label in list_labels(path):
        _label_name_allowed(label, path.name)
        source.labels[label] = _multiscale_source(
            open_multiscale(path / LABELS_GROUP / label), label
        )
    return source


def _sniff(path: Path) -> str:
    with path.open("rb") as fh:
        head = fh.read(8)
    if head.startswith(NPY_MAGIC):
        return "npy"
    if head[:4] in TIFF_MAGIC:
        return "tiff"
    if head.startswith(b"PK\x03\x04"):
        raise InvalidInputError(f"{path.name} is a zip archive: extract it first")
    suffix = "".join(path.suffixes[-2:]).lower()
    if suffix.endswith((".tif", ".tiff")):
        raise InvalidInputError(f"{path.name} is not a TIFF file (no TIFF header)")
    if suffix.endswith(".npy"):
        raise InvalidInputError(f"{path.name} is not a .npy file (no NumPy header)")
    raise InvalidInputError(
        f"{path.name}: unsupported file type; use TIFF, OME-TIFF, .npy or an OME-Zarr directory"
    )


def _open_source(path: Path, *, axes: str | None, max_voxels: int | None) -> _Source:
    path = Path(path)
    if not path.exists():
        raise InvalidInputError(f"{path}: no such file or directory")
    if path.is_dir():
        if axes:
            raise InvalidInputError(f"{path.name}: OME-Zarr axes come from its metadata")
        source = _open_ome_zarr(path)
    elif _sniff(path) == "npy":
        source = _open_npy(path, axes)
    else:
        source = _open_tiff(path, axes)
    try:
        _check_size(source.info, path.name, max_voxels)
    except BaseException:
        source.close()
        raise
    return source


def open_source(path: Path, *, axes: str | None = None) -> _Source:
    """An input opened for reading in place (:mod:`pipeline.volumes` reads TIFFs through it):
    ``raw`` in the file's axis order, ``axis_of`` mapping its axes to canonical c, z, y, x."""
    return _open_source(path, axes=axes, max_voxels=None)


def _check_size(info: SourceInfo, where: str, max_voxels: int | None) -> None:
    if any(n == 0 for n in info.shape):
        raise InvalidInputError(f"{where} is empty: shape {info.shape}")
    limit = DEFAULT_MAX_VOXELS if max_voxels is None else max_voxels
    voxels = math.prod(info.shape)
    if voxels > limit:
        raise InvalidInputError(
            f"{where} has {voxels:,} voxels (shape {info.shape}), more than the limit of {limit:,}"
        )


def inspect_source(
    path: Path, *, axes: str | None = None, max_voxels: int | None = None
) -> SourceInfo:
    """Describe an input volume without reading its voxels; raise InvalidInputError if unusable.

    ``axes`` (e.g. ``"cyx"``) overrides the axes guessed for TIFF and ``.npy`` inputs.
    """
    source = _open_source(path, axes=axes, max_voxels=max_voxels)
    source.close()
    return source.info


# ---------------------------------------------------------------------------- conversion


def _resolve_voxel_size(
    info: SourceInfo, voxel_size: Sequence[float] | None, unit: str | None, where: str
) -> tuple[tuple[float, ...], str]:
    n_spatial = sum(a in SPATIAL_AXES for a in info.axes)
    if voxel_size is not None:
        sizes = tuple(float(v) for v in voxel_size)
        if len(sizes) == 3 and n_spatial == 2:
            sizes = sizes[1:]  # a z size given for a single plane
        if len(sizes) != n_spatial:
            raise InvalidInputError(
                f"{where} has {n_spatial} spatial axes {info.axes}: give {n_spatial} voxel sizes"
            )
        resolved_unit = unit or DEFAULT_UNIT
    elif info.voxel_size is not None:
        sizes = info.voxel_size
        resolved_unit = unit or info.unit or ""
        if not resolved_unit:
            raise InvalidInputError(f"{where} has no unit for its voxel size: give --unit")
    else:
        axes = " ".join(a.upper() for a in info.axes if a in SPATIAL_AXES)
        raise InvalidInputError(
            f"{where} has no voxel size in its metadata: give one with --voxel-size {axes}"
        )
    if not all(math.isfinite(s) and s > 0 for s in sizes):
        raise InvalidInputError(f"voxel sizes must be positive numbers, got {sizes}")
    return sizes, normalise_unit(resolved_unit)


def _open_label_sources(image: _Source, labels: dict[str, Path] | None) -> dict[str, _Source]:
    """Open and check every label image (the input's own and the given ones) before writing."""
    opened: dict[str, _Source] = dict(image.labels)
    image_spatial = tuple(
        n for a, n in zip(image.info.axes, image.info.shape, strict=True) if a != "c"
    )
    try:
        for name, label_path in (labels or {}).items():
            label_name_check(name)
            if name in opened:
                raise InvalidInputError(f"label name {name!r} is given twice")
            opened[name] = _open_source(Path(label_path), axes=None, max_voxels=None)
        for name, label in opened.items():
            where = f"label {name!r}"
            if "c" in label.info.axes:
                raise InvalidInputError(f"{where} has channels {label.info.shape}: labels need one")
            if label.info.shape != image_spatial:
                raise InvalidInputError(
                    f"{where} has shape {label.info.shape} but the image's spatial shape is "
                    f"{image_spatial}: they must match"
                )
            label_output_dtype(np.dtype(label.info.dtype), where)
    except BaseException:
        for name, label in opened.items():
            if name not in image.labels:
                label.close()
        raise
    return opened


def _layer_info(
    path: str,
    axes: Sequence[str],
    shape: Sequence[int],
    dtype: np.dtype[Any],
    voxel: Sequence[float],
    unit: str,
    levels: int,
    contrast: tuple[float, float] | None,
    version: str = NGFF_WRITE_VERSION,
) -> LayerInfo:
    channels = int(shape[list(axes).index("c")]) if "c" in axes else 1
    return LayerInfo(
        path=path,
        ngff_version=version,
        shape=tuple(int(n) for n in shape),
        axes=tuple(axes),
        dtype=str(dtype),
        voxel_size=tuple(float(v) for v in voxel),
        unit=unit,
        channels=channels,
        levels=levels,
        contrast=contrast,
    )


def convert_to_ome_zarr(
    image_path: Path,
    out_dir: Path,
    *,
    voxel_size: tuple[float, ...] | None = None,
    unit: str | None = None,
    labels: dict[str, Path] | None = None,
    chunk: int = 64,
    max_voxels: int | None = None,
    axes: str | None = None,
    progress: ProgressCallback = no_progress,
) -> ConversionResult:
    """Write ``out_dir/image.ome.zarr`` (NGFF 0.5) from an input volume and optional labels.

    Label images of an OME-Zarr input are carried over alongside those given in ``labels``.
    """
    if not 8 <= chunk <= 1024:
        raise InvalidInputError(f"chunk size {chunk} is out of range (8-1024)")
    out_dir = Path(out_dir)
    final = out_dir / IMAGE_STORE
    if final.exists():
        raise InvalidInputError(f"{out_dir} already contains {IMAGE_STORE}")
    image = _open_source(Path(image_path), axes=axes, max_voxels=max_voxels)
    sources: dict[str, _Source] = {}
    try:
        where = Path(image_path).name
        sizes, resolved_unit = _resolve_voxel_size(image.info, voxel_size, unit, where)
        sources = _open_label_sources(image, labels)
        created_dir = not out_dir.exists()
        out_dir.mkdir(parents=True, exist_ok=True)
        partial = out_dir / f".{IMAGE_STORE}.partial-{uuid.uuid4().hex[:12]}"
        try:
            result = _write_store(image, sources, partial, sizes, resolved_unit, chunk, progress)
            os.rename(partial, final)
        except BaseException:
            shutil.rmtree(partial, ignore_errors=True)
            if created_dir:
                with contextlib.suppress(OSError):
                    out_dir.rmdir()
            raise
    finally:
        for label in sources.values():
            label.close()
        image.close()
    return result


def _write_store(
    image: _Source,
    labels: dict[str, _Source],
    partial: Path,
    voxel: tuple[float, ...],
    unit: str,
    chunk: int,
    progress: ProgressCallback,
) -> ConversionResult:
    info = image.info
    spatial_shape = [n for a, n in zip(info.axes, info.shape, strict=True) if a != "c"]
    plan = pyramid_factors(spatial_shape, voxel, spatial_chunk_edge(len(spatial_shape), chunk))
    group = create_image_group(partial)
    out_dtype = image_output_dtype(np.dtype(info.dtype))
    image_regions = ArrayRegions(image.raw, image.axis_of, out_dtype, image.read_tile)
    written = write_pyramid(
        image_regions,
        group,
        axes=info.axes,
        voxel_size=voxel,
        unit=unit,
        plan=plan,
        chunk=chunk,
        name=image.name,
        stage="image",
        progress=progress,
    )
    contrast = compute_contrast(written.levels[-1])
    channels = info.shape[info.axes.index("c")] if "c" in info.axes else 1
    write_omero(group, channels, out_dtype, contrast)
    label_infos: dict[str, LayerInfo] = {}
    spatial_axes = tuple(a for a in info.axes if a != "c")
    for name, label in labels.items():
        where = f"label {name!r}"
        label_dtype = label_output_dtype(np.dtype(label.info.dtype), where)
        ids = ArrayRegions(
            label.raw,
            label.axis_of,
            label_dtype,
            label.read_tile,
            functools.partial(_as_label_ids, out=label_dtype, where=where),
        )
        label_written = write_label_image(
            group,
            name,
            ids,
            axes=spatial_axes,
            voxel_size=voxel,
            unit=unit,
            plan=plan,
            chunk=chunk,
            progress=progress,
        )
        label_infos[name] = _layer_info(
            label_store_path(name),
            spatial_axes,
            label.info.shape,
            label_dtype,
            voxel,
            unit,
            len(label_written.levels),
            None,
        )
    image_info = _layer_info(
        IMAGE_STORE, info.axes, info.shape, out_dtype, voxel, unit, len(written.levels), contrast
    )
    return ConversionResult(image=image_info, labels=label_infos)


# ---------------------------------------------------------------------------- registering


def _registered_info(ms: Multiscale, path: str, contrast: bool) -> LayerInfo:
    unit = ms.unit or ""
    if unit:
        unit = normalise_unit(unit)
    return _layer_info(
        path,
        ms.axes,
        ms.levels[0].shape,
        np.dtype(ms.levels[0].dtype),
        ms.voxel_size,
        unit,
        len(ms.levels),
        compute_contrast(ms.levels[-1]) if contrast else None,
        ms.ngff_version,
    )


def read_ome_zarr_info(path: Path) -> tuple[LayerInfo, dict[str, LayerInfo]]:
    """Describe an existing OME-Zarr 0.4/0.5 image and its labels, to register it in place.

    Paths are relative to the store: ``""`` for the image, ``labels/<name>`` for labels.
    A missing unit in the metadata is reported as ``""``.
    """
    path = Path(path)
    image = _registered_info(open_multiscale(path), "", contrast=True)
    labels: dict[str, LayerInfo] = {}
    for name in list_labels(path):
        _label_name_allowed(name, path.name)
        labels[name] = _registered_info(
            open_multiscale(path / LABELS_GROUP / name), label_group_path(name), contrast=False
        )
    return image, labels
