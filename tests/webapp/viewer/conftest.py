"""Fixtures for viewer tests: users, ORM-only datasets, and a real pipeline-built one."""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from django.contrib.auth import get_user_model

from webapp.datasets.models import Dataset, Layer, LayerKind, ShareLink, Visibility

_BUILDER = Path(__file__).resolve().parents[2] / "browser" / "nuclei_dataset.py"


def _load_builder() -> Any:
    spec = importlib.util.spec_from_file_location("viewer_nuclei_dataset", _BUILDER)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def owner(db: Any) -> Any:
    return get_user_model().objects.create_user("owner", password="owner-pass-123")


@pytest.fixture
def other(db: Any) -> Any:
    return get_user_model().objects.create_user("other", password="other-pass-123")


@pytest.fixture
def make_dataset(owner: Any) -> Callable[..., Dataset]:
    """A dataset with image (0.5), labels (``labels_version``) and a mesh layer; no files."""

    def make(
        slug: str = "cells",
        visibility: str = Visibility.PRIVATE,
        shape: tuple[int, int, int] = (40, 60, 80),
        labels_version: str = "0.5",
    ) -> Dataset:
        dataset = Dataset.objects.create(
            name=f"Cells {slug}", slug=slug, owner=owner, visibility=visibility
        )
        common = {
            "shape": list(shape),
            "axes": ["z", "y", "x"],
            "voxel_size": [400.0, 200.0, 100.0],
            "unit": "nanometer",
        }
        Layer.objects.create(
            dataset=dataset,
            name="image",
            kind=LayerKind.IMAGE,
            path="image.ome.zarr",
            ngff_version="0.5",
            dtype="uint16",
            contrast_min=100.0,
            contrast_max=900.0,
            **common,
        )
        labels = Layer.objects.create(
            dataset=dataset,
            name="nuclei",
            kind=LayerKind.SEGMENTATION,
            path="image.ome.zarr/labels/nuclei",
            ngff_version=labels_version,
            dtype="uint32",
            **common,
        )
        Layer.objects.create(
            dataset=dataset,
            name="nuclei meshes",
            kind=LayerKind.MESH,
            path="meshes/nuclei",
            source_layer=labels,
        )
        return dataset

    return make


@pytest.fixture
def share_link(owner: Any) -> Callable[[Dataset], ShareLink]:
    def make(dataset: Dataset) -> ShareLink:
        return ShareLink.objects.create(dataset=dataset, created_by=owner)

    return make


@pytest.fixture
def nuclei_dataset(owner: Any) -> Dataset:
    """A real 48^3 dataset written by the pipeline, private to ``owner``."""
    builder = _load_builder()
    return builder.build_nuclei_dataset(
        owner, slug="real", shape=(48, 48, 48), n_nuclei=6, visibility=Visibility.PRIVATE
    )
