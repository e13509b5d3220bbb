"""Neuroglancer multi-resolution meshes (``neuroglancer_multilod_draco``), sharded.

Why: the legacy format costs two files (and two requests) per object, and a dataset of 80,000
objects would be 160,000 files. Here a segment's mesh is a manifest plus Draco-compressed
fragments stored under its id in a few ``<shard>.shard`` files
(:mod:`pipeline.precomputed_sharding`), about 8x smaller than the legacy float32 fragments, and
large objects get coarser levels of detail so a distant view loads less. Layout of a mesh
directory (a ``precomputed://`` source)::

    info                      {"@type": "neuroglancer_multilod_draco", "sharding": {...}, ...}
    <shard>.shard             per segment id: its fragments, then its manifest (the indexed value)
    segment_properties/info   as for legacy meshes (pipeline.precomputed)

Coordinates ("stored model" space) are nanometres, x y z, voxel centres at ``index * voxel size``
(the info's ``transform`` is the identity), as for the legacy format.

Per object: an octree whose finest nodes (level of detail 0) are ``chunk_shape`` boxes from
``grid_origin``, a node of level ``l`` spanning ``chunk_shape * 2**l``. An object no larger than
the node size cap has one node per level and usually one level. Each level's mesh is cut along its
node grid (and for ``l > 0`` along the children's grid too, since Neuroglancer splits a coarse
fragment into octants to draw only those its loaded children do not cover), each node's piece is
quantized to ``vertex_quantization_bits`` integers within the node box and Draco-encoded with
quantization set up so the encoded integers are exactly those (Neuroglancer reads them raw).
Specification: https://github.com/google/neuroglancer/blob/master/src/datasource/precomputed/meshes.md
"""

from __future__ import annotations

import json
import math
import os
import struct
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

import DracoPy
import numpy as np
import numpy.typing as npt
from trimesh.intersections import slice_faces_plane

from pipeline.errors import InvalidInputError
from pipeline.precomputed_sharding import ShardingSpec, ShardWriter, read_sharded

MULTIRES_INFO_TYPE = "neuroglancer_multilod_draco"
VERTEX_QUANTIZATION_BITS = 10  # node size / 1023: 0.06 voxel for a 64-voxel node
DRACO_COMPRESSION_LEVEL = 7  # measured: as small as 10, decoding 2-4x faster
MAX_NODE_VOXELS = 64  # finest octree node edge, in voxels, for objects larger than this
IDENTITY_TRANSFORM = [1.0, 0.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 0.0, 1.0, 0.0]
_SNAP = 1e-3  # in quantization steps: a vertex this close to a cut plane lies on it

FloatArray = npt.NDArray[np.float64]
IndexArray = npt.NDArray[np.int64]
Cell = tuple[int, int, int]


@dataclass(frozen=True)
class LodMesh:
    """One level of detail of an object: vertices (N, 3) in nm, x y z; faces (M, 3)."""

    vertices: FloatArray
    faces: IndexArray


@dataclass(frozen=True)
class OctreeLayout:
    """Where an object's octree lies: finest node size and origin (nm, x y z), its depth."""

    grid_origin: FloatArray
    chunk_shape: FloatArray
    depth: int  # levels until one node covers the object


def octree_layout(
    lods: Sequence[LodMesh],
    voxel_size_nm: Sequence[float],
    max_node_voxels: int = MAX_NODE_VOXELS,
) -> OctreeLayout:
    """The octree for an object: nodes as small as its box, at most ``max_node_voxels`` a side.

    ``voxel_size_nm`` is z y x (the label image's order); the layout is x y z.
    """
    points = np.concatenate([lod.vertices for lod in lods if len(lod.vertices)])
    if not len(points):
        raise InvalidInputError("an object mesh has no vertices")
    voxel_xyz = np.asarray(voxel_size_nm, dtype=np.float64)[::-1]
    margin = 1e-3 * voxel_xyz
    lo = points.min(axis=0) - margin
    extent = points.max(axis=0) + margin - lo
    cap = max_node_voxels * voxel_xyz
    chunk = np.minimum(extent, cap)
    depth = 1 + max(0, math.ceil(math.log2(float(np.max(extent / chunk))) - 1e-9))
    return OctreeLayout(lo, chunk, depth)


