"""A 2D image (real fluorescence nuclei, dsb2018) through the whole loop on a real Celery worker:
a painted campaign on it, its boxes approved, Retrain with the tiny preset, a published 2D
segmentation layer; and a three-channel (immunofluorescence-like) image through the same."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path
from typing import Any

import pytest
from celery_harness import LiveWorker
from django.conf import settings
from django.test import Client

from pipeline.model_io import load_model
from tests.runs_testdata import (
    PIXEL_NM,
    open_proofreading,
    people,
    retrain_campaign_2d,
    run_finished,
    token_session,
)
from webapp.annotation.models import Assignment
from webapp.datasets.models import Layer
from webapp.runs.models import ModelVersion

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def test_a_2d_image_is_painted_retrained_and_published(
    celery_worker: LiveWorker, live_server: Any
) -> None:
    who = people()
    campaign = retrain_campaign_2d(who)
    dataset = campaign.dataset

    api = token_session(who["owner"])
    base = f"{live_server.url}/api/v1"
    # The campaign's ground truth for training elsewhere is 2D as well, as the image is.
    exported = api.get(f"{base}/annotation/campaigns/{campaign.pk}/labels.zip", timeout=60)
    assert exported.status_code == 200, exported.text
    with zipfile.ZipFile(io.BytesIO(exported.content)) as archive:
        table = archive.read("boxes.csv").decode().splitlines()
    assert table[0] == "name,x,y,w,h" and len(table) == 5
    started = api.post(
        f"{base}/runs/", json={"campaign": campaign.pk, "preset": "tiny"}, timeout=30
    )
    assert started.status_code == 202, started.text
    body = run_finished(api, f"{base}/runs/{started.json()['id']}/")
    # A 2D segmentation of the image's grid, evaluated on the held-out box (the tiny preset's
    # 150 steps: 0.59 when measured; the floor says it learnt something, not how well).
    layer = Layer.objects.get(dataset=dataset, name=body["result_layer"])
    assert (layer.kind, layer.axes, layer.shape) == ("segmentation", ["y", "x"], [256, 256])
    assert body["metrics"]["segment"]["objects"] > 10
    held_out = body["metrics"]["evaluation"]["all"]
    assert held_out["boxes"] == 1 and held_out["f1"] > 0.25, held_out
    # Its detections (built after publishing) open a proofreading campaign in one request.
    opened = open_proofreading(api, base, body["model_id"])
    assert opened["items"] == body["metrics"]["segment"]["objects"]
    # Its queue and gallery (pages: a session, not the token) show areas, not volumes.
    pages = Client()
    pages.force_login(who["owner"])
    for page in (opened["url"], f"{opened['url']}gallery/"):
        answer = pages.get(page)
        assert answer.status_code == 200 and '"planar": true' in answer.text, page
    # Each 2D detection's volume column is its area: pixels times one pixel's area (um^2).
    listed = f"{base}/datasets/{dataset.slug}/layers/{layer.name}/detections/?limit=5"
    rows = api.get(listed, timeout=30).json()["results"]
    assert rows and all(
        r["volume"] == pytest.approx(r["voxels"] * (PIXEL_NM / 1000) ** 2) for r in rows
    ), rows


def test_a_multichannel_2d_image_is_painted_on_one_grey_image_and_retrained(
    celery_worker: LiveWorker, live_server: Any
) -> None:
    """Immunofluorescence-like: three channels (c, y, x) imported from a TIFF. The Paint tab's
    image is one grey image of the three, and a run trains a U-Net reading all three channels
    (it failed at config load: "the pipeline needs a single channel")."""
    who = people()
    campaign = retrain_campaign_2d(who, channels=3)
    assert campaign.image_layer.axes == ["c", "y", "x"] and campaign.image_layer.channels == 3
    assignment = Assignment.objects.filter(box__campaign=campaign).order_by("id").first()
    assert assignment is not None
    pages = Client()
    pages.force_login(who["a1"])
    image = pages.get(f"/api/v1/annotation/assignments/{assignment.pk}/labels/image/")
    assert image.status_code == 200, image.content[:300]
    assert image["X-Shape"] == "1,128,128" and len(image.content) == 128 * 128

    api = token_session(who["owner"])
    base = f"{live_server.url}/api/v1"
    started = api.post(
        f"{base}/runs/", json={"campaign": campaign.pk, "preset": "tiny"}, timeout=30
    )
    assert started.status_code == 202, started.text
    body = run_finished(api, f"{base}/runs/{started.json()['id']}/")
    model = ModelVersion.objects.get(pk=body["model_id"])
    loaded = load_model(Path(settings.DATA_ROOT) / model.path, device="cpu")
    assert (loaded.config.in_channels, loaded.config.dims) == (3, 2)
    held_out = body["metrics"]["evaluation"]["all"]
    assert held_out["boxes"] == 1 and held_out["f1"] > 0.25, held_out
