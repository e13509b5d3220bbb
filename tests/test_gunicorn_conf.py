"""webapp/gunicorn_conf.py: settings from the environment and the worker start-up hook."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]

PROBE = """
import gc, json, sys
import django
django.setup()
import webapp.gunicorn_conf as conf
before = "webapp.viewer.views" in sys.modules
conf.post_worker_init(None)
print(json.dumps({
    "before": before,
    "views": "webapp.viewer.views" in sys.modules,
    "frozen": gc.get_freeze_count(),
    "reuse_port": conf.reuse_port,
    "worker_class": conf.worker_class,
    "threads": conf.threads,
    "sendfile": conf.sendfile,
}))
"""


def run_probe(**env: str) -> subprocess.CompletedProcess[str]:
    full_env = {**os.environ, "DJANGO_SETTINGS_MODULE": "webapp.settings.dev", **env}
    return subprocess.run(
        [sys.executable, "-c", PROBE], cwd=REPO_ROOT, env=full_env, capture_output=True,
        text=True, timeout=120,
    )  # fmt: skip


def probe(**env: str) -> dict[str, object]:
    result = run_probe(**env)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_worker_start_imports_every_view_and_freezes_them_for_the_gc() -> None:
    result = probe()
    assert result["before"] is False  # loading the WSGI app alone does not import the views
    assert result["views"] is True
    assert isinstance(result["frozen"], int) and result["frozen"] > 100_000
    assert result["reuse_port"] is False


def test_reuse_port_is_opt_in() -> None:
    assert probe(GUNICORN_REUSE_PORT="1")["reuse_port"] is True


def test_threads_by_default_and_monkey_patching_workers_refused() -> None:
    result = probe()
    assert result["worker_class"] == "gthread"
    assert result["threads"] == 8 and result["sendfile"] is True
    assert probe(GUNICORN_WORKER_CLASS="sync")["worker_class"] == "sync"
    refused = run_probe(GUNICORN_WORKER_CLASS="gevent")
    assert refused.returncode != 0
    assert "GUNICORN_WORKER_CLASS=gevent is not supported" in refused.stderr
    assert "zarr" in refused.stderr