def lod_scales(depth_or_levels: int, voxel_size_nm: Sequence[float]) -> list[float]:
    """Scale of each level in nm: one voxel at level 0, doubling per level.

    Neuroglancer draws the coarsest level whose scale is at most ``pixel size * detail cutoff``
    (cutoff 1 by default), so level ``l`` shows once a pixel covers ``2**l`` voxels.
    """
    base = float(max(voxel_size_nm))
    return [base * 2.0**lod for lod in range(depth_or_levels)]


def _split(
    vertices: FloatArray, faces: IndexArray, axis: int, plane: float
) -> tuple[tuple[FloatArray, IndexArray], tuple[FloatArray, IndexArray]]:
    """(part below ``plane``, part above) along ``axis``; triangles across it are cut."""
    normal = np.zeros(3)
    normal[axis] = 1.0
    origin = np.zeros(3)
    origin[axis] = plane
    parts = []
    for sign in (-1.0, 1.0):
        v, f, _ = slice_faces_plane(vertices, faces, sign * normal, origin)  # type: ignore[no-untyped-call]
        v = np.asarray(v, dtype=np.float64).copy()
        f = np.asarray(f, dtype=np.int64)
        near = np.abs(v[:, axis] - plane) <= 1e-9 * max(1.0, abs(plane))
        v[near, axis] = plane  # new vertices lie exactly on the cut
        parts.append(_compact(v, f))
    return parts[0], parts[1]


def _compact(vertices: FloatArray, faces: IndexArray) -> tuple[FloatArray, IndexArray]:
    """Drop vertices no face uses."""
    if not len(faces):
        return np.zeros((0, 3)), np.zeros((0, 3), dtype=np.int64)
    used, inverse = np.unique(faces.ravel(), return_inverse=True)
    return vertices[used], inverse.reshape(-1, 3).astype(np.int64)


def split_on_grid(
    vertices: FloatArray, faces: IndexArray, origin: FloatArray, cell: FloatArray
) -> dict[Cell, tuple[FloatArray, IndexArray]]:
    """Cut a mesh along the planes ``origin + k * cell``: each piece lies within one cell."""
    pieces: dict[Cell, tuple[FloatArray, IndexArray]] = {(0, 0, 0): (vertices, faces)}
    for axis in range(3):
        cut: dict[Cell, tuple[FloatArray, IndexArray]] = {}
        for key, (v, f) in pieces.items():
            if not len(f):
                continue
            rel = (v[:, axis] - origin[axis]) / cell[axis]
            first = math.floor(float(rel.min()) + 1e-9)
            last = math.ceil(float(rel.max()) - 1e-9)
            rest = (v, f)
            for index in range(first, max(first + 1, last)):
                plane = float(origin[axis] + (index + 1) * cell[axis])
                if index + 1 < last:
                    below, rest = _split(rest[0], rest[1], axis, plane)
                else:
                    below, rest = rest, (np.zeros((0, 3)), np.zeros((0, 3), dtype=np.int64))
                if len(below[1]):
                    new_key = list(key)
                    new_key[axis] = index
                    cut[(new_key[0], new_key[1], new_key[2])] = below
        pieces = cut
    return pieces


def zorder_key(position: Cell) -> int:
    """Morton code with x in the lowest bit of each triple (Neuroglancer's fragment order)."""
    code = 0
    for bit in range(32):
        for axis in range(3):
            code |= ((position[axis] >> bit) & 1) << (3 * bit + axis)
    return code


