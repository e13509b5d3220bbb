"""``python -m webapp.embedded``: run the site and one Celery worker together (``make up``).

Starts gunicorn (``webapp/gunicorn_conf.py``) on ``http://$HOST:$PORT`` (127.0.0.1:8000) and
``celery -A webapp worker``, prints the URL, and supervises both:

- A child that dies (a SIGKILLed worker, an OOM-killed gunicorn master) is restarted, after
  its process group (orphaned pool children or gunicorn workers) is killed: after 0.5 s, then
  with a doubling delay (up to 15 s) while it keeps dying within ``ANNOTOME_RESTART_STABLE_SECONDS``
  (30) of its start. After ``ANNOTOME_RESTART_MAX_FAST_FAILURES`` (5) such fast exits in a row the
  runner gives up: it says so, stops the other child and exits non-zero. The worker's task is not
  lost: the broker redelivers it (``task_acks_late``; the file-system spool requeues what the dead
  worker held, Redis restores it after the lease) and the job takes over (``webapp.core.jobs``).
- Ctrl+C or SIGTERM stops both: SIGTERM to each (graceful), SIGKILL to their process groups
  after ``ANNOTOME_STOP_GRACE`` seconds (10).

Environment: ``HOST``, ``PORT``, ``CELERY_WORKER_CONCURRENCY`` (2), ``ANNOTOME_STOP_GRACE``, the
two restart knobs above, and every setting read by ``webapp.settings``. Expects a migrated
database.
"""

from __future__ import annotations

import ctypes
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
GUNICORN_CONF = REPO_ROOT / "webapp" / "gunicorn_conf.py"
PR_SET_PDEATHSIG = 1
TICK_SECONDS = 0.2


def _child_setup() -> None:
    """In the child: own process group (Ctrl+C reaches only us), die if the runner dies."""
    os.setsid()
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    except (OSError, AttributeError):
        pass  # not Linux: the runner's own signal handling still stops the children


def exit_description(code: int | None) -> str:
    """``status 3`` or ``signal 9 (SIGKILL)``."""
    if code is None:
        return "unknown status"
    if code < 0:
        try:
            return f"signal {-code} ({signal.Signals(-code).name})"
        except ValueError:
            return f"signal {-code}"
    return f"status {code}"


@dataclass(frozen=True)
class RestartPolicy:
    """When a dead child is started again, and when the runner gives up on it."""

    stable_seconds: float = 30.0  # a child that ran this long was healthy: delays start over
    max_fast_failures: int = 5  # consecutive exits within stable_seconds of the start
    first_delay: float = 0.5
    max_delay: float = 15.0

    @classmethod
    def from_env(cls) -> RestartPolicy:
        return cls(
            stable_seconds=float(os.environ.get("ANNOTOME_RESTART_STABLE_SECONDS") or 30),
            max_fast_failures=int(os.environ.get("ANNOTOME_RESTART_MAX_FAST_FAILURES") or 5),
        )

    def delay(self, fast_failures: int) -> float:
        return min(self.first_delay * 2.0 ** max(fast_failures - 1, 0), self.max_delay)


@dataclass
class Child:
    """One supervised process (and its process group)."""

    name: str
    argv: list[str]
    proc: subprocess.Popen[bytes] | None = field(default=None, repr=False)
    started_at: float = 0.0
    fast_failures: int = 0
    restarts: int = 0
    restart_at: float | None = None

    def start(self, env: dict[str, str]) -> None:
        # preexec_fn is safe here: the runner has a single thread
        self.proc = subprocess.Popen(self.argv, cwd=REPO_ROOT, env=env, preexec_fn=_child_setup)
        self.started_at = time.monotonic()
        self.restart_at = None

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def signal_group(self, sig: int) -> None:
        if self.proc is None:
            return
        try:
            os.killpg(self.proc.pid, sig)
        except ProcessLookupError:
            pass


def web_command(host: str, port: int) -> list[str]:
    """gunicorn with the project's configuration, bound to ``host:port``."""
    argv = [sys.executable, "-m", "gunicorn", "--bind", f"{host}:{port}"]
    if GUNICORN_CONF.exists():
        argv += ["--config", str(GUNICORN_CONF)]
    argv.append("webapp.wsgi:application")
    return argv


def worker_command(concurrency: int) -> list[str]:
    """One Celery worker; gossip/mingle/heartbeat are pointless with a single embedded worker."""
    return [
        sys.executable, "-m", "celery", "-A", "webapp", "worker",
        "--loglevel", "info", "--concurrency", str(concurrency), "--hostname", "embedded@%h",
        "--without-gossip", "--without-mingle", "--without-heartbeat",
    ]  # fmt: skip


