"""Settings come from the environment; production refuses unsafe values."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
GOOD_KEY = "settings-test-secret-0123456789abcdefghijklmnopqrstuvwxyz-ABCDEFGH"

# Prints the settings a test looks at, as JSON.
PROBE = """
import json, django
from django.conf import settings as s
django.setup()
from django.db import connection
out = {name: getattr(s, name) for name in (
    "DEBUG", "ALLOWED_HOSTS", "CSRF_TRUSTED_ORIGINS", "CELERY_BROKER_URL",
    "CELERY_BROKER_TRANSPORT_OPTIONS", "SESSION_COOKIE_SECURE", "DATA_SERVING",
    "CELERY_TASK_ALWAYS_EAGER", "CELERY_TASK_ACKS_LATE", "CELERY_WORKER_PREFETCH_MULTIPLIER",
    "CACHES", "VIEWER_STATE_SAVE_RATE",
)}
from django.core.cache import cache
cache.set("annotome-settings-probe", 42, 30)
out["cache_round_trip"] = cache.get("annotome-settings-probe")
from webapp.celery import app
out["transport"] = app.connection_for_write().transport.driver_name
if connection.vendor == "sqlite":
    with connection.cursor() as cursor:
        cursor.execute("PRAGMA journal_mode")
        out["journal_mode"] = cursor.fetchone()[0]
print(json.dumps(out))
"""


def _settings(tmp_path: Path, module: str, **env: str) -> subprocess.CompletedProcess[str]:
    base = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("DJANGO_", "ANNOTOME_", "CELERY_")) and key != "DATABASE_URL"
    }
    base.update(
        DJANGO_SETTINGS_MODULE=module,
        ANNOTOME_VAR_DIR=str(tmp_path / "var"),
        PYTHONPATH=str(REPO_ROOT),
    )
    base.update(env)
    return subprocess.run(
        [sys.executable, "-c", PROBE],
        env=base, cwd=REPO_ROOT, capture_output=True, text=True, timeout=120,
    )  # fmt: skip


def _ok(result: subprocess.CompletedProcess[str]) -> dict:
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_embedded_defaults_need_no_server(tmp_path: Path) -> None:
    values = _ok(_settings(tmp_path, "webapp.settings.dev"))
    assert values["DEBUG"] is False, "debug pages only when DJANGO_DEBUG=1"
    assert values["CELERY_BROKER_URL"] == "filesystem://"
    assert values["transport"] == "annotome-fs", "the durable file-system transport"
    options = values["CELERY_BROKER_TRANSPORT_OPTIONS"]
    assert options["data_folder_in"] == options["data_folder_out"]
    assert options["data_folder_in"] == str(tmp_path / "var" / "broker" / "queue")
    assert options["processed_folder"] == str(tmp_path / "var" / "broker" / "processing")
    assert options["polling_interval"] == 0.1
    assert values["journal_mode"] == "wal", "SQLite runs in WAL mode (init_command)"
    assert (tmp_path / "var" / "annotome.sqlite3").exists(), "created under ANNOTOME_VAR_DIR"
    assert values["CELERY_TASK_ALWAYS_EAGER"] is False
    assert values["CELERY_TASK_ACKS_LATE"] is True
    assert values["CELERY_WORKER_PREFETCH_MULTIPLIER"] == 1


def test_cache_is_shared_files_by_default_and_redis_when_configured(tmp_path: Path) -> None:
    values = _ok(_settings(tmp_path, "webapp.settings.dev"))
    assert values["CACHES"]["default"]["BACKEND"].endswith("FileBasedCache")
    assert values["CACHES"]["default"]["LOCATION"] == str(tmp_path / "var" / "cache")
    assert any((tmp_path / "var" / "cache").iterdir()), "the entry is a file other processes see"
    assert values["cache_round_trip"] == 42 and values["VIEWER_STATE_SAVE_RATE"] == "60/min"
    broker = os.environ.get("CELERY_BROKER_URL", "")
    # `make test` exports the Redis URL when Redis answers (always on CI); without it, only the
    # setting can be checked.
    url = (
        broker.rsplit("/", 1)[0] + "/14" if broker.startswith("redis://") else "redis://nowhere:1/0"
    )
    result = _settings(tmp_path, "webapp.settings.dev", CACHE_URL=url)
    if broker.startswith("redis://"):
        values = _ok(result)
        assert values["CACHES"]["default"]["BACKEND"].endswith("RedisCache")
        assert values["CACHES"]["default"]["LOCATION"] == url
        assert values["cache_round_trip"] == 42  # through a real Redis
    else:
        assert result.returncode != 0 and "nowhere" in result.stderr


def test_environment_overrides_hosts_broker_and_spool(tmp_path: Path) -> None:
    values = _ok(
        _settings(
            tmp_path,
            "webapp.settings.dev",
            DJANGO_ALLOWED_HOSTS="a.example.org, b.example.org",
            DJANGO_CSRF_TRUSTED_ORIGINS="https://a.example.org",
            DJANGO_DEBUG="1",
            ANNOTOME_BROKER_SPOOL=str(tmp_path / "spool"),
        )
    )
    assert values["ALLOWED_HOSTS"] == ["a.example.org", "b.example.org"]
    assert values["CSRF_TRUSTED_ORIGINS"] == ["https://a.example.org"]
    assert values["DEBUG"] is True
    assert values["CELERY_BROKER_TRANSPORT_OPTIONS"]["data_folder_in"] == str(
        tmp_path / "spool" / "queue"
    )
    redis = _ok(
        _settings(
            tmp_path,
            "webapp.settings.dev",
            CELERY_BROKER_URL="redis://127.0.0.1:6379/3",
            ANNOTOME_JOB_LEASE_SECONDS="40",
        )
    )
    assert redis["CELERY_BROKER_URL"] == "redis://127.0.0.1:6379/3"
    # The job lease is Redis's visibility timeout (a live worker keeps its messages fresh).
    assert redis["CELERY_BROKER_TRANSPORT_OPTIONS"] == {
        "visibility_timeout": 40.0,
        "unacked_restore_interval": 10.0,
        "unacked_restore_throttle": 1,
    }
    assert redis["transport"] == "redis"


def test_production_refuses_to_start_without_a_secret_key(tmp_path: Path) -> None:
    result = _settings(tmp_path, "webapp.settings.production")
    assert result.returncode != 0
    assert "ImproperlyConfigured: DJANGO_SECRET_KEY must be set in production" in result.stderr


def test_production_refuses_the_embedded_key(tmp_path: Path) -> None:
    from webapp.settings.base import EMBEDDED_SECRET_KEY

    result = _settings(
        tmp_path, "webapp.settings.production", DJANGO_SECRET_KEY=EMBEDDED_SECRET_KEY
    )
    assert result.returncode != 0
    assert "ImproperlyConfigured: DJANGO_SECRET_KEY is the embedded development key" in (
        result.stderr
    )


def test_production_refuses_to_start_with_debug_on(tmp_path: Path) -> None:
    result = _settings(
        tmp_path, "webapp.settings.production", DJANGO_SECRET_KEY=GOOD_KEY, DJANGO_DEBUG="true"
    )
    assert result.returncode != 0
    assert "ImproperlyConfigured: DJANGO_DEBUG must be off in production" in result.stderr


def test_production_with_a_secret_key_is_safe_by_default(tmp_path: Path) -> None:
    values = _ok(
        _settings(
            tmp_path,
            "webapp.settings.production",
            DJANGO_SECRET_KEY=GOOD_KEY,
            DJANGO_ALLOWED_HOSTS="annotome.example.org",
        )
    )
    assert values["DEBUG"] is False
    assert values["SESSION_COOKIE_SECURE"] is True
    assert values["DATA_SERVING"] == "nginx"
    assert values["ALLOWED_HOSTS"] == ["annotome.example.org"]


SQLITE_WRITERS = """
import json, threading, time
import django
django.setup()
from django.db import connection, transaction

