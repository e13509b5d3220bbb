"""A job's lifecycle on its row: queue, start (or take over), succeed, fail, cancel.

Every function takes the concrete model (``DatasetJob``, ...) so apps share one implementation.
Writes of a running attempt match ``attempts``: once another attempt has taken the job over,
the old one's writes match nothing and it learns that it was superseded.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from functools import partial
from typing import Any, TypeVar

from django.db import transaction
from django.db.models import F, Q, QuerySet, TextField, Value
from django.db.models.functions import Concat
from django.utils import timezone

from webapp.core.jobs.errors import JobCancelled, JobSuperseded
from webapp.core.jobs.lease import job_lease_seconds, worker_identity, worker_is_dead
from webapp.core.jobs.models import ACTIVE_STATUSES, STAGE_RESTARTING, Job, JobStatus

logger = logging.getLogger(__name__)

J = TypeVar("J", bound=Job)

_run_inline: ContextVar[bool] = ContextVar("jobs_run_inline", default=False)


@contextmanager
def jobs_run_inline() -> Iterator[None]:
    """Jobs queued meanwhile run in this process once their row commits, not in a worker.

    For commands whose results must be complete when they end, whether or not a worker runs
    (``load_demo``: the demo's follow-up jobs, such as its detections tables, which other apps
    queue on signals the command cannot know about).
    """
    token = _run_inline.set(True)
    try:
        yield
    finally:
        _run_inline.reset(token)


def job_create_queued(
    model: type[J],
    *,
    task: Any,
    task_kwargs: dict[str, Any] | None = None,
    queue: str | None = None,
    **fields: Any,
) -> J:
    """Create a queued job row and, once the transaction commits, send ``task(job.id)`` (to
    ``queue``, else the default queue).

    ``task`` is a Celery task (or None to leave the job for the caller to run in-process).
    Sending on commit means a worker never sees a job id whose row it cannot read yet. Inside
    :func:`jobs_run_inline` the task runs in this process instead, also on commit.
    """
    task_id = str(uuid.uuid4()) if task is not None else ""
    inline = _run_inline.get()
    with transaction.atomic():
        job = model._default_manager.create(celery_task_id=task_id, **fields)
        if task is not None:
            transaction.on_commit(
                partial(_send, task, job.pk, task_id, task_kwargs or {}, inline=inline, queue=queue)
            )
    return job


def _send(
    task: Any,
    job_id: int,
    task_id: str,
    kwargs: dict[str, Any],
    *,
    inline: bool = False,
    queue: str | None = None,
) -> None:
    if inline:
        task.apply(args=[job_id], kwargs=kwargs, task_id=task_id)
    else:
        routing = {"queue": queue} if queue else {}
        task.apply_async(args=[job_id], kwargs=kwargs, task_id=task_id, **routing)


@dataclass(frozen=True)
class Attempt:
    """The attempt this process runs: the job's id and its fencing number. ``took_over``: the
    row was running (released by its holder, or held by one now gone); ``rescued``: its holder
    was lost (killed, out of memory, its machine gone) or fell silent past its lease, not a
    release."""

    job_id: int
    number: int
    took_over: bool
    rescued: bool = False


def job_start(
    model: type[Job],
    job_id: int,
    *,
    identity: str | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> Attempt | None:
    """Start a queued job, or take over a running one whose holder is gone; None if it ended.

    A redelivered task finds its job ``running``: when the holder is a dead process of this
    machine it takes over at once; otherwise it waits (polling) until the holder's lease expires
    or the job ends, so two live attempts never run one job. Taking over counts an attempt and
    sets the stage to ``restarting`` (shown as retrying) until the new attempt reports progress.
    """
    identity = identity or worker_identity()
    waited = False
    while True:
        row = (
            model._default_manager.filter(pk=job_id)
            .values("status", "attempts", "worker", "heartbeat", "started", "updated")
            .first()
        )
        if row is None or row["status"] not in ACTIVE_STATUSES:
            return None
        now = timezone.now()
        took_over = row["status"] == JobStatus.RUNNING
        if took_over:
            probe = model(
                status=row["status"],
                heartbeat=row["heartbeat"],
                started=row["started"],
                updated=row["updated"],
            )
            # No recorded worker: a row from before leases, whose worker is long gone.
            holder_gone = not row["worker"] or worker_is_dead(row["worker"])
            if not (holder_gone or probe.lease_expired(now)):
                if not waited:
                    logger.info("job %s: waiting for the lease of %s", job_id, row["worker"])
                    waited = True
                sleep(min(1.0, max(job_lease_seconds() / 10, 0.05)))
                continue
        # Compare-and-set on what we read: of two deliveries racing here, one wins.
        won = model._default_manager.filter(
            pk=job_id, status=row["status"], attempts=row["attempts"]
        ).update(
            status=JobStatus.RUNNING,
            attempts=F("attempts") + 1,
            worker=identity,
            heartbeat=now,
            updated=now,
            started=now if row["started"] is None else row["started"],
            stage=STAGE_RESTARTING if took_over else "starting",
            done=0,
            total=0,
            error="",
        )
        if won:
            if took_over and not row["worker"]:
                # A job that released its row while others worked for it (a run waiting on its
                # plan's workers), taken back: the expected path, not a rescue.
                logger.info("job %s: taken back after a release (attempt %d)", job_id,
                            row["attempts"] + 1)  # fmt: skip
            elif took_over:
                logger.warning(
                    "job %s: taking over from %s (attempt %d)",
                    job_id,
                    row["worker"],
                    row["attempts"] + 1,
                )
            rescued = took_over and bool(row["worker"])
            return Attempt(job_id, row["attempts"] + 1, took_over, rescued)


def _fenced(model: type[Job], attempt: Attempt) -> QuerySet[Job]:
    return model._default_manager.filter(pk=attempt.job_id, attempts=attempt.number)


def job_stop_reason(model: type[Job], attempt: Attempt) -> JobCancelled | JobSuperseded:
    """Why ``attempt``'s fenced write matched no row: superseded or cancelled (or gone)."""
    attempts = (
        model._default_manager.filter(pk=attempt.job_id).values_list("attempts", flat=True).first()
    )
    if attempts is not None and attempts != attempt.number:
        return JobSuperseded(f"job {attempt.job_id}: attempt {attempt.number} was taken over")
    return JobCancelled(f"job {attempt.job_id} is no longer running")


