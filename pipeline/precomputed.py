"""Neuroglancer precomputed legacy meshes, and segment properties: the one reader and writer.

Segment properties (``segment_properties/info``, inline form) belong to every mesh directory the
pipeline writes, whatever the mesh format; the site reads them through
:func:`read_segment_properties` too. New meshes are written in the sharded multi-resolution
format (:mod:`pipeline.precomputed_multires`); the legacy writer stays for ``--format legacy``
and for directories written before. Legacy layout of a mesh directory (a ``precomputed://``
source of its own)::

    info                        {"@type": "neuroglancer_legacy_mesh", "segment_properties": ...}
    <id>:0                      manifest: {"fragments": ["<id>.frag"]}
    <id>.frag                   uint32 vertex count, float32 xyz vertices, uint32 triangles (LE)
    segment_properties/info     {"@type": "neuroglancer_segment_properties", "inline": {...}}

Vertices are in nanometres, x y z order, with voxel centres at ``index * voxel_size``, which is how
Neuroglancer places a mesh-only precomputed source over a zarr segmentation (checked in the probe).
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import tempfile
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from pipeline.errors import InvalidInputError

MESH_INFO_TYPE = "neuroglancer_legacy_mesh"
SEGMENT_PROPERTIES_TYPE = "neuroglancer_segment_properties"
SEGMENT_PROPERTIES_DIR = "segment_properties"
VOLUME_PROPERTY = "volume_um3"  # the numeric property meshing writes and the site ranks by
MEAN_PROBABILITY_PROPERTY = "mean_probability"  # a run's objects: mean of its probability map
VERDICT_PROPERTY = "verdict"  # the tags property proofreading verdicts are written as


@dataclass(frozen=True)
class NumberProperty:
    """A numeric segment property (shown and filterable in Neuroglancer's segment list)."""

    id: str
    description: str
    values: Sequence[float]


@dataclass(frozen=True)
class TagsProperty:
    """A Neuroglancer ``tags`` segment property: each segment carries some of ``tags`` (indices,
    distinct and sorted), and the viewer's segment query selects by them (``#fp``, ``-#fp``).
    Neuroglancer 2.41 reads the first tags property of a layer only."""

    id: str
    description: str
    tags: Sequence[str]
    values: Sequence[Sequence[int]]
    tag_descriptions: Sequence[str] | None = None

    def to_json(self, n: int) -> dict[str, Any]:
        if len(self.values) != n:
            raise InvalidInputError(f"segment property {self.id!r} needs {n} values")
        if len(set(self.tags)) != len(self.tags) or any(
            not t or " " in t or t.startswith(("#", "-")) for t in self.tags
        ):
            raise InvalidInputError(f"tags of {self.id!r} must be distinct words: {self.tags}")
        if self.tag_descriptions is not None and len(self.tag_descriptions) != len(self.tags):
            raise InvalidInputError(f"segment property {self.id!r}: one description per tag")
        values: list[list[int]] = []
        for entry in self.values:
            indices = sorted({int(i) for i in entry})
            if indices and (indices[0] < 0 or indices[-1] >= len(self.tags)):
                raise InvalidInputError(f"segment property {self.id!r}: tag index out of range")
            values.append(indices)
        payload: dict[str, Any] = {
            "id": self.id,
            "type": "tags",
            "tags": list(self.tags),
            "values": values,
        }
        if self.description:
            payload["description"] = self.description
        if self.tag_descriptions is not None:
            payload["tag_descriptions"] = list(self.tag_descriptions)
        return payload

    def tags_of(self, index: int) -> list[str]:
        """The tag names segment number ``index`` carries."""
        return [self.tags[i] for i in self.values[index]]


def manifest_name(segment_id: int) -> str:
    """File name of a segment's manifest in the legacy format (level of detail 0)."""
    return f"{segment_id}:0"


def fragment_name(segment_id: int) -> str:
    """File name of a segment's single mesh fragment."""
    return f"{segment_id}.frag"


def _write_json(path: Path, payload: dict[str, Any]) -> None:
    """Write JSON atomically so a reader never sees a half-written file."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(payload, allow_nan=False, separators=(",", ":")))
    os.replace(tmp, path)


def write_mesh_info(mesh_dir: Path, *, with_properties: bool = True) -> None:
    """Write the mesh source's ``info`` (pointing at ``segment_properties`` when asked)."""
    mesh_dir.mkdir(parents=True, exist_ok=True)
    info: dict[str, Any] = {"@type": MESH_INFO_TYPE}
    if with_properties:
        info["segment_properties"] = SEGMENT_PROPERTIES_DIR
    _write_json(mesh_dir / "info", info)


def encode_fragment(vertices_nm: npt.ArrayLike, faces: npt.ArrayLike) -> bytes:
    """Encode one fragment: vertices (N, 3) in nm, x y z order; faces (M, 3) vertex indices."""
    verts = np.ascontiguousarray(vertices_nm, dtype="<f4")
    tris = np.ascontiguousarray(faces, dtype="<u4")
    if verts.ndim != 2 or verts.shape[1] != 3 or tris.ndim != 2 or tris.shape[1] != 3:
        raise InvalidInputError("a mesh needs (N, 3) vertices and (M, 3) triangle indices")
    if tris.size and int(tris.max()) >= len(verts):
        raise InvalidInputError("a triangle refers to a vertex that does not exist")
    header = np.array([len(verts)], dtype="<u4")
    return header.tobytes() + verts.tobytes() + tris.tobytes()


def decode_fragment(data: bytes) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.uint32]]:
    """Decode a fragment's bytes into (vertices (N, 3) float32 nm xyz, faces (M, 3) uint32)."""
    if len(data) < 4:
        raise InvalidInputError("mesh fragment shorter than its 4-byte header")
    n_vertices = int(np.frombuffer(data, dtype="<u4", count=1)[0])
    vertex_bytes = 12 * n_vertices
    rest = len(data) - 4 - vertex_bytes
    if rest < 0 or rest % 12:
        raise InvalidInputError("mesh fragment size does not match its vertex count")
    vertices = np.frombuffer(data, dtype="<f4", count=3 * n_vertices, offset=4).reshape(-1, 3)
    faces = np.frombuffer(data, dtype="<u4", offset=4 + vertex_bytes).reshape(-1, 3)
    return vertices.astype(np.float32), faces.astype(np.uint32)


