"""Run the site exactly as a user's ``make up`` does, in a temporary var directory.

``MakeUpSite`` runs ``make up`` (migrate, collectstatic, demo dataset, demo admin, then
``python -m webapp.embedded``: gunicorn with ``webapp/gunicorn_conf.py`` and a real Celery worker)
in its own process group, as a terminal would, and stops it with SIGINT (Ctrl+C). The
environment is a new user's: no ``DJANGO_*``, ``ANNOTOME_*``, ``CELERY_*``, ``DATABASE_URL`` or
``CACHE_URL`` from the test run leaks in, unless given explicitly (e.g. PostgreSQL and Redis).
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parent.parent
_LEAKY_PREFIXES = ("DJANGO_", "ANNOTOME_", "CELERY_", "GUNICORN_")
_LEAKY_NAMES = {"DATABASE_URL", "CACHE_URL", "WEB_CONCURRENCY", "PORT", "HOST"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for(predicate: Callable[[], Any], timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while not (value := predicate()):
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(0.2)
    return value


def user_environment(**overrides: str) -> dict[str, str]:
    """A shell environment with none of the test run's site settings."""
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(_LEAKY_PREFIXES) and key not in _LEAKY_NAMES
    }
    env.update(overrides)
    return env


class MakeUpSite:
    """``make up`` on a free port with its own ``ANNOTOME_VAR_DIR``."""

    def __init__(self, workdir: Path, **env: str) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.var = workdir / "var"
        self.log_path = workdir / "make-up.log"
        self.env = user_environment(PORT=str(self.port), ANNOTOME_VAR_DIR=str(self.var), **env)
        self._log = self.log_path.open("wb")
        self.proc = subprocess.Popen(
            ["make", "--no-print-directory", "up"],
            cwd=REPO_ROOT, env=self.env, stdout=self._log, stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip

    def output(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_ready(self, timeout: float = 240) -> None:
        """Until the runner announces the URL and the worker is ready (the demo is loaded)."""

        def ready() -> bool:
            if self.proc.poll() is not None:
                raise AssertionError(f"make up exited {self.proc.returncode}:\n{self.output()}")
            text = self.output()
            return "Annotome is running at" in text and " ready." in text

        wait_for(ready, timeout, f"make up to start (log {self.log_path})")

    def admin_password(self) -> str:
        """The demo admin's password, from where ``make up`` says it is kept."""
        text = self.output()
        printed = re.search(r"Demo admin: username admin, password (\S+)", text)
        kept = (self.var / "demo_admin_password.txt").read_text().strip()
        assert printed is None or printed.group(1) == kept
        return kept

    def manage(self, *args: str, timeout: float = 120) -> str:
        """``python manage.py ARGS`` with the site's environment (its database, its var dir),
        as an operator would run it next to the running site; its output."""
        done = subprocess.run(
            [sys.executable, "manage.py", *args],
            cwd=REPO_ROOT, env=self.env, capture_output=True, text=True, timeout=timeout,
        )  # fmt: skip
        assert done.returncode == 0, (args, done.stdout[-2000:], done.stderr[-3000:])
        return done.stdout

    def get(self, path: str, **headers: str) -> tuple[int, bytes]:
        request = urllib.request.Request(self.url + path, headers=headers)
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                return response.status, response.read()
        except urllib.error.HTTPError as error:
            return error.code, error.read()

    def stop(self, timeout: float = 40) -> int:
        """Ctrl+C, as in a terminal: SIGINT to the whole foreground process group."""
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGINT)
            except ProcessLookupError:
                pass
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=30)
        self._log.close()
        return int(self.proc.returncode)


def postgres_answers() -> bool:
    """The test run is on PostgreSQL (``DATABASE_URL``), so Redis is expected too."""
    return os.environ.get("DATABASE_URL", "").startswith(("postgres://", "postgresql://"))


def postgres_and_redis(broker_db: int, cache_db: int) -> tuple[dict[str, str], Callable[[], None]]:
    """A database of the caller's own on the run's PostgreSQL, and emptied Redis databases for
    the broker and the cache (numbers of the caller's own: two sites may run at once under
    xdist); the site's environment and a cleanup."""
    import psycopg
    import redis

    base = os.environ["DATABASE_URL"].rsplit("/", 1)[0]
    name = f"annotome_site_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(f"{base}/postgres", autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    broker = f"redis://127.0.0.1:6379/{broker_db}"
    cache = f"redis://127.0.0.1:6379/{cache_db}"
    for url in (broker, cache):
        redis.Redis.from_url(url).flushdb()

    def cleanup() -> None:
        with psycopg.connect(f"{base}/postgres", autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        for url in (broker, cache):
            redis.Redis.from_url(url).flushdb()

    env = {"DATABASE_URL": f"{base}/{name}", "CELERY_BROKER_URL": broker, "CACHE_URL": cache}
    return env, cleanup


@contextmanager
def make_up_site(
    workdir: Path, *, on_postgres: bool, redis_dbs: tuple[int, int] = (12, 11)
) -> Iterator[MakeUpSite]:
    """``make up`` started and ready (on its own PostgreSQL database and Redis databases when
    ``on_postgres``), stopped with Ctrl+C at the end, which it must announce."""
    env: dict[str, str] = {}
    cleanup = None
    if on_postgres:
        env, cleanup = postgres_and_redis(*redis_dbs)
    runner = MakeUpSite(workdir, **env)
    try:
        runner.wait_ready()
        yield runner
    finally:
        runner.stop()  # make itself dies of the SIGINT, as in a terminal
        if cleanup is not None:
            cleanup()
        assert "stopping the site and the worker" in runner.output(), runner.output()[-3000:]
