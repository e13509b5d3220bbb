"""A task sent by the site runs in a separate worker process on the configured services."""

from __future__ import annotations

import os

import pytest
from celery_harness import LiveWorker
from django.db import connection
from django_celery_results.models import TaskResult

from webapp.celery import app as celery_app
from webapp.celery import ping

pytestmark = pytest.mark.integration


def test_task_round_trip_through_a_real_worker(celery_worker: LiveWorker) -> None:
    result = ping.delay("round trip")
    answer = result.get(timeout=60)
    assert answer["payload"] == "round trip"
    assert answer["eager"] is False
    assert answer["worker"].startswith(celery_worker.nodename_prefix)
    assert answer["pid"] != os.getpid()
    stored = TaskResult.objects.get(task_id=result.id)
    assert stored.status == "SUCCESS"
    assert stored.worker.startswith(celery_worker.nodename_prefix)


def test_uses_postgresql_and_redis_when_configured(celery_worker: LiveWorker) -> None:
    """With DATABASE_URL / CELERY_BROKER_URL set (always in CI) no embedded fallback is used."""
    wants_postgres = os.environ.get("DATABASE_URL", "").startswith(("postgres", "postgresql"))
    wants_redis = os.environ.get("CELERY_BROKER_URL", "").startswith("redis")
    if os.environ.get("CI"):
        assert wants_postgres and wants_redis, "CI must run integration tests on real services"
    if wants_postgres:
        assert connection.vendor == "postgresql"
        assert celery_worker.database_url.startswith("postgres://")
        assert connection.settings_dict["NAME"] in celery_worker.database_url
    else:
        assert connection.vendor == "sqlite"
    if wants_redis:
        assert celery_worker.broker_url.startswith("redis://")
        assert celery_app.connection_for_write().transport.driver_type == "redis"
    else:
        assert celery_app.connection_for_write().transport.driver_name == "annotome-fs"
    answer = ping.delay().get(timeout=60)
    assert answer["worker"].startswith(celery_worker.nodename_prefix)


@pytest.mark.parametrize(
    "preloaded",
    [
        pytest.param(True, marks=pytest.mark.worker_env(ANNOTOME_WORKER_PRELOAD="1")),
        pytest.param(False, marks=pytest.mark.worker_env(ANNOTOME_WORKER_PRELOAD="0")),
    ],
)
def test_pool_processes_start_with_torch_imported_unless_told_not_to(
    celery_worker: LiveWorker, preloaded: bool
) -> None:
    """The worker imports the predictor before its pool forks (webapp.celery.preload_pipeline),
    so the first prediction item of every pool process does not pay the import."""
    names = ["torch", "pipeline.predict"]
    answer = celery_app.send_task("annotome_test.loaded_modules", args=[names]).get(timeout=60)
    assert answer == dict.fromkeys(names, preloaded)
    assert ping.delay().get(timeout=60)["worker"].startswith(celery_worker.nodename_prefix)
