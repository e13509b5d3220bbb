"""The pipeline makes torch's waiting OpenMP threads sleep (``pipeline/__init__.py``), before
torch loads, unless the environment chose a policy: what a worker process sees."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
PROBE = (
    "import os, pipeline.torch_setup, torch; "
    "print(os.environ['OMP_WAIT_POLICY'], 'torch' in __import__('sys').modules)"
)


@pytest.mark.parametrize(("given", "seen"), [(None, "PASSIVE"), ("ACTIVE", "ACTIVE")])
def test_waiting_threads_sleep_unless_the_environment_says_otherwise(
    given: str | None, seen: str
) -> None:
    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    if given is not None:
        env["OMP_WAIT_POLICY"] = given
    done = subprocess.run(
        [sys.executable, "-c", PROBE], cwd=REPO, env=env, capture_output=True, text=True, check=True
    )
    assert done.stdout.split() == [seen, "True"]


def test_no_webapp_module_imports_torch_before_the_pipeline() -> None:
    """The worker loads torch through ``pipeline`` only, so the policy is set first."""
    offenders = [
        str(path.relative_to(REPO))
        for path in (REPO / "webapp").rglob("*.py")
        if any(
            line.strip().startswith(("import torch", "from torch"))
            for line in path.read_text().splitlines()
        )
    ]
    assert offenders == []
