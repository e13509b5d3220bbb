"""Retraining runs on a real Celery worker (one process), through the API: a run cancelled while
it trains, or while workers predict, publishes nothing and leaves nothing in temporary space; a
registered model fine-tuned, applied to another dataset and proofread; the next boxes suggested by
a model's uncertainty; a worker killed mid-prediction changes no byte of the output.
(A run to its publication is ``tests/browser/test_run_page.py``, started and watched from the
pages.)"""

from __future__ import annotations

import hashlib
import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import requests
from celery_harness import LiveWorker, WorkerProcess, wait_for
from django.conf import settings
from django.test import Client
from scipy import ndimage

from pipeline.assist import rle_decode
from pipeline.box_image import read_box
from pipeline.progress import TRAINING_STEPS
from tests.runs_testdata import (
    open_proofreading,
    people,
    retrain_campaign,
    run_finished,
    token_session,
)
from webapp.annotation import services
from webapp.datasets.models import Layer, LayerKind
from webapp.runs.models import ModelVersion
from webapp.runs.stages import part_stage

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def run_files() -> list[str]:
    """Runs' work directories in temporary space (other jobs', such as a detections build's,
    come and go on their own)."""
    root = Path(settings.DATA_ROOT) / "tmp"
    return sorted(p.name for p in root.glob("run-*"))


def test_a_cancelled_run_publishes_nothing_and_leaves_no_files(
    celery_worker: LiveWorker, live_server: Any
) -> None:
    who = people()
    campaign, _ = retrain_campaign(who, approved=3)
    api = token_session(who["owner"])
    base = f"{live_server.url}/api/v1"
    body = {"campaign": campaign.pk, "preset": "tiny", "params": {"training.max_epochs": 50}}
    started = api.post(f"{base}/runs/", json=body, timeout=30)
    assert started.status_code == 202, started.text
    url = f"{base}/runs/{started.json()['id']}/"
    training = ("train", part_stage("train", TRAINING_STEPS))  # setting up, counting steps
    wait_for(
        lambda: api.get(url, timeout=30).json()["stage"] in training,
        120,
        "training",
        interval=0.2,
    )
    cancelled = api.post(f"{url}cancel/", timeout=30)
    assert cancelled.status_code == 200 and cancelled.json()["status"] == "cancelled"
    wait_for(lambda: run_files() == [], 120, "the run's files to go")
    time.sleep(1.0)
    final = api.get(url, timeout=30).json()
    assert final["status"] == "cancelled" and final["result_layer"] is None
    assert not ModelVersion.objects.exists()
    assert list(Layer.objects.filter(dataset=campaign.dataset).values_list("name", flat=True)) == [
        "image"
    ]


GPU_QUEUE = "annotome-test-gpu"


@pytest.fixture
def gpu_worker(celery_worker: LiveWorker, settings: Any, tmp_path: Path) -> Iterator[WorkerProcess]:
    """A second worker consuming only the GPU queue, as a CUDA worker does (docker/README.md);
    the site and the first worker route to it (``worker_env`` marker)."""
    settings.ANNOTOME_GPU_QUEUE = GPU_QUEUE
    gpu = WorkerProcess(dict(celery_worker.process.env), tmp_path / "gpu.log", queues=GPU_QUEUE)
    try:
        yield gpu.start()
    finally:
        gpu.stop(graceful=False)
        from webapp.celery import app as celery_app

        with celery_app.connection_for_write() as conn:
            conn.default_channel.queue_delete(GPU_QUEUE)


