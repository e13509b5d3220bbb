"""The background-job base (``webapp.core.jobs``) on a concrete table (``DatasetJob``)."""

from __future__ import annotations

import datetime as dt
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, ClassVar

import pytest
from django.contrib.auth import get_user_model
from django.db import transaction
from django.utils import timezone

from pipeline.errors import InvalidInputError
from webapp.core.jobs.errors import JobCancelled, JobSuperseded
from webapp.core.jobs.lease import worker_identity, worker_is_dead
from webapp.core.jobs.lifecycle import (
    job_cancel,
    job_create_queued,
    job_fail,
    job_log,
    job_release,
    job_start,
    job_succeed,
)
from webapp.core.jobs.progress import JobHeartbeat, JobProgressWriter
from webapp.core.jobs.runner import JobRunner, jobs_tmp_root
from webapp.datasets.models import DatasetJob, JobKind, JobStatus


@pytest.fixture
def user(db: Any) -> Any:
    return get_user_model().objects.create_user("jobs-owner", password="not-used-here")


def _queued(user: Any) -> DatasetJob:
    return job_create_queued(DatasetJob, task=None, kind=JobKind.IMPORT, owner=user)


def _dead_identity() -> str:
    """The identity of a process of this machine that has exited."""
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    identity = worker_identity(proc.pid)
    proc.kill()
    proc.wait()
    return identity


def test_worker_identity_tells_live_dead_and_unknown_processes_apart() -> None:
    assert not worker_is_dead(worker_identity())
    assert worker_is_dead(_dead_identity())
    assert not worker_is_dead("")  # nothing recorded: the lease decides
    assert not worker_is_dead("elsewhere|pid:[1]|123|456")  # another host: cannot tell


def test_queued_job_is_sent_once_its_row_commits(
    user: Any, django_capture_on_commit_callbacks: Any
) -> None:
    sent: list[tuple[Any, ...]] = []

    class Task:
        def apply_async(self, args: list[int], kwargs: dict[str, Any], task_id: str) -> None:
            sent.append((args, task_id))

    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        job = job_create_queued(DatasetJob, task=Task(), kind=JobKind.IMPORT, owner=user)
    assert sent == [] and len(callbacks) == 1
    callbacks[0]()
    assert sent == [([job.id], job.celery_task_id)] and job.celery_task_id


def test_start_counts_attempts_and_is_a_no_op_once_the_job_ended(user: Any) -> None:
    job = _queued(user)
    attempt = job_start(DatasetJob, job.id)
    assert attempt is not None and (attempt.number, attempt.took_over, attempt.rescued) == (
        1, False, False)  # fmt: skip
    job.refresh_from_db()
    assert (job.status, job.attempts, job.stage, job.state) == ("running", 1, "starting", "running")
    assert job.worker == worker_identity() and job.heartbeat is not None
    job_succeed(DatasetJob, attempt)
    assert job_start(DatasetJob, job.id) is None  # a rerun of an ended job does nothing
    job.refresh_from_db()
    assert (job.status, job.attempts) == ("succeeded", 1)


def test_a_dead_attempt_is_taken_over_at_once_and_fenced_off(user: Any) -> None:
    job = _queued(user)
    old = job_start(DatasetJob, job.id, identity=_dead_identity())
    assert old is not None
    old_writer = JobProgressWriter(DatasetJob, old)
    old_writer.write("image level 0", 2, 8)
    job.refresh_from_db()
    assert job.state == "retrying", "its worker process is gone"

    started = time.monotonic()
    new = job_start(DatasetJob, job.id)
    assert time.monotonic() - started < 1, "no need to wait out the lease of a dead process"
    assert new is not None and (new.number, new.took_over, new.rescued) == (2, True, True)
    job.refresh_from_db()
    assert (job.stage, job.done, job.attempts, job.state) == ("restarting", 0, 2, "retrying")

    with pytest.raises(JobSuperseded):
        old_writer.write("image level 0", 3, 8)
    with pytest.raises(JobSuperseded):
        job_succeed(DatasetJob, old)
    JobProgressWriter(DatasetJob, new).write("image level 0", 1, 8)
    job.refresh_from_db()
    assert (job.state, job.stage, job.done) == ("running", "image level 0", 1)


