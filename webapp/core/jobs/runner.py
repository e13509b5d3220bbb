"""``JobRunner``: run one attempt of a job in a clean work directory, whatever happens.

A subclass names its model and work-directory prefix and implements ``work(job, work_dir,
progress)``; ``run()`` does the rest:

- starts the job (``lifecycle.job_start``: nothing to do when it already ended, so a rerun of a
  finished task is harmless; a redelivered one takes over from a dead attempt);
- gives it an empty ``DATA_ROOT/tmp/<prefix>-<job id>-a<attempt>`` after removing what earlier,
  dead attempts left there;
- keeps the lease (heartbeat thread) and passes a progress writer that is the cancellation check;
- maps the end: cancelled -> stage "cancelled"; superseded -> row untouched; ``user_errors``
  (bad input: PipelineError, the app's domain errors) -> failed with their message; anything
  else -> failed with ``failure_message`` and the traceback in the log;
- always removes the work directory, and calls ``cleanup(job)`` unless superseded.
"""

from __future__ import annotations

import logging
import shutil
import traceback
from pathlib import Path
from typing import Any, ClassVar, Generic, TypeVar

from django.conf import settings

from pipeline.errors import PipelineError
from pipeline.progress import ProgressCallback
from webapp.core.errors import DomainError
from webapp.core.jobs.errors import JobCancelled, JobSuperseded
from webapp.core.jobs.lifecycle import (
    Attempt,
    job_cancelled_end,
    job_fail,
    job_start,
    job_succeed,
)
from webapp.core.jobs.models import Job
from webapp.core.jobs.progress import JobHeartbeat, JobProgressWriter

logger = logging.getLogger(__name__)

J = TypeVar("J", bound=Job)


def jobs_tmp_root() -> Path:
    """Where job work directories live (``DATA_ROOT/tmp``: same file system as the data, so
    publishing is a rename)."""
    return Path(settings.DATA_ROOT) / "tmp"


class JobRunner(Generic[J]):
    """Base class of a job kind's runner (see the module docstring)."""

    # Not a ClassVar only because a ClassVar may not name J; subclasses set it on the class.
    model: type[J]
    work_prefix: ClassVar[str]
    failure_message: ClassVar[str] = (
        "The job failed because of an internal error ({kind}). The job log has the details; "
        "please report it if it happens again."
    )
    user_errors: ClassVar[tuple[type[BaseException], ...]] = (PipelineError, DomainError)

    def __init__(self, job_id: int, *, progress: ProgressCallback | None = None) -> None:
        self.job_id = job_id
        self.also = progress
        self.attempt: Attempt | None = None

    # --- to implement -------------------------------------------------------------------------

    def work(self, job: J, work_dir: Path, progress: JobProgressWriter) -> None:
        """Do the job's work; publish with ``self.succeed(...)`` inside the final transaction."""
        raise NotImplementedError

    def cleanup(self, job: J) -> None:
        """Release the job's inputs after any end (uploads...); runs after every attempt."""

    def load(self) -> J:
        """The job row the work needs (override to ``select_related``)."""
        return self.model._default_manager.get(pk=self.job_id)

    # --- provided ------------------------------------------------------------------------------

    def work_dir(self, attempt: int) -> Path:
        return jobs_tmp_root() / f"{self.work_prefix}-{self.job_id}-a{attempt}"

    def succeed(self, **fields: Any) -> None:
        """Mark the job succeeded (inside the publishing transaction: a stale attempt raises)."""
        assert self.attempt is not None, "succeed() is for work()"
        job_succeed(self.model, self.attempt, **fields)

    def run(self) -> J:
        """Run the job to its end (or do nothing if it ended); return the reloaded row."""
        attempt = job_start(self.model, self.job_id)
        if attempt is None:
            return self.model._default_manager.get(pk=self.job_id)
        self.attempt = attempt
        job = self.load()
        writer = JobProgressWriter(self.model, attempt, also=self.also)
        work = self.work_dir(attempt.number)
        superseded = False
        try:
            with JobHeartbeat(writer):
                self._remove_earlier_attempts(attempt.number)
                work.mkdir(parents=True)
                self.work(job, work, writer)
        except JobSuperseded:
            superseded = True
            logger.warning("%s job %s: attempt %d was taken over", *self._what(attempt))
        except JobCancelled:
            logger.info("%s job %s: attempt %d cancelled", *self._what(attempt))
            job_cancelled_end(self.model, attempt)
        except self.user_errors as exc:
            logger.info("%s job %s: attempt %d refused its input: %s", *self._what(attempt), exc)
            job_fail(self.model, attempt, error=str(exc), log=traceback.format_exc())
        except Exception as exc:
            logger.exception("%s job %s: attempt %d failed", *self._what(attempt))
            job_fail(
                self.model,
                attempt,
                error=self.failure_message.format(kind=type(exc).__name__),
                log=traceback.format_exc(),
            )
        finally:
            shutil.rmtree(work, ignore_errors=True)
            if not superseded:  # the attempt that took over still needs the inputs
                self.cleanup(job)
        return self.model._default_manager.get(pk=self.job_id)

    def _what(self, attempt: Attempt) -> tuple[str, int, int]:
        return self.work_prefix, self.job_id, attempt.number

    def _remove_earlier_attempts(self, number: int) -> None:
        """Work directories of this job's earlier attempts: dead or superseded, so garbage."""
        for earlier in range(1, number):
            shutil.rmtree(self.work_dir(earlier), ignore_errors=True)
