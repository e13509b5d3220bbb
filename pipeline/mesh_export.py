"""One object's mesh, or all of a layer's, as files other tools open: PLY, OBJ, GLB, a zip.

Reads a Neuroglancer precomputed mesh directory, whichever format it holds: sharded
multi-resolution Draco (:mod:`pipeline.precomputed_multires`; the finest level of detail, its
fragments joined and the vertices the octree cut duplicated merged back) or legacy fragments
(:mod:`pipeline.precomputed`). Stored meshes are in nanometres, x y z; exports are in
micrometres, x y z, so they line up with the detections table's physical columns.
trimesh writes the files (no hand-written writers).

The archive is streamed: :func:`iter_meshes_zip` yields the zip's bytes object by object, so
memory holds one object's mesh and file at a time, however many objects there are.
"""

from __future__ import annotations

import json
import zipfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

from pipeline.archives import StreamSink
from pipeline.errors import InvalidInputError
from pipeline.precomputed import fragment_name, manifest_name, read_fragment, stored_segment_ids

MeshFileFormat = Literal["ply", "obj", "glb"]
MESH_FILE_FORMATS: tuple[MeshFileFormat, ...] = ("ply", "obj", "glb")
MEDIA_TYPES: dict[str, str] = {
    "ply": "application/octet-stream",  # binary PLY has no registered type
    "obj": "model/obj",
    "glb": "model/gltf-binary",
    "zip": "application/zip",
}
NM_PER_UM = 1000.0


@dataclass(frozen=True)
class ObjectMeshData:
    """A mesh read back: vertices (N, 3) in nanometres, x y z; faces (M, 3)."""

    vertices: npt.NDArray[np.float64]
    faces: npt.NDArray[np.int64]


def _info(mesh_dir: Path) -> dict[str, Any]:
    name = Path(mesh_dir).name
    try:
        info = json.loads((Path(mesh_dir) / "info").read_text())
    except OSError as exc:  # the message names the file only, not where it lives
        raise InvalidInputError(f"no readable mesh info in {name}: {exc.strerror or exc}")
    except ValueError:
        raise InvalidInputError(f"the mesh info in {name} is not JSON")
    if not isinstance(info, dict):
        raise InvalidInputError(f"the mesh info in {name} is not an object")
    return info


def read_object_mesh(mesh_dir: Path, segment_id: int) -> ObjectMeshData | None:
    """The finest mesh of ``segment_id`` in ``mesh_dir`` (None when it has none)."""
    from pipeline.precomputed_multires import MULTIRES_INFO_TYPE, read_multires_object

    mesh_dir = Path(mesh_dir)
    info = _info(mesh_dir)
    if info.get("@type") == MULTIRES_INFO_TYPE:
        stored = read_multires_object(mesh_dir, int(segment_id))
        if stored is None:
            return None
        vertices, faces = stored.level_mesh(0)
        return _merged(vertices, faces)
    manifest = mesh_dir / manifest_name(int(segment_id))
    if not manifest.is_file():
        return None
    try:
        names = json.loads(manifest.read_text()).get("fragments", [fragment_name(segment_id)])
    except (OSError, ValueError, AttributeError):
        raise InvalidInputError(f"the mesh manifest of segment {segment_id} is unreadable")
    parts_v, parts_f, start = [], [], 0
    for name in names:
        path = (mesh_dir / str(name)).resolve()
        if mesh_dir.resolve() not in path.parents:
            raise InvalidInputError(f"the manifest of segment {segment_id} points outside")
        v, f = read_fragment(path)
        parts_v.append(v.astype(np.float64))
        parts_f.append(f.astype(np.int64) + start)
        start += len(v)
    if not parts_v:
        return None
    return _merged(np.concatenate(parts_v), np.concatenate(parts_f))


def _merged(vertices: npt.NDArray[Any], faces: npt.NDArray[Any]) -> ObjectMeshData:
    """Merge vertices at the same position (fragments share the vertices on their cuts)."""
    v = np.asarray(vertices, dtype=np.float64).reshape(-1, 3)
    f = np.asarray(faces, dtype=np.int64).reshape(-1, 3)
    if not len(v):
        return ObjectMeshData(v, f)
    unique, inverse = np.unique(v, axis=0, return_inverse=True)
    return ObjectMeshData(unique, inverse.reshape(-1)[f])


def mesh_dir_check(mesh_dir: Path) -> None:
    """Raise InvalidInputError unless ``mesh_dir`` holds a readable precomputed mesh ``info``
    (before a stream starts: a failure after its first bytes could no longer be reported)."""
    _info(Path(mesh_dir))


def mesh_ids(mesh_dir: Path) -> list[int]:
    """Ids of every object with a mesh in ``mesh_dir``, sorted."""
    return stored_segment_ids(Path(mesh_dir))


def mesh_file_bytes(mesh: ObjectMeshData, file_format: str) -> bytes:
    """The mesh as a PLY (binary), OBJ or GLB file, in micrometres."""
    import trimesh

    if file_format not in MESH_FILE_FORMATS:
        raise InvalidInputError(
            f"unknown mesh format {file_format!r}; use one of {', '.join(MESH_FILE_FORMATS)}"
        )
    surface = trimesh.Trimesh(
        vertices=mesh.vertices / NM_PER_UM, faces=mesh.faces, process=False, validate=False
    )
    if file_format == "glb":
        data = trimesh.Scene(surface).export(file_type="glb")  # type: ignore[no-untyped-call]
    else:
        data = surface.export(file_type=file_format)
    return data if isinstance(data, bytes) else str(data).encode()


def iter_meshes_zip(
    mesh_dir: Path,
    segment_ids: Iterable[int],
    file_format: str = "ply",
    *,
    name_prefix: str = "",
) -> Iterator[bytes]:
    """Stream a zip of ``<prefix><segment id>.<format>`` for each id that has a mesh.

    zipfile writes to a non-seekable sink (local headers with data descriptors), so each object
    is read, converted, compressed and handed out before the next one is read. An object whose
    mesh files are missing or damaged cannot stop the stream (its first bytes are long sent, no
    error status can follow): it is left out and named in ``<prefix>unreadable.txt``.
    """
    if file_format not in MESH_FILE_FORMATS:
        raise InvalidInputError(
            f"unknown mesh format {file_format!r}; use one of {', '.join(MESH_FILE_FORMATS)}"
        )
    sink = StreamSink()
    with zipfile.ZipFile(sink, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=1) as archive:
        unreadable: list[str] = []
        for segment_id in segment_ids:
            try:
                mesh = read_object_mesh(mesh_dir, int(segment_id))
            except (InvalidInputError, OSError, ValueError) as exc:
                unreadable.append(f"{int(segment_id)}: {exc}")
                continue
            if mesh is None:
                continue
            archive.writestr(
                f"{name_prefix}{int(segment_id)}.{file_format}", mesh_file_bytes(mesh, file_format)
            )
            chunk = sink.take()
            if chunk:
                yield chunk
        if unreadable:
            archive.writestr(
                f"{name_prefix}unreadable.txt",
                "Meshes that could not be read (left out of this archive):\n"
                + "\n".join(unreadable)
                + "\n",
            )
    tail = sink.take()
    if tail:
        yield tail
