"""Chunked, content-addressed storage of a painted uint32 label volume covering one task box.

A box's labels are cut into chunks (default 64^3, clipped to the box where it is smaller). Each
chunk is stored once, as a blob named by the SHA-256 of its bytes, so a version of the volume is
only a small map chunk index -> blob key (:mod:`pipeline.label_versions`) and a save writes
just the chunks it changed (copy-on-write): older versions keep pointing at their blobs.

A blob is exactly what Zarr writes for that chunk, in v2 and v3 alike: the full chunk (edge
chunks padded with the fill value 0), uint32 little-endian in C order, compressed by one zstd
frame. So the same bytes can be served as chunk files to Neuroglancer's ``zarr2://`` (compressor
``zstd``) or ``zarr3://`` (codecs ``bytes`` + ``zstd``) data sources, both of which Neuroglancer
2.41 decodes (:mod:`pipeline.label_export` writes the metadata), and exported by copying.
An all-zero chunk is never stored: it is absent from the map, as Zarr leaves it absent and
Neuroglancer reads a 404 as fill value.

Blob writes are atomic (a temporary file renamed into place, fsynced with its directory when
``durable``), so a crash leaves either the whole blob or none; a blob is checked against its
name when read back. Chunk arrays arriving from outside are checked here (shape, dtype, ids,
payload size) with :class:`InvalidInputError`, before anything is written.
"""

from __future__ import annotations

import hashlib
import math
import os
import re
import threading
import time
import zlib
from collections.abc import Collection, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import numpy.typing as npt
from numcodecs import Zstd

from pipeline.errors import InvalidInputError

ChunkIndex = tuple[int, int, int]
Triple = tuple[int, int, int]
LabelArray = npt.NDArray[np.uint32]
PayloadEncoding = Literal["raw", "gzip"]

LABEL_DTYPE = np.dtype("<u4")
MAX_ID = 2**32 - 1
DEFAULT_CHUNK: Triple = (64, 64, 64)
ZSTD_LEVEL = 1  # as small as level 3 on label chunks here, and faster to write
CODEC = Zstd(level=ZSTD_LEVEL)
MAX_BOX_VOXELS = 1024**3
MAX_CHUNK_VOXELS = 256**3
MAX_CHUNKS = 65_536  # per box: keeps a version's map small enough for a database row
GZIP_OVERHEAD = 1 << 16  # a gzip payload longer than the raw chunk plus this is refused
WRITE_WORKERS = 4  # threads encoding and writing blobs (zstd and fsync release the GIL)
_KEY = re.compile(r"[0-9a-f]{64}")


class PayloadTooLargeError(InvalidInputError):
    """A chunk payload longer than its chunk can be (the site may answer 413)."""


class BlobError(Exception):
    """A blob a version refers to is missing or damaged: the store is broken, not the input."""


def _int_triple(value: Any, what: str, minimum: int) -> Triple:
    try:
        items = tuple(value)
    except TypeError:
        raise InvalidInputError(f"{what} must be three integers (z, y, x), not {value!r}")
    if len(items) != 3 or not all(
        isinstance(v, int | np.integer) and not isinstance(v, bool | np.bool_) for v in items
    ):
        raise InvalidInputError(f"{what} must be three integers (z, y, x), not {value!r}")
    z, y, x = (int(v) for v in items)
    if min(z, y, x) < minimum:
        raise InvalidInputError(f"{what} must be at least {minimum} on every axis, not {value!r}")
    return (z, y, x)


def _float_triple(value: Any, what: str, positive: bool) -> tuple[float, float, float]:
    try:
        z, y, x = (float(v) for v in value)
    except (TypeError, ValueError):
        raise InvalidInputError(f"{what} must be three numbers (z, y, x), not {value!r}")
    if not all(math.isfinite(v) and (v > 0 or not positive) for v in (z, y, x)):
        raise InvalidInputError(
            f"{what} must be {'positive' if positive else 'finite'} numbers, not {value!r}"
        )
    return (z, y, x)


