"""Who holds a running job, and when the hold counts as lost.

A worker process holds a running job's lease while it refreshes the row's heartbeat (progress
writes and ``progress.JobHeartbeat``, every quarter lease). The lease is lost when the heartbeat
is older than ``JOB_LEASE_SECONDS`` (env ``ANNOTOME_JOB_LEASE_SECONDS``, 60 s), or sooner when
the holder is a process on this machine (same host name and PID namespace) that no longer
exists: then a redelivered task takes over at once instead of waiting out the lease.
"""

from __future__ import annotations

import functools
import os
import socket

from django.conf import settings

DEFAULT_LEASE_SECONDS = 60.0


def job_lease_seconds() -> float:
    return float(getattr(settings, "JOB_LEASE_SECONDS", DEFAULT_LEASE_SECONDS))


def heartbeat_interval_seconds() -> float:
    """How often a running attempt refreshes its heartbeat: a quarter of the lease."""
    return max(job_lease_seconds() / 4, 0.2)


@functools.cache
def _pid_namespace() -> str:
    try:
        return os.readlink("/proc/self/ns/pid")
    except OSError:
        return ""


def _start_time(pid: int) -> str | None:
    """The process's start time in clock ticks since boot (tells a reused PID apart)."""
    try:
        stat = open(f"/proc/{pid}/stat", encoding="ascii", errors="replace").read()  # noqa: SIM115
    except OSError:
        return None
    fields = stat.rsplit(")", 1)[-1].split()
    if not fields or fields[0] == "Z":  # a zombie has finished
        return None
    return fields[19] if len(fields) > 19 else ""


def worker_identity(pid: int | None = None) -> str:
    """``host|pid namespace|pid|start time`` of this process (or ``pid`` on this machine)."""
    pid = os.getpid() if pid is None else pid
    return "|".join([socket.gethostname(), _pid_namespace(), str(pid), _start_time(pid) or ""])


def worker_is_dead(identity: str) -> bool:
    """True only when ``identity`` names a process of this machine that is gone.

    False when it cannot tell (another host or container, no /proc): the lease decides then.
    """
    parts = identity.split("|")
    if len(parts) != 4 or not parts[1] or not parts[3]:
        return False
    host, namespace, pid, started = parts
    if host != socket.gethostname() or namespace != _pid_namespace() or not pid.isdigit():
        return False
    return _start_time(int(pid)) != started
