"""The heavy files that conftest schedules first still exist (a rename would silently bring back
the long tail of a run)."""

from __future__ import annotations

from pathlib import Path

from tests.conftest import HEAVY_FILES_FIRST

REPO = Path(__file__).resolve().parents[1]


def test_every_heavy_file_named_first_exists() -> None:
    missing = [path for path in HEAVY_FILES_FIRST if not (REPO / path).is_file()]
    assert missing == []
