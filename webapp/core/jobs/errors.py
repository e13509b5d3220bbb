"""Why a job's attempt stops before its end: raised by progress writes and lifecycle updates."""

from __future__ import annotations


class JobStopped(Exception):
    """The attempt must stop and clean up: its row no longer lets it go on."""


class JobCancelled(JobStopped):
    """A user cancelled the job (or it ended otherwise): record the end, keep nothing."""


class JobSuperseded(JobStopped):
    """A newer attempt took the job over (this one was presumed dead): leave the row alone."""