@pytest.mark.worker_env(
    ANNOTOME_GPU_QUEUE=GPU_QUEUE, ANNOTOME_TEST_PREDICT_PAUSE="{tmp_path}/pause-predict"
)
def test_a_registered_model_is_fine_tuned_applied_to_another_dataset_and_proofread(
    celery_worker: LiveWorker, gpu_worker: WorkerProcess, live_server: Any, tmp_path: Path
) -> None:
    """The registry's loop: train v1, fine-tune it (v2 starts from v1's weights), segment a
    second dataset with v1 (nothing trained, its boxes all evaluate it), then open a
    proofreading campaign on a version's detections in one request. A second worker consumes
    only the GPU queue (as a CUDA worker would): the runs' training and prediction go to it,
    segmentation to the first. Last, the application is run again with the GPU worker's
    process killed in the middle of prediction: the same bytes are published; and once more,
    cancelled in the middle of prediction: nothing is published and no file stays."""
    who = people()
    campaign, _ = retrain_campaign(who, approved=3)
    target, _ = retrain_campaign(who, approved=2)
    api = token_session(who["owner"])
    base = f"{live_server.url}/api/v1"
    quick = {"training.max_epochs": 1, "training.iterations_per_epoch": 4}
    first = api.post(f"{base}/runs/", json={"campaign": campaign.pk, "preset": "tiny"}, timeout=30)
    assert first.status_code == 202, first.text
    v1 = run_finished(api, f"{base}/runs/{first.json()['id']}/")
    assert v1["mode"] == "train" and v1["model"] == 1
    # Its uncertainty ranks the boxes nobody started (five of eight): two go first.
    suggested = api.post(
        f"{base}/models/{v1['model_id']}/suggestions/",
        json={"campaign": campaign.pk, "count": 2},
        timeout=30,
    )
    assert suggested.status_code == 201, suggested.text
    boxes = suggested.json()["boxes"]
    assert len(boxes) == 2 and boxes[0]["uncertainty"] >= boxes[1]["uncertainty"] > 0
    assert not any(b["created"] for b in boxes)  # the campaign is tiled: none is new
    # v1, the dataset's current model, powers the painting editor: a click in the next task
    # takes v1's published object under it.
    task = services.next_task(campaign, who["a1"])
    assert task is not None
    segmentation = ModelVersion.objects.get(pk=v1["model_id"]).layer
    assert segmentation is not None
    box = tuple(slice(a, a + n) for a, n in zip(task.box.start, task.box.size, strict=True))
    published = read_box(campaign.dataset.root / segmentation.path, task.box.start, task.box.size)
    assert published.shape == tuple(s.stop - s.start for s in box)
    inside = np.argwhere(ndimage.binary_erosion(published > 0))
    assert len(inside), "v1 found no object in the task's box"
    z, y, x = (int(v) for v in inside[len(inside) // 2])
    click = token_session(who["a1"]).post(
        f"{base}/annotation/assignments/{task.pk}/assist/click/",
        json={"z": z, "y": y, "x": x},
        timeout=30,
    )
    assert click.status_code == 200, click.text
    proposal = click.json()["proposal"]
    assert (proposal["source"], proposal["model"]) == ("model", "model v1")
    z0, y0, x0, z1, y1, x1 = proposal["bbox"]
    mask = rle_decode(proposal["rle"], (z1 - z0, y1 - y0, x1 - x0))
    assert np.array_equal(mask, published[z0:z1, y0:y1, x0:x1] == published[z, y, x])
    tune = api.post(
        f"{base}/runs/",
        json={"campaign": campaign.pk, "preset": "tiny", "params": quick, "parent": v1["model_id"]},
        timeout=30,
    )
    assert tune.status_code == 202, tune.text
    v2 = run_finished(api, f"{base}/runs/{tune.json()['id']}/")
    assert (v2["mode"], v2["parent"], v2["model"]) == ("fine-tune", v1["model_id"], 2)
    # Applied to the second dataset through its campaign: no training, every box evaluates.
    apply = api.post(
        f"{base}/runs/", json={"campaign": target.pk, "model": v1["model_id"]}, timeout=30
    )
    assert apply.status_code == 202, apply.text
    applied = run_finished(api, f"{base}/runs/{apply.json()['id']}/")
    stages = {s["name"]: s["state"] for s in applied["stages"]}
    assert stages["train"] == "skipped" and stages["predict"] == "done"
    assert applied["metrics"]["evaluation"]["all"]["boxes"] == 2
    models = api.get(f"{base}/models/", params={"dataset": target.dataset.slug}, timeout=30)
    (version,) = models.json()["results"]
    assert version["current"] is True and version["params"]["mode"] == "predict"
    assert version["params"]["parent"]["dataset"] == campaign.dataset.slug
    tuned = ModelVersion.objects.get(pk=v2["model_id"])
    assert tuned.params["parent"]["number"] == 1 and tuned.params["mode"] == "fine-tune"
    # Once its detections are built (after publishing), one request opens a campaign on it.
    opened = open_proofreading(api, base, version["id"])
    assert opened["items"] == applied["metrics"]["measure"]["objects"] > 0  # no filter fitted
    assert opened["url"].startswith("/proofreading/")
    # Its queue page opens for the owner (a page: a session, not the token, signs in).
    pages = Client()
    pages.force_login(who["owner"])
    queue = pages.get(opened["url"])
    assert queue.status_code == 200 and 'id="queue-config"' in queue.text
    gpu_log, cpu_log = gpu_worker.log_text(), celery_worker.process.log_text()
    assert "Task runs.advance[" in gpu_log and "Task core.plan_item[" in gpu_log
    assert "Task runs.advance[" not in cpu_log and "Task core.plan_item[" in cpu_log  # segment
    killed_mid_prediction(api, base, target.pk, v1["model_id"], applied, gpu_worker, tmp_path)
    cancelled_mid_prediction(api, base, target.pk, v1["model_id"], tmp_path)


def store_chunks(store: Path) -> dict[str, str]:
    """SHA-256 of every chunk file of an OME-Zarr store (not its metadata, which names it)."""
    metadata = {".zattrs", ".zarray", ".zgroup", "zarr.json"}
    return {
        str(path.relative_to(store)): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(store.rglob("*"))
        if path.is_file() and path.name not in metadata
    }


def published_stores(model_id: int) -> tuple[Path, Path]:
    """The label image and probability map a version's run published."""
    layer = ModelVersion.objects.get(pk=model_id).layer
    assert layer is not None
    probability = Layer.objects.get(source_layer=layer, kind=LayerKind.IMAGE)
    root = layer.dataset.root
    return root / layer.path, root / probability.path


def killed_mid_prediction(
    api: requests.Session,
    base: str,
    campaign_id: int,
    model_id: int,
    undisturbed: dict[str, Any],
    gpu_worker: WorkerProcess,
    tmp_path: Path,
) -> None:
    """Apply the model again while ``pause`` holds the prediction items (worker_test_tasks:
    maps written, done marker not yet); SIGKILL the GPU worker's process holding one. The
    worker starts a new process, the item runs again there, and the run publishes chunk for
    chunk the bytes of the undisturbed application."""
    pause, log = tmp_path / "pause-predict", tmp_path / "pause-predict.log"
    seen = len(log.read_text().split()) if log.exists() else 0
    pause.touch()
    again = api.post(f"{base}/runs/", json={"campaign": campaign_id, "model": model_id}, timeout=30)
    assert again.status_code == 202, again.text
    wait_for(lambda: log.exists() and len(log.read_text().split()) > seen, 120, "an item to pause")
    held = int(log.read_text().split()[seen])
    assert held in gpu_worker.pool_children()
    os.kill(held, signal.SIGKILL)
    pause.unlink()
    rerun = run_finished(api, f"{base}/runs/{again.json()['id']}/")
    after = [int(pid) for pid in log.read_text().split()[seen + 1 :]]
    assert after and held not in after  # the item ran again, in the worker's new process
    assert rerun["metrics"]["measure"] == undisturbed["metrics"]["measure"]
    for first, second in zip(
        published_stores(undisturbed["model_id"]), published_stores(rerun["model_id"]), strict=True
    ):
        chunks = store_chunks(first)
        assert chunks and store_chunks(second) == chunks, second


def cancelled_mid_prediction(
    api: requests.Session, base: str, campaign_id: int, model_id: int, tmp_path: Path
) -> None:
    """Apply the model once more and cancel the run while workers hold a prediction item (no
    process holds the run then: its plan is stopped instead). The API answers "cancelled" at
    once; the held item ends into the stopped plan, whose callback removes the run's work
    directory; no model version and no layer appear."""
    pause, log = tmp_path / "pause-predict", tmp_path / "pause-predict.log"
    seen = len(log.read_text().split()) if log.exists() else 0
    versions, layers = ModelVersion.objects.count(), Layer.objects.count()
    pause.touch()
    started = api.post(
        f"{base}/runs/", json={"campaign": campaign_id, "model": model_id}, timeout=30
    )
    assert started.status_code == 202, started.text
    url = f"{base}/runs/{started.json()['id']}/"
    wait_for(lambda: log.exists() and len(log.read_text().split()) > seen, 120, "an item to pause")
    running = api.get(url, timeout=30).json()
    assert (running["state"], running["stage"]) == ("running", "predict"), running
    cancelled = api.post(f"{url}cancel/", timeout=30)
    assert cancelled.status_code == 200 and cancelled.json()["status"] == "cancelled"
    pause.unlink()
    wait_for(lambda: run_files() == [], 120, "the cancelled run's files to go")
    time.sleep(1.0)  # a callback arriving late must not publish either
    final = api.get(url, timeout=30).json()
    assert final["status"] == "cancelled" and final["result_layer"] is None
    assert (ModelVersion.objects.count(), Layer.objects.count()) == (versions, layers)
