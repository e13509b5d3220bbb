"""The detections table of a label image: one row per object, in voxels and in micrometres.

Statistics come from :func:`pipeline.morphometrics.label_stats` (one pass, block by block, so
memory is bounded by a block plus one row per object); the same pass sums the image over each
object when an image level of the same shape exists (the mean intensity). Surface areas come from
the meshes: :func:`pipeline.meshing.build_meshes` measures each object's smoothed surface and
writes it to ``morphometrics.parquet`` beside them (um^2); objects without one get no area and
no sphericity. ``mean_probability`` is the mean of a run's foreground probability over each
object, when the probability map is given (:func:`measure_detections_of_store`), else empty.

Units and positions: physical values are in micrometres whatever the store's unit. Voxel ``i``
has its centre at ``translation + i * voxel_size`` (NGFF's pixel-centre convention, and where
the meshes put it), so the box of voxels ``[lo, hi)`` spans ``translation + (lo - 0.5) *
voxel_size`` to ``translation + (hi - 0.5) * voxel_size``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd

from pipeline.errors import InvalidInputError
from pipeline.morphometrics import DepthOneView, LabelArray, LabelStats, label_stats, sphericity
from pipeline.progress import ProgressCallback, no_progress

MORPHOMETRICS_PARQUET = "morphometrics.parquet"
MORPHOMETRICS_CSV = "morphometrics.csv"

#: The table's columns, in order (the database's and the exports' order too).
DETECTION_COLUMNS: tuple[str, ...] = (
    "segment_id",
    "voxels",
    "volume",
    "surface_area",
    "sphericity",
    "mean_intensity",
    "mean_probability",
    "centroid_z",
    "centroid_y",
    "centroid_x",
    "centroid_z_um",
    "centroid_y_um",
    "centroid_x_um",
    "bbox_z0",
    "bbox_y0",
    "bbox_x0",
    "bbox_z1",
    "bbox_y1",
    "bbox_x1",
    "bbox_z0_um",
    "bbox_y0_um",
    "bbox_x0_um",
    "bbox_z1_um",
    "bbox_y1_um",
    "bbox_x1_um",
)
#: What each column holds, for people reading an export or the API schema.
COLUMN_DESCRIPTIONS: dict[str, str] = {
    "segment_id": "the object's id in the label image",
    "voxels": "number of voxels",
    "volume": "volume in um^3 (voxels times the voxel volume); a 2D image's objects: area in um^2",
    "surface_area": "surface area in um^2 of the object's smoothed mesh (empty without meshes)",
    "sphericity": "pi^(1/3) (6 V)^(2/3) / A: 1 for a sphere (empty without a surface area)",
    "mean_intensity": "mean value of the image over the object's voxels (first channel)",
    "mean_probability": "mean foreground probability of a pipeline run's prediction",
    **{f"centroid_{a}": f"centroid, {a} in voxels" for a in "zyx"},
    **{f"centroid_{a}_um": f"centroid, {a} in um" for a in "zyx"},
    **{f"bbox_{a}0": f"bounding box, first voxel along {a}" for a in "zyx"},
    **{f"bbox_{a}1": f"bounding box, one past the last voxel along {a}" for a in "zyx"},
    **{f"bbox_{a}0_um": f"bounding box, lower edge along {a} in um" for a in "zyx"},
    **{f"bbox_{a}1_um": f"bounding box, upper edge along {a} in um" for a in "zyx"},
}


@dataclass(frozen=True)
class Geometry:
    """Where a label image's voxels lie: voxel size and origin in nanometres, z y x."""

    voxel_size_nm: tuple[float, float, float]
    translation_nm: tuple[float, float, float] = (0.0, 0.0, 0.0)

    def __post_init__(self) -> None:
        if len(self.voxel_size_nm) != 3 or any(not v > 0 for v in self.voxel_size_nm):
            raise InvalidInputError(f"voxel size must be 3 positive numbers: {self.voxel_size_nm}")
        if len(self.translation_nm) != 3:
            raise InvalidInputError(f"translation must be 3 numbers: {self.translation_nm}")

    @property
    def pixel_area_um2(self) -> float:
        """One voxel's y x face, um^2: a 2D image's pixel, whose objects are measured by area."""
        return self.voxel_size_nm[1] * self.voxel_size_nm[2] / 1e6


