"""Meshes and morphometrics for every object of an OME-Zarr label image.

Per object: crop its bounding box (+1 voxel of zero padding so the surface closes), marching cubes
(zmesh, anisotropic voxel size), Taubin smoothing, quadric simplification (fast_simplification),
Neuroglancer precomputed output: sharded multi-resolution meshes by default
(:mod:`pipeline.precomputed_multires`), the legacy one-file-per-object format on request. Memory is
bounded by the largest object's box, not the volume.

Why smoothing, and where the surface area comes from: marching cubes on a binary mask follows
the voxel staircase, which inflates the area of a smooth shape by about 8 % (a voxelised sphere of
radius 20 scores sphericity 0.92). Ten Taubin iterations (lambda 0.5, mu -0.53) remove the
staircase while keeping the enclosed volume within 0.5 % of the voxel volume; the sphere then
scores 0.99, a cube 0.83 (ideal 0.806, its edges are rounded by half a voxel). The area is measured
on this smoothed mesh *before* simplification, so morphometrics do not depend on the display level
of detail. The simplified mesh is accepted only when its area and enclosed volume stay within
``MAX_SIMPLIFY_CHANGE`` (2 %) of the smoothed mesh's; otherwise the face budget is doubled and
the simplification retried. Area and volume are cheap, global proxies for the geometric error: a
half-voxel deviation over a nucleus moves either by several per cent.
"""

from __future__ import annotations

import math
import os
import shutil
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import fast_simplification
import numpy as np
import numpy.typing as npt
import pandas as pd
import scipy.sparse as sp
import zmesh

from pipeline.errors import InvalidInputError
from pipeline.morphometrics import (
    LabelStats,
    label_stats,
    mesh_surface_area,
    mesh_volume,
    object_table,
    write_table,
)
from pipeline.precomputed import (
    MEAN_PROBABILITY_PROPERTY,
    VOLUME_PROPERTY,
    NumberProperty,
    write_mesh,
    write_mesh_info,
    write_segment_properties,
)
from pipeline.precomputed_multires import (
    LodMesh,
    MultiresMeshWriter,
    lod_scales,
    octree_layout,
)
from pipeline.precomputed_sharding import sharding_for
from pipeline.progress import ProgressCallback, no_progress
from pipeline.volume_info import MeshResult

if TYPE_CHECKING:
    from pipeline.ome_zarr_io import SpatialLevel

PROPERTIES_NAME = "morphometrics"
DEFAULT_SIMPLIFY_RATIO = 0.05
MIN_FACES = 128
MAX_SIMPLIFY_CHANGE = 0.02
TAUBIN_ITERATIONS = 10
LOD_MIN_FACES = 64  # a coarser level of detail keeps at least this many faces
MeshFormat = Literal["multires", "legacy"]
MESH_FORMATS: tuple[MeshFormat, ...] = ("multires", "legacy")
_PROGRESS_INTERVAL_S = 0.2

FloatArray = npt.NDArray[np.float64]
IndexArray = npt.NDArray[np.int64]


def open_label_level(path: Path, level: int = 0) -> SpatialLevel:
    """Open level ``level`` of an NGFF 0.4 or 0.5 3D label image, geometry in nanometres."""
    # ome_zarr_io imports dask and ome_zarr (seconds): only meshing a store pays for it.
    from pipeline.ome_zarr_io import open_spatial_level

    opened = open_spatial_level(path, level, "label image")
    if len(opened.axes) != 3:
        raise InvalidInputError(f"meshing needs a 3D label image, axes are {list(opened.axes)}")
    return opened


