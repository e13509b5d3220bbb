"""The project is installed into its virtual environment (``pip install -e .``, done by
scripts/make_venv.sh): ``python -m pipeline`` and the console script work from any directory."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from pipeline.cli import CONSOLE_SCRIPT

NOT_INSTALLED = (
    "the project is not installed in {venv}: run `make venv` (scripts/make_venv.sh installs it "
    "with `pip install -e .`)"
)


@pytest.mark.parametrize("how", ["module", "console script"])
def test_the_command_line_runs_outside_the_repository(tmp_path: Path, how: str) -> None:
    bin_dir = Path(sys.executable).parent
    argv = (
        [sys.executable, "-m", "pipeline"] if how == "module" else [str(bin_dir / CONSOLE_SCRIPT)]
    )
    if how == "console script":
        assert (bin_dir / CONSOLE_SCRIPT).is_file(), NOT_INSTALLED.format(venv=bin_dir.parent)
    # An empty directory outside the checkout, and no PYTHONPATH that could point into it.
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    done = subprocess.run(
        [*argv, "--help"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, NOT_INSTALLED.format(venv=bin_dir.parent) + "\n" + done.stderr
    prog = "python -m pipeline" if how == "module" else CONSOLE_SCRIPT
    assert done.stdout.startswith(f"usage: {prog}")
    assert "segment" in done.stdout and "parents" in done.stdout
    if how == "module":
        return
    done = subprocess.run(
        [*argv, "parents", str(tmp_path / "missing.zarr"), "b", "c"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 2 and "missing.zarr" in done.stderr  # a message, no traceback
    assert "Traceback" not in done.stderr