def quantize(
    vertices: FloatArray, node_lo: FloatArray, node_size: FloatArray, bits: int, partitioned: bool
) -> npt.NDArray[np.int64]:
    """Vertex positions as integers in ``[0, 2**bits)`` across the node box.

    For a partitioned (``lod > 0``) fragment, a vertex on a mid-plane becomes ``2**(bits-1)``,
    the value Neuroglancer's decoder lets both octants use.
    """
    top = (1 << bits) - 1
    scaled = (vertices - node_lo) / node_size * top
    if partitioned:
        scaled[np.abs(scaled - top / 2) <= _SNAP] = 1 << (bits - 1)
    return np.clip(np.floor(scaled + 0.5), 0, top).astype(np.int64)


def encode_draco(points: npt.NDArray[np.int64], faces: IndexArray, bits: int) -> bytes:
    """Draco mesh whose quantized positions are exactly ``points`` (origin 0, step 1)."""
    return bytes(
        DracoPy.encode(
            points.astype(np.float32),
            faces.astype(np.uint32),
            quantization_bits=bits,
            compression_level=DRACO_COMPRESSION_LEVEL,
            quantization_range=float((1 << bits) - 1),
            quantization_origin=[0.0, 0.0, 0.0],
        )
    )


@dataclass(frozen=True)
class Manifest:
    """A decoded manifest: per level, fragment positions (n, 3) and sizes (n,)."""

    chunk_shape: npt.NDArray[np.float32]
    grid_origin: npt.NDArray[np.float32]
    lod_scales: npt.NDArray[np.float32]
    vertex_offsets: npt.NDArray[np.float32]
    positions: list[npt.NDArray[np.uint32]]
    sizes: list[npt.NDArray[np.uint32]]

    def encode(self) -> bytes:
        n = len(self.lod_scales)
        parts = [
            np.asarray(self.chunk_shape, "<f4").tobytes(),
            np.asarray(self.grid_origin, "<f4").tobytes(),
            struct.pack("<I", n),
            np.asarray(self.lod_scales, "<f4").tobytes(),
            np.asarray(self.vertex_offsets, "<f4").reshape(n, 3).tobytes(),
            np.array([len(s) for s in self.sizes], "<u4").tobytes(),
        ]
        for positions, sizes in zip(self.positions, self.sizes, strict=True):
            parts.append(np.asarray(positions, "<u4").reshape(-1, 3).T.copy().tobytes())
            parts.append(np.asarray(sizes, "<u4").tobytes())
        return b"".join(parts)

    @classmethod
    def decode(cls, data: bytes) -> Manifest:
        if len(data) < 28 or len(data) % 4:
            raise InvalidInputError(f"mesh manifest of {len(data)} bytes is malformed")
        chunk_shape = np.frombuffer(data, "<f4", 3, 0)
        grid_origin = np.frombuffer(data, "<f4", 3, 12)
        n = struct.unpack_from("<I", data, 24)[0]
        offset = 28
        if len(data) < offset + 20 * n:
            raise InvalidInputError(f"mesh manifest too short for {n} levels")
        scales = np.frombuffer(data, "<f4", n, offset)
        offsets = np.frombuffer(data, "<f4", 3 * n, offset + 4 * n).reshape(n, 3)
        counts = np.frombuffer(data, "<u4", n, offset + 16 * n)
        offset += 20 * n
        if len(data) != offset + 16 * int(counts.sum()):
            raise InvalidInputError("mesh manifest size does not match its fragment counts")
        positions, sizes = [], []
        for count in counts.tolist():
            positions.append(np.frombuffer(data, "<u4", 3 * count, offset).reshape(3, count).T)
            sizes.append(np.frombuffer(data, "<u4", count, offset + 12 * count))
            offset += 16 * count
        return cls(chunk_shape, grid_origin, scales, offsets, positions, sizes)


