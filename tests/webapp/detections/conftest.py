"""Fixtures for the detections tests: users, a real imported dataset, synthetic tables."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import tifffile
from detections_testdata import VOXEL_NM, make_volume, synthetic_frame, table_with
from django.contrib.auth import get_user_model
from rest_framework.test import APIClient

from webapp.datasets import services as dataset_services
from webapp.datasets.models import Dataset, JobStatus, Layer, LayerKind, Visibility
from webapp.detections.services import detections_build_now


@pytest.fixture(autouse=True)
def _fast_password_hashing(settings: Any) -> None:
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture
def owner(db: Any) -> Any:
    return get_user_model().objects.create_user("owner", password="owner-pass-123")


@pytest.fixture
def other(db: Any) -> Any:
    return get_user_model().objects.create_user("other", password="other-pass-123")


@pytest.fixture
def api() -> APIClient:
    return APIClient()


@pytest.fixture
def imported(owner: Any, tmp_path: Path) -> tuple[Dataset, Layer, np.ndarray, np.ndarray]:
    """A dataset imported for real (image, labels 'nuclei', meshes), its table built in-process.

    The import's ``layers_changed`` queues a build on commit, which the test's transaction never
    reaches; the fixture builds it directly.
    """
    image, labels = make_volume()
    src = tmp_path / "inputs"
    src.mkdir()
    tifffile.imwrite(src / "image.tif", image)
    tifffile.imwrite(src / "nuclei.tif", labels)
    job = dataset_services.import_job_create(
        owner,
        name="Cells",
        source_path=src / "image.tif",
        labels={"nuclei": src / "nuclei.tif"},
        voxel_size=VOXEL_NM,
        unit="nanometer",
        enqueue=False,
    )
    job = dataset_services.import_job_run(job.id)
    assert job.status == JobStatus.SUCCEEDED, job.error
    assert job.dataset is not None
    layer = job.dataset.layers.get(name="nuclei")
    build = detections_build_now(layer)
    assert build.status == JobStatus.SUCCEEDED, (build.error, build.log)
    return job.dataset, layer, image, labels


@pytest.fixture
def make_layer(owner: Any) -> Callable[..., Layer]:
    """A dataset (no files) with a segmentation layer 'nuclei' and an image layer."""

    def make(
        visibility: str = Visibility.PRIVATE, slug: str = "cells", rows: int = 0, **kw: Any
    ) -> Layer:
        dataset = Dataset.objects.create(
            name=slug, slug=slug, owner=kw.pop("dataset_owner", owner), visibility=visibility, **kw
        )
        Layer.objects.create(dataset=dataset, name="image", kind=LayerKind.IMAGE, path="i")
        layer = Layer.objects.create(
            dataset=dataset,
            name="nuclei",
            kind=LayerKind.SEGMENTATION,
            path="i/labels/nuclei",
            voxel_size=[200.0, 200.0, 200.0],
        )
        if rows:
            table_with(layer, synthetic_frame(rows))
        return layer

    return make
