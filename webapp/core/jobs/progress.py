"""Progress of a running attempt: throttled row writes that are also its cancellation check and
its heartbeat, plus a heartbeat thread for steps that report nothing for a while.

Pipeline code reports per chunk, up to hundreds of times a second; the row is written at most
every ``min_interval`` seconds (plus on every stage change and stage end), about two writes a
second. Each write matches the row only while it is running under this attempt's number, so a
cancelled or taken-over attempt learns it at its next write (JobCancelled / JobSuperseded).

Pipeline code calls back from worker threads (dask's threaded scheduler, the tile writer's pool).
Every write goes through the database connection of the thread that made the writer, under a
lock: a pool thread's own connection would leak (nobody closes it), contend for SQLite's write
lock with the owner, and not see rows of the owner's open transaction. The SQL comes from the
ORM (an UPDATE query compiled for that connection), so it works for any job table.

``JobHeartbeat`` is different: a thread of ours, with its own connection that it closes, which
refreshes the heartbeat when no progress write did for a quarter lease (a long torch call, a
big block), so a live attempt is never shown as retrying.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from types import TracebackType

from django.db import DEFAULT_DB_ALIAS, connections
from django.db.models import sql
from django.db.models.sql.constants import ROW_COUNT
from django.utils import timezone

from pipeline.progress import ProgressCallback
from webapp.core.jobs.errors import JobStopped
from webapp.core.jobs.lease import heartbeat_interval_seconds
from webapp.core.jobs.lifecycle import Attempt, job_stop_reason
from webapp.core.jobs.models import Job, JobStatus

logger = logging.getLogger(__name__)

STAGE_MAX_LENGTH = 100


class JobProgressWriter:
    """Callable ``(stage, done, total)`` recording progress of ``attempt`` on its job row."""

    def __init__(
        self,
        model: type[Job],
        attempt: Attempt,
        *,
        min_interval: float = 0.5,
        also: ProgressCallback | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.model = model
        self.attempt = attempt
        self.min_interval = min_interval
        self.also = also
        self.clock = clock
        self.writes = 0
        self.last_beat = clock()  # the start wrote the heartbeat
        self.stop_hint = False  # set by the heartbeat thread when its write matched nothing
        self._stage: str | None = None
        self._last_write = float("-inf")
        self._lock = threading.Lock()
        self._owner_thread = threading.get_ident()
        self._connection = connections[DEFAULT_DB_ALIAS]

    @property
    def job_id(self) -> int:
        return self.attempt.job_id

    def __call__(self, stage: str, done: int, total: int) -> None:
        if self.also is not None:
            self.also(stage, done, total)
        with self._lock:
            now = self.clock()
            stage_changed = stage != self._stage
            finished = total > 0 and done >= total
            due = now - self._last_write >= self.min_interval
            if not (stage_changed or finished or due or self.stop_hint):
                return
            self._stage = stage
            self._last_write = now
        self.write(stage, done, total)

    def write(self, stage: str, done: int, total: int) -> None:
        """Write now (from any thread); raise JobStopped when the attempt must stop."""
        with self._lock:
            self.writes += 1
            updated = self._update_row(stage[:STAGE_MAX_LENGTH], max(done, 0), max(total, 0))
            if updated:
                self.last_beat = self.clock()
        if not updated:
            raise self._stop_reason()

    def check_cancelled(self) -> None:
        """Raise JobStopped if the job was cancelled or taken over (for use between stages)."""
        running = self.model._default_manager.filter(
            pk=self.job_id, attempts=self.attempt.number, status=JobStatus.RUNNING
        ).exists()
        if not running:
            raise job_stop_reason(self.model, self.attempt)

    def _stop_reason(self) -> JobStopped:
        with self._lock:
            foreign = self._share_connection()
            try:
                return job_stop_reason(self.model, self.attempt)
            finally:
                self._unshare_connection(foreign)

    def _share_connection(self) -> bool:
        foreign = threading.get_ident() != self._owner_thread
        if foreign:
            self._connection.inc_thread_sharing()
        return foreign

    def _unshare_connection(self, foreign: bool) -> None:
        if foreign:
            self._connection.dec_thread_sharing()

    def _update_row(self, stage: str, done: int, total: int) -> int:
        now = timezone.now()
        queryset = self.model._default_manager.filter(
            pk=self.job_id, attempts=self.attempt.number, status=JobStatus.RUNNING
        )
        query = queryset.query.chain(sql.UpdateQuery)
        assert isinstance(query, sql.UpdateQuery)  # chain(klass) returns a klass (stubs: Query)
        query.add_update_values(
            {"stage": stage, "done": done, "total": total, "updated": now, "heartbeat": now}
        )
        foreign = self._share_connection()
        try:
            compiler = query.get_compiler(connection=self._connection)
            return int(compiler.execute_sql(ROW_COUNT) or 0)
        finally:
            self._unshare_connection(foreign)


class JobHeartbeat:
    """Context manager: a thread refreshing the heartbeat while ``writer`` has not for a while.

    Not started inside an open transaction (tests wrapped in one): another connection could
    neither see the job row nor write while the transaction holds SQLite's lock.
    """

    def __init__(self, writer: JobProgressWriter, interval: float | None = None) -> None:
        self.writer = writer
        self.interval = interval or heartbeat_interval_seconds()
        self.beats = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def __enter__(self) -> JobHeartbeat:
        if not connections[DEFAULT_DB_ALIAS].in_atomic_block:
            self._thread = threading.Thread(
                target=self._run, name=f"job-{self.writer.job_id}-heartbeat", daemon=True
            )
            self._thread.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=self.interval + 5)

    def _run(self) -> None:
        writer = self.writer
        try:
            while not self._stop.wait(self.interval / 2):
                if writer.clock() - writer.last_beat < self.interval:
                    continue
                beat = timezone.now()
                alive = writer.model._default_manager.filter(
                    pk=writer.job_id, attempts=writer.attempt.number, status=JobStatus.RUNNING
                ).update(heartbeat=beat)
                if not alive:
                    writer.stop_hint = True  # the next progress report finds out why
                    return
                writer.last_beat = writer.clock()
                self.beats += 1
        except Exception:
            logger.warning("job %s: heartbeat failed", writer.job_id, exc_info=True)
        finally:
            connections.close_all()  # this thread's connections only
