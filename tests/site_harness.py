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
import time
import urllib.request
from collections.abc import Callable
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
