"""Tasks only the integration tests' workers load (``celery worker -I worker_test_tasks``)."""

from __future__ import annotations

import os
import sys
import time
import uuid
from pathlib import Path

from celery import shared_task


@shared_task(name="annotome_test.block_until_released", acks_late=True)
def block_until_released(marker_dir: str, timeout: float = 120) -> dict[str, object]:
    """Record a start marker, wait for ``<marker_dir>/release``, then record completion."""
    folder = Path(marker_dir)
    (folder / f"started-{os.getpid()}-{uuid.uuid4().hex[:6]}").touch()
    deadline = time.monotonic() + timeout
    while not (folder / "release").exists():
        if time.monotonic() > deadline:
            raise TimeoutError("never released")
        time.sleep(0.05)
    with (folder / "done").open("a") as f:
        f.write(f"{os.getpid()}\n")
    return {"pid": os.getpid()}


def _slow_down_progress_reports() -> None:
    """Test knobs on every job progress report (the import itself is untouched):

    - ``ANNOTOME_TEST_PROGRESS_DELAY=s``: each report takes s seconds longer. A small volume
      converts too fast (and the writer throttles row updates to one per 0.5 s) for a test to
      watch it part-way otherwise.
    - ``ANNOTOME_TEST_PROGRESS_PAUSE=path``: after each report, wait while ``path`` exists, so a
      test can act (kill a worker) at a known point of a running job, then let it go on.
    """
    delay = float(os.environ.get("ANNOTOME_TEST_PROGRESS_DELAY") or 0)
    pause = os.environ.get("ANNOTOME_TEST_PROGRESS_PAUSE") or ""
    if delay <= 0 and not pause:
        return
    import django

    django.setup()
    from webapp.core.jobs.progress import JobProgressWriter

    report = JobProgressWriter.__call__

    def slow_report(self: JobProgressWriter, stage: str, done: int, total: int) -> None:
        time.sleep(delay)
        report(self, stage, done, total)
        while pause and os.path.exists(pause):
            time.sleep(0.05)

    JobProgressWriter.__call__ = slow_report  # type: ignore[method-assign]


def _pause_prediction_items() -> None:
    """Test knob ``ANNOTOME_TEST_PREDICT_PAUSE=path``: a prediction item about to mark a block
    done (its maps written, its done marker not yet) appends its process id to ``path.log``
    and waits while ``path`` exists, so a test can kill the worker's process in the middle of
    an item of a run's prediction plan."""
    pause = os.environ.get("ANNOTOME_TEST_PREDICT_PAUSE") or ""
    if not pause:
        return
    import pipeline.predict

    write = pipeline.predict.write_atomic

    def paused_write(path: Path, text: str) -> None:
        with open(f"{pause}.log", "a") as log:
            log.write(f"{os.getpid()}\n")
        while os.path.exists(pause):
            time.sleep(0.05)
        write(path, text)

    pipeline.predict.write_atomic = paused_write  # type: ignore[assignment]


_slow_down_progress_reports()
_pause_prediction_items()


@shared_task(name="annotome_test.loaded_modules")
def loaded_modules(names: list[str]) -> dict[str, bool]:
    """Which of ``names`` the pool process had imported before this task ran."""
    return {name: name in sys.modules for name in names}
