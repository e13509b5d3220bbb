"""Plain descriptions of volumes and stores, passed between the pipeline and its callers."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class LayerInfo:
    """What the site records about one written or registered OME-Zarr image or label image.

    ``path`` is relative to the dataset directory (e.g. ``image.ome.zarr`` or
    ``image.ome.zarr/labels/nuclei``); ``voxel_size`` holds the spatial axes in z, y, x order
    (2D images: y, x).
    """

    path: str
    ngff_version: str
    shape: tuple[int, ...]
    axes: tuple[str, ...]
    dtype: str
    voxel_size: tuple[float, ...]
    unit: str
    channels: int = 1
    levels: int = 1
    contrast: tuple[float, float] | None = None


@dataclass(frozen=True)
class ConversionResult:
    """The image and label layers an import wrote."""

    image: LayerInfo
    labels: dict[str, LayerInfo] = field(default_factory=dict)


@dataclass(frozen=True)
class MeshResult:
    """What a mesh build wrote: precomputed meshes plus segment properties."""

    path: str  # relative to the dataset directory, e.g. "meshes/nuclei"
    n_objects: int
    properties_csv: str  # relative path of the morphometrics table (CSV; Parquet beside it)
