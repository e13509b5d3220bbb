"""Helpers shared by the detections tests (imported by name: a unique module name)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from pipeline.detections import DETECTION_COLUMNS
from webapp.datasets.models import JobStatus, Layer
from webapp.detections.builds import detections_replace
from webapp.detections.models import DetectionBuild

SHAPE = (16, 24, 32)
VOXEL_NM = (400.0, 200.0, 100.0)


def make_volume() -> tuple[np.ndarray, np.ndarray]:
    """A textured image and three objects: two balls and a box crossing the 8-voxel grid."""
    rng = np.random.default_rng(0)
    z, y, x = np.ogrid[: SHAPE[0], : SHAPE[1], : SHAPE[2]]
    labels = np.zeros(SHAPE, dtype=np.uint16)
    labels[(z - 8) ** 2 + (y - 7) ** 2 + (x - 8) ** 2 <= 25] = 1
    labels[(z - 8) ** 2 + (y - 14) ** 2 + (x - 22) ** 2 <= 36] = 2
    labels[1:5, 18:23, 3:11] = 40
    image = (rng.normal(100, 10, SHAPE) + 800 * (labels > 0)).clip(0, 65535).astype(np.uint16)
    return image, labels


def synthetic_frame(n: int, seed: int = 0, first_id: int = 1) -> pd.DataFrame:
    """A table of ``n`` made-up objects with ties in volume and some missing areas."""
    rng = np.random.default_rng(seed)
    lo = rng.integers(0, 900, size=(n, 3))
    size = rng.integers(1, 40, size=(n, 3))
    voxels = rng.integers(10, 5000, size=n)
    data: dict[str, Any] = {
        "segment_id": np.arange(first_id, first_id + n, dtype=np.int64),
        "voxels": voxels,
        "volume": np.round(voxels * 0.008, 1),  # rounded: ties
        "surface_area": np.where(rng.random(n) < 0.1, np.nan, rng.uniform(1, 100, n)),
        "sphericity": rng.uniform(0.3, 1.0, n),
        "mean_intensity": rng.uniform(0, 4000, n),
        "mean_probability": np.full(n, np.nan),
    }
    centroid = lo + size / 2
    for axis, name in enumerate("zyx"):
        data[f"centroid_{name}"] = centroid[:, axis]
        data[f"centroid_{name}_um"] = centroid[:, axis] * 0.2
    for axis, name in enumerate("zyx"):
        data[f"bbox_{name}0"] = lo[:, axis]
        data[f"bbox_{name}1"] = lo[:, axis] + size[:, axis]
        data[f"bbox_{name}0_um"] = (lo[:, axis] - 0.5) * 0.2
        data[f"bbox_{name}1_um"] = (lo[:, axis] + size[:, axis] - 0.5) * 0.2
    return pd.DataFrame(data, columns=list(DETECTION_COLUMNS))


def table_with(layer: Layer, frame: pd.DataFrame) -> DetectionBuild:
    """Write ``frame`` as ``layer``'s table through the build's own writer, as a finished build."""
    build = DetectionBuild.objects.create(
        layer=layer, owner=layer.dataset.owner, status=JobStatus.RUNNING, attempts=1
    )
    detections_replace(layer, build, frame)
    DetectionBuild.objects.filter(id=build.id).update(
        status=JobStatus.SUCCEEDED, n_detections=len(frame), finished=build.created
    )
    build.refresh_from_db()
    return build


def write_many_objects(dataset_dir: Any, cells: tuple[int, int, int]) -> tuple[int, ...]:
    """A label image of ``prod(cells)`` boxes (4 x 9 x 9 voxels, one per 5 x 10 x 10 cell) and an
    image, as OME-Zarr 0.5 stores ``labels.ome.zarr`` and ``image.ome.zarr``, written slab by
    slab; returns the shape."""
    from pipeline.ome_zarr_io import create_single_level_image

    cell = (5, 10, 10)
    shape = tuple(c * n for c, n in zip(cell, cells, strict=True))
    kw: dict[str, Any] = {"chunks": (25, 100, 100), "voxel_size": VOXEL_NM}
    labels = create_single_level_image(
        dataset_dir / "labels.ome.zarr", shape, dtype="uint32", name="nuclei", label=True, **kw
    )
    image = create_single_level_image(
        dataset_dir / "image.ome.zarr", shape, dtype="uint16", name="image", **kw
    )
    y, x = np.indices(shape[1:])
    for z0 in range(0, shape[0], 25):
        z = np.arange(z0, min(z0 + 25, shape[0]))[:, None, None]
        inside = (z % cell[0] < 4) & (y % cell[1] < 9) & (x % cell[2] < 9)
        ids = (z // cell[0]) * cells[1] * cells[2] + (y // cell[1]) * cells[2] + x // cell[2] + 1
        labels[z0 : z0 + len(z)] = np.where(inside, ids, 0).astype(np.uint32)
        image[z0 : z0 + len(z)] = np.where(inside, ids % 1000, 7).astype(np.uint16)
    return shape
