"""A small software renderer for one mesh: orthographic, Gouraud-shaded, z-buffered, in numpy.

Why not OpenGL or matplotlib: a Celery worker has no display or GPU, and the gallery needs
thousands of 96-pixel pictures. Measured here (``bench/cards.py``) this renderer draws a nucleus
mesh in 1-2 ms and matplotlib's ``Poly3DCollection`` on Agg in 34-39 ms; matplotlib also sorts
whole faces (painter's algorithm, flat shading), which can misorder overlapping faces.

Rasterisation is vectorised over faces: every pixel centre in every face's bounding box is a
candidate, enumerated in one flat array, tested with barycentric weights at once, and the
nearest candidate per pixel wins (a sort, so ties resolve the same way every time: the output is
deterministic for the same input).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]
IndexArray = npt.NDArray[np.int64]

AMBIENT = 0.22
DIFFUSE = 0.68
SPECULAR = 0.25
SHININESS = 24.0
DEPTH_CUE = 0.35  # the far side of the object is this much darker than the near side
# Light from the upper left, in front of the picture (screen x right, y down, z into the screen).
LIGHT_DIRECTION = (-0.45, -0.6, -0.66)
MAX_CANDIDATES = 1 << 20  # candidate pixels tested at once (about 50 MB of temporaries)


def view_rotation(azimuth_deg: float, elevation_deg: float) -> FloatArray:
    """Rotation from world x y z to screen x y z: x right, y down, z into the screen.

    At (0, 0) the screen is the xy slice as drawn (x right, y down, looking along +z); the object
    is then turned by ``azimuth`` about the screen's vertical axis and tilted by ``elevation``
    about its horizontal axis, so its depth shows while it still resembles the xy slice.
    """
    a = math.radians(azimuth_deg)
    e = math.radians(elevation_deg)
    turn = np.array(
        [[math.cos(a), 0.0, -math.sin(a)], [0.0, 1.0, 0.0], [math.sin(a), 0.0, math.cos(a)]]
    )
    tilt = np.array(
        [[1.0, 0.0, 0.0], [0.0, math.cos(e), math.sin(e)], [0.0, -math.sin(e), math.cos(e)]]
    )
    rotation: FloatArray = tilt @ turn
    return rotation


def weld_vertices(
    vertices: FloatArray, faces: IndexArray, tolerance: float
) -> tuple[FloatArray, IndexArray]:
    """Merge vertices closer than about ``tolerance`` (a multi-resolution mesh duplicates those on
    its fragment cuts; left apart, their normals split and the cuts show as seams)."""
    if not len(vertices):
        return vertices, faces
    keys = np.round(vertices / tolerance).astype(np.int64)
    _, first, inverse = np.unique(keys, axis=0, return_index=True, return_inverse=True)
    return vertices[first], inverse.reshape(-1)[faces]


def vertex_normals(vertices: FloatArray, faces: IndexArray) -> FloatArray:
    """Area-weighted vertex normals (unit length; zero for a vertex of no face)."""
    tri = vertices[faces]
    face_n = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])  # length = 2 x area
    normals = np.zeros_like(vertices)
    for axis in range(3):
        normals[:, axis] = np.bincount(
            faces.reshape(-1), np.repeat(face_n[:, axis], 3), minlength=len(vertices)
        )
    length = np.linalg.norm(normals, axis=1, keepdims=True)
    unit: FloatArray = np.divide(normals, length, out=np.zeros_like(normals), where=length > 0)
    return unit


def _shade(normals_screen: FloatArray) -> FloatArray:
    """Two-sided Blinn-Phong intensity per vertex, normals in screen space."""
    light = np.asarray(LIGHT_DIRECTION, dtype=np.float64)
    light /= np.linalg.norm(light)
    view = np.array([0.0, 0.0, -1.0])
    # Two-sided: a normal pointing into the screen is flipped, so a mesh wound either way (or
    # open) is lit the same.
    facing = np.where(normals_screen[:, 2:3] > 0, -normals_screen, normals_screen)
    diffuse = np.clip(facing @ light, 0.0, None)
    half = light + view
    half /= np.linalg.norm(half)
    specular = np.clip(facing @ half, 0.0, None) ** SHININESS
    return np.asarray(AMBIENT + DIFFUSE * diffuse + SPECULAR * specular, dtype=np.float64)


@dataclass(frozen=True)
class Raster:
    """A rendered picture: intensity in 0..1 (where ``mask``), and which pixels the mesh covers."""

    intensity: npt.NDArray[np.float32]
    mask: npt.NDArray[np.bool_]


def rasterize(
    points: FloatArray, faces: IndexArray, values: FloatArray, size: tuple[int, int]
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.bool_], npt.NDArray[np.float64]]:
    """Z-buffer triangles whose vertices are (x, y, depth) in pixels; pixel (r, c) has its centre
    at (c + 0.5, r + 0.5). Returns the interpolated ``values`` and depth of the nearest surface
    per pixel and the mask of covered pixels."""
    height, width = size
    value_img = np.zeros(size, dtype=np.float64)
    depth_img = np.full(size, np.inf, dtype=np.float64)
    if not len(faces):
        return value_img, np.zeros(size, dtype=bool), depth_img
    tri = points[faces]  # (M, 3 vertices, 3 coords)
    x0, y0 = tri[:, 0, 0], tri[:, 0, 1]
    ex1, ey1 = tri[:, 1, 0] - x0, tri[:, 1, 1] - y0
    ex2, ey2 = tri[:, 2, 0] - x0, tri[:, 2, 1] - y0
    area = ex1 * ey2 - ex2 * ey1
    col_lo = np.ceil(tri[:, :, 0].min(axis=1) - 0.5).astype(np.int64)
    col_hi = np.floor(tri[:, :, 0].max(axis=1) - 0.5).astype(np.int64)
    row_lo = np.ceil(tri[:, :, 1].min(axis=1) - 0.5).astype(np.int64)
    row_hi = np.floor(tri[:, :, 1].max(axis=1) - 0.5).astype(np.int64)
    col_lo, row_lo = np.maximum(col_lo, 0), np.maximum(row_lo, 0)
    col_hi, row_hi = np.minimum(col_hi, width - 1), np.minimum(row_hi, height - 1)
    keep = (np.abs(area) > 1e-12) & (col_lo <= col_hi) & (row_lo <= row_hi)
    # Back faces of a closed, consistently wound mesh are hidden by the front ones: skip them.
    # Outward normals (positive volume) face the viewer (-z) when the screen area is negative.
    volume = float(np.einsum("ij,ij->i", tri[:, 0], np.cross(tri[:, 1], tri[:, 2])).sum())
    if abs(volume) > 1e-9 * max(float(np.abs(tri).max()), 1.0) ** 3:
        keep &= area * math.copysign(1.0, volume) < 0
    face_ids = np.flatnonzero(keep)
    # Every pixel of every face's box is a candidate, enumerated flat (a face's count is its
    # box's area), in groups of faces that keep the candidates under MAX_CANDIDATES.
    widths = col_hi[face_ids] - col_lo[face_ids] + 1
    counts = widths * (row_hi[face_ids] - row_lo[face_ids] + 1)
    group = np.cumsum(counts) // MAX_CANDIDATES
    pixel_parts: list[IndexArray] = []
    depth_parts: list[FloatArray] = []
    value_parts: list[FloatArray] = []
    for g in np.unique(group).tolist():
        ids, count, width_of = face_ids[group == g], counts[group == g], widths[group == g]
        starts = np.cumsum(count) - count
        local = np.arange(int(count.sum())) - np.repeat(starts, count)
        face_of = np.repeat(ids, count)
        row_width = np.repeat(width_of, count)
        cols = col_lo[face_of] + local % row_width
        rows = row_lo[face_of] + local // row_width
        px = cols + 0.5 - x0[face_of]
        py = rows + 0.5 - y0[face_of]
        inv = 1.0 / area[face_of]
        # Barycentric weights of vertices 1 and 2 (vertex 0 gets the rest).
        w1 = (px * ey2[face_of] - py * ex2[face_of]) * inv
        w2 = (py * ex1[face_of] - px * ey1[face_of]) * inv
        w0 = 1.0 - w1 - w2
        eps = -1e-9
        hit = (w0 >= eps) & (w1 >= eps) & (w2 >= eps)
        if not hit.any():
            continue
        f = faces[face_of[hit]]
        w0h, w1h, w2h = w0[hit], w1[hit], w2[hit]
        depth_parts.append(
            w0h * points[f[:, 0], 2] + w1h * points[f[:, 1], 2] + w2h * points[f[:, 2], 2]
        )
        value_parts.append(w0h * values[f[:, 0]] + w1h * values[f[:, 1]] + w2h * values[f[:, 2]])
        pixel_parts.append(rows[hit] * width + cols[hit])
    if not pixel_parts:
        return value_img, np.zeros(size, dtype=bool), depth_img
    pixel = np.concatenate(pixel_parts)
    depth = np.concatenate(depth_parts)
    value = np.concatenate(value_parts)
    order = np.lexsort((depth, pixel))  # by pixel, nearest first; stable, so deterministic
    pixel, depth, value = pixel[order], depth[order], value[order]
    first = np.ones(len(pixel), dtype=bool)
    first[1:] = pixel[1:] != pixel[:-1]
    value_img.reshape(-1)[pixel[first]] = value[first]
    depth_img.reshape(-1)[pixel[first]] = depth[first]
    mask = np.isfinite(depth_img)
    return value_img, mask, depth_img


def render_mesh(
    vertices_xyz: FloatArray,
    faces: IndexArray,
    *,
    centre_xyz: Sequence[float],
    field: float,
    size: int,
    azimuth_deg: float = 30.0,
    elevation_deg: float = 25.0,
    weld_tolerance: float | None = None,
) -> Raster:
    """Render a mesh (x y z, any length unit) in a ``size`` x ``size`` square that shows ``field``
    units across, centred on ``centre_xyz``: orthographic, the mesh turned and tilted as
    :func:`view_rotation` says, Gouraud-shaded, darker with depth."""
    vertices = np.asarray(vertices_xyz, dtype=np.float64).reshape(-1, 3)
    tris = np.asarray(faces, dtype=np.int64).reshape(-1, 3)
    if weld_tolerance is not None and weld_tolerance > 0:
        vertices, tris = weld_vertices(vertices, tris, weld_tolerance)
    rotation = view_rotation(azimuth_deg, elevation_deg)
    normals = vertex_normals(vertices, tris) @ rotation.T
    shade = _shade(normals)
    screen = (vertices - np.asarray(centre_xyz, dtype=np.float64)) @ rotation.T
    scale = size / field
    points = np.empty_like(screen)
    points[:, 0] = screen[:, 0] * scale + size / 2
    points[:, 1] = screen[:, 1] * scale + size / 2
    points[:, 2] = screen[:, 2] * scale
    value, mask, depth = rasterize(points, tris, shade, (size, size))
    if mask.any():
        near, far = float(depth[mask].min()), float(depth[mask].max())
        cue = (np.where(mask, depth, near) - near) / max(far - near, 1e-9)
        value = np.where(mask, value * (1.0 - DEPTH_CUE * cue), 0.0)
    return Raster(np.clip(value, 0.0, 1.0).astype(np.float32), mask)
