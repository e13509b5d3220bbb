"""Read-side queries for the viewer pages."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from pipeline.units import UNIT_SYMBOLS
from webapp.core.users import AnyUser
from webapp.datasets.models import Dataset, Layer, LayerKind
from webapp.datasets.selectors import (
    dataset_for_share_token,
    dataset_for_user,
    datasets_visible_to,
)
from webapp.viewer.models import SavedState

NON_SPATIAL_AXES = ("c", "t")


@dataclass(frozen=True)
class DatasetSummary:
    """What a dataset card shows."""

    dataset: Dataset
    shape: list[int]
    axes: list[str]
    voxels: int
    nbytes: int
    voxel_size: list[float]
    unit: str
    layer_counts: dict[str, int]

    @property
    def spatial_axes(self) -> list[str]:
        return [a for a in self.axes if a not in NON_SPATIAL_AXES]

    @property
    def voxels_text(self) -> str:
        """E.g. "192,000 voxels", or "65,536 pixels" for a 2D image."""
        return f"{self.voxels:,} " + ("pixels" if len(self.spatial_axes) == 2 else "voxels")

    @property
    def voxel_size_text(self) -> str:
        """E.g. "200 x 200 x 200 nm (zyx)"; units outside the table keep their name."""
        if not self.voxel_size:
            return ""
        unit = UNIT_SYMBOLS.get(self.unit, self.unit)
        spatial = "".join(self.spatial_axes)
        sizes = " \u00d7 ".join(f"{v:g}" for v in self.voxel_size)
        return f"{sizes} {unit}" + (f" ({spatial})" if spatial else "")


def _itemsize(dtype: str) -> int:
    try:
        return np.dtype(dtype or "uint8").itemsize
    except TypeError:
        return 1


def _probability_map(layer: Layer) -> bool:
    """An image layer a run derived from its segmentation, not an image of the dataset."""
    return layer.kind == LayerKind.IMAGE and layer.source_layer_id is not None


def dataset_summary(dataset: Dataset) -> DatasetSummary:
    """Shape, size and voxel size of a dataset's first image (or labels) layer."""
    layers: list[Layer] = list(dataset.layers.all())
    images = [la for la in layers if la.kind == LayerKind.IMAGE and not _probability_map(la)]
    reference = next(iter(images), None) or next(
        (la for la in layers if la.kind == LayerKind.SEGMENTATION), None
    )
    counts: dict[str, int] = {}
    for layer in layers:
        kind = "probability map" if _probability_map(layer) else layer.kind
        counts[kind] = counts.get(kind, 0) + 1
    if reference is None:
        return DatasetSummary(dataset, [], [], 0, 0, [], "", counts)
    shape = [int(n) for n in reference.shape or []]
    axes = [str(a) for a in reference.axes or []]
    # Voxels (pixels of a 2D image) count space only: three channels are not three times the
    # voxels, though they are three times the bytes.
    spatial = (
        [n for n, a in zip(shape, axes, strict=True) if a not in NON_SPATIAL_AXES]
        if len(axes) == len(shape)
        else shape
    )
    return DatasetSummary(
        dataset=dataset,
        shape=shape,
        axes=axes,
        voxels=math.prod(spatial) if spatial else 0,
        nbytes=(math.prod(shape) if shape else 0) * _itemsize(reference.dtype),
        voxel_size=[float(v) for v in reference.voxel_size or []],
        unit=reference.unit,
        layer_counts=counts,
    )


def dataset_summaries_for(user: AnyUser) -> list[DatasetSummary]:
    """Cards for every dataset ``user`` may see."""
    datasets = datasets_visible_to(user).select_related("owner").prefetch_related("layers")
    return [dataset_summary(d) for d in datasets]


def viewer_dataset(slug: str, user: AnyUser, share_token: str | None = None) -> Dataset | None:
    """The dataset ``slug`` if this user (or this active share link) may see it."""
    if share_token is not None:
        return dataset_for_share_token(share_token, slug)
    return dataset_for_user(slug, user)


def saved_state_for(dataset: Dataset, key: str) -> SavedState | None:
    """The saved state ``key`` of ``dataset``; a key of another dataset does not match."""
    return SavedState.objects.filter(dataset=dataset, key=key).first()