def smooth_taubin(
    vertices: npt.ArrayLike,
    faces: npt.ArrayLike,
    iterations: int = TAUBIN_ITERATIONS,
    lam: float = 0.5,
    mu: float = -0.53,
) -> FloatArray:
    """Taubin lambda/mu smoothing with uniform neighbour weights (shrinks almost nothing)."""
    v = np.asarray(vertices, dtype=np.float64)
    f = np.asarray(faces, dtype=np.int64)
    if iterations <= 0 or f.size == 0:
        return v.copy()
    n = len(v)
    edges = np.concatenate([f[:, [0, 1]], f[:, [1, 2]], f[:, [2, 0]]])
    adjacency = sp.coo_matrix(
        (np.ones(len(edges)), (edges[:, 0], edges[:, 1])), shape=(n, n)
    ).tocsr()
    adjacency = ((adjacency + adjacency.T) > 0).astype(np.float64)
    degree = np.asarray(adjacency.sum(axis=1)).ravel()
    mean_of_neighbours = sp.diags(1.0 / np.maximum(degree, 1.0)) @ adjacency
    for _ in range(iterations):
        v = v + lam * (mean_of_neighbours @ v - v)
        v = v + mu * (mean_of_neighbours @ v - v)
    return v


def is_closed_manifold(faces: npt.ArrayLike) -> bool:
    """Each directed edge occurs once and so does its reverse: closed, consistently wound."""
    f = np.asarray(faces, dtype=np.int64)
    if f.size == 0:
        return False
    n = int(f.max()) + 1
    tails = np.concatenate([f[:, 0], f[:, 1], f[:, 2]])
    heads = np.concatenate([f[:, 1], f[:, 2], f[:, 0]])
    forward = np.sort(tails * n + heads)
    if np.any(forward[1:] == forward[:-1]):
        return False
    return bool(np.array_equal(forward, np.sort(heads * n + tails)))


def simplify_mesh(
    vertices: FloatArray,
    faces: IndexArray,
    ratio: float = DEFAULT_SIMPLIFY_RATIO,
    min_faces: int = MIN_FACES,
) -> tuple[FloatArray, IndexArray]:
    """Quadric decimation to about ``ratio`` of the faces, never below ``min_faces``.

    A result is accepted only if it is still a closed, consistently wound surface (the decimator
    now and then leaves a folded pair of duplicate faces) and its area and enclosed volume moved
    less than ``MAX_SIMPLIFY_CHANGE``; otherwise the face budget grows by a quarter and it tries
    again, falling back to the input. Never returns an empty mesh.
    """
    n_faces = len(faces)
    target = max(min_faces, math.ceil(n_faces * ratio))
    area = mesh_surface_area(vertices, faces)
    volume = abs(mesh_volume(vertices, faces))
    while target < n_faces:
        v2, f2 = fast_simplification.simplify(vertices, faces, target_count=target)
        if len(f2) and is_closed_manifold(f2):
            d_area = abs(mesh_surface_area(v2, f2) - area) / area
            d_volume = abs(abs(mesh_volume(v2, f2)) - volume) / max(volume, 1e-12)
            if d_area <= MAX_SIMPLIFY_CHANGE and d_volume <= MAX_SIMPLIFY_CHANGE:
                return np.asarray(v2, dtype=np.float64), np.asarray(f2, dtype=np.int64)
        target = math.ceil(target * 1.25)
    return vertices, faces


def mesh_mask(
    mask: npt.NDArray[Any], voxel_size_nm: Sequence[float]
) -> tuple[FloatArray, IndexArray]:
    """Marching cubes of a binary z y x mask that has a zero border.

    Returns vertices in nm, x y z order, with voxel (0, 0, 0)'s centre at the origin, and faces
    wound outwards.
    """
    mesher = zmesh.Mesher(tuple(float(v) for v in voxel_size_nm))
    mesher.mesh(np.ascontiguousarray(mask, dtype=np.uint8))
    if 1 not in mesher.ids():
        return np.zeros((0, 3)), np.zeros((0, 3), dtype=np.int64)
    mesh = mesher.get(1, normals=False)
    mesher.clear()
    vertices = np.asarray(mesh.vertices, dtype=np.float64)[:, ::-1]  # z y x -> x y z
    faces = np.asarray(mesh.faces, dtype=np.int64)
    if mesh_volume(vertices, faces) < 0:  # reversing the axes mirrored the winding
        faces = faces[:, ::-1]
    return np.ascontiguousarray(vertices), np.ascontiguousarray(faces)