def encode_object(
    lods: Sequence[LodMesh],
    layout: OctreeLayout,
    scales: Sequence[float],
    bits: int = VERTEX_QUANTIZATION_BITS,
) -> tuple[bytes, bytes]:
    """(fragment data, manifest) of one object; ``lods[0]`` is the finest level."""
    if not lods or len(scales) != len(lods):
        raise InvalidInputError("an object needs at least one level and one scale per level")
    origin, chunk = layout.grid_origin, layout.chunk_shape
    fragments: list[bytes] = []
    level_nodes: list[dict[Cell, bytes]] = []
    for lod, mesh in enumerate(lods):
        node_size = chunk * 2.0**lod
        cut_size = chunk * 2.0 ** max(lod - 1, 0)
        nodes: dict[Cell, list[tuple[FloatArray, IndexArray]]] = {}
        for cell, piece in split_on_grid(mesh.vertices, mesh.faces, origin, cut_size).items():
            shift = 1 if lod > 0 else 0
            key = (cell[0] >> shift, cell[1] >> shift, cell[2] >> shift)
            nodes.setdefault(key, []).append(piece)
        if lod > 0:  # every node of the finer level needs its parent, even an empty one
            for child in level_nodes[lod - 1]:
                nodes.setdefault((child[0] >> 1, child[1] >> 1, child[2] >> 1), [])
        encoded: dict[Cell, bytes] = {}
        for key, pieces in nodes.items():
            encoded[key] = _encode_node(pieces, origin + np.array(key) * node_size, node_size,
                                        bits, partitioned=lod > 0)  # fmt: skip
        level_nodes.append(encoded)
    positions, sizes = [], []
    for encoded in level_nodes:
        order = sorted(encoded, key=zorder_key)
        positions.append(np.array(order, dtype=np.uint32).reshape(-1, 3))
        sizes.append(np.array([len(encoded[k]) for k in order], dtype=np.uint32))
        fragments.extend(encoded[k] for k in order)
    manifest = Manifest(
        chunk_shape=chunk.astype(np.float32),
        grid_origin=origin.astype(np.float32),
        lod_scales=np.asarray(scales, np.float32),
        vertex_offsets=np.zeros((len(lods), 3), np.float32),
        positions=positions,
        sizes=sizes,
    )
    return b"".join(fragments), manifest.encode()


def _encode_node(
    pieces: list[tuple[FloatArray, IndexArray]],
    node_lo: FloatArray,
    node_size: FloatArray,
    bits: int,
    partitioned: bool,
) -> bytes:
    """One octree node's fragment (b"" when it holds no non-degenerate triangle)."""
    if not pieces:
        return b""
    vertices = np.concatenate([v for v, _ in pieces])
    starts = np.cumsum([0] + [len(v) for v, _ in pieces[:-1]])
    faces = np.concatenate([f + s for (_, f), s in zip(pieces, starts, strict=True)])
    points = quantize(vertices, node_lo, node_size, bits, partitioned)
    a, b, c = (points[faces[:, i]] for i in range(3))
    keep = ~(np.all(a == b, axis=1) | np.all(b == c, axis=1) | np.all(a == c, axis=1))
    if not keep.any():
        return b""
    return encode_draco(points, faces[keep], bits)


def decode_fragment(
    data: bytes, manifest: Manifest, lod: int, index: int, bits: int = VERTEX_QUANTIZATION_BITS
) -> tuple[FloatArray, IndexArray]:
    """A fragment back in nm (x y z) as Neuroglancer places it: (vertices, faces)."""
    mesh = DracoPy.decode(data)
    points = np.asarray(mesh.points, dtype=np.float64).reshape(-1, 3)
    faces = np.asarray(mesh.faces, dtype=np.int64).reshape(-1, 3)
    if np.any(points < 0) or np.any(points >= 1 << bits) or np.any(points != np.round(points)):
        raise InvalidInputError("fragment positions are not integers within the quantization range")
    position = manifest.positions[lod][index].astype(np.float64)
    size = manifest.chunk_shape.astype(np.float64) * 2.0**lod
    vertices = (
        manifest.grid_origin.astype(np.float64)
        + manifest.vertex_offsets[lod].astype(np.float64)
        + size * (position + points / ((1 << bits) - 1))
    )
    return vertices, faces


