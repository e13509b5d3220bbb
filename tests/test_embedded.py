"""``python -m webapp.embedded`` (what ``make up`` runs): site + worker up, Ctrl+C stops both."""

from __future__ import annotations

import io
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest
import requests
import tifffile
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

    def __init__(self, tmp_path: Path, **extra_env: str) -> None:
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
            **extra_env,
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
            # Not the current app: shared_task calls of later tests in this process would
            # publish through it, into this test's spool.
            set_as_current=False,
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
def embedded_factory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Callable[..., Embedded]]:
    # Celery lets CELERY_BROKER_URL (Redis under `make test`) override the producer's URL.
    monkeypatch.delenv("CELERY_BROKER_URL", raising=False)
    started: list[Embedded] = []

    def start(**extra_env: str) -> Embedded:
        runner = Embedded(tmp_path, **extra_env)
        started.append(runner)
        return runner

    try:
        yield start
    finally:
        for runner in started:
            runner.close()


@pytest.fixture
def embedded(embedded_factory: Callable[..., Embedded]) -> Embedded:
    return embedded_factory()


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


def _group_leader(children: set[int], name: str) -> int:
    """The process of ``children`` that leads its own group and runs ``name`` (a child's main)."""
    return next(
        pid for pid in children
        if name in Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
        and os.getpgid(pid) == pid
    )  # fmt: skip


