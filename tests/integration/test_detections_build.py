"""After an import, a real worker builds the layer's detections table; a rebuild keeps its rows."""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import pytest
import requests
from celery_harness import LiveWorker, wait_for
from django_celery_results.models import TaskResult
from import_uploads import balls_and_labels, token_session, upload_volume

from webapp.detections.models import DetectionBuild

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def _volume_and_labels() -> tuple[np.ndarray, np.ndarray]:
    """A 32x48x40 image with three bright balls, and their labels (ids 1, 2, 5)."""
    balls = [(10, 12, 10, 5), (20, 30, 25, 7), (16, 38, 8, 4)]
    return balls_and_labels((32, 48, 40), balls, ids=(1, 2, 5), seed=3)


def _wait_table(session: requests.Session, url: str, build_id: int | None = None) -> dict[str, Any]:
    deadline = time.monotonic() + 240
    while True:
        table = session.get(url, timeout=30).json()
        latest = table["latest_build"]
        ended = table["table_state"] in {"succeeded", "failed", "cancelled"}
        if ended and (build_id is None or (latest and latest["id"] == build_id)):
            return table
        assert time.monotonic() < deadline, f"table still {table['table_state']}: {table}"
        time.sleep(0.1)


def test_import_then_worker_builds_the_table_and_rebuilds_it(
    celery_worker: LiveWorker, live_server: Any
) -> None:
    session = token_session("importer")
    image, labels = _volume_and_labels()
    response = upload_volume(
        session, live_server.url, "Detections volume", "400,200,200", image, labels
    )
    assert response.status_code == 202, response.text
    job_url = f"{live_server.url}/api/v1/jobs/{response.json()['id']}/"
    job = wait_for(
        lambda: (j := session.get(job_url, timeout=30).json())["finished"] and j, 240, "the import"
    )
    assert job["status"] == "succeeded", job
    base = f"{live_server.url}/api/v1/datasets/{job['dataset']}/layers/nuclei/detections/"

    # The import's layers_changed queued the build; the worker ran it.
    table = _wait_table(session, f"{base}table/")
    assert table["table_state"] == "succeeded", table
    assert table["count"] == 3 and table["latest_build"]["reason"] == "import"
    build = DetectionBuild.objects.get(id=table["latest_build"]["id"])
    task = wait_for(
        lambda: TaskResult.objects.filter(task_id=build.celery_task_id, status="SUCCESS").first(),
        60,
        "the build task's result",
    )
    assert task.worker.startswith(celery_worker.nodename_prefix)

    rows = session.get(base, params={"ordering": "-volume"}, timeout=30).json()["results"]
    assert [r["segment_id"] for r in rows] == [2, 1, 5]
    voxels = {r["segment_id"]: r["voxels"] for r in rows}
    assert voxels == {s: int((labels == s).sum()) for s in (1, 2, 5)}
    assert all(r["surface_area"] > 0 and r["mean_intensity"] > 1000 for r in rows)

    # A rebuild by the owner: the same rows (ids) with fresh values.
    rebuilt = session.post(f"{base}table/", timeout=30)
    assert rebuilt.status_code == 202, rebuilt.text
    new_id = rebuilt.json()["latest_build"]["id"]
    table = _wait_table(session, f"{base}table/", new_id)
    assert table["table_state"] == "succeeded" and table["latest_build"]["reason"] == "rebuild"
    again = session.get(base, params={"ordering": "-volume"}, timeout=30).json()["results"]
    assert [(r["id"], r["voxels"]) for r in again] == [(r["id"], r["voxels"]) for r in rows]
