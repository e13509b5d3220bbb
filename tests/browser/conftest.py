"""Real headless Chromium (Debian's /usr/bin/chromium) driven by Python playwright."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

# Playwright's sync API runs an event loop in this thread; the ORM calls the tests make
# around it are still synchronous and safe.
os.environ.setdefault("DJANGO_ALLOW_ASYNC_UNSAFE", "true")

CHROMIUM = os.environ.get("ANNOTOME_CHROMIUM", "/usr/bin/chromium")
# WebGL runs on SwiftShader (software); the page's compositing is left to Chromium's software
# compositor (--disable-gpu-compositing), not to SwiftShader too: the browser tests' GPU
# process used 309 CPU-s with it and 114 without, 1,036 against 854 CPU-s for the whole
# browser suite (2026-12-07, 35 tests, three processes, 565 s against 487 s).
CHROMIUM_ARGS = [
    "--headless=new",
    "--no-sandbox",
    "--use-angle=swiftshader",
    "--enable-unsafe-swiftshader",
    "--ignore-gpu-blocklist",
    "--disable-gpu-compositing",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]


@pytest.fixture(autouse=True)
def _frontend_is_built(built_frontend: Path) -> None:
    """Pages run the built scripts: a missing or stale build fails here, saying what to run."""


@pytest.fixture
def browser_context() -> Iterator[Any]:
    """A persistent Chromium context on a fresh profile directory, 1280x800."""
    from playwright.sync_api import sync_playwright

    profile = tempfile.mkdtemp(prefix="annotome-chromium-")
    try:
        with sync_playwright() as playwright:
            context = playwright.chromium.launch_persistent_context(
                user_data_dir=profile,
                executable_path=CHROMIUM,
                args=CHROMIUM_ARGS,
                headless=True,
                viewport={"width": 1280, "height": 800},
            )
            try:
                yield context
            finally:
                context.close()
    finally:
        shutil.rmtree(profile, ignore_errors=True)


@pytest.fixture
def artifacts_dir(tmp_path: Path) -> Path:
    """Where screenshots go: ``ANNOTOME_BROWSER_ARTIFACTS`` if set, else the test's tmp dir."""
    target = Path(os.environ.get("ANNOTOME_BROWSER_ARTIFACTS", tmp_path / "screenshots"))
    target.mkdir(parents=True, exist_ok=True)
    return target
