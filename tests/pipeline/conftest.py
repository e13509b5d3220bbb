"""Small synthetic inputs for the pipeline tests, and independent readers of our output."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import zarr
from ome_zarr.format import FormatV04, FormatV05
from ome_zarr.io import parse_url
from ome_zarr.reader import Label, Multiscales, Reader
from ome_zarr.writer import write_image, write_labels

# Deliberately not multiples of any chunk size.
SHAPE_3D = (40, 70, 90)
SHAPE_2D = (70, 90)


def make_image(shape: tuple[int, ...], dtype: Any = np.uint16, seed: int = 0) -> np.ndarray:
    """A smooth gradient plus noise, so averages and percentiles are not trivial."""
    rng = np.random.default_rng(seed)
    grid = np.indices(shape).sum(axis=0).astype(np.float64)
    values = 100 + 5 * grid + rng.normal(0, 20, shape)
    return np.clip(values, 0, np.iinfo(dtype).max if np.dtype(dtype).kind in "iu" else None).astype(
        dtype
    )


def make_labels(shape: tuple[int, ...], dtype: Any = np.uint32) -> np.ndarray:
    """A few boxes with distinct ids, one of them touching the far (odd-sized) edges."""
    labels = np.zeros(shape, dtype=dtype)
    labels[tuple(slice(2, n // 3) for n in shape)] = 1
    labels[tuple(slice(n // 2, n // 2 + 9) for n in shape)] = 7
    labels[tuple(slice(n - 5, n) for n in shape)] = 300
    return labels


@pytest.fixture
def image_3d() -> np.ndarray:
    return make_image(SHAPE_3D)


@pytest.fixture
def labels_3d() -> np.ndarray:
    return make_labels(SHAPE_3D)


def write_reference_ome_zarr(
    path: Path,
    image: np.ndarray,
    labels: dict[str, np.ndarray],
    *,
    version: str,
    scale: dict[str, float],
    unit: str = "micrometer",
) -> Path:
    """Write an OME-Zarr with ome-zarr-py itself: 0.4 on a Zarr v2 group, 0.5 on v3."""
    fmt = FormatV04() if version == "0.4" else FormatV05()
    group = zarr.open_group(str(path), mode="w", zarr_format=fmt.zarr_format)
    axes = ["z", "y", "x"][-image.ndim :]
    units = dict.fromkeys(axes, unit)
    factors = [dict.fromkeys(axes, 2)]
    write_image(
        image,
        group,
        fmt=fmt,
        axes=axes,
        scale=scale,
        axes_units=units,
        scale_factors=factors,
        storage_options={"chunks": (32,) * image.ndim},
    )
    for name, data in labels.items():
        write_labels(
            data,
            group,
            name,
            fmt=fmt,
            axes=axes,
            scale=scale,
            axes_units=units,
            scale_factors=factors,
        )
    return path


@dataclass
class ReadBack:
    """Our output as ome-zarr-py's reader sees it."""

    levels: list[np.ndarray]
    axes: list[dict[str, Any]]
    scales: list[list[float]]
    labels: dict[str, list[np.ndarray]]
    label_scales: dict[str, list[list[float]]]


def read_with_ome_zarr_py(path: Path) -> ReadBack:
    """Read an OME-Zarr image and its labels with ome-zarr-py's reader."""
    nodes = list(Reader(parse_url(str(path)))())
    images = [n for n in nodes if n.load(Multiscales) and not n.load(Label)]
    assert images, "ome-zarr-py found no image"
    image = images[0]
    labels: dict[str, list[np.ndarray]] = {}
    label_scales: dict[str, list[list[float]]] = {}
    for node in nodes:
        if node.load(Label):
            name = str(node.zarr.path).rstrip("/").rsplit("/", 1)[-1]
            labels[name] = [np.asarray(level) for level in node.data]
            label_scales[name] = _scales(node.metadata)
    return ReadBack(
        levels=[np.asarray(level) for level in image.data],
        axes=list(image.metadata["axes"]),
        scales=_scales(image.metadata),
        labels=labels,
        label_scales=label_scales,
    )


def _scales(metadata: dict[str, Any]) -> list[list[float]]:
    return [
        next(t["scale"] for t in transforms if t["type"] == "scale")
        for transforms in metadata["coordinateTransformations"]
    ]


def validate_with_models(path: Path) -> Any:
    """Validate a written store with ome-zarr-models (NGFF 0.5 image, its labels included)."""
    from ome_zarr_models.v05.image import Image

    model = Image.from_zarr(zarr.open_group(str(path), mode="r"))
    labels = model.labels
    if labels is not None:
        for name in labels.label_paths:
            labels.get_image_labels_group(name)
    return model