def read_fragment(path: Path) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.uint32]]:
    """Read a fragment file written by :func:`write_mesh`."""
    return decode_fragment(Path(path).read_bytes())


def write_mesh(
    mesh_dir: Path, segment_id: int, vertices_nm: npt.ArrayLike, faces: npt.ArrayLike
) -> None:
    """Write one segment's manifest and its single fragment."""
    payload = encode_fragment(vertices_nm, faces)
    frag = mesh_dir / fragment_name(segment_id)
    tmp = frag.with_name(frag.name + ".tmp")
    tmp.write_bytes(payload)
    os.replace(tmp, frag)
    _write_json(mesh_dir / manifest_name(segment_id), {"fragments": [frag.name]})


def _finite(values: Sequence[float], name: str) -> list[float]:
    out = [float(v) for v in values]
    if not all(math.isfinite(v) for v in out):
        raise InvalidInputError(f"segment property {name!r} has a value that is not finite")
    return out


def segment_properties_payload(
    ids: Sequence[int],
    labels: Sequence[str],
    descriptions: Sequence[str] | None = None,
    numbers: Sequence[NumberProperty] = (),
) -> dict[str, Any]:
    """Build the ``segment_properties/info`` JSON (inline form, ids as decimal strings)."""
    n = len(ids)
    if len(labels) != n or (descriptions is not None and len(descriptions) != n):
        raise InvalidInputError("every segment needs exactly one label and description")
    properties: list[dict[str, Any]] = [
        {"id": "label", "type": "label", "values": [str(v) for v in labels]}
    ]
    if descriptions is not None:
        properties.append(
            {"id": "description", "type": "description", "values": [str(v) for v in descriptions]}
        )
    for prop in numbers:
        if len(prop.values) != n:
            raise InvalidInputError(f"segment property {prop.id!r} needs {n} values")
        properties.append(
            {
                "id": prop.id,
                "description": prop.description,
                "type": "number",
                "data_type": "float32",
                "values": _finite(prop.values, prop.id),
            }
        )
    return {
        "@type": SEGMENT_PROPERTIES_TYPE,
        "inline": {"ids": [str(int(i)) for i in ids], "properties": properties},
    }