@dataclass(frozen=True)
class ObjectMesh:
    """A display mesh (nm, x y z) and the surface area measured before simplification."""

    vertices: FloatArray
    faces: IndexArray
    area_nm2: float


def mesh_object(
    level: SpatialLevel,
    segment_id: int,
    bbox_min: Sequence[int],
    bbox_max: Sequence[int],
    simplify_ratio: float = DEFAULT_SIMPLIFY_RATIO,
) -> ObjectMesh:
    """Mesh one object from its bounding box crop."""
    return mesh_labels_object(
        level.array,
        segment_id,
        bbox_min,
        bbox_max,
        level.voxel_size_nm,
        level.translation_nm,
        simplify_ratio,
    )


def mesh_labels_object(
    labels: Any,
    segment_id: int,
    bbox_min: Sequence[int],
    bbox_max: Sequence[int],
    voxel_size_nm: Sequence[float],
    translation_nm: Sequence[float] = (0.0, 0.0, 0.0),
    simplify_ratio: float = DEFAULT_SIMPLIFY_RATIO,
) -> ObjectMesh:
    """The display mesh and surface area of one object of ``labels`` (anything sliceable, z y x)
    from its bounding box crop: what :func:`build_meshes` writes per object, for callers that
    mesh objects one at a time (a painted task box's labels, re-meshing only what changed)."""
    smooth, faces = object_surface(
        labels, segment_id, bbox_min, bbox_max, voxel_size_nm, translation_nm
    )
    area = mesh_surface_area(smooth, faces)
    display_v, display_f = simplify_mesh(smooth, faces, simplify_ratio)
    return ObjectMesh(display_v, display_f, area)


def object_surface(
    labels: Any,
    segment_id: int,
    bbox_min: Sequence[int],
    bbox_max: Sequence[int],
    voxel_size_nm: Sequence[float],
    translation_nm: Sequence[float] = (0.0, 0.0, 0.0),
) -> tuple[FloatArray, IndexArray]:
    """The smoothed surface of one object of ``labels`` (anything sliceable, z y x) from its
    bounding box crop: the surface whose area is the object's surface area (module docstring).
    Vertices in nm, x y z, at their physical position."""
    lo = np.asarray(bbox_min, dtype=np.int64)
    hi = np.asarray(bbox_max, dtype=np.int64)
    crop = np.asarray(labels[tuple(slice(int(a), int(b)) for a, b in zip(lo, hi, strict=True))])
    mask = np.pad(crop == segment_id, 1)
    vertices, faces = mesh_mask(mask, voxel_size_nm)
    if not len(faces):
        raise InvalidInputError(f"object {segment_id} produced no surface")
    origin_zyx = (lo - 1) * np.asarray(voxel_size_nm) + np.asarray(translation_nm)
    vertices = vertices + origin_zyx[::-1]
    return smooth_taubin(vertices, faces), faces


def surface_areas_um2(
    labels: Any, stats: LabelStats, voxel_size_nm: Sequence[float]
) -> dict[int, float]:
    """Each object's surface area in um^2 as :func:`build_meshes` measures it (smoothed marching
    cubes, before simplification), without writing meshes: for small label arrays measured on
    request, such as a painted task box."""
    areas: dict[int, float] = {}
    for index, segment_id in enumerate(stats.ids.tolist()):
        smooth, faces = object_surface(
            labels, int(segment_id), stats.bbox_min[index], stats.bbox_max[index], voxel_size_nm
        )
        areas[int(segment_id)] = mesh_surface_area(smooth, faces) * 1e-6
    return areas


