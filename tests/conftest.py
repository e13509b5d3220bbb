"""Shared fixtures: every test gets its own data and upload directories and an empty cache."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

pytest_plugins = ["tests.celery_fixtures"]


@pytest.fixture(autouse=True)
def _isolated_data_dirs(settings: Any, tmp_path: Path) -> None:
    """Point DATA_ROOT and UPLOAD_ROOT at a per-test directory."""
    settings.DATA_ROOT = tmp_path / "data"
    settings.UPLOAD_ROOT = tmp_path / "uploads"
    settings.DATA_ROOT.mkdir()
    settings.UPLOAD_ROOT.mkdir()


@pytest.fixture(autouse=True)
def _empty_cache() -> None:
    """Throttle counts and cached access decisions must not leak from one test to the next."""
    from django.core.cache import cache

    cache.clear()