def _tiff(volume: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    tifffile.imwrite(buffer, volume)
    return buffer.getvalue()


def _small_volume() -> tuple[np.ndarray, np.ndarray]:
    shape = (40, 64, 64)
    z, y, x = np.indices(shape)
    labels = np.zeros(shape, dtype=np.uint16)
    for label, (cz, cy, cx, r) in enumerate([(12, 20, 20, 7), (26, 40, 44, 9)], 1):
        labels[(z - cz) ** 2 + (y - cy) ** 2 + (x - cx) ** 2 <= r * r] = label
    image = np.random.default_rng(5).normal(300, 30, shape) + (labels > 0) * 1500
    return image.clip(0, 65535).astype(np.uint16), labels


class SitePoller:
    """Requests the front page every 0.2 s from a thread, recording each outcome."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.outcomes: list[int | str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(0.2):
            try:
                self.outcomes.append(requests.get(self.url, timeout=10).status_code)
            except requests.RequestException as exc:
                self.outcomes.append(type(exc).__name__)

    def stop(self) -> list[int | str]:
        self._stop.set()
        self._thread.join(timeout=15)
        return self.outcomes


def test_a_sigkilled_worker_is_restarted_and_its_import_finishes(
    embedded_factory: Callable[..., Embedded], tmp_path: Path
) -> None:
    pause = tmp_path / "pause-progress"  # while it exists, job progress reports wait
    embedded = embedded_factory(
        DJANGO_SETTINGS_MODULE="embedded_test_settings",
        PYTHONPATH=str(REPO_ROOT / "tests" / "integration"),
        ANNOTOME_TEST_PROGRESS_PAUSE=str(pause),
        # no detections build after the import: DATA_ROOT/tmp must be empty when it ends
        ANNOTOME_DETECTIONS_AUTO_BUILD="0",
    )
    embedded.wait_ready()
    subprocess.run(
        [sys.executable, "manage.py", "shell", "-c",
         "from django.contrib.auth import get_user_model; "
         "from rest_framework.authtoken.models import Token; "
         "u = get_user_model().objects.create_user('importer', password='x-not-used'); "
         "Token.objects.create(user=u, key='e' * 40)"],
        cwd=REPO_ROOT, env=embedded.env, check=True, timeout=120,
    )  # fmt: skip
    site = f"http://127.0.0.1:{embedded.port}"
    api = requests.Session()
    api.headers["Authorization"] = "Token " + "e" * 40
    image, labels = _small_volume()
    pause.touch()
    response = api.post(
        f"{site}/api/v1/imports/",
        data={"name": "Survives", "voxel_size": "200,100,100", "unit": "nanometer"},
        files=[
            ("file", ("volume.tif", _tiff(image), "image/tiff")),
            ("labels", ("nuclei.tif", _tiff(labels), "image/tiff")),
        ],
        timeout=60,
    )
    assert response.status_code == 202, response.text
    job_url = f"{site}/api/v1/jobs/{response.json()['id']}/"
    poller = SitePoller(f"{site}/")

    def job() -> dict:
        return api.get(job_url, timeout=30).json()

    _wait_for(
        lambda: (j := job())["status"] == "running" and j["stage"] not in ("", "starting"),
        120,
        "the import's first progress report",
    )
    worker_main = _group_leader(_descendants(embedded.proc.pid), "celery")
    os.killpg(worker_main, signal.SIGKILL)
    # Its worker is gone, nothing works on it now (within moments: the pool child may take a
    # little while to die).
    _wait_for(lambda: job()["state"] == "retrying", 10, "the job to show as retrying")
    pause.unlink()
    _wait_for(lambda: "restarted the Celery worker" in embedded.output(), 60, "a restart")
    done = _wait_for(
        lambda: (j := job())["status"] not in ("queued", "running") and j, 240, "the import"
    )
    outcomes = poller.stop()

    assert done["status"] == "succeeded" and done["attempts"] == 2, done
    assert embedded.proc.poll() is None, "the runner kept going"
    assert "Celery worker exited (signal 9 (SIGKILL))" in embedded.output()
    assert len(outcomes) > 10 and set(outcomes) == {200}, outcomes
    layers = api.get(f"{site}/api/v1/datasets/{done['dataset']}/", timeout=30).json()["layers"]
    assert sorted(layer["kind"] for layer in layers) == ["image", "mesh", "segmentation"]
    # The job is marked succeeded just before its worker removes its work folder: wait for that.
    tmp = embedded.var / "data" / "tmp"
    _wait_for(lambda: not tmp.exists() or list(tmp.iterdir()) == [], 30, "an empty DATA_ROOT/tmp")
    embedded.proc.send_signal(signal.SIGINT)
    assert embedded.proc.wait(timeout=30) == 0


def test_a_killed_web_server_is_restarted_and_answers_again(embedded: Embedded) -> None:
    embedded.wait_ready()
    children = _descendants(embedded.proc.pid)
    master = _group_leader(children, "gunicorn")
    worker_main = _group_leader(children, "celery")
    os.kill(master, signal.SIGKILL)  # the master only: its workers are orphaned
    _wait_for(lambda: "restarted the web server" in embedded.output(), 30, "a restart")
    status, _ = _wait_for(lambda: _try_get(f"http://127.0.0.1:{embedded.port}/"), 60, "the site")
    assert status == 200
    assert _running(worker_main), "the worker was left alone"
    assert embedded.proc.poll() is None


def _try_get(url: str) -> tuple[int, str] | None:
    try:
        return _http_get(url)
    except OSError:
        return None


# A supervisor with a child that always fails at once, and a healthy one.
GIVES_UP = """
import os, sys
from webapp.embedded import Child, RestartPolicy, Supervisor
steady = Child("steady child", [sys.executable, "-c", "import time; time.sleep(120)"])
flaky = Child("flaky child", [sys.executable, "-c", "import sys; sys.exit(3)"])
policy = RestartPolicy(stable_seconds=10, max_fast_failures=3, first_delay=0.1, max_delay=0.4)
supervisor = Supervisor([steady, flaky], grace=2, policy=policy)
code = supervisor.run(dict(os.environ), "http://127.0.0.1:9/", "127.0.0.1", 9)
print("steady pid", steady.proc.pid, flush=True)
sys.exit(code)
"""


def test_gives_up_with_a_clear_message_after_repeated_fast_failures(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-c", GIVES_UP],
        cwd=REPO_ROOT, env={**os.environ, "PYTHONPATH": str(REPO_ROOT)},
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    output = result.stdout + result.stderr
    assert result.returncode == 3, output
    assert output.count("the flaky child exited (status 3)") == 2, output
    assert "restarting it in 0.1 s" in output and "restarting it in 0.2 s" in output
    assert "the flaky child keeps exiting: 3 times in a row within 10 s of starting" in output
    assert "(last: status 3). Giving up" in output
    steady = int(output.split("steady pid ")[1].split()[0])
    assert not _running(steady), "the healthy child was stopped too"
