"""``python -m webapp.embedded`` (what ``make up`` runs): site + worker up, Ctrl+C stops both."""

from __future__ import annotations

import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from celery import Celery

from webapp.celery_fs_transport import TRANSPORT_ALIAS, spool_transport_options

REPO_ROOT = Path(__file__).resolve().parent.parent

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def _wait_for(predicate, timeout: float, what: str):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not (value := predicate()):
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(0.1)
    return value


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _descendants(pid: int) -> set[int]:
    """All live processes below ``pid`` (walks /proc parent links)."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            parents[int(entry.name)] = int(stat.rsplit(")", 1)[1].split()[1])
    found: set[int] = set()
    frontier = [pid]
    while frontier:
        current = frontier.pop()
        for child, parent in parents.items():
            if parent == current and child not in found:
                found.add(child)
                frontier.append(child)
    return found


def _running(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def _http_get(url: str) -> tuple[int, str]:
    with urllib.request.urlopen(url, timeout=10) as response:
        return response.status, response.read().decode(errors="replace")


class Embedded:
    """A running ``python -m webapp.embedded`` with its own var directory and SQLite database."""

    def __init__(self, tmp_path: Path) -> None:
        self.port = _free_port()
        self.var = tmp_path / "var"
        self.db = self.var / "annotome.sqlite3"
        self.spool = self.var / "broker"
        self.log = tmp_path / "embedded.log"
        self.env = {
            **os.environ,
            "DJANGO_SETTINGS_MODULE": "webapp.settings.dev",
            "ANNOTOME_VAR_DIR": str(self.var),
            "DATABASE_URL": f"sqlite:///{self.db}",
            "CELERY_BROKER_URL": "filesystem://",
            "ANNOTOME_BROKER_SPOOL": str(self.spool),
            "CELERY_RESULT_BACKEND": "django-db",
            "PORT": str(self.port),
            "HOST": "127.0.0.1",
            "WEB_CONCURRENCY": "1",
            "CELERY_WORKER_CONCURRENCY": "1",
            "ANNOTOME_STOP_GRACE": "5",
        }
        self.var.mkdir(parents=True)
        subprocess.run(
            [sys.executable, "manage.py", "migrate", "--noinput", "-v0"],
            cwd=REPO_ROOT, env=self.env, check=True, timeout=120,
        )  # fmt: skip
        self._log = self.log.open("wb")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "webapp.embedded"],
            cwd=REPO_ROOT, env=self.env, stdout=self._log, stderr=subprocess.STDOUT,
        )  # fmt: skip

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def wait_ready(self) -> None:
        def ready() -> bool:
            if self.proc.poll() is not None:
                raise AssertionError(f"runner exited {self.proc.returncode}:\n{self.output()}")
            return "Annotome is running at" in self.output() and " ready." in self.output()

        _wait_for(ready, 90, "the site and the worker")

    def ping(self) -> dict:
        producer = Celery(
            "producer",
            broker=f"{TRANSPORT_ALIAS}://",
            broker_transport_options=spool_transport_options(self.spool),
        )
        task_id = producer.send_task("annotome.ping", args=["hello"]).id

        def stored() -> str | None:
            with sqlite3.connect(self.db, timeout=30) as con:
                row = con.execute(
                    "SELECT status, result FROM django_celery_results_taskresult WHERE task_id = ?",
                    (task_id,),
                ).fetchone()
            return row[1] if row and row[0] == "SUCCESS" else None

        import json

        return json.loads(_wait_for(stored, 60, "the ping result"))

    def close(self) -> None:
        if self.proc.poll() is None:
            for pid in _descendants(self.proc.pid):
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            self.proc.kill()
            self.proc.wait()
        self._log.close()


@pytest.fixture
def embedded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Embedded]:
    # Celery lets CELERY_BROKER_URL (Redis under `make test`) override the producer's URL.
    monkeypatch.delenv("CELERY_BROKER_URL", raising=False)
    runner = Embedded(tmp_path)
    try:
        yield runner
    finally:
        runner.close()


def test_serves_pages_runs_tasks_and_stops_on_ctrl_c(embedded: Embedded) -> None:
    embedded.wait_ready()
    assert f"http://127.0.0.1:{embedded.port}/" in embedded.output()
    status, body = _http_get(f"http://127.0.0.1:{embedded.port}/")
    assert status == 200 and "<html" in body.lower()

    answer = embedded.ping()
    assert answer["payload"] == "hello"
    assert answer["worker"].startswith("embedded@") and answer["eager"] is False

    children = _descendants(embedded.proc.pid)
    assert len(children) >= 4, "gunicorn master + worker, celery main + pool child"
    embedded.proc.send_signal(signal.SIGINT)
    assert embedded.proc.wait(timeout=15) == 0
    _wait_for(lambda: not any(_running(pid) for pid in children), 5, "every child to exit")
    with pytest.raises(OSError):
        _http_get(f"http://127.0.0.1:{embedded.port}/")


def test_exits_non_zero_and_stops_the_site_when_the_worker_dies(embedded: Embedded) -> None:
    embedded.wait_ready()
    children = _descendants(embedded.proc.pid)
    worker_main = next(
        pid for pid in children
        if "celery" in Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
        and os.getpgid(pid) == pid
    )  # fmt: skip
    os.killpg(worker_main, signal.SIGKILL)
    assert embedded.proc.wait(timeout=20) != 0
    assert "Celery worker exited unexpectedly" in embedded.output()
    _wait_for(lambda: not any(_running(pid) for pid in children), 5, "the site to stop")
