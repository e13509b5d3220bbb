"""``python -m webapp.embedded``: run the site and one Celery worker together (``make up``).

Starts gunicorn (``webapp/gunicorn_conf.py``) on ``http://$HOST:$PORT`` (127.0.0.1:8000) and
``celery -A webapp worker``, prints the URL, and stops both on Ctrl+C or SIGTERM: SIGTERM to each
(graceful), SIGKILL after ``ANNOTOME_STOP_GRACE`` seconds (10). If either process dies on its own
the other is stopped and the exit status is non-zero. Expects a migrated database.

Environment: ``HOST``, ``PORT``, ``CELERY_WORKER_CONCURRENCY`` (2), ``ANNOTOME_STOP_GRACE``, and
every setting read by ``webapp.settings``.
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


def _child_setup() -> None:
    """In the child: own process group (Ctrl+C reaches only us), die if the runner dies."""
    os.setsid()
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    except (OSError, AttributeError):
        pass  # not Linux: the runner's own signal handling still stops the children


@dataclass
class Child:
    """One supervised process."""

    name: str
    argv: list[str]
    proc: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    def start(self, env: dict[str, str]) -> None:
        # preexec_fn is safe here: the runner has a single thread
        self.proc = subprocess.Popen(self.argv, cwd=REPO_ROOT, env=env, preexec_fn=_child_setup)

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


class Supervisor:
    """Runs the children, forwards stop requests, and reports an unexpected exit."""

    def __init__(self, children: list[Child], grace: float) -> None:
        self.children = children
        self.grace = grace
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

    def run(self, env: dict[str, str], url: str, host: str, port: int) -> int:
        signal.signal(signal.SIGINT, self._on_signal)
        signal.signal(signal.SIGTERM, self._on_signal)
        for child in self.children:
            child.start(env)
        announced = False
        failed: Child | None = None
        while self.stop_requested is None:
            failed = next((c for c in self.children if not c.alive()), None)
            if failed is not None:
                break
            if not announced and port_open(host, port):
                print(f"\nAnnotome is running at {url}  (Ctrl+C stops the site and the worker)"
                      f"{login_hint()}\n", flush=True)  # fmt: skip
                announced = True
            time.sleep(0.2)
        if failed is None:
            print("annotome: stopping the site and the worker...", file=sys.stderr, flush=True)
            self.stop_all()
            return 0
        code = failed.proc.returncode if failed.proc is not None else 1
        print(f"annotome: the {failed.name} exited unexpectedly (status {code}); "
              "stopping everything.", file=sys.stderr, flush=True)  # fmt: skip
        self.stop_all()
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
    return Supervisor(children, grace).run(env, url, host, port)


if __name__ == "__main__":
    sys.exit(main())
