"""Start and stop real Celery worker processes for integration tests."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent


def wait_for(predicate: Callable[[], object], timeout: float, what: str, interval: float = 0.05):
    """Poll ``predicate`` until it returns something truthy; fail with ``what`` on timeout."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(interval)


def children_of(pid: int) -> list[int]:
    """Live (not zombie) child processes of ``pid``, from /proc."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid and fields[0] != "Z":
            found.append(int(entry.name))
    return sorted(found)


def base_env(**overrides: str) -> dict[str, str]:
    """Environment for a child process of the project: test helpers importable, settings set."""
    env = dict(os.environ)
    env.setdefault("DJANGO_SETTINGS_MODULE", "webapp.settings.dev")
    env["PYTHONPATH"] = os.pathsep.join([str(REPO_ROOT), str(HERE)])
    env["PYTHONUNBUFFERED"] = "1"
    env.update(overrides)
    return env


def migrate_sqlite(path: Path) -> None:
    """Create a migrated SQLite database at ``path``."""
    subprocess.run(
        [sys.executable, "manage.py", "migrate", "--noinput", "-v0"],
        cwd=REPO_ROOT,
        env=base_env(DATABASE_URL=f"sqlite:///{path}"),
        check=True,
        timeout=120,
    )


class WorkerProcess:
    """A ``celery -A webapp worker`` subprocess in its own process group, logging to a file."""

    def __init__(
        self,
        env: dict[str, str],
        log_path: Path,
        *,
        queues: str = "celery",
        concurrency: int = 1,
        pool: str = "prefork",
    ) -> None:
        self.env = env
        self.log_path = log_path
        self.hostname = f"test-{uuid.uuid4().hex[:10]}@%h"
        self.queues = queues
        self.concurrency = concurrency
        self.pool = pool
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def nodename_prefix(self) -> str:
        return self.hostname.split("@", 1)[0] + "@"

    def start(self, ready_timeout: float = 90) -> WorkerProcess:
        cmd = [
            sys.executable, "-m", "celery", "-A", "webapp", "worker",
            "-l", "info", "-n", self.hostname, "-Q", self.queues,
            "--pool", self.pool, "--concurrency", str(self.concurrency),
            "--without-gossip", "--without-mingle", "--without-heartbeat",
            "-I", "worker_test_tasks",
        ]  # fmt: skip
        self._log = self.log_path.open("ab")
        self._log_start = self.log_path.stat().st_size
        self.proc = subprocess.Popen(
            cmd, cwd=REPO_ROOT, env=self.env, stdout=self._log, stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip
        wait_for(self._ready, ready_timeout, f"worker ready (log {self.log_path})")
        return self

    def respawn(self) -> WorkerProcess:
        """A new, not yet started worker like this one (same environment, log, queues)."""
        return WorkerProcess(
            self.env,
            self.log_path,
            queues=self.queues,
            concurrency=self.concurrency,
            pool=self.pool,
        )

    def pool_children(self) -> list[int]:
        """PIDs of the worker's pool processes (the main process's live children)."""
        assert self.proc is not None
        return children_of(self.proc.pid)

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace")

    def _ready(self) -> bool:
        assert self.proc is not None
        if self.proc.poll() is not None:
            raise AssertionError(f"worker exited with {self.proc.returncode}:\n{self.log_text()}")
        with self.log_path.open("rb") as f:
            f.seek(self._log_start)
            return b" ready." in f.read()

    def kill(self) -> None:
        """SIGKILL the whole worker (main process and pool children) as a crash would."""
        assert self.proc is not None
        os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=30)
        self._log.close()

    def stop(self, timeout: float = 30, graceful: bool = True) -> None:
        """Warm shutdown (SIGTERM) unless not ``graceful``, then kill what is left."""
        if self.proc is None or self._log.closed:
            return
        if graceful and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                pass
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.proc.wait(timeout=30)
        self._log.close()


@dataclass
class LiveWorker:
    """What a test needs to know about the running worker."""

    process: WorkerProcess
    queue: str
    database_url: str
    broker_url: str

    @property
    def nodename_prefix(self) -> str:
        return self.process.nodename_prefix

    def restart(self) -> WorkerProcess:
        """Start a fresh worker process on the same queue (after a kill)."""
        self.process.stop(graceful=False)
        self.process = self.process.respawn().start()
        return self.process