def detections_frame(
    stats: LabelStats,
    geometry: Geometry,
    areas_um2: Mapping[int, float] | None = None,
) -> pd.DataFrame:
    """The detections table (``DETECTION_COLUMNS``) of measured objects."""
    voxel_um = np.asarray(geometry.voxel_size_nm, dtype=np.float64) * 1e-3
    origin_um = np.asarray(geometry.translation_nm, dtype=np.float64) * 1e-3
    n = len(stats)
    volume = stats.voxels.astype(np.float64) * float(np.prod(voxel_um))
    areas = areas_um2 or {}
    surface = np.array([areas.get(int(i), np.nan) for i in stats.ids.tolist()], dtype=np.float64)
    spher = np.array(
        [
            sphericity(v, a) if np.isfinite(a) else np.nan
            for v, a in zip(volume.tolist(), surface.tolist(), strict=True)
        ],
        dtype=np.float64,
    )
    mean = stats.mean_intensity
    data: dict[str, npt.NDArray[Any]] = {
        "segment_id": stats.ids.astype(np.int64),
        "voxels": stats.voxels.astype(np.int64),
        "volume": volume,
        "surface_area": surface,
        "sphericity": spher,
        "mean_intensity": np.full(n, np.nan) if mean is None else mean,
        "mean_probability": np.full(n, np.nan),
    }
    centroid_um = origin_um + stats.centroids * voxel_um
    lo_um = origin_um + (stats.bbox_min - 0.5) * voxel_um
    hi_um = origin_um + (stats.bbox_max - 0.5) * voxel_um
    for axis, name in enumerate("zyx"):
        data[f"centroid_{name}"] = stats.centroids[:, axis]
    for axis, name in enumerate("zyx"):
        data[f"centroid_{name}_um"] = centroid_um[:, axis]
    for axis, name in enumerate("zyx"):
        data[f"bbox_{name}0"] = stats.bbox_min[:, axis].astype(np.int64)
    for axis, name in enumerate("zyx"):
        data[f"bbox_{name}1"] = stats.bbox_max[:, axis].astype(np.int64)
    for axis, name in enumerate("zyx"):
        data[f"bbox_{name}0_um"] = lo_um[:, axis]
    for axis, name in enumerate("zyx"):
        data[f"bbox_{name}1_um"] = hi_um[:, axis]
    return pd.DataFrame(data, columns=list(DETECTION_COLUMNS))


def measure_detections(
    labels: LabelArray,
    geometry: Geometry,
    *,
    image: LabelArray | None = None,
    areas_um2: Mapping[int, float] | None = None,
    block_shape: Sequence[int] | None = None,
    progress: ProgressCallback = no_progress,
) -> pd.DataFrame:
    """Measure every object of ``labels`` (z y x) block by block; see the module docstring."""
    stats = label_stats(labels, block_shape, progress, image=image)
    return detections_frame(stats, geometry, areas_um2)


def measure_objects(labels: LabelArray, geometry: Geometry) -> pd.DataFrame:
    """The detections table of a small label array measured in full: statistics as
    :func:`measure_detections`, and each object's surface area (hence sphericity) from its
    smoothed mesh as :func:`pipeline.meshing.build_meshes` measures it, without writing meshes
    (a painted task box's objects, measured on request)."""
    from pipeline.meshing import surface_areas_um2

    stats = label_stats(labels)
    return detections_frame(
        stats, geometry, surface_areas_um2(labels, stats, geometry.voxel_size_nm)
    )


def mesh_areas_um2(meshes_dir: Path | None) -> dict[int, float]:
    """Surface area (um^2) per object from the morphometrics ``build_meshes`` wrote (or {})."""
    if meshes_dir is None:
        return {}
    parquet, csv = Path(meshes_dir) / MORPHOMETRICS_PARQUET, Path(meshes_dir) / MORPHOMETRICS_CSV
    try:
        if parquet.is_file():
            table = pd.read_parquet(parquet, columns=["id", "surface_area"])
        elif csv.is_file():
            table = pd.read_csv(csv, usecols=["id", "surface_area"])
        else:
            return {}
    except (ValueError, KeyError, OSError) as exc:
        raise InvalidInputError(
            f"cannot read the surface areas in {Path(meshes_dir).name}: {type(exc).__name__}"
        )
    table = table.dropna()
    return dict(
        zip(
            table["id"].astype(np.int64).tolist(),
            table["surface_area"].astype(np.float64).tolist(),
            strict=True,
        )
    )


