"""The GPU queue check (``core.jobs.queues``) leaves nothing behind that hangs a process forked
later. It once did: asking the workers went over the app's pooled broker connection, which kept
a Redis channel waiting on its reply queue, and in the same process a later
``ProcessPoolExecutor`` (fork) child closing the inherited channel read its socket for ever;
the suite hung at ``test_segment.py``'s process-pool test after the runs API tests. This runs
that very sequence in a pytest of its own (one process, as an xdist worker runs them)."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest

from webapp.core.jobs import queues

REPO = Path(__file__).resolve().parents[3]
SEQUENCE = [
    "tests/webapp/runs/test_registry.py::"
    "test_a_fine_tune_starts_from_a_registered_model_and_keeps_its_network",
    "tests/pipeline/test_segment.py::test_process_pool_gives_the_sequential_result",
]


def test_no_worker_consumes_the_gpu_queue_here(settings: Any) -> None:
    settings.ANNOTOME_GPU_QUEUE = "annotome-test-nobody-listens"
    settings.ANNOTOME_GPU_QUEUE_CHECK_SECONDS = 0.0
    assert queues.gpu_queue() is None
    assert queues.wants_gpu({}) and not queues.wants_gpu(
        {"training": {"device": "cpu"}, "predict": {"device": "cpu"}}
    )


def test_a_fork_after_starting_runs_does_not_hang(tmp_path: Path) -> None:
    env = {**os.environ, "ANNOTOME_VAR_DIR": str(tmp_path / "var")}
    url = env.get("DATABASE_URL", "")
    if url.startswith("postgres"):  # a test database of its own, beside this session's
        env["DATABASE_URL"] = f"{url.rsplit('/', 1)[0]}/forkcheck_{uuid.uuid4().hex[:8]}"
    try:
        done = subprocess.run(
            [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", "-n", "0",
             "--create-db", *SEQUENCE],
            cwd=REPO, env=env, capture_output=True, text=True, timeout=240,
        )  # fmt: skip
    except subprocess.TimeoutExpired:
        pytest.fail("the process-pool test hung after the runs API test")
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    assert "2 passed" in done.stdout