def job_succeed(model: type[Job], attempt: Attempt, **fields: Any) -> None:
    """Mark the attempt's job succeeded (call inside the publishing transaction).

    Raises JobCancelled or JobSuperseded when the row no longer belongs to this attempt, which
    rolls the publication back.
    """
    now = timezone.now()
    ended = (
        _fenced(model, attempt)
        .filter(status=JobStatus.RUNNING)
        .update(
            status=JobStatus.SUCCEEDED,
            stage="done",
            done=1,
            total=1,
            finished=now,
            updated=now,
            heartbeat=now,
            **fields,
        )
    )
    if not ended:
        raise job_stop_reason(model, attempt)


def job_release(model: type[Job], attempt: Attempt, *, stage: str) -> None:
    """Let go of a running job while other processes work for it (e.g. a plan's items on the
    workers): no holder, ``stage`` as given. The next ``job_start`` of it takes it at once (a
    row without a holder has none to wait for). Raises when the attempt no longer holds it."""
    now = timezone.now()
    released = (
        _fenced(model, attempt)
        .filter(status=JobStatus.RUNNING)
        .update(worker="", stage=stage, heartbeat=now, updated=now)
    )
    if not released:
        raise job_stop_reason(model, attempt)


def _appended(text: str) -> Concat:
    return Concat(F("log"), Value(text), output_field=TextField())


def job_log(model: type[Job], job_id: int, text: str) -> None:
    """Append a timestamped line to the job's log (what its page shows as it runs)."""
    line = f"{timezone.now():%Y-%m-%d %H:%M:%S} {text.rstrip()}\n"
    model._default_manager.filter(pk=job_id).update(log=_appended(line))


def job_fail(model: type[Job], attempt: Attempt, *, error: str, log: str = "") -> None:
    """Record the attempt's failure (nothing, if the job was cancelled or taken over); ``log``
    (a traceback) goes after the lines logged so far."""
    now = timezone.now()
    _fenced(model, attempt).filter(status=JobStatus.RUNNING).update(
        status=JobStatus.FAILED, error=error, log=_appended(log), finished=now, updated=now
    )


def job_cancelled_end(model: type[Job], attempt: Attempt) -> None:
    """The attempt stopped for a cancellation: note where it stopped (status stays)."""
    now = timezone.now()
    _fenced(model, attempt).filter(status=JobStatus.CANCELLED).update(
        stage="cancelled", finished=now, updated=now
    )


def job_cancel(job: Job) -> bool:
    """Cancel a queued or running job; False when it had already ended (``job`` is reloaded).

    A running attempt stops at its next progress write; revoking the Celery task is the
    caller's choice (after commit).
    """
    now = timezone.now()
    cancelled = (
        type(job)
        ._default_manager.filter(Q(pk=job.pk) & Q(status__in=ACTIVE_STATUSES))
        .update(status=JobStatus.CANCELLED, finished=now, updated=now)
    )
    job.refresh_from_db()
    return bool(cancelled)
