"""Start and stop a real nginx (Debian package) and a real gunicorn of the site (tests, bench).

Every process gets its own prefix, config, pid file and temp directories under a work directory
and listens on a free port, so it never touches a system nginx.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
NGINX_BIN = shutil.which("nginx") or "/usr/sbin/nginx"
_MIME_TYPES = Path("/etc/nginx/mime.types")


def _load_render() -> Callable[..., str]:
    spec = importlib.util.spec_from_file_location(
        "annotome_nginx_render", REPO_ROOT / "docker" / "nginx" / "render.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.render_nginx_conf


render_nginx_conf = _load_render()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for_port(port: int, timeout: float = 20.0, proc: subprocess.Popen | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"process exited with {proc.returncode} before listening")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"nothing listens on port {port} after {timeout} s")


@dataclass
class Server:
    """A started server process; ``stop()`` ends exactly this process (and its workers)."""

    name: str
    port: int
    process: subprocess.Popen
    log_path: Path
    extra: dict[str, str] = field(default_factory=dict)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def stop(self, timeout: float = 10.0) -> None:
        if self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM if self.name != "nginx" else signal.SIGQUIT)
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout)


def nginx_main_conf(workdir: Path, http_snippet: str, worker_processes: int | str = 1) -> str:
    """A whole nginx.conf around an http-level snippet, everything kept under ``workdir``."""
    temp = workdir / "temp"
    for sub in ("body", "proxy", "fastcgi", "uwsgi", "scgi"):
        (temp / sub).mkdir(parents=True, exist_ok=True)
    # Test directories are often 0700: workers must run as the same user to read them.
    user = "user root;\n" if os.geteuid() == 0 else ""
    mime = f"include {_MIME_TYPES};" if _MIME_TYPES.exists() else ""
    return f"""{user}worker_processes {worker_processes};
pid {workdir}/nginx.pid;
error_log {workdir}/error.log warn;
events {{ worker_connections 4096; }}
http {{
    {mime}
    default_type application/octet-stream;
    access_log off;
    client_body_temp_path {temp}/body;
    proxy_temp_path {temp}/proxy;
    fastcgi_temp_path {temp}/fastcgi;
    uwsgi_temp_path {temp}/uwsgi;
    scgi_temp_path {temp}/scgi;
{http_snippet}
}}
"""


def start_nginx(
    workdir: Path, http_snippet: str, port: int, worker_processes: int | str = 1
) -> Server:
    """Run nginx in the foreground with ``http_snippet``; it must listen on ``port``."""
    workdir.mkdir(parents=True, exist_ok=True)
    conf = workdir / "nginx.conf"
    conf.write_text(nginx_main_conf(workdir, http_snippet, worker_processes))
    log_path = workdir / "nginx.out"
    check = subprocess.run(
        [NGINX_BIN, "-t", "-q", "-p", str(workdir), "-c", str(conf)],
        capture_output=True,
        text=True,
    )
    if check.returncode != 0:
        raise RuntimeError(f"nginx -t failed:\n{check.stderr}\n{conf.read_text()}")
    with log_path.open("wb") as out:
        proc = subprocess.Popen(
            [NGINX_BIN, "-p", str(workdir), "-c", str(conf), "-g", "daemon off;"],
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    server = Server("nginx", port, proc, workdir / "error.log")
    try:
        wait_for_port(port, proc=proc)
    except Exception:
        server.stop()
        raise RuntimeError(f"nginx did not start:\n{server.log()}")
    return server


def start_static_nginx(workdir: Path, root: Path, port: int, worker_processes: int = 1) -> Server:
    """Plain nginx static serving of ``root``: the baseline the benchmark compares against."""
    snippet = f"""    server {{
        listen 127.0.0.1:{port};
        keepalive_requests 10000;
        sendfile on;
        tcp_nopush on;
        location / {{ root {root}; }}
    }}"""
    return start_nginx(workdir, snippet, port, worker_processes)


def wait_for_http(url: str, timeout: float, proc: subprocess.Popen | None = None) -> None:
    """Wait until ``url`` answers with any HTTP status (a worker has booted)."""
    deadline = time.monotonic() + timeout
    while True:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"process exited with {proc.returncode}")
        try:
            with urllib.request.urlopen(url, timeout=5):
                return
        except urllib.error.HTTPError:
            return
        except OSError:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{url} did not answer within {timeout} s")
            time.sleep(0.1)


def start_gunicorn(
    workdir: Path,
    port: int,
    env: dict[str, str],
    extra_args: list[str] | None = None,
    ready_path: str = "/internal/data-auth",
) -> Server:
    """Run the site under gunicorn with ``webapp/gunicorn_conf.py`` on ``port``.

    Returns once a worker answers ``ready_path`` (the port opens before workers boot).
    """
    workdir.mkdir(parents=True, exist_ok=True)
    log_path = workdir / "gunicorn.out"
    full_env = {**os.environ, **env, "PORT": str(port), "HOST": "127.0.0.1"}
    full_env.setdefault("PYTHONPATH", str(REPO_ROOT))
    cmd = [
        sys.executable,
        "-m",
        "gunicorn",
        "-c",
        str(REPO_ROOT / "webapp" / "gunicorn_conf.py"),
        *(extra_args or []),
    ]
    with log_path.open("wb") as out:
        proc = subprocess.Popen(
            cmd, cwd=REPO_ROOT, env=full_env, stdout=out, stderr=subprocess.STDOUT
        )
    server = Server("gunicorn", port, proc, log_path)
    try:
        wait_for_http(f"http://127.0.0.1:{port}{ready_path}", timeout=90, proc=proc)
    except Exception:
        server.stop()
        raise RuntimeError(f"gunicorn did not start:\n{server.log()}")
    return server
