"""Celery application: configured from Django settings (``CELERY_*``).

Embedded mode uses the durable file-system broker in :mod:`webapp.celery_fs_transport`
(``annotome-fs://``); production points ``CELERY_BROKER_URL`` at Redis (with the keep-alive of
:mod:`webapp.celery_redis_transport`) or RabbitMQ.
"""

from __future__ import annotations

import os
from typing import Any

from celery import Celery, Task, signals
from django.conf import settings

import webapp.celery_fs_transport
import webapp.celery_redis_transport  # noqa: F401  (redis:// keeps a live worker's messages)

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "webapp.settings.dev")

app = Celery("annotome")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


@app.task(bind=True, name="annotome.ping")
def ping(self: Task[..., dict[str, Any]], payload: Any = None) -> dict[str, Any]:
    """Round trip through broker, worker and result backend; says which worker answered."""
    return {
        "payload": payload,
        "worker": self.request.hostname,
        "pid": os.getpid(),
        "eager": bool(self.request.is_eager),
    }


@signals.worker_init.connect
def preload_pipeline(**_: Any) -> None:
    """Import torch and the predictor before the pool forks (``ANNOTOME_WORKER_PRELOAD``).

    Pool processes then share the imported modules and a second process is not ~2 s late to its
    first prediction item. Importing torch starts none of its thread pools, so forking after it is
    safe; CUDA is not touched until a task asks for it.
    """
    if settings.ANNOTOME_WORKER_PRELOAD:
        import pipeline.predict  # noqa: F401
