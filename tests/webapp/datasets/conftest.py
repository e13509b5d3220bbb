"""Fixtures for the datasets tests: factories, API client, tiny input volumes."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import tifffile
from datasets_testdata import (
    DatasetFactory,
    LayerFactory,
    TeamFactory,
    UserFactory,
    make_volume,
)
from rest_framework.test import APIClient


@pytest.fixture(autouse=True)
def _fast_password_hashing(settings: Any) -> None:
    """Password hashing is deliberately slow; these tests do not need it to be."""
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture
def user_factory(db: Any) -> type[UserFactory]:
    return UserFactory


@pytest.fixture
def team_factory(db: Any) -> type[TeamFactory]:
    return TeamFactory


@pytest.fixture
def dataset_factory(db: Any) -> type[DatasetFactory]:
    return DatasetFactory


@pytest.fixture
def layer_factory(db: Any) -> type[LayerFactory]:
    return LayerFactory


@pytest.fixture
def owner(db: Any) -> Any:
    return UserFactory(username="owner")


@pytest.fixture
def other(db: Any) -> Any:
    return UserFactory(username="other")


@pytest.fixture
def api() -> APIClient:
    return APIClient()


@pytest.fixture
def tiff_pair(tmp_path: Path) -> tuple[Path, Path]:
    """(image.tif, nuclei.tif) in a directory outside DATA_ROOT and UPLOAD_ROOT."""
    src = tmp_path / "inputs"
    src.mkdir()
    image, labels = make_volume()
    tifffile.imwrite(src / "image.tif", image)
    tifffile.imwrite(src / "nuclei.tif", labels)
    return src / "image.tif", src / "nuclei.tif"


@pytest.fixture
def data_tree(settings: Any) -> Callable[[], list[str]]:
    """Lists every file and directory under DATA_ROOT, relative to it."""

    def listing() -> list[str]:
        root = Path(settings.DATA_ROOT)
        return sorted(str(p.relative_to(root)) for p in root.rglob("*"))

    return listing
