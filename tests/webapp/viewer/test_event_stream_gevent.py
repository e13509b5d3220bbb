"""Open Neuroglancer event streams must not pin gunicorn's (gevent) workers."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _open_stream(port: int) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    sock.sendall(b"GET /neuroglancer/events/annotome?c=t&gc=0 HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
    head = b""
    while b": annotome viewer events" not in head:
        chunk = sock.recv(4096)
        assert chunk, head
        head += chunk
    assert b"text/event-stream" in head
    return sock


@pytest.mark.slow
def test_one_gevent_worker_serves_pages_while_streams_stay_open(tmp_path: Path) -> None:
    port = _free_port()
    env = {
        **os.environ,
        "PORT": str(port),
        "WEB_CONCURRENCY": "1",
        "ANNOTOME_VAR_DIR": str(tmp_path),
        "DJANGO_SETTINGS_MODULE": "webapp.settings.dev",
    }
    server = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "-c", "webapp/gunicorn_conf.py"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    streams: list[socket.socket] = []
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/neuroglancer/v/annotome/")
                break
            except OSError:
                assert server.poll() is None, server.stderr.read() if server.stderr else ""
                assert time.monotonic() < deadline, "gunicorn did not start"
                time.sleep(0.3)
        streams = [_open_stream(port) for _ in range(8)]
        started = time.monotonic()
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/neuroglancer/v/annotome/") as r:
            assert r.status == 200
        request = urllib.request.Request(
            f"http://127.0.0.1:{port}/neuroglancer/state/annotome", data=b"{}", method="POST"
        )
        with urllib.request.urlopen(request) as r:
            assert r.read() == b'{"g": "0"}'
        assert time.monotonic() - started < 5
    finally:
        for sock in streams:
            sock.close()
        server.terminate()
        server.wait(timeout=30)