def image_matching(image_path: Path, shape: Sequence[int]) -> LabelArray | None:
    """The first channel of the pyramid level of the image at ``image_path`` whose spatial
    shape is ``shape`` (the labels' voxels), or None when no level matches."""
    from pipeline.ome_zarr_io import SpatialView, open_multiscale

    image = open_multiscale(Path(image_path))
    spatial = image.spatial_indices
    if len(spatial) != len(shape):
        return None
    for array in image.levels:
        if tuple(int(array.shape[i]) for i in spatial) == tuple(int(s) for s in shape):
            view: LabelArray = array if len(spatial) == array.ndim else SpatialView(array, spatial)
            return view
    return None


@dataclass(frozen=True)
class LabelLevelZyx:
    """A label image's full resolution as z y x: a 2D one lifted to one voxel deep (its depth
    as thick as a pixel is wide, as the site's campaigns make a 2D image), its geometry to
    match; ``flat`` says it was 2D."""

    array: LabelArray
    geometry: Geometry
    shape: tuple[int, int, int]
    flat: bool


def open_label_zyx(labels_path: Path) -> LabelLevelZyx:
    """Level 0 of the OME-Zarr label image at ``labels_path``, 2D or 3D, as z y x."""
    from pipeline.ome_zarr_io import open_spatial_level

    level = open_spatial_level(Path(labels_path), 0, "label image")
    array: LabelArray = level.array
    voxel, origin = level.voxel_size_nm, level.translation_nm
    flat = len(level.axes) == 2
    if flat:
        array, voxel, origin = DepthOneView(array), (voxel[0], *voxel), (0.0, *origin)
    elif len(level.axes) != 3:
        raise InvalidInputError(f"a label image is 2D or 3D, axes are {list(level.axes)}")
    z, y, x = (int(n) for n in array.shape)
    geometry = Geometry((voxel[0], voxel[1], voxel[2]), (origin[0], origin[1], origin[2]))
    return LabelLevelZyx(array, geometry, (z, y, x), flat)


def measure_detections_of_store(
    labels_path: Path,
    *,
    image_path: Path | None = None,
    meshes_dir: Path | None = None,
    probability_path: Path | None = None,
    block_shape: Sequence[int] | None = None,
    progress: ProgressCallback = no_progress,
) -> pd.DataFrame:
    """The detections table of the OME-Zarr label image at ``labels_path`` (its full resolution),
    with mean intensities from ``image_path``, surface areas from ``meshes_dir`` and the mean
    foreground probability from ``probability_path`` (the prediction a run segmented: a second
    pass over the labels, with that map as the image). A 2D label image's ``volume`` column
    holds each object's area in um^2 (its pixels' area, not times the one-pixel depth it is
    measured at: a volume of a section would be a made-up number)."""
    level = open_label_zyx(labels_path)
    stored = level.shape[1:] if level.flat else level.shape  # the image levels' spatial shape

    def matching(path: Path | None) -> LabelArray | None:
        found = image_matching(path, stored) if path is not None else None
        return DepthOneView(found) if found is not None and level.flat else found

    frame = measure_detections(
        level.array,
        level.geometry,
        image=matching(image_path),
        areas_um2=mesh_areas_um2(meshes_dir),
        block_shape=block_shape,
        progress=progress,
    )
    if level.flat:
        frame["volume"] = frame["voxels"] * level.geometry.pixel_area_um2
    probability = matching(probability_path)
    if probability is not None:
        stats = label_stats(level.array, block_shape, progress, image=probability)
        means = stats.mean_intensity
        if means is not None:
            by_id = dict(zip(stats.ids.tolist(), means.tolist(), strict=True))
            frame["mean_probability"] = [by_id.get(int(i), np.nan) for i in frame["segment_id"]]
    return frame
