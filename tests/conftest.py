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
def _empty_cache(settings: Any, tmp_path: Path) -> None:
    """Throttle counts must not leak from one test (or one concurrent test process) to the next:
    the embedded file cache gets a directory per test; a configured Redis cache is cleared."""
    from django.core.cache import cache

    if settings.CACHES["default"]["BACKEND"].endswith("FileBasedCache"):
        settings.CACHES = {
            "default": {**settings.CACHES["default"], "LOCATION": str(tmp_path / "cache")}
        }
    cache.clear()