def write_segment_properties(
    mesh_dir: Path,
    ids: Sequence[int],
    labels: Sequence[str],
    descriptions: Sequence[str] | None = None,
    numbers: Sequence[NumberProperty] = (),
) -> Path:
    """Write ``<mesh_dir>/segment_properties/info`` and return its path."""
    payload = segment_properties_payload(ids, labels, descriptions, numbers)
    directory = mesh_dir / SEGMENT_PROPERTIES_DIR
    directory.mkdir(parents=True, exist_ok=True)
    _write_json(directory / "info", payload)
    return directory / "info"


@dataclass(frozen=True)
class SegmentProperties:
    """Inline segment properties as read back: ids with their label, description, numbers."""

    ids: list[int]
    labels: list[str]
    descriptions: list[str] | None
    numbers: list[NumberProperty]
    tags: list[TagsProperty] = field(default_factory=list)

    def number(self, property_id: str) -> NumberProperty | None:
        return next((p for p in self.numbers if p.id == property_id), None)

    def tag_property(self, property_id: str) -> TagsProperty | None:
        return next((p for p in self.tags if p.id == property_id), None)


def parse_segment_properties(payload: Any) -> SegmentProperties:
    """Validate and parse a ``segment_properties/info`` JSON object (inline form)."""
    if not isinstance(payload, dict) or payload.get("@type") != SEGMENT_PROPERTIES_TYPE:
        raise InvalidInputError(f"not a {SEGMENT_PROPERTIES_TYPE} document")
    inline = payload.get("inline")
    if not isinstance(inline, dict) or not isinstance(inline.get("ids"), list):
        raise InvalidInputError("segment properties lack an inline list of ids")
    try:
        ids = [int(i) for i in inline["ids"]]
    except (TypeError, ValueError):
        raise InvalidInputError("segment property ids must be decimal integers") from None
    labels: list[str] = [""] * len(ids)
    descriptions: list[str] | None = None
    numbers: list[NumberProperty] = []
    tags: list[TagsProperty] = []
    for prop in inline.get("properties", []):
        if not isinstance(prop, dict) or not isinstance(prop.get("values"), list):
            raise InvalidInputError("a segment property needs an object with a list of values")
        values = prop["values"]
        if len(values) != len(ids):
            raise InvalidInputError(f"segment property {prop.get('id')!r} needs {len(ids)} values")
        kind = prop.get("type")
        if kind == "label":
            labels = [str(v) for v in values]
        elif kind == "description":
            descriptions = [str(v) for v in values]
        elif kind == "number":
            name = str(prop.get("id", ""))
            try:
                floats = [float(v) for v in values]
            except (TypeError, ValueError):
                raise InvalidInputError(f"segment property {name!r} has a non-number") from None
            numbers.append(NumberProperty(name, str(prop.get("description", "")), floats))
        elif kind == "tags":
            names = prop.get("tags")
            if not isinstance(names, list) or not all(isinstance(t, list) for t in values):
                raise InvalidInputError(f"tags property {prop.get('id')!r} is malformed")
            described = prop.get("tag_descriptions")
            tags.append(
                TagsProperty(
                    str(prop.get("id", "")),
                    str(prop.get("description", "")),
                    [str(t) for t in names],
                    [[int(i) for i in v] for v in values],
                    [str(d) for d in described] if isinstance(described, list) else None,
                )
            )
    return SegmentProperties(ids, labels, descriptions, numbers, tags)