def test_a_released_job_is_taken_back_at_once_and_not_as_a_rescue(user: Any) -> None:
    """A run lets go of its row while workers run its plan; taking it back is the expected
    path (``rescued`` is for a holder that was lost: the run's log says so then)."""
    job = _queued(user)
    first = job_start(DatasetJob, job.id)
    assert first is not None
    job_release(DatasetJob, first, stage="predict")
    started = time.monotonic()
    back = job_start(DatasetJob, job.id)
    assert time.monotonic() - started < 1
    assert back is not None and (back.number, back.took_over, back.rescued) == (2, True, False)


def test_a_live_holder_is_waited_for_until_its_lease_expires(user: Any, settings: Any) -> None:
    settings.JOB_LEASE_SECONDS = 0.6
    job = _queued(user)
    first = job_start(DatasetJob, job.id)  # held by this (live) process
    assert first is not None
    started = time.monotonic()
    second = job_start(DatasetJob, job.id, identity="another-host|pid:[1]|1|1")
    waited = time.monotonic() - started
    assert second is not None and second.number == 2
    assert 0.5 < waited < 5, waited


def test_state_is_retrying_once_the_heartbeat_is_older_than_the_lease(
    user: Any, settings: Any
) -> None:
    settings.JOB_LEASE_SECONDS = 30
    job = _queued(user)
    job_start(DatasetJob, job.id, identity="another-host|pid:[1]|1|1")
    DatasetJob.objects.filter(id=job.id).update(stage="meshes", done=3, total=9)
    job.refresh_from_db()
    assert job.state == "running"
    job.heartbeat = timezone.now() - dt.timedelta(seconds=31)
    assert job.lease_expired() and job.state == "retrying"
    job.status = JobStatus.SUCCEEDED
    assert job.state == "succeeded"


def test_progress_from_many_threads_goes_through_one_connection(user: Any) -> None:
    job = _queued(user)
    attempt = job_start(DatasetJob, job.id)
    assert attempt is not None
    writer = JobProgressWriter(DatasetJob, attempt, min_interval=0)
    reports = [(f"block {t}", i, 50) for t in range(8) for i in range(1, 51)]
    with ThreadPoolExecutor(max_workers=8) as pool:
        list(pool.map(lambda r: writer(*r), reports))
    assert writer.writes == len(reports)
    job.refresh_from_db()
    assert job.stage.startswith("block ") and 1 <= job.done <= 50 and job.total == 50


def test_cancellation_stops_the_next_report(user: Any) -> None:
    job = _queued(user)
    attempt = job_start(DatasetJob, job.id)
    assert attempt is not None
    writer = JobProgressWriter(DatasetJob, attempt)
    writer("image", 1, 10)
    assert job_cancel(job) and job.status == "cancelled"
    with pytest.raises(JobCancelled):
        writer("meshes", 0, 3)
    assert not job_cancel(job), "already ended"


@pytest.mark.django_db(transaction=True)
def test_heartbeat_thread_beats_while_no_progress_is_reported(settings: Any) -> None:
    settings.JOB_LEASE_SECONDS = 0.8  # beats every 0.2 s
    user = get_user_model().objects.create_user("beats", password="not-used-here")
    job = _queued(user)
    attempt = job_start(DatasetJob, job.id)
    assert attempt is not None
    writer = JobProgressWriter(DatasetJob, attempt, min_interval=60)
    with JobHeartbeat(writer) as heartbeat:
        writer("image", 1, 10)
        for _ in range(6):  # a long step that reports nothing, for 3 leases
            time.sleep(0.4)
            job.refresh_from_db()
            assert job.state == "running" and not job.lease_expired()
        assert heartbeat.beats >= 4
        DatasetJob.objects.filter(id=job.id).update(status=JobStatus.CANCELLED)
        time.sleep(0.6)
        assert writer.stop_hint, "the thread's beat found the row no longer running"
        writes = writer.writes
        # Same stage, well within the throttle interval: only the hint makes this report write.
        with pytest.raises(JobCancelled):
            writer("image", 2, 10)
        assert writer.writes == writes + 1