@dataclass(frozen=True)
class LabelGeometry:
    """Where a box's label volume lies and how it is chunked.

    ``start`` is the box's first voxel in the image's full-resolution grid (z y x) and
    ``image_origin_nm`` the image's own translation, so an export lands at the box's physical
    position (``origin_nm``) and a training export at the right voxels of the whole image.
    """

    shape: Triple
    chunk: Triple = DEFAULT_CHUNK
    voxel_size_nm: tuple[float, float, float] = (1.0, 1.0, 1.0)
    start: Triple = (0, 0, 0)
    image_origin_nm: tuple[float, float, float] = (0.0, 0.0, 0.0)

    def __post_init__(self) -> None:
        shape = _int_triple(self.shape, "the box shape", 1)
        chunk = _int_triple(self.chunk, "the chunk shape", 1)
        # A chunk larger than the box would only pad every blob with zeros.
        chunk = (min(chunk[0], shape[0]), min(chunk[1], shape[1]), min(chunk[2], shape[2]))
        object.__setattr__(self, "shape", shape)
        object.__setattr__(self, "chunk", chunk)
        object.__setattr__(self, "start", _int_triple(self.start, "the box start", 0))
        object.__setattr__(
            self, "voxel_size_nm", _float_triple(self.voxel_size_nm, "the voxel size", True)
        )
        object.__setattr__(
            self, "image_origin_nm", _float_triple(self.image_origin_nm, "the image origin", False)
        )
        if math.prod(shape) > MAX_BOX_VOXELS:
            raise InvalidInputError(f"a label box holds at most 1024^3 voxels, not {shape}")
        if math.prod(chunk) > MAX_CHUNK_VOXELS:
            raise InvalidInputError(f"a label chunk holds at most 256^3 voxels, not {chunk}")
        if self.chunk_count > MAX_CHUNKS:
            raise InvalidInputError(
                f"box {shape} in chunks of {chunk} makes {self.chunk_count} chunks; "
                f"at most {MAX_CHUNKS}: use larger chunks"
            )

    @property
    def grid(self) -> Triple:
        """Chunks along each axis."""
        return (
            -(-self.shape[0] // self.chunk[0]),
            -(-self.shape[1] // self.chunk[1]),
            -(-self.shape[2] // self.chunk[2]),
        )

    @property
    def chunk_count(self) -> int:
        return math.prod(self.grid)

    @property
    def origin_nm(self) -> tuple[float, float, float]:
        """Physical position of the box's voxel (0, 0, 0): the export's translation."""
        o, s, v = self.image_origin_nm, self.start, self.voxel_size_nm
        return (o[0] + s[0] * v[0], o[1] + s[1] * v[1], o[2] + s[2] * v[2])

    def chunk_indices(self) -> Iterator[ChunkIndex]:
        gz, gy, gx = self.grid
        for z in range(gz):
            for y in range(gy):
                for x in range(gx):
                    yield (z, y, x)

    def index_check(self, index: Any) -> ChunkIndex:
        """``index`` as a chunk index of this box, or :class:`InvalidInputError`."""
        checked = _int_triple(index, "a chunk index", 0)
        if any(i >= n for i, n in zip(checked, self.grid, strict=True)):
            raise InvalidInputError(
                f"chunk {checked} lies outside the box: it has {self.grid} chunks (z, y, x)"
            )
        return checked

    def chunk_slices(self, index: ChunkIndex) -> tuple[slice, slice, slice]:
        """The box voxels chunk ``index`` covers (clipped at the box edge)."""
        a, b, c = (
            slice(i * n, min((i + 1) * n, s))
            for i, n, s in zip(index, self.chunk, self.shape, strict=True)
        )
        return (a, b, c)

    def chunk_shape_at(self, index: ChunkIndex) -> Triple:
        """Shape of chunk ``index`` inside the box (smaller than ``chunk`` at the far edges)."""
        a, b, c = self.chunk_slices(index)
        return (a.stop - a.start, b.stop - b.start, c.stop - c.start)

    def to_json(self) -> dict[str, Any]:
        return {
            "shape": list(self.shape),
            "chunk": list(self.chunk),
            "voxel_size_nm": list(self.voxel_size_nm),
            "start": list(self.start),
            "image_origin_nm": list(self.image_origin_nm),
        }

    @classmethod
    def from_json(cls, data: Any) -> LabelGeometry:
        if not isinstance(data, Mapping) or "shape" not in data:
            raise InvalidInputError("label geometry must be an object with at least a shape")
        known = {"shape", "chunk", "voxel_size_nm", "start", "image_origin_nm"}
        unknown = sorted(set(data) - known)
        if unknown:
            raise InvalidInputError(f"label geometry has unknown keys: {', '.join(unknown)}")
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in data.items()})


# --- chunks: validation and encoding -------------------------------------------------------------


def chunk_check(array: Any, geometry: LabelGeometry, index: Any) -> LabelArray:
    """Chunk ``index``'s new content as a C-ordered little-endian uint32 array, checked.

    Any integer dtype is accepted when every id fits uint32 (a JSON list arrives as int64);
    floats, booleans, negative ids and ids above 2^32 - 1 are refused with the reason.
    """
    index = geometry.index_check(index)
    expected = geometry.chunk_shape_at(index)
    try:
        data = array if isinstance(array, np.ndarray) else np.asarray(array)
    except (TypeError, ValueError) as exc:
        raise InvalidInputError(f"chunk {index} is not an array of label ids ({exc})") from None
    if data.shape != expected:
        raise InvalidInputError(
            f"chunk {index} must have shape {expected} (z, y, x), not {tuple(data.shape)}"
        )
    if data.dtype.kind not in "iu":
        raise InvalidInputError(
            f"chunk {index}: label ids must be unsigned 32-bit integers, not {data.dtype} values"
        )
    if data.dtype != LABEL_DTYPE and data.size:
        low, high = int(data.min()), int(data.max())
        if low < 0:
            raise InvalidInputError(f"chunk {index}: label ids must not be negative (found {low})")
        if high > MAX_ID:
            raise InvalidInputError(
                f"chunk {index}: label ids must fit in 32 bits (at most {MAX_ID}, found {high})"
            )
    return np.ascontiguousarray(data, dtype=LABEL_DTYPE)


def chunk_from_payload(
    payload: bytes,
    geometry: LabelGeometry,
    index: Any,
    encoding: PayloadEncoding = "raw",
) -> LabelArray:
    """Chunk ``index`` from a request body: uint32 little-endian, z y x C order, raw or gzip.

    The size must be exactly the chunk's (``chunk_shape_at``) times 4 bytes; a gzip body is
    inflated no further than that, so a compression bomb costs nothing.
    """
    index = geometry.index_check(index)
    shape = geometry.chunk_shape_at(index)
    expected = math.prod(shape) * LABEL_DTYPE.itemsize
    what = f"chunk {index} of shape {shape} needs {expected} bytes (uint32 little-endian, z y x)"
    if encoding == "raw":
        raw = payload
    elif encoding == "gzip":
        if len(payload) > expected + GZIP_OVERHEAD:
            raise PayloadTooLargeError(
                f"the gzip payload of {len(payload)} bytes is too large: {what}"
            )
        inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
        try:
            raw = inflater.decompress(payload, expected + 1)
        except zlib.error as exc:
            raise InvalidInputError(f"chunk {index}: the payload is not valid gzip ({exc})")
        if len(raw) > expected or inflater.unconsumed_tail:
            raise PayloadTooLargeError(f"the payload inflates to more than the chunk: {what}")
        if not inflater.eof:
            raise InvalidInputError(f"chunk {index}: the gzip payload is truncated")
    else:
        raise InvalidInputError(f"unknown payload encoding {encoding!r}: use raw or gzip")
    if len(raw) > expected:
        raise PayloadTooLargeError(f"the payload has {len(raw)} bytes, too many: {what}")
    if len(raw) < expected:
        raise InvalidInputError(f"the payload has {len(raw)} bytes, too few: {what}")
    return np.frombuffer(raw, dtype=LABEL_DTYPE).reshape(shape)


def chunk_encode(chunk: LabelArray, geometry: LabelGeometry, index: ChunkIndex) -> bytes | None:
    """The blob of a checked chunk (see the module docstring), or None when it is all zero."""
    if not chunk.any():
        return None
    if chunk.shape != geometry.chunk:
        padded = np.zeros(geometry.chunk, dtype=LABEL_DTYPE)
        padded[tuple(slice(0, n) for n in chunk.shape)] = chunk
        chunk = padded
    return bytes(CODEC.encode(chunk))


def chunk_decode(blob: bytes, geometry: LabelGeometry, index: ChunkIndex) -> LabelArray:
    """The part inside the box of chunk ``index`` stored as ``blob``."""
    try:
        flat = np.frombuffer(CODEC.decode(blob), dtype=LABEL_DTYPE)
    except RuntimeError as exc:
        raise BlobError(f"chunk {index}: cannot decode its blob ({exc})") from exc
    if flat.size != math.prod(geometry.chunk):
        raise BlobError(f"chunk {index}: its blob holds {flat.size} voxels, not a whole chunk")
    full = flat.reshape(geometry.chunk)
    shape = geometry.chunk_shape_at(index)
    return full if shape == geometry.chunk else full[tuple(slice(0, n) for n in shape)]


# --- blobs ----------------------------------------------------------------------------------------


def blob_key_check(key: Any) -> str:
    """``key`` if it is a blob key (64 lowercase hex digits): keys become file names."""
    if not isinstance(key, str) or not _KEY.fullmatch(key):
        raise InvalidInputError(f"{key!r} is not a blob key (64 lowercase hex digits)")
    return key


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class BlobStore:
    """Immutable blobs under ``root/<first two hex digits>/<key>``, shared by many versions.

    ``durable`` fsyncs each blob and its directory before :meth:`put_many` returns, so a
    version that refers to them and is committed afterwards survives a power loss too.
    """

    def __init__(self, root: Path, *, durable: bool = True) -> None:
        self.root = Path(root)
        self.durable = durable

    def path(self, key: str) -> Path:
        key = blob_key_check(key)
        return self.root / key[:2] / key

    def _write(self, data: bytes) -> tuple[str, Path | None]:
        """Store ``data``; the key, and the directory to fsync when it was newly written."""
        key = hashlib.sha256(data).hexdigest()
        path = self.path(key)
        try:
            if path.stat().st_size == len(data):
                return key, None  # already stored by an earlier save (same content, same key)
        except FileNotFoundError:
            pass
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{key}.{os.getpid()}.{threading.get_ident()}.tmp")
        try:
            with open(tmp, "wb") as file:
                file.write(data)
                if self.durable:
                    file.flush()
                    os.fsync(file.fileno())
            os.replace(tmp, path)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        return key, path.parent

    def put(self, data: bytes) -> str:
        return self.put_many([data])[0]

    def put_many(self, blobs: Sequence[bytes], workers: int = WRITE_WORKERS) -> list[str]:
        """Store every blob (in parallel); their keys in order."""
        if len(blobs) > 1 and workers > 1:
            with ThreadPoolExecutor(max_workers=min(workers, len(blobs))) as pool:
                written = list(pool.map(self._write, blobs))
        else:
            written = [self._write(blob) for blob in blobs]
        if self.durable:
            for directory in {d for _, d in written if d is not None}:
                _fsync_dir(directory)
        return [key for key, _ in written]

    def get(self, key: str) -> bytes:
        """The blob's bytes, checked against its key."""
        try:
            data = self.path(key).read_bytes()
        except FileNotFoundError:
            raise BlobError(f"blob {key} is missing from {self.root}") from None
        if hashlib.sha256(data).hexdigest() != key:
            raise BlobError(f"blob {key} in {self.root} is damaged (its content does not match)")
        return data

    def keys(self) -> Iterator[str]:
        if not self.root.is_dir():
            return
        for shard in sorted(self.root.iterdir()):
            if shard.is_dir() and len(shard.name) == 2:
                for entry in sorted(shard.iterdir()):
                    if _KEY.fullmatch(entry.name):
                        yield entry.name

    def remove_unreferenced(self, live: Collection[str], min_age_s: float = 3600.0) -> int:
        """Delete blobs no version refers to; the number deleted.

        Only blobs older than ``min_age_s`` go: a save writes its blobs before its version is
        committed, so a younger unreferenced blob may belong to a save in progress.
        """
        cutoff = time.time() - min_age_s
        removed = 0
        for key in list(self.keys()):
            path = self.path(key)
            if key not in live and path.stat().st_mtime < cutoff:
                path.unlink(missing_ok=True)
                removed += 1
        return removed


def chunks_write(
    blobs: BlobStore,
    geometry: LabelGeometry,
    chunks: Mapping[Any, Any],
    workers: int = WRITE_WORKERS,
) -> dict[ChunkIndex, str | None]:
    """Check, encode and store new chunk contents; chunk index -> blob key (None: all zero).

    Every chunk is checked before any blob is written, so a bad one saves nothing. The result
    is what :func:`pipeline.label_versions.version_next` takes to make the next version.
    """

    def encode(item: tuple[Any, Any]) -> tuple[ChunkIndex, bytes | None]:
        index = geometry.index_check(item[0])
        return index, chunk_encode(chunk_check(item[1], geometry, index), geometry, index)

    items = list(chunks.items())
    if len(items) > 1 and workers > 1:
        with ThreadPoolExecutor(max_workers=min(workers, len(items))) as pool:
            encoded = list(pool.map(encode, items))
    else:
        encoded = [encode(item) for item in items]
    if len({index for index, _ in encoded}) != len(encoded):
        raise InvalidInputError("a chunk index is given twice")
    present = [(index, blob) for index, blob in encoded if blob is not None]
    keys = blobs.put_many([blob for _, blob in present], workers)
    written: dict[ChunkIndex, str | None] = {index: None for index, _ in encoded}
    written.update((index, key) for (index, _), key in zip(present, keys, strict=True))
    return written


# --- reading ------------------------------------------------------------------------------------


def chunk_read(
    blobs: BlobStore, geometry: LabelGeometry, chunk_map: Mapping[ChunkIndex, str], index: Any
) -> LabelArray:
    """Chunk ``index`` of a version (its ``chunks`` map) inside the box; zeros when absent."""
    index = geometry.index_check(index)
    key = chunk_map.get(index)
    if key is None:
        return np.zeros(geometry.chunk_shape_at(index), dtype=LABEL_DTYPE)
    return chunk_decode(blobs.get(key), geometry, index)


def chunk_encoded(
    blobs: BlobStore, chunk_map: Mapping[ChunkIndex, str], index: ChunkIndex
) -> bytes | None:
    """The stored bytes of chunk ``index`` (a Zarr chunk file), or None: a 404, fill value."""
    key = chunk_map.get(index)
    return None if key is None else blobs.get(key)


def region_check(geometry: LabelGeometry, region: Sequence[slice] | None) -> tuple[slice, ...]:
    """``region`` (three slices, steps of 1, None ends allowed) as bounded slices in the box."""
    if region is None:
        return tuple(slice(0, n) for n in geometry.shape)
    if len(region) != 3 or not all(isinstance(s, slice) for s in region):
        raise InvalidInputError("a region is three slices (z, y, x)")
    out = []
    for s, n in zip(region, geometry.shape, strict=True):
        if s.step not in (None, 1):
            raise InvalidInputError("a region's slices must have step 1")
        lo = 0 if s.start is None else int(s.start)
        hi = n if s.stop is None else int(s.stop)
        if not 0 <= lo < hi <= n:
            raise InvalidInputError(
                f"region {tuple(region)} is empty or leaves the box {geometry.shape}"
            )
        out.append(slice(lo, hi))
    return tuple(out)


def chunks_touching(
    geometry: LabelGeometry, region: Sequence[slice] | None = None
) -> list[ChunkIndex]:
    """The chunks a region of the box overlaps, in scan order (the whole box without one)."""
    bounded = region_check(geometry, region)
    ranges = [
        range(s.start // c, (s.stop - 1) // c + 1)
        for s, c in zip(bounded, geometry.chunk, strict=True)
    ]
    return [(z, y, x) for z in ranges[0] for y in ranges[1] for x in ranges[2]]


def labels_read(
    blobs: BlobStore,
    geometry: LabelGeometry,
    chunk_map: Mapping[ChunkIndex, str],
    region: Sequence[slice] | None = None,
) -> LabelArray:
    """A version's labels (its ``chunks`` map) in the whole box, or in ``region`` of it."""
    bounded = region_check(geometry, region)
    out = np.zeros(tuple(s.stop - s.start for s in bounded), dtype=LABEL_DTYPE)
    for index in chunks_touching(geometry, bounded):
        key = chunk_map.get(index)
        if key is None:
            continue
        chunk = chunk_decode(blobs.get(key), geometry, index)
        src, dst = [], []
        for s, c, r in zip(geometry.chunk_slices(index), chunk.shape, bounded, strict=True):
            lo, hi = max(s.start, r.start), min(s.start + c, r.stop)
            src.append(slice(lo - s.start, hi - s.start))
            dst.append(slice(lo - r.start, hi - r.start))
        out[tuple(dst)] = chunk[tuple(src)]
    return out


# --- diffing ------------------------------------------------------------------------------------


def chunks_changed(
    old: npt.ArrayLike,
    new: npt.ArrayLike,
    geometry: LabelGeometry,
    offset: Sequence[int] = (0, 0, 0),
) -> list[ChunkIndex]:
    """The chunks in which ``new`` differs from ``old``: the only ones a save needs to send.

    ``old`` and ``new`` cover the same region, the whole box or a painted part of it whose
    first voxel is ``offset`` in the box.
    """
    a, b = np.asarray(old), np.asarray(new)
    if a.shape != b.shape or a.ndim != 3:
        raise InvalidInputError(f"old and new must be 3D of one shape, not {a.shape} and {b.shape}")
    start = _int_triple(offset, "the offset", 0)
    region = tuple(slice(o, o + n) for o, n in zip(start, a.shape, strict=True))
    differs = a != b
    changed = []
    for index in chunks_touching(geometry, region):
        part = tuple(
            slice(max(s.start - o, 0), min(s.stop - o, n))
            for s, o, n in zip(geometry.chunk_slices(index), start, a.shape, strict=True)
        )
        if differs[part].any():
            changed.append(index)
    return changed


def chunks_cut(
    labels: npt.ArrayLike, geometry: LabelGeometry, indices: Iterable[Any] | None = None
) -> dict[ChunkIndex, npt.NDArray[Any]]:
    """Chunks (views) of a whole-box array: every one, or those of ``indices``."""
    array = np.asarray(labels)
    if array.shape != geometry.shape:
        raise InvalidInputError(
            f"labels of shape {array.shape} do not cover the box {geometry.shape}"
        )
    chosen = (
        geometry.chunk_indices() if indices is None else (geometry.index_check(i) for i in indices)
    )
    return {index: array[geometry.chunk_slices(index)] for index in chosen}