def lod_meshes(vertices: FloatArray, faces: IndexArray, levels: int) -> list[LodMesh]:
    """``levels`` levels of detail: the display mesh, then a quarter of the faces per level
    (halving the resolution of a surface quarters its faces), never below ``LOD_MIN_FACES``."""
    lods = [LodMesh(np.asarray(vertices, np.float64), np.asarray(faces, np.int64))]
    for lod in range(1, levels):
        previous = lods[-1]
        target = max(LOD_MIN_FACES, math.ceil(len(faces) / 4**lod))
        if target >= len(previous.faces):
            lods.append(previous)
            continue
        v2, f2 = fast_simplification.simplify(
            previous.vertices, previous.faces, target_count=target
        )
        if not len(f2):
            lods.append(previous)
            continue
        lods.append(LodMesh(np.asarray(v2, np.float64), np.asarray(f2, np.int64)))
    return lods


class _Throttled:
    """Forward progress at most every ``_PROGRESS_INTERVAL_S``, plus each stage's first and last."""

    def __init__(self, progress: ProgressCallback) -> None:
        self._progress = progress
        self._stage = ""
        self._last = -math.inf

    def __call__(self, stage: str, done: int, total: int) -> None:
        now = time.monotonic()
        if stage != self._stage or done >= total or now - self._last >= _PROGRESS_INTERVAL_S:
            self._stage, self._last = stage, now
            self._progress(stage, done, total)


class _LegacySink:
    """One manifest and one fragment file per object."""

    def __init__(self, mesh_dir: Path) -> None:
        self.mesh_dir = mesh_dir
        write_mesh_info(mesh_dir)

    def add(self, segment_id: int, mesh: ObjectMesh) -> None:
        write_mesh(self.mesh_dir, segment_id, mesh.vertices, mesh.faces)


class _MultiresSink:
    """Levels of detail per object, into shard files."""

    def __init__(self, writer: MultiresMeshWriter, voxel_size_nm: Sequence[float]) -> None:
        self.writer = writer
        self.voxel_size_nm = voxel_size_nm

    def add(self, segment_id: int, mesh: ObjectMesh) -> None:
        finest = LodMesh(mesh.vertices, mesh.faces)
        depth = octree_layout([finest], self.voxel_size_nm).depth
        lods = lod_meshes(mesh.vertices, mesh.faces, depth)
        layout = octree_layout(lods, self.voxel_size_nm)  # coarser levels may reach further
        self.writer.add(segment_id, lods, layout, lod_scales(len(lods), self.voxel_size_nm))


@contextmanager
def _mesh_sink(
    mesh_format: MeshFormat, mesh_dir: Path, n_objects: int, voxel_size_nm: Sequence[float]
) -> Iterator[_LegacySink | _MultiresSink]:
    """Where :func:`build_meshes` puts each object's mesh; shards are written on success."""
    if mesh_format == "legacy":
        yield _LegacySink(mesh_dir)
        return
    with MultiresMeshWriter(mesh_dir, sharding_for(n_objects)) as writer:
        yield _MultiresSink(writer, voxel_size_nm)


def write_properties(mesh_dir: Path, table: pd.DataFrame) -> None:
    """Neuroglancer segment properties of an object table: volume, surface, sphericity, and the
    mean foreground probability when the table has it (``mean_probability``: a run's objects)."""
    ids = [int(i) for i in table["id"]]
    volume = table["volume"].to_numpy(dtype=np.float64)
    surface = table["surface_area"].to_numpy(dtype=np.float64)
    spher = table["sphericity"].to_numpy(dtype=np.float64)
    descriptions = [
        f"volume {v:.2f} um^3, surface {a:.2f} um^2, sphericity {s:.3f}"
        for v, a, s in zip(volume, surface, spher, strict=True)
    ]
    numbers = [
        NumberProperty(VOLUME_PROPERTY, "volume (um^3)", volume.tolist()),
        NumberProperty("surface_um2", "surface area (um^2)", surface.tolist()),
        NumberProperty("sphericity", "sphericity pi^(1/3) (6V)^(2/3) / A", spher.tolist()),
    ]
    mean = table.get(MEAN_PROBABILITY_PROPERTY)
    if mean is not None and np.isfinite(mean.to_numpy(dtype=np.float64)).all():
        mean = mean.to_numpy(dtype=np.float64)
        descriptions = [
            f"{d}, mean probability {p:.3f}" for d, p in zip(descriptions, mean, strict=True)
        ]
        numbers.append(
            NumberProperty(MEAN_PROBABILITY_PROPERTY, "mean foreground probability", mean.tolist())
        )
    write_segment_properties(
        mesh_dir, ids, labels=[f"object {i}" for i in ids], descriptions=descriptions,
        numbers=numbers,
    )  # fmt: skip


