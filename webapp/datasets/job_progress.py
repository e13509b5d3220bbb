"""A progress callback that writes a job's stage and counts to its row, throttled.

Pipeline code reports progress per chunk, which can be hundreds of times a second; the row is
written at most every ``min_interval`` seconds (plus on every stage change and stage end), so the
database sees about two writes a second. Each write doubles as the cancellation check: the update
only matches a row that is still running, so a cancelled job stops at its next write.

Pipeline code calls back from worker threads (dask's threaded scheduler). Every write goes
through the connection of the thread that made the writer, under a lock: a worker thread's own
connection would leak, contend for SQLite's write lock, and not see an open transaction.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from django.db import DEFAULT_DB_ALIAS, connections
from django.utils import timezone

from webapp.datasets.models import DatasetJob, JobStatus


class JobCancelled(Exception):
    """The job's row is no longer running (cancelled by a user): stop and clean up."""


class JobProgressWriter:
    """Callable ``(stage, done, total)`` that records progress on ``DatasetJob`` ``job_id``."""

    def __init__(
        self,
        job_id: int,
        *,
        min_interval: float = 0.5,
        also: Callable[[str, int, int], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.job_id = job_id
        self.min_interval = min_interval
        self.also = also
        self.clock = clock
        self.writes = 0
        self._stage: str | None = None
        self._last_write = float("-inf")
        self._lock = threading.Lock()
        self._owner_thread = threading.get_ident()
        self._connection = connections[DEFAULT_DB_ALIAS]

    def __call__(self, stage: str, done: int, total: int) -> None:
        if self.also is not None:
            self.also(stage, done, total)
        with self._lock:
            now = self.clock()
            stage_changed = stage != self._stage
            finished = total > 0 and done >= total
            if not (stage_changed or finished or now - self._last_write >= self.min_interval):
                return
            self._stage = stage
            self._last_write = now
        self.write(stage, done, total)

    def write(self, stage: str, done: int, total: int) -> None:
        """Write now (from any thread); raise JobCancelled when the job is no longer running."""
        with self._lock:
            self.writes += 1
            updated = self._update_row(stage[:100], max(done, 0), max(total, 0))
        if not updated:
            raise JobCancelled(f"job {self.job_id} is no longer running")

    def _update_row(self, stage: str, done: int, total: int) -> int:
        conn = self._connection
        qn = conn.ops.quote_name
        sets = ", ".join(f"{qn(column)} = %s" for column in ("stage", "done", "total", "updated"))
        sql = (
            f"UPDATE {qn(DatasetJob._meta.db_table)} SET {sets} "
            f"WHERE {qn('id')} = %s AND {qn('status')} = %s"
        )
        params = [
            stage,
            done,
            total,
            conn.ops.adapt_datetimefield_value(timezone.now()),
            self.job_id,
            str(JobStatus.RUNNING),
        ]
        foreign = threading.get_ident() != self._owner_thread
        if foreign:
            conn.inc_thread_sharing()
        try:
            with conn.cursor() as cursor:
                cursor.execute(sql, params)
                return int(cursor.rowcount)
        finally:
            if foreign:
                conn.dec_thread_sharing()

    def check_cancelled(self) -> None:
        """Raise JobCancelled if the job was cancelled (for use between stages)."""
        if not DatasetJob.objects.filter(id=self.job_id, status=JobStatus.RUNNING).exists():
            raise JobCancelled(f"job {self.job_id} is no longer running")
