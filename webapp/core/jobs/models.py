"""The abstract background-job model: a concrete job table per app (``DatasetJob``, runs...)."""

from __future__ import annotations

import datetime as dt

from django.db import models
from django.utils import timezone

from webapp.core.jobs.lease import job_lease_seconds, worker_is_dead


class JobStatus(models.TextChoices):
    """What the row records; ``Job.state`` adds what it means now (e.g. retrying)."""

    QUEUED = "queued", "Queued"
    RUNNING = "running", "Running"
    SUCCEEDED = "succeeded", "Succeeded"
    FAILED = "failed", "Failed"
    CANCELLED = "cancelled", "Cancelled"


class JobState(models.TextChoices):
    """``JobStatus`` plus ``retrying``: running on paper, but its worker is gone or restarting."""

    QUEUED = "queued", "Queued"
    RUNNING = "running", "Running"
    RETRYING = "retrying", "Retrying"
    SUCCEEDED = "succeeded", "Succeeded"
    FAILED = "failed", "Failed"
    CANCELLED = "cancelled", "Cancelled"


ACTIVE_STATUSES = (JobStatus.QUEUED, JobStatus.RUNNING)
#: Stage of an attempt that took over from one whose worker died, until it reports progress.
STAGE_RESTARTING = "restarting"


class Job(models.Model):
    """A background job whose row is the truth: status, progress, error, lease.

    ``attempts`` counts starts; every write of an attempt matches its number, so an attempt
    presumed dead (and taken over) can no longer change the row. ``heartbeat`` is refreshed by
    progress writes and by a heartbeat thread; a running job whose heartbeat is older than
    ``JOB_LEASE_SECONDS``, or whose worker process is known to be dead, shows as retrying.
    """

    status = models.CharField(max_length=20, choices=JobStatus.choices, default=JobStatus.QUEUED)
    stage = models.CharField(max_length=100, blank=True)
    done = models.PositiveBigIntegerField(default=0)
    total = models.PositiveBigIntegerField(default=0)
    error = models.TextField(blank=True)
    log = models.TextField(blank=True)
    celery_task_id = models.CharField(max_length=255, blank=True)
    created = models.DateTimeField(auto_now_add=True)
    updated = models.DateTimeField(auto_now=True)
    started = models.DateTimeField(null=True, blank=True)
    finished = models.DateTimeField(null=True, blank=True)
    attempts = models.PositiveIntegerField(default=0)
    heartbeat = models.DateTimeField(null=True, blank=True)
    # host, PID namespace, PID and start time of the process running the current attempt
    worker = models.CharField(max_length=255, blank=True)

    class Meta:
        abstract = True
        ordering = ["-created"]

    @property
    def progress(self) -> float:
        return (self.done / self.total) if self.total else 0.0

    @property
    def is_active(self) -> bool:
        return self.status in ACTIVE_STATUSES

    def lease_expired(self, now: dt.datetime | None = None) -> bool:
        """True when a running job's last heartbeat is older than the lease."""
        if self.status != JobStatus.RUNNING:
            return False
        beat = self.heartbeat or self.started or self.updated
        if beat is None:
            return True
        now = now or timezone.now()
        return (now - beat).total_seconds() > job_lease_seconds()

    @property
    def state(self) -> str:
        """The status as a person should read it: ``retrying`` while nothing works on a job
        that will be restarted (lease expired or worker dead), or while it restarts."""
        if self.status != JobStatus.RUNNING:
            return str(self.status)
        if self.lease_expired() or worker_is_dead(self.worker):
            return JobState.RETRYING
        if self.attempts > 1 and self.stage == STAGE_RESTARTING:
            return JobState.RETRYING
        return JobState.RUNNING
