"""Retraining runs on a real Celery worker (one process), through the API: a run cancelled while
it trains publishes nothing and leaves nothing in temporary space. (A run to its publication is
``tests/browser/test_run_page.py``, started and watched from the pages.)"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
import requests
from celery_harness import LiveWorker, wait_for
from django.conf import settings
from rest_framework.authtoken.models import Token

from tests.runs_testdata import people, retrain_campaign
from webapp.datasets.models import Layer
from webapp.runs.models import ModelVersion

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def session(user: Any) -> requests.Session:
    s = requests.Session()
    s.headers["Authorization"] = f"Token {Token.objects.create(user=user).key}"
    return s


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
    api = session(who["owner"])
    base = f"{live_server.url}/api/v1"
    body = {"campaign": campaign.pk, "preset": "tiny", "params": {"training.max_epochs": 50}}
    started = api.post(f"{base}/runs/", json=body, timeout=30)
    assert started.status_code == 202, started.text
    url = f"{base}/runs/{started.json()['id']}/"
    wait_for(
        lambda: api.get(url, timeout=30).json()["stage"] == "train", 120, "training", interval=0.2
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
