"""Where work that wants a GPU goes: the GPU queue (``ANNOTOME_GPU_QUEUE``, default ``gpu``)
when a worker consumes it now, else the default queue, so a site without a GPU worker runs
everything as before and one with a CUDA worker (docker/README.md) sends it training and
prediction. Workers are asked (Celery's remote control ``active_queues``, one second at most)
at most every ``ANNOTOME_GPU_QUEUE_CHECK_SECONDS``; the file-system broker of the embedded site
has no remote control: no GPU queue there."""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

from celery import current_app
from django.conf import settings

logger = logging.getLogger(__name__)

REMOTE_CONTROL_SCHEMES = {"redis", "rediss", "amqp", "amqps", "pyamqp"}
_lock = threading.Lock()
_cache: dict[str, tuple[float, bool]] = {}


def _consumed(queue: str) -> bool:
    """Whether a worker consumes ``queue`` now (False when no worker answers in time).

    The question goes over a connection of its own, closed at once: the app's pooled one would
    keep a Redis channel waiting on its reply queue (BRPOP), and a process forked later (a
    ProcessPoolExecutor in a worker or a test) closes inherited channels after the fork by
    reading that socket, forever."""
    try:
        with current_app.connection_for_read() as connection:
            inspect = current_app.control.inspect(timeout=1.0, connection=connection)
            replies = inspect.active_queues() or {}
    except Exception as exc:  # a broker hiccup: route to the default queue
        logger.warning("could not ask the workers for their queues: %s", exc)
        return False
    return any(q.get("name") == queue for queues in replies.values() for q in queues or [])


def gpu_queue() -> str | None:
    """The GPU queue when a worker consumes it, else None (the default queue)."""
    queue = str(getattr(settings, "ANNOTOME_GPU_QUEUE", "") or "")
    scheme = str(settings.CELERY_BROKER_URL).split("://", 1)[0]
    if not queue or scheme not in REMOTE_CONTROL_SCHEMES:
        return None
    now = time.monotonic()
    with _lock:
        checked = _cache.get(queue)
        if checked is not None and now - checked[0] < settings.ANNOTOME_GPU_QUEUE_CHECK_SECONDS:
            return queue if checked[1] else None
    found = _consumed(queue)
    with _lock:
        _cache[queue] = (now, found)
    return queue if found else None


def wants_gpu(config: dict[str, Any]) -> bool:
    """A run's configuration leaves the device to the machine (``auto``) or asks for CUDA."""
    sections = [config.get(name) for name in ("training", "predict")]
    devices = [str(s.get("device", "auto")) if isinstance(s, dict) else "auto" for s in sections]
    return any(d != "cpu" for d in devices)


def queue_for(config: dict[str, Any]) -> str | None:
    """Where a run with this configuration sends its GPU work now: the GPU queue, or None."""
    return gpu_queue() if wants_gpu(config) else None