def _replace_dir(built: Path, target: Path) -> None:
    """Swap a freshly built directory into place, removing the previous build."""
    old = target.with_name(f".{target.name}.old-{os.getpid()}")
    if target.exists():
        os.replace(target, old)
    os.replace(built, target)
    shutil.rmtree(old, ignore_errors=True)


def build_meshes(
    labels_path: Path,
    out_dir: Path,
    *,
    level: int = 0,
    simplify_ratio: float = DEFAULT_SIMPLIFY_RATIO,
    mesh_format: MeshFormat = "multires",
    probability_path: Path | None = None,
    progress: ProgressCallback = no_progress,
) -> MeshResult:
    """Mesh and measure every object of the label image at ``labels_path``.

    Writes into ``out_dir`` (replaced as a whole once complete): precomputed ``info``, the meshes
    (``mesh_format``: sharded multi-resolution ``<shard>.shard`` files, or legacy ``<id>:0``
    manifests and ``<id>.frag`` fragments), ``segment_properties/info`` and
    ``morphometrics.csv``/``.parquet``, whose ``volume`` is in um^3 and ``surface_area`` in um^2.
    ``simplify_ratio`` is the fraction of marching-cubes faces kept for display (0.05: 20x fewer;
    the finest level of detail), subject to ``MIN_FACES`` and the ``MAX_SIMPLIFY_CHANGE`` check.
    With ``probability_path`` (the probability map the labels were segmented from: a run's),
    each object's mean of it is measured in the same pass and joins the table and the segment
    properties (``mean_probability``); a map of another shape is ignored.
    """
    if not 0 < simplify_ratio <= 1:
        raise InvalidInputError("simplify_ratio must be in (0, 1]")
    if mesh_format not in MESH_FORMATS:
        raise InvalidInputError(f"mesh format must be one of {', '.join(MESH_FORMATS)}")
    source = open_label_level(Path(labels_path), level)
    report = _Throttled(progress)
    probability = None
    if probability_path is not None:
        from pipeline.detections import image_matching  # reads OME-Zarr: only when asked

        probability = image_matching(Path(probability_path), source.array.shape)
    stats: LabelStats = label_stats(source.array, progress=report, image=probability)
    out_dir = Path(out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    building = out_dir.with_name(f".{out_dir.name}.building-{os.getpid()}")
    shutil.rmtree(building, ignore_errors=True)
    try:
        building.mkdir(parents=True)
        areas_um2: dict[int, float] = {}
        with _mesh_sink(mesh_format, building, len(stats), source.voxel_size_nm) as sink:
            report("meshing", 0, len(stats))
            for index, segment_id in enumerate(stats.ids.tolist()):
                mesh = mesh_object(
                    source, segment_id, stats.bbox_min[index], stats.bbox_max[index], simplify_ratio
                )
                sink.add(segment_id, mesh)
                areas_um2[segment_id] = mesh.area_nm2 * 1e-6
                report("meshing", index + 1, len(stats))
        voxel_size_um = [v * 1e-3 for v in source.voxel_size_nm]
        table = object_table(stats, voxel_size_um, areas_um2)
        if stats.mean_intensity is not None:
            table[MEAN_PROBABILITY_PROPERTY] = stats.mean_intensity
        write_properties(building, table)
        write_table(table, building / PROPERTIES_NAME)
        _replace_dir(building, out_dir)
    finally:
        shutil.rmtree(building, ignore_errors=True)
    return MeshResult(
        path=out_dir.name, n_objects=len(stats), properties_csv=f"{PROPERTIES_NAME}.csv"
    )
