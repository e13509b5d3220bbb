"""Upload a volume through the API; a real worker imports it while the API shows progress."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from celery_harness import LiveWorker, wait_for
from django_celery_results.models import TaskResult
from import_uploads import balls_and_labels, token_session, upload_volume

from webapp.datasets.models import DatasetJob

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def _volume_and_labels() -> tuple[np.ndarray, np.ndarray]:
    """64x96x80 uint16 image with three bright balls, and their labels."""
    balls = [(20, 30, 25, 9), (40, 60, 50, 12), (30, 70, 20, 7)]
    return balls_and_labels((64, 96, 80), balls, seed=7)


@pytest.mark.worker_env(ANNOTOME_TEST_PROGRESS_DELAY="0.3")
def test_uploaded_volume_is_imported_by_the_worker_with_visible_progress(
    celery_worker: LiveWorker, live_server: Any, settings: Any
) -> None:
    session = token_session("importer")
    image, labels = _volume_and_labels()
    response = upload_volume(
        session, live_server.url, "Integration volume", "200,100,100", image, labels
    )
    assert response.status_code == 202, response.text
    job_url = f"{live_server.url}/api/v1/jobs/{response.json()['id']}/"

    polls: list[dict] = []
    deadline = time.monotonic() + 240
    while True:
        job = session.get(job_url, timeout=30).json()
        polls.append(job)
        if job["status"] in {"succeeded", "failed", "cancelled"}:
            break
        assert time.monotonic() < deadline, f"job still {job['status']}: {job}"
        time.sleep(0.05)
    assert job["status"] == "succeeded", job
    in_progress = [
        p for p in polls if p["status"] == "running" and p["stage"] and 0 < p["done"] < p["total"]
    ]
    seen = [(p["status"], p["stage"], p["done"], p["total"]) for p in polls]
    assert in_progress, f"no poll saw the job part-way: {seen}"
    assert all(0.0 <= p["progress"] <= 1.0 for p in in_progress)

    # The work was done by the worker process, not in this process.
    # The row says succeeded once the dataset is published; the task then draws the thumbnail
    # before it returns.
    task_id = DatasetJob.objects.get(id=job["id"]).celery_task_id
    task = wait_for(
        lambda: TaskResult.objects.filter(task_id=task_id, status="SUCCESS").first(),
        60,
        "the task's result",
    )
    assert task.worker.startswith(celery_worker.nodename_prefix)
    assert (Path(settings.DATA_ROOT) / "datasets" / job["dataset"] / "thumbnail.png").is_file()

    datasets = session.get(f"{live_server.url}/api/v1/datasets/", timeout=30).json()["results"]
    [dataset] = [d for d in datasets if d["slug"] == job["dataset"]]
    layers = {layer["name"]: layer for layer in dataset["layers"]}
    kinds = sorted(layer["kind"] for layer in layers.values())
    assert kinds == ["image", "mesh", "segmentation"], layers
    image_layer = next(layer for layer in layers.values() if layer["kind"] == "image")
    assert image_layer["shape"][-3:] == [64, 96, 80]