def multires_info(sharding: ShardingSpec, *, with_properties: bool = True) -> dict[str, Any]:
    info: dict[str, Any] = {
        "@type": MULTIRES_INFO_TYPE,
        "vertex_quantization_bits": VERTEX_QUANTIZATION_BITS,
        "transform": IDENTITY_TRANSFORM,
        "lod_scale_multiplier": 1.0,
        "sharding": sharding.to_json(),
    }
    if with_properties:
        info["segment_properties"] = "segment_properties"
    return info


class MultiresMeshWriter:
    """Writes objects into a sharded multi-resolution mesh directory; ``close`` adds ``info``."""

    def __init__(self, mesh_dir: Path, sharding: ShardingSpec, *, with_properties: bool = True):
        self.mesh_dir = Path(mesh_dir)
        self.sharding = sharding
        self.with_properties = with_properties
        self._shards = ShardWriter(self.mesh_dir, sharding)

    def add(
        self,
        segment_id: int,
        lods: Sequence[LodMesh],
        layout: OctreeLayout,
        scales: Sequence[float],
    ) -> None:
        fragments, manifest = encode_object(lods, layout, scales)
        self._shards.add(segment_id, manifest, prefix=fragments)

    def close(self) -> None:
        self._shards.close()
        payload = multires_info(self.sharding, with_properties=self.with_properties)
        tmp = self.mesh_dir / "info.tmp"
        tmp.write_text(json.dumps(payload, separators=(",", ":")))
        os.replace(tmp, self.mesh_dir / "info")

    def __enter__(self) -> MultiresMeshWriter:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc_type is None:
            self.close()
        else:
            self._shards.abort()


@dataclass(frozen=True)
class StoredObject:
    """An object read back: its manifest and, per level, its decoded fragments."""

    manifest: Manifest
    levels: list[list[tuple[FloatArray, IndexArray]]]

    def level_mesh(self, lod: int = 0) -> tuple[FloatArray, IndexArray]:
        """All fragments of one level as one mesh (cut vertices stay duplicated)."""
        parts = self.levels[lod]
        if not parts:
            return np.zeros((0, 3)), np.zeros((0, 3), dtype=np.int64)
        starts = np.cumsum([0] + [len(v) for v, _ in parts[:-1]])
        vertices = np.concatenate([v for v, _ in parts])
        faces = np.concatenate([f + s for (_, f), s in zip(parts, starts, strict=True)])
        return vertices, faces


def read_multires_object(mesh_dir: Path, segment_id: int) -> StoredObject | None:
    """Read one object the way Neuroglancer does: manifest by id, fragments just before it."""
    info = json.loads((Path(mesh_dir) / "info").read_text())
    if info.get("@type") != MULTIRES_INFO_TYPE:
        raise InvalidInputError(f"{mesh_dir} is not a {MULTIRES_INFO_TYPE} mesh directory")
    spec = ShardingSpec.from_json(info.get("sharding"))
    bits = int(info["vertex_quantization_bits"])
    found = read_sharded(Path(mesh_dir), spec, segment_id)
    if found is None:
        return None
    manifest = Manifest.decode(found.data)
    total = int(sum(int(s.sum()) for s in manifest.sizes))
    start = found.offset - total
    if start < spec.shard_index_bytes:
        raise InvalidInputError(f"fragments of segment {segment_id} would start before the data")
    levels: list[list[tuple[FloatArray, IndexArray]]] = []
    with found.shard_path.open("rb") as handle:
        handle.seek(start)
        for lod, sizes in enumerate(manifest.sizes):
            level = []
            for index, size in enumerate(sizes.tolist()):
                data = handle.read(size)
                if size:
                    level.append(decode_fragment(data, manifest, lod, index, bits))
            levels.append(level)
    return StoredObject(manifest, levels)
