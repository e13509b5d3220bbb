"""Shared fixtures: every test gets its own data and upload directories and an empty cache."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

pytest_plugins = ["tests.celery_fixtures"]


def pytest_configure(config: pytest.Config) -> None:
    """pytest-django's live server answers without Nagle's algorithm (TCP_NODELAY, as gunicorn
    does): Django's handler writes a response's headers and body in separate sends, and on a
    kept-alive connection the body then waited for the client's delayed ACK, 40 ms per request
    (52 ms against 11 ms for a new connection; schemathesis, which keeps its connection, spent
    three quarters of its 13.7 minutes waiting)."""
    from django.core.servers.basehttp import WSGIRequestHandler

    WSGIRequestHandler.disable_nagle_algorithm = True


# Files that take minutes, longest first. `make test` runs three xdist processes with whole files
# per process (--dist loadfile, --no-loadscope-reorder): these go out first, one to each process,
# and the many short files fill in behind them. By default xdist sends the files with the most
# tests first, which put these one- and few-test files at the end of the run as its tail
# (24.5 minutes instead of about 18, with two processes).
HEAVY_FILES_FIRST = (
    "tests/pipeline/test_end_to_end.py",
    "tests/webapp/core/test_schemathesis.py",
    "tests/browser/test_make_up_site.py",
    "tests/browser/test_annotation_story.py",
    "tests/integration/test_runs.py",
    "tests/browser/test_run_page.py",
    "tests/test_embedded.py",
    "tests/integration/test_run_worker_loss.py",
)


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Move the heavy files to the front, keeping every other order (the sort is stable)."""
    rank = {path: index for index, path in enumerate(HEAVY_FILES_FIRST)}
    items.sort(key=lambda item: rank.get(item.nodeid.split("::", 1)[0], len(rank)))


@pytest.fixture(autouse=True)
def _isolated_data_dirs(settings: Any, tmp_path: Path) -> None:
    """Point DATA_ROOT and UPLOAD_ROOT at a per-test directory."""
    settings.DATA_ROOT = tmp_path / "data"
    settings.UPLOAD_ROOT = tmp_path / "uploads"
    settings.DATA_ROOT.mkdir()
    settings.UPLOAD_ROOT.mkdir()


@pytest.fixture(autouse=True)
def _celery_app_stays_current() -> Iterator[None]:
    """A test must not leave another Celery app current: ``shared_task`` calls of every later
    test in the process would publish through it (seen: imports sent into a deleted spool)."""
    yield
    from celery import current_app

    from webapp.celery import app

    assert current_app._get_current_object() is app, "a test left another Celery app current"


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


FRONTEND = Path(__file__).resolve().parent.parent / "frontend"
BUILD_HINT = "run `bash scripts/build_frontend.sh` (make test does)"


def frontend_build_problem() -> str | None:
    """Why frontend/dist/ cannot stand for frontend/src/ (missing or older), or None."""
    manifest = FRONTEND / "dist" / ".vite" / "manifest.json"
    if not manifest.is_file():
        return f"The frontend is not built (no frontend/dist/.vite/manifest.json): {BUILD_HINT}."
    built = manifest.stat().st_mtime
    inputs = [*(FRONTEND / "src").rglob("*"), FRONTEND / "vite.config.ts"]
    inputs.append(FRONTEND / "package-lock.json")
    newer = sorted(str(p.relative_to(FRONTEND.parent)) for p in inputs if p.stat().st_mtime > built)
    if newer:
        return f"The frontend build is older than {', '.join(newer[:3])}: {BUILD_HINT}."
    return None


@pytest.fixture(scope="session")
def built_frontend() -> Path:
    """frontend/dist/, built from the current sources; fails with what to run otherwise."""
    problem = frontend_build_problem()
    if problem:
        pytest.fail(problem, pytrace=False)
    return FRONTEND / "dist"
