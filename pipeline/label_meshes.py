"""Neuroglancer meshes of a painted labels version, made on demand and cached on disk.

A version (its chunk map, :mod:`pipeline.label_store`) gets a Neuroglancer precomputed legacy mesh
source: ``info`` (``neuroglancer_legacy_mesh``, pointing at ``segment_properties``), one manifest
``<id>:0`` per object and the objects' volume, surface and sphericity as segment properties,
measured by the pipeline's own code (:mod:`pipeline.meshing`, :mod:`pipeline.morphometrics`).
Vertices are in nm at the box's physical position (the geometry's voxel size and origin), as
:func:`pipeline.meshing.build_meshes` places the meshes of an OME-Zarr label image.

Cache layout under ``root`` (one per campaign, shared by its assignments)::

    <version key>/meshes/info, <id>:0, segment_properties/info   one per distinct version
    fragments/<object key>                                     one per distinct object content
    objects/<object key>.json                                  its surface area and face count

The version key hashes the geometry and the chunk map, so a restore to earlier labels, or two
versions with the same labels, share one directory. The object key hashes one object's voxels
(its mask, where it lies, the voxel size and origin), so a save re-meshes only the objects whose
voxels changed and reuses every other fragment. A manifest names its fragment
``../../fragments/<object key>``: served at ``.../labels/v<n>/meshes/`` (and laid out so on disk)
that is one URL per object content, whatever the version, so a browser already holding an
unchanged object's fragment (immutable) does not fetch it again after a save.

Concurrent requests for one version: a file lock per version key serialises the builders, and
the version directory appears by one rename only when complete; fragments are written through a
temporary file and a rename, so a reader never sees half of one.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import math
import os
import shutil
import threading
from collections import OrderedDict
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pipeline.label_store import (
    LABEL_DTYPE,
    BlobStore,
    ChunkIndex,
    LabelArray,
    LabelGeometry,
    chunk_read,
    chunks_touching,
    region_check,
)
from pipeline.meshing import DEFAULT_SIMPLIFY_RATIO, mesh_labels_object, write_properties
from pipeline.morphometrics import LabelStats, label_stats, object_table
from pipeline.precomputed import encode_fragment, manifest_name, write_mesh_info

MESHES = "meshes"
FRAGMENTS = "fragments"
OBJECTS = "objects"
LOCKS = ".locks"
FRAGMENT_REF = "../../" + FRAGMENTS + "/"
# Bump when the meshes of unchanged voxels would come out differently (meshing code changed).
MESH_CODE_VERSION = 1
CHUNK_CACHE_BYTES = 64 * 1024**2  # decoded chunks kept while meshing one version


@dataclass(frozen=True)
class VersionMeshes:
    """A version's mesh source: its directory, and what building it took."""

    key: str
    path: Path  # <root>/<key>/meshes
    object_ids: tuple[int, ...]
    meshed: tuple[int, ...]  # ids meshed by this call (empty when the version was cached)
    reused: tuple[int, ...]  # ids whose fragment an earlier version had made


