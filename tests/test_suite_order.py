"""The heavy files that conftest schedules first still exist (a rename would silently bring back
the long tail of a run)."""

from __future__ import annotations

from pathlib import Path

from tests.conftest import HEAVY_FILES_FIRST

REPO = Path(__file__).resolve().parents[1]


def test_every_heavy_file_named_first_exists() -> None:
    missing = [path for path in HEAVY_FILES_FIRST if not (REPO / path).is_file()]
    assert missing == []


def test_test_file_basenames_are_unique() -> None:
    """The suite imports test files by basename (no packages): two with one name fail the run's
    collection ("import file mismatch"), which a run of one directory never shows."""
    seen: dict[str, list[str]] = {}
    for path in sorted((REPO / "tests").rglob("test_*.py")):
        seen.setdefault(path.name, []).append(str(path.relative_to(REPO)))
    assert {name: paths for name, paths in seen.items() if len(paths) > 1} == {}