with connection.cursor() as cursor:
    cursor.execute("CREATE TABLE t (n integer)")
connection.close()
first_wrote, errors = threading.Event(), []

def first():
    with transaction.atomic():
        with connection.cursor() as cursor:
            cursor.execute("INSERT INTO t VALUES (1)")
        first_wrote.set()
        time.sleep(0.5)
    connection.close()

def second():  # reads, then writes after the first has committed meanwhile
    first_wrote.wait()
    try:
        with transaction.atomic():
            with connection.cursor() as cursor:
                cursor.execute("SELECT count(*) FROM t")
                time.sleep(0.8)
                cursor.execute("INSERT INTO t VALUES (2)")
    except Exception as exc:
        errors.append(repr(exc))
    connection.close()

threads = [threading.Thread(target=first), threading.Thread(target=second)]
for thread in threads:
    thread.start()
for thread in threads:
    thread.join()
with connection.cursor() as cursor:
    cursor.execute("SELECT count(*) FROM t")
    rows = cursor.fetchone()[0]
print(json.dumps({"errors": errors, "rows": rows}))
"""


def test_embedded_sqlite_transactions_wait_for_each_other_instead_of_failing(
    tmp_path: Path,
) -> None:
    """Two processes of `make up` (a worker's job and an import) write in overlapping
    transactions: the second waits for the first (IMMEDIATE), never 'database is locked'."""
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("DJANGO_", "ANNOTOME_", "CELERY_")) and key != "DATABASE_URL"
    }
    env.update(
        DJANGO_SETTINGS_MODULE="webapp.settings.dev",
        ANNOTOME_VAR_DIR=str(tmp_path / "var"),
        PYTHONPATH=str(REPO_ROOT),
    )
    result = subprocess.run(
        [sys.executable, "-c", SQLITE_WRITERS],
        env=env, cwd=REPO_ROOT, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert _ok(result) == {"errors": [], "rows": 2}