def version_key(
    geometry: LabelGeometry,
    chunks: Mapping[ChunkIndex, str],
    simplify_ratio: float = DEFAULT_SIMPLIFY_RATIO,
) -> str:
    """The cache key of a version's meshes: its geometry, chunk map and meshing settings."""
    payload = {
        "code": MESH_CODE_VERSION,
        "geometry": geometry.to_json(),
        "chunks": sorted([list(index), key] for index, key in chunks.items()),
        "simplify_ratio": simplify_ratio,
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()


def object_key(
    mask: LabelArray | np.ndarray,
    bbox_min: tuple[int, int, int],
    geometry: LabelGeometry,
    simplify_ratio: float = DEFAULT_SIMPLIFY_RATIO,
) -> str:
    """The cache key of one object's mesh: its voxels (a bounding-box mask and where it lies in
    the box) and what places them in space; nothing else changes its mesh."""
    digest = hashlib.sha256()
    header = {
        "code": MESH_CODE_VERSION,
        "start": list(bbox_min),
        "shape": list(mask.shape),
        "voxel_size_nm": list(geometry.voxel_size_nm),
        "origin_nm": list(geometry.origin_nm),
        "simplify_ratio": simplify_ratio,
    }
    digest.update(json.dumps(header, sort_keys=True).encode())
    digest.update(np.packbits(np.ascontiguousarray(mask, dtype=bool)).tobytes())
    return digest.hexdigest()


class VersionArray:
    """A version's labels as a read-only array read chunk by chunk (``labels[z0:z1, ...]``
    decodes only the chunks that region touches): meshing then holds a few chunks and one
    object's box at a time, never the whole box (up to 1024^3 voxels, 4 GiB). Decoded chunks
    are kept, up to ``cache_bytes``, because neighbouring objects share chunks."""

    def __init__(
        self,
        blobs: BlobStore,
        geometry: LabelGeometry,
        chunks: Mapping[ChunkIndex, str],
        cache_bytes: int = CHUNK_CACHE_BYTES,
    ) -> None:
        self.blobs = blobs
        self.geometry = geometry
        self.chunks = chunks
        chunk_bytes = math.prod(geometry.chunk) * LABEL_DTYPE.itemsize
        self._keep = max(1, cache_bytes // chunk_bytes)
        self._decoded: OrderedDict[ChunkIndex, LabelArray] = OrderedDict()

    @property
    def shape(self) -> tuple[int, int, int]:
        return self.geometry.shape

    def _chunk(self, index: ChunkIndex) -> LabelArray:
        found = self._decoded.get(index)
        if found is not None:
            self._decoded.move_to_end(index)
            return found
        chunk = chunk_read(self.blobs, self.geometry, self.chunks, index)
        self._decoded[index] = chunk
        if len(self._decoded) > self._keep:
            self._decoded.popitem(last=False)
        return chunk

    def __getitem__(self, region: tuple[slice, slice, slice]) -> LabelArray:
        bounded = region_check(self.geometry, region)
        out = np.zeros(tuple(r.stop - r.start for r in bounded), dtype=LABEL_DTYPE)
        for index in chunks_touching(self.geometry, bounded):
            if index not in self.chunks:
                continue  # all zero
            src, dst = [], []
            for s, r in zip(self.geometry.chunk_slices(index), bounded, strict=True):
                lo, hi = max(s.start, r.start), min(s.stop, r.stop)
                src.append(slice(lo - s.start, hi - s.start))
                dst.append(slice(lo - r.start, hi - r.start))
            out[tuple(dst)] = self._chunk(index)[tuple(src)]
        return out


def _write_atomic(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    try:
        tmp.write_bytes(data)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


@contextmanager
def _locked(root: Path, key: str) -> Iterator[None]:
    """An exclusive lock on building version ``key`` (across processes and threads)."""
    locks = root / LOCKS
    locks.mkdir(parents=True, exist_ok=True)
    with open(locks / f"{key}.lock", "a") as handle:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


def _object_area_nm2(
    root: Path,
    labels: VersionArray,
    stats: LabelStats,
    index: int,
    geometry: LabelGeometry,
    simplify_ratio: float,
) -> tuple[str, float, bool]:
    """Object ``index``'s key, surface area (nm^2) and whether it was meshed now (else reused)."""
    segment_id = int(stats.ids[index])
    lo = tuple(int(v) for v in stats.bbox_min[index])
    hi = tuple(int(v) for v in stats.bbox_max[index])
    box = (slice(lo[0], hi[0]), slice(lo[1], hi[1]), slice(lo[2], hi[2]))
    crop = labels[box] == segment_id
    key = object_key(crop, (lo[0], lo[1], lo[2]), geometry, simplify_ratio)
    fragment = root / FRAGMENTS / key
    record = root / OBJECTS / f"{key}.json"
    if fragment.is_file() and record.is_file():
        return key, float(json.loads(record.read_text())["area_nm2"]), False
    # Mesh the crop already read, placed where it lies: the same mesh as from the whole box.
    voxel, origin = geometry.voxel_size_nm, geometry.origin_nm
    crop_origin = tuple(origin[a] + lo[a] * voxel[a] for a in range(3))
    mesh = mesh_labels_object(
        crop.view(np.uint8), 1, (0, 0, 0), crop.shape, voxel, crop_origin, simplify_ratio
    )
    _write_atomic(fragment, encode_fragment(mesh.vertices, mesh.faces))
    _write_atomic(
        record, json.dumps({"area_nm2": mesh.area_nm2, "faces": len(mesh.faces)}).encode()
    )
    return key, mesh.area_nm2, True


def _cached(path: Path, key: str) -> VersionMeshes | None:
    try:
        ids = json.loads((path / "segment_properties" / "info").read_text())["inline"]["ids"]
    except FileNotFoundError:
        return None
    return VersionMeshes(key, path, tuple(int(i) for i in ids), (), ())


def version_meshes(
    blobs: BlobStore,
    geometry: LabelGeometry,
    chunks: Mapping[ChunkIndex, str],
    root: Path,
    simplify_ratio: float = DEFAULT_SIMPLIFY_RATIO,
) -> VersionMeshes:
    """The mesh source of the version with chunk map ``chunks``: from the cache, or built now,
    meshing only objects whose voxels no earlier version had (module docstring)."""
    root = Path(root)
    key = version_key(geometry, chunks, simplify_ratio)
    target = root / key / MESHES
    found = _cached(target, key)
    if found is not None:
        return found
    with _locked(root, key):
        found = _cached(target, key)  # built by whoever held the lock before us
        if found is not None:
            return found
        (root / FRAGMENTS).mkdir(parents=True, exist_ok=True)
        (root / OBJECTS).mkdir(parents=True, exist_ok=True)
        labels = VersionArray(blobs, geometry, chunks)
        stats = label_stats(labels, block_shape=geometry.chunk)
        building = root / f".{key}.building-{os.getpid()}-{threading.get_ident()}"
        shutil.rmtree(building, ignore_errors=True)
        mesh_dir = building / MESHES
        try:
            write_mesh_info(mesh_dir)
            areas_um2: dict[int, float] = {}
            meshed: list[int] = []
            reused: list[int] = []
            for index in range(len(stats)):
                segment_id = int(stats.ids[index])
                okey, area_nm2, made = _object_area_nm2(
                    root, labels, stats, index, geometry, simplify_ratio
                )
                (meshed if made else reused).append(segment_id)
                areas_um2[segment_id] = area_nm2 * 1e-6
                manifest = json.dumps({"fragments": [FRAGMENT_REF + okey]}).encode()
                _write_atomic(mesh_dir / manifest_name(segment_id), manifest)
            voxel_size_um = [v * 1e-3 for v in geometry.voxel_size_nm]
            write_properties(mesh_dir, object_table(stats, voxel_size_um, areas_um2))
            os.rename(building, root / key)
        finally:
            shutil.rmtree(building, ignore_errors=True)
    ids = tuple(int(i) for i in stats.ids)
    return VersionMeshes(key, target, ids, tuple(meshed), tuple(reused))
