"""A real worker runs the curation jobs: verdicts given through the API are coalesced into
properties rewrites, and a manager's publication (API) ends with a curated layer, its detections
table built after it."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import requests
from celery_harness import LiveWorker, wait_for
from django.contrib.auth import get_user_model
from rest_framework.authtoken.models import Token

from pipeline.ome_zarr_io import open_multiscale
from pipeline.precomputed import VERDICT_PROPERTY, read_segment_properties
from webapp.curation.models import CurationJob, CurationKind
from webapp.datasets.models import Layer, LayerKind, Visibility
from webapp.detections.models import Detection
from webapp.detections.services import detections_build_now
from webapp.proofreading import services
from webapp.proofreading.services import CampaignSettings

pytestmark = [pytest.mark.integration, pytest.mark.slow]

_BUILDER = Path(__file__).resolve().parents[1] / "browser" / "nuclei_dataset.py"
PLAN = ["tp", "fp", "tp_distortion", "fp"]


def _builder() -> Any:
    spec = importlib.util.spec_from_file_location("curation_jobs_nuclei_dataset", _BUILDER)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_worker_writes_verdict_tags_and_publishes_a_curated_layer(
    celery_worker: LiveWorker, live_server: Any
) -> None:
    users = get_user_model().objects
    owner = users.create_user("owner", password="not-used-here")
    reviewer = users.create_user("rev", password="not-used-here")
    dataset = _builder().build_nuclei_dataset(
        owner, slug="curjobs", shape=(64, 64, 64), n_nuclei=8, visibility=Visibility.PUBLIC
    )
    layer = Layer.objects.get(dataset=dataset, kind=LayerKind.SEGMENTATION)
    detections_build_now(layer)
    campaign = services.campaign_create(
        owner, layer, CampaignSettings(name="jobs", seed=3), members=[("rev", "reviewer")]
    )
    segments = sorted(Detection.objects.filter(layer=layer).values_list("segment_id", flat=True))
    given = dict(zip(segments, PLAN, strict=False))

    def session(user: Any) -> requests.Session:
        s = requests.Session()
        s.headers["Authorization"] = f"Token {Token.objects.create(user=user).key}"
        return s

    rev, manager = session(reviewer), session(owner)
    base = f"{live_server.url}/api/v1"
    for segment_id, verdict in given.items():
        answer = rev.post(
            f"{base}/proofreading/campaigns/{campaign.id}/verdicts/",
            json={"segment_id": segment_id, "verdict": verdict},
            timeout=30,
        )
        assert answer.status_code == 201, answer.text
    mesh = Layer.objects.get(source_layer=layer, kind=LayerKind.MESH)

    def tagged() -> dict[int, list[str]] | None:
        props = read_segment_properties(dataset.root / mesh.path)
        tags = props.tag_property(VERDICT_PROPERTY) if props else None
        if props is None or tags is None:
            return None
        found = {sid: tags.tags_of(i) for i, sid in enumerate(props.ids) if tags.tags_of(i)}
        return found if len(found) == len(given) else None

    found = wait_for(tagged, 120, "verdict tags written by the worker")
    assert found == {s: [v] for s, v in given.items()}
    jobs = CurationJob.objects.filter(kind=CurationKind.VERDICT_PROPERTIES)
    wait_for(lambda: not jobs.filter(status__in=["queued", "running"]).exists(), 60, "jobs end")
    assert 1 <= jobs.count() <= len(given)  # coalesced: at most one per verdict, usually fewer
    assert set(jobs.values_list("status", flat=True)) == {"succeeded"}

    started = manager.post(f"{base}/curation/campaigns/{campaign.id}/publish/", json={}, timeout=30)
    assert started.status_code == 202, started.text
    job_url = f"{base}/curation/jobs/{started.json()['id']}/"

    def ended() -> dict[str, Any] | None:
        body = manager.get(job_url, timeout=30).json()
        return body if body["state"] in {"succeeded", "failed", "cancelled"} else None

    final = wait_for(ended, 180, "the publication")
    assert final["state"] == "succeeded", final
    accepted = sorted(s for s, v in given.items() if v in ("tp", "tp_distortion"))
    assert final["kept"] == len(accepted)
    curated = Layer.objects.get(dataset=dataset, name=final["result_layer"])
    values = np.unique(np.asarray(open_multiscale(dataset.root / curated.path).levels[0]))
    assert sorted(int(v) for v in values if v) == accepted
    wait_for(
        lambda: (
            sorted(Detection.objects.filter(layer=curated).values_list("segment_id", flat=True))
            == accepted
        ),
        180,
        "the curated layer's detections table",
    )
