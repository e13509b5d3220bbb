"""Factories and tiny volumes shared by the datasets tests (imported by name: unique module)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import zarr
from ome_zarr.format import FormatV04
from ome_zarr.writer import write_image

from tests.model_factories import (  # noqa: F401  (re-exported for the datasets tests)
    SHAPE,
    DatasetFactory,
    LayerFactory,
    TeamFactory,
    UserFactory,
)


def make_volume(shape: tuple[int, int, int] = SHAPE) -> tuple[np.ndarray, np.ndarray]:
    """A textured uint16 image and uint16 labels with two balls (ids 1 and 2)."""
    rng = np.random.default_rng(0)
    z, y, x = np.ogrid[: shape[0], : shape[1], : shape[2]]
    labels = np.zeros(shape, dtype=np.uint16)
    labels[(z - 8) ** 2 + (y - 8) ** 2 + (x - 8) ** 2 <= 25] = 1
    labels[(z - 8) ** 2 + (y - 14) ** 2 + (x - 22) ** 2 <= 36] = 2
    image = (rng.normal(100, 10, shape) + 800 * (labels > 0)).clip(0, 65535).astype(np.uint16)
    return image, labels


def ome_zarr_with_escaping_level(path: Path) -> Path:
    """A real OME-Zarr 0.4 store whose first pyramid level path climbs out of it (``../``)."""
    fmt = FormatV04()
    group = zarr.open_group(str(path), mode="w", zarr_format=2)
    axes = ["z", "y", "x"]
    write_image(make_volume()[0], group, fmt=fmt, axes=axes, scale_factors=[])
    attrs = json.loads((path / ".zattrs").read_text())
    attrs["multiscales"][0]["datasets"][0]["path"] = "../outside"
    (path / ".zattrs").write_text(json.dumps(attrs))
    return path