def segment_properties_file(mesh_dir: Path) -> Path | None:
    """The ``segment_properties/info`` file a mesh directory's ``info`` points at (None when
    the directory has no info or no properties)."""
    try:
        info = json.loads((Path(mesh_dir) / "info").read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as error:
        raise InvalidInputError(f"{mesh_dir}/info is not readable JSON: {error}") from None
    relative = info.get("segment_properties") if isinstance(info, dict) else None
    if not relative:
        return None
    if not isinstance(relative, str) or relative.startswith("/") or ".." in relative.split("/"):
        raise InvalidInputError(f"{mesh_dir}/info names segment properties outside the directory")
    return Path(mesh_dir) / relative / "info"


def read_segment_properties_payload(mesh_dir: Path) -> dict[str, Any] | None:
    """The raw ``segment_properties/info`` JSON (every property type kept), or None."""
    path = segment_properties_file(mesh_dir)
    if path is None:
        return None
    try:
        payload = json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as error:
        raise InvalidInputError(f"segment properties of {mesh_dir} unreadable: {error}") from None
    parse_segment_properties(payload)  # validates
    return dict(payload)


def write_json_atomically(path: Path, payload: Mapping[str, Any]) -> None:
    """Write JSON through a uniquely named temporary file and a rename: a concurrent reader
    (Neuroglancer through the data server) sees the old file or the new one, never half of
    one, and two writers never share a temporary file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as handle:
            json.dump(payload, handle, allow_nan=False, separators=(",", ":"))
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def payload_with_tags(payload: Mapping[str, Any], prop: TagsProperty) -> dict[str, Any]:
    """``payload`` with tags property ``prop`` put in place of one with its id (or added),
    every other property untouched. It goes before any other tags property, because
    Neuroglancer reads only the first."""
    inline = dict(payload["inline"])
    n = len(inline["ids"])
    properties = [p for p in inline.get("properties", []) if p.get("id") != prop.id]
    first_tags = next((i for i, p in enumerate(properties) if p.get("type") == "tags"), None)
    at = len(properties) if first_tags is None else first_tags
    properties.insert(at, prop.to_json(n))
    inline["properties"] = properties
    return {**payload, "inline": inline}


def payload_subset(payload: Mapping[str, Any], keep: Collection[int]) -> dict[str, Any]:
    """``payload`` restricted to the segments in ``keep`` (every property, in the same order)."""
    inline = payload["inline"]
    keep_set = {int(k) for k in keep}
    rows = [i for i, sid in enumerate(inline["ids"]) if int(sid) in keep_set]
    properties = [
        {**p, "values": [p["values"][i] for i in rows]} for p in inline.get("properties", [])
    ]
    return {
        **payload,
        "inline": {**inline, "ids": [inline["ids"][i] for i in rows], "properties": properties},
    }


def tags_property_for(
    ids: Sequence[int],
    tag_of: Mapping[int, str],
    tags: Sequence[str],
    *,
    property_id: str = VERDICT_PROPERTY,
    description: str = "",
    tag_descriptions: Sequence[str] | None = None,
) -> TagsProperty:
    """A tags property over ``ids`` where segment ``i`` carries ``tag_of[i]`` (none if absent).
    A tag name not in ``tags`` is refused."""
    index = {name: i for i, name in enumerate(tags)}
    unknown = sorted({t for t in tag_of.values() if t not in index})
    if unknown:
        raise InvalidInputError(f"tags not declared: {unknown[:5]}")
    values = [[index[tag_of[int(i)]]] if int(i) in tag_of else [] for i in ids]
    return TagsProperty(property_id, description, list(tags), values, tag_descriptions)


def segment_properties_set_tags(
    mesh_dir: Path,
    tag_of: Mapping[int, str],
    tags: Sequence[str],
    *,
    property_id: str = VERDICT_PROPERTY,
    description: str = "",
    tag_descriptions: Sequence[str] | None = None,
) -> Path:
    """Put a tags property (e.g. proofreading verdicts) into a mesh directory's segment
    properties, keeping every other property, and write the file atomically. Segments absent
    from ``tag_of`` carry no tag. Returns the file written."""
    path = segment_properties_file(mesh_dir)
    payload = read_segment_properties_payload(mesh_dir)
    if path is None or payload is None:
        raise InvalidInputError(f"{mesh_dir} has no segment properties to add tags to")
    ids = [int(i) for i in payload["inline"]["ids"]]
    prop = tags_property_for(
        ids,
        tag_of,
        tags,
        property_id=property_id,
        description=description,
        tag_descriptions=tag_descriptions,
    )
    write_json_atomically(path, payload_with_tags(payload, prop))
    return path


def segment_properties_remove(mesh_dir: Path, property_id: str) -> Path | None:
    """Remove property ``property_id`` from a mesh directory's segment properties (atomic
    rewrite); the file when it changed, else None."""
    path = segment_properties_file(mesh_dir)
    payload = read_segment_properties_payload(mesh_dir)
    if path is None or payload is None:
        return None
    inline = dict(payload["inline"])
    properties = inline.get("properties", [])
    kept = [p for p in properties if p.get("id") != property_id]
    if len(kept) == len(properties):
        return None
    write_json_atomically(path, {**payload, "inline": {**inline, "properties": kept}})
    return path


def read_segment_properties(mesh_dir: Path) -> SegmentProperties | None:
    """The segment properties a mesh directory's ``info`` points at; None when it has none."""
    try:
        info = json.loads((Path(mesh_dir) / "info").read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as error:
        raise InvalidInputError(f"{mesh_dir}/info is not readable JSON: {error}") from None
    relative = info.get("segment_properties") if isinstance(info, dict) else None
    if not relative:
        return None
    if not isinstance(relative, str) or relative.startswith("/") or ".." in relative.split("/"):
        raise InvalidInputError(f"{mesh_dir}/info names segment properties outside the directory")
    try:
        payload = json.loads((Path(mesh_dir) / relative / "info").read_text())
    except (OSError, ValueError) as error:
        raise InvalidInputError(f"segment properties of {mesh_dir} unreadable: {error}") from None
    return parse_segment_properties(payload)


def stored_segment_ids(mesh_dir: Path) -> list[int]:
    """Ids of the objects whose meshes a directory holds, without segment properties: legacy
    ``<id>:0`` manifests, or the keys of a sharded multi-resolution directory."""
    from pipeline.precomputed_sharding import ShardingSpec, sharded_keys

    mesh_dir = Path(mesh_dir)
    try:
        info = json.loads((mesh_dir / "info").read_text())
    except (OSError, ValueError):
        info = {}
    sharding = info.get("sharding") if isinstance(info, dict) else None
    if sharding is not None:
        return sorted(sharded_keys(mesh_dir, ShardingSpec.from_json(sharding)))
    if not mesh_dir.is_dir():
        return []
    return sorted(int(p.name[:-2]) for p in mesh_dir.glob("*:0") if p.name[:-2].isdigit())


def read_segment_mesh(
    mesh_dir: Path, segment_id: int, *, detail_nm: float | None = None
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.int64]] | None:
    """One segment's mesh from a mesh directory of either format: (vertices (N, 3) nm x y z,
    faces (M, 3)), or None when the directory holds no mesh for it.

    Multi-resolution meshes give the coarsest level of detail whose scale is at most
    ``detail_nm`` (Neuroglancer's rule for a pixel of that size), the finest without it; cut
    vertices between fragments stay duplicated. Legacy meshes have one level.
    """
    from pipeline.precomputed_multires import MULTIRES_INFO_TYPE, read_multires_object

    mesh_dir = Path(mesh_dir)
    try:
        info = json.loads((mesh_dir / "info").read_text())
    except FileNotFoundError:
        raise InvalidInputError(f"{mesh_dir} has no info file: not a precomputed mesh directory")
    except (OSError, ValueError) as error:
        raise InvalidInputError(f"{mesh_dir}/info is not readable JSON: {error}") from None
    kind = info.get("@type") if isinstance(info, dict) else None
    if kind == MULTIRES_INFO_TYPE:
        stored = read_multires_object(mesh_dir, int(segment_id))
        if stored is None:
            return None
        lod = 0
        if detail_nm is not None:
            for index, scale in enumerate(stored.manifest.lod_scales.tolist()):
                if scale <= detail_nm and stored.levels[index]:
                    lod = index
        return stored.level_mesh(lod)
    if kind != MESH_INFO_TYPE:
        raise InvalidInputError(f"{mesh_dir}/info: unknown mesh type {kind!r}")
    manifest_path = mesh_dir / manifest_name(int(segment_id))
    if not manifest_path.is_file():
        return None
    try:
        manifest = json.loads(manifest_path.read_text())
        names = [str(n) for n in manifest["fragments"]]
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise InvalidInputError(f"mesh manifest {manifest_path.name} is malformed: {error}")
    vertex_parts: list[npt.NDArray[np.float64]] = []
    face_parts: list[npt.NDArray[np.int64]] = []
    count = 0
    for name in names:
        if "/" in name or "\\" in name or name in ("", ".", ".."):
            raise InvalidInputError(f"mesh manifest {manifest_path.name} names {name!r}")
        try:
            vertices, faces = read_fragment(mesh_dir / name)
        except OSError as error:
            raise InvalidInputError(f"mesh fragment {name} is unreadable: {error}") from None
        vertex_parts.append(vertices.astype(np.float64))
        face_parts.append(faces.astype(np.int64) + count)
        count += len(vertices)
    if not vertex_parts:
        return np.zeros((0, 3)), np.zeros((0, 3), dtype=np.int64)
    return np.concatenate(vertex_parts), np.concatenate(face_parts)
