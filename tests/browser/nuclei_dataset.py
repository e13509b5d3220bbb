"""A small synthetic nuclei dataset (image, labels, meshes) registered through the ORM.

Built with the real pipeline (synthesis, OME-Zarr 0.5 conversion, meshing) so the viewer and
the data views see what an import produces. Shared by the viewer unit and browser tests.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser

from pipeline.importers import convert_to_ome_zarr
from pipeline.meshing import build_meshes
from pipeline.synthetic import make_nuclei_volume
from pipeline.volume_info import LayerInfo
from webapp.datasets.models import Dataset, Layer, LayerKind, Visibility


def _layer(dataset: Dataset, name: str, kind: str, info: LayerInfo) -> Layer:
    return Layer.objects.create(
        dataset=dataset,
        name=name,
        kind=kind,
        path=info.path,
        ngff_version=info.ngff_version,
        shape=list(info.shape),
        axes=list(info.axes),
        dtype=info.dtype,
        voxel_size=list(info.voxel_size),
        unit=info.unit,
        channels=info.channels,
        levels=info.levels,
        contrast_min=info.contrast[0] if info.contrast else None,
        contrast_max=info.contrast[1] if info.contrast else None,
    )


def build_nuclei_dataset(
    owner: AbstractBaseUser,
    *,
    slug: str = "nuclei",
    shape: tuple[int, int, int] = (96, 96, 96),
    n_nuclei: int = 20,
    visibility: str = Visibility.PUBLIC,
    seed: int = 3,
    image: np.ndarray | None = None,
) -> Dataset:
    """Write the stores under ``DATA_ROOT/datasets/<slug>`` and create Dataset + 3 Layer rows.
    ``image`` (of ``shape``) replaces the synthetic image: the labels stay the nuclei's."""
    root = Path(settings.DATA_ROOT) / "datasets" / slug
    root.parent.mkdir(parents=True, exist_ok=True)
    synthetic, labels = make_nuclei_volume(shape, n_nuclei, seed, 200.0)
    if image is None:
        image = synthetic
    assert image.shape == labels.shape, (image.shape, labels.shape)
    with tempfile.TemporaryDirectory() as tmp:
        np.save(Path(tmp) / "image.npy", image)
        np.save(Path(tmp) / "labels.npy", labels)
        result = convert_to_ome_zarr(
            Path(tmp) / "image.npy",
            root,
            voxel_size=(200.0, 200.0, 200.0),
            unit="nanometer",
            labels={"nuclei": Path(tmp) / "labels.npy"},
            chunk=32,
        )
    build_meshes(root / result.labels["nuclei"].path, root / "meshes" / "nuclei")
    dataset = Dataset.objects.create(
        name=f"Nuclei {slug}",
        slug=slug,
        description="Synthetic nuclei for tests",
        owner=owner,
        visibility=visibility,
    )
    _layer(dataset, "image", LayerKind.IMAGE, result.image)
    segmentation = _layer(dataset, "nuclei", LayerKind.SEGMENTATION, result.labels["nuclei"])
    Layer.objects.create(
        dataset=dataset,
        name="nuclei meshes",
        kind=LayerKind.MESH,
        path="meshes/nuclei",
        source_layer=segmentation,
        unit="nanometer",
        voxel_size=list(result.image.voxel_size),
    )
    return dataset
