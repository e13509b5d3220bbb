"""One background-job base for every app: model, lifecycle, progress, lease, runner.

A job's row is the truth about it (modelled on NetBox's ``core.Job`` and ``JobRunner``):

- ``models.Job``: the abstract model (status, stage, done/total, error, log, Celery task id,
  timestamps, attempts, heartbeat and the worker that holds the lease); apps subclass it.
- ``lifecycle``: queue on commit, start (idempotent; takes over a dead attempt), succeed, fail,
  cancel. Every write after the start is fenced by the attempt number.
- ``progress.JobProgressWriter``: throttled progress that is also the cancellation check and
  the heartbeat; ``progress.JobHeartbeat`` beats from a thread while a step reports nothing.
- ``lease``: who holds a running job and when the hold counts as lost (``JOB_LEASE_SECONDS``).
- ``runner.JobRunner``: runs one attempt in a clean work directory under ``DATA_ROOT/tmp``,
  maps errors to a failed row, always cleans up.
"""
