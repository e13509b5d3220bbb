"""``celery_worker``: a real ``celery -A webapp worker`` process on the test database.

A pytest plugin (registered in the root ``tests/conftest.py``) so the integration and browser
tests share one fixture; the process handling lives in ``tests/integration/celery_harness.py``.

The worker opens the database pytest-django created (PostgreSQL when DATABASE_URL points there,
else the SQLite test file) and the configured broker (Redis when CELERY_BROKER_URL is set, else a
file-system spool of its own). Each fixture instance consumes from a queue of its own, and this
process's Celery app sends there while the fixture lives, so parallel test runs sharing one Redis
never take each other's tasks. Tests using it need committed rows: ``transactional_db``.
"""

from __future__ import annotations

import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest

# The harness is imported as the top-level module ``celery_harness`` (as the integration tests
# do), whichever test directory pytest collected first.
_INTEGRATION_DIR = str(Path(__file__).resolve().parent / "integration")
if _INTEGRATION_DIR not in sys.path:
    sys.path.insert(0, _INTEGRATION_DIR)

from celery_harness import LiveWorker, WorkerProcess, base_env  # noqa: E402


def database_url_for_test_db() -> str:
    """A DATABASE_URL for the database this test process uses right now."""
    from django.db import connection

    db = connection.settings_dict
    if connection.vendor == "sqlite":
        return f"sqlite:///{db['NAME']}"
    if connection.vendor == "postgresql":
        auth = quote(db.get("USER") or "postgres", safe="")
        if db.get("PASSWORD"):
            auth += ":" + quote(db["PASSWORD"], safe="")
        host = db.get("HOST") or "127.0.0.1"
        port = db.get("PORT") or 5432
        return f"postgres://{auth}@{host}:{port}/{quote(db['NAME'], safe='')}"
    raise RuntimeError(f"no worker database URL for {connection.vendor}")


def _reset_app_routing(celery_app: Any) -> None:
    """Drop Celery's cached routing and pool references so changed settings take effect.

    The pools stay open: kombu's global registry hands the same pool back for an equal
    connection (URL and transport options), so closing one would break the next test.
    """
    celery_app.__dict__.pop("amqp", None)
    celery_app._pool = None


@pytest.fixture
def celery_worker(
    request: pytest.FixtureRequest,
    transactional_db: None,
    live_server: Any,
    settings: Any,
    tmp_path: Path,
) -> Iterator[LiveWorker]:
    """Start a worker for this test (env knobs via ``worker_env`` marker kwargs); stop it after."""
    from webapp.celery import app as celery_app
    from webapp.celery_fs_transport import spool_transport_options

    assert celery_app.conf.task_always_eager is False, "integration tests never run eagerly"
    queue = f"test-{uuid.uuid4().hex[:12]}"
    broker_url = celery_app.conf.broker_url
    env = base_env(
        DATABASE_URL=database_url_for_test_db(),
        CELERY_BROKER_URL=broker_url,
        ANNOTOME_VAR_DIR=str(tmp_path / "worker-var"),
        ANNOTOME_DATA_ROOT=str(settings.DATA_ROOT),
        ANNOTOME_UPLOAD_ROOT=str(settings.UPLOAD_ROOT),
        CELERY_RESULT_BACKEND=celery_app.conf.result_backend,
    )
    marker = request.node.get_closest_marker("worker_env")
    if marker is not None:
        # "{tmp_path}" in a value names this test's directory
        env.update(
            {key: str(value).format(tmp_path=tmp_path) for key, value in marker.kwargs.items()}
        )
    saved = {
        "task_default_queue": celery_app.conf.task_default_queue,
        "broker_transport_options": celery_app.conf.broker_transport_options,
    }
    if broker_url.split("://", 1)[0] in {"filesystem", "annotome-fs"}:
        spool = tmp_path / "spool"
        env["ANNOTOME_BROKER_SPOOL"] = str(spool)
        celery_app.conf.broker_transport_options = spool_transport_options(spool)
    celery_app.conf.task_default_queue = queue
    env["CELERY_TASK_DEFAULT_QUEUE"] = queue  # tasks the worker itself queues stay on it
    _reset_app_routing(celery_app)
    live = LiveWorker(
        WorkerProcess(env, tmp_path / "worker.log", queues=queue), queue, env["DATABASE_URL"],
        broker_url,
    )  # fmt: skip
    try:
        live.process.start()
        yield live
    finally:
        # The test is over and its queue is its own: no need to wait for a warm shutdown.
        live.process.stop(graceful=False)
        with celery_app.connection_for_write() as conn:
            conn.default_channel.queue_delete(queue)  # its Redis binding, or spool files
        for key, value in saved.items():
            setattr(celery_app.conf, key, value)
        _reset_app_routing(celery_app)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "worker_env(**env): extra environment for celery_worker ({tmp_path} expands)"
    )


def pytest_unconfigure(config: pytest.Config) -> None:
    """Remove the WAL side files Django leaves when it deletes a SQLite test database.

    A worker process opening the SQLite test database switches it to WAL mode.
    """
    from django.conf import settings

    if not settings.configured:
        return
    test_name = settings.DATABASES["default"].get("TEST", {}).get("NAME")
    if settings.DATABASES["default"]["ENGINE"].endswith("sqlite3") and test_name:
        for side in Path(test_name).parent.glob(Path(test_name).name + "*-[ws][ah][lm]"):
            if not Path(str(side)[:-4]).exists():
                side.unlink(missing_ok=True)