class _Runner(JobRunner[DatasetJob]):
    model: ClassVar[type[DatasetJob]] = DatasetJob
    work_prefix = "probe"
    behaviour: ClassVar[dict[str, Any]] = {}

    def work(self, job: DatasetJob, work_dir: Path, progress: JobProgressWriter) -> None:
        self.behaviour["work_dir"] = work_dir
        assert work_dir.is_dir() and not any(work_dir.iterdir())
        (work_dir / "partial").write_text("half done")
        outcome = self.behaviour["outcome"]
        if outcome == "cancel":  # a user cancels while it works: the next report stops it
            DatasetJob.objects.filter(id=job.id).update(status=JobStatus.CANCELLED)
        progress("converting", 1, 2)
        if isinstance(outcome, BaseException):
            raise outcome
        with transaction.atomic():
            self.succeed()

    def cleanup(self, job: DatasetJob) -> None:
        self.behaviour["cleaned"] = True


@pytest.mark.parametrize(
    ("outcome", "status", "error"),
    [
        (None, "succeeded", ""),
        (InvalidInputError("the TIFF is truncated"), "failed", "the TIFF is truncated"),
        (KeyError("bug"), "failed", "internal error (KeyError)"),
        ("cancel", "cancelled", ""),
    ],
)
def test_runner_maps_ends_and_always_cleans_up(
    user: Any, outcome: BaseException | str | None, status: str, error: str
) -> None:
    job = _queued(user)
    stale = jobs_tmp_root() / f"probe-{job.id}-a1"  # left by a dead first attempt
    (stale / "out").mkdir(parents=True)
    DatasetJob.objects.filter(id=job.id).update(status=JobStatus.RUNNING, attempts=1)
    _Runner.behaviour = {"outcome": outcome}
    ended = _Runner(job.id).run()
    assert ended.status == status and error in ended.error
    assert ended.attempts == 2, "took over the recorded (worker-less) attempt"
    if status == "failed":
        assert "Traceback" in ended.log
    if status == "cancelled":
        assert ended.stage == "cancelled" and ended.finished is not None
    assert not stale.exists() and not _Runner.behaviour["work_dir"].exists()
    assert list(jobs_tmp_root().iterdir()) == []
    assert _Runner.behaviour["cleaned"] is True
    assert _Runner(job.id).run().status == status, "a rerun leaves the ended job alone"


def test_a_superseded_runner_leaves_the_row_and_the_inputs_alone(user: Any) -> None:
    job = _queued(user)
    _Runner.behaviour = {"outcome": None, "cleaned": False}
    took_over = threading.Event()

    class Superseded(_Runner):
        def work(self, job: DatasetJob, work_dir: Path, progress: JobProgressWriter) -> None:
            self.behaviour["work_dir"] = work_dir
            # Meanwhile another worker, believing this one dead, takes the job over.
            DatasetJob.objects.filter(id=job.id).update(attempts=2, stage="restarting")
            took_over.set()
            progress("converting", 1, 2)

    ended = Superseded(job.id).run()
    assert took_over.is_set()
    assert (ended.status, ended.attempts, ended.stage) == ("running", 2, "restarting")
    assert _Runner.behaviour["cleaned"] is False
    assert not _Runner.behaviour["work_dir"].exists()


def test_the_log_gathers_lines_and_a_failure_keeps_them(user: Any) -> None:
    job = _queued(user)
    attempt = job_start(DatasetJob, job.pk)
    assert attempt is not None
    job_log(DatasetJob, job.pk, "convert: started")
    job_log(DatasetJob, job.pk, "convert: done in 1.0 s\n")
    job_fail(DatasetJob, attempt, error="boom", log="Traceback ...\n")
    job.refresh_from_db()
    lines = job.log.splitlines()
    assert [line.split(" ", 2)[2] for line in lines[:2]] == [
        "convert: started",
        "convert: done in 1.0 s",
    ]
    assert dt.datetime.strptime(" ".join(lines[0].split(" ")[:2]), "%Y-%m-%d %H:%M:%S")
    assert lines[2:] == ["Traceback ..."] and job.error == "boom"