def login_hint() -> str:
    """Where the demo admin's password is kept, when ``ensure_demo_admin`` generated it."""
    var = Path(os.environ.get("ANNOTOME_VAR_DIR") or REPO_ROOT / "var")
    kept = var / "demo_admin_password.txt"
    if kept.is_file():
        return f"\nLog in as admin; the password is in {kept}"
    return ""


def port_open(host: str, port: int) -> bool:
    try:
        socket.create_connection((host, port), timeout=0.5).close()
    except OSError:
        return False
    return True


def say(message: str) -> None:
    print(f"annotome: {message}", file=sys.stderr, flush=True)


class Supervisor:
    """Runs the children, restarts those that die, forwards stop requests."""

    def __init__(
        self, children: list[Child], grace: float, policy: RestartPolicy | None = None
    ) -> None:
        self.children = children
        self.grace = grace
        self.policy = policy or RestartPolicy()
        self.stop_requested: int | None = None

    def _on_signal(self, signum: int, _frame: object) -> None:
        if self.stop_requested is not None:  # second Ctrl+C: do not wait any longer
            self.grace = 0
        self.stop_requested = signum

    def stop_all(self) -> None:
        for child in self.children:
            if child.alive() and child.proc is not None:
                # Only the main process: gunicorn and Celery stop their own workers gracefully
                # (a running task finishes, or is redelivered after the SIGKILL below).
                child.proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + self.grace
        while any(c.alive() for c in self.children) and time.monotonic() < deadline:
            if self.grace == 0:
                break
            time.sleep(0.1)
        for child in self.children:
            # also the group: pool children of a worker that was killed mid-shutdown
            child.signal_group(signal.SIGKILL)
            if child.proc is not None:
                child.proc.wait()

    def on_exit(self, child: Child, now: float) -> bool:
        """A child exited: schedule its restart; False when it fails too fast to go on."""
        assert child.proc is not None
        code = child.proc.returncode
        # Whatever it left behind (pool children, gunicorn workers holding the port) goes too.
        child.signal_group(signal.SIGKILL)
        ran = now - child.started_at
        if ran < self.policy.stable_seconds:
            child.fast_failures += 1
        else:  # it had been healthy: start counting again
            child.fast_failures = 0
        if child.fast_failures >= self.policy.max_fast_failures:
            say(
                f"the {child.name} keeps exiting: {child.fast_failures} times in a row within "
                f"{self.policy.stable_seconds:g} s of starting (last: {exit_description(code)}). "
                "Giving up and stopping everything; its output above says why."
            )
            return False
        delay = self.policy.delay(child.fast_failures)
        child.restart_at = now + delay
        say(
            f"the {child.name} exited ({exit_description(code)}) after {ran:.1f} s; "
            f"restarting it in {delay:g} s."
        )
        return True

    def run(self, env: dict[str, str], url: str, host: str, port: int) -> int:
        signal.signal(signal.SIGINT, self._on_signal)
        signal.signal(signal.SIGTERM, self._on_signal)
        for child in self.children:
            child.start(env)
        announced = False
        failed: Child | None = None
        while self.stop_requested is None and failed is None:
            now = time.monotonic()
            for child in self.children:
                if child.restart_at is not None:
                    if now >= child.restart_at:
                        child.restarts += 1
                        child.start(env)
                        say(f"restarted the {child.name} (restart {child.restarts}).")
                elif not child.alive() and not self.on_exit(child, now):
                    failed = child
                    break
            if not announced and port_open(host, port):
                print(f"\nAnnotome is running at {url}  (Ctrl+C stops the site and the worker)"
                      f"{login_hint()}\n", flush=True)  # fmt: skip
                announced = True
            time.sleep(TICK_SECONDS)
        if failed is None:
            say("stopping the site and the worker...")
            self.stop_all()
            return 0
        self.stop_all()
        code = failed.proc.returncode if failed.proc is not None else 1
        return code if code and code > 0 else 1


def main() -> int:
    host = os.environ.get("HOST") or "127.0.0.1"
    port = int(os.environ.get("PORT") or 8000)
    concurrency = int(os.environ.get("CELERY_WORKER_CONCURRENCY") or 2)
    grace = float(os.environ.get("ANNOTOME_STOP_GRACE") or 10)
    if port_open(host, port):
        print(f"annotome: {host}:{port} is already in use; set PORT to another port.",
              file=sys.stderr)  # fmt: skip
        return 2
    env = dict(os.environ)
    env.setdefault("DJANGO_SETTINGS_MODULE", "webapp.settings.dev")
    env["HOST"], env["PORT"] = host, str(port)
    env["PYTHONUNBUFFERED"] = "1"
    children = [
        Child("web server (gunicorn)", web_command(host, port)),
        Child("Celery worker", worker_command(concurrency)),
    ]
    url = f"http://{host}:{port}/"
    return Supervisor(children, grace, RestartPolicy.from_env()).run(env, url, host, port)


if __name__ == "__main__":
    sys.exit(main())
