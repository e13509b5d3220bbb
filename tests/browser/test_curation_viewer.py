"""Results flow back into the data, end to end: verdicts given through the API reach the segment
properties Neuroglancer loads (a real Celery worker rewrites them), and a manager's "Publish
curated layer" (the campaign list's button, the worker's job) opens in the viewer without the
false positives."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest
import requests
from celery_harness import LiveWorker
from django.contrib.auth import get_user_model
from nuclei_dataset import build_nuclei_dataset
from rest_framework.authtoken.models import Token

from pipeline.precomputed import VERDICT_PROPERTY, read_segment_properties
from webapp.datasets.models import Layer, LayerKind, Visibility
from webapp.detections.models import Detection
from webapp.detections.services import detections_build_now
from webapp.proofreading import services
from webapp.proofreading.services import CampaignSettings

pytestmark = [
    pytest.mark.browser,
    pytest.mark.integration,
    pytest.mark.slow,
    pytest.mark.django_db(transaction=True),
]
READY_MS = 90_000
PASSWORD = "curate-pass-123"
SHOTS = Path("/tmp/curate-shots")
PLAN = ["tp", "tp", "tp_distortion", "fp", "fp", "fp"]

# What Neuroglancer loaded for a segmentation layer: its merged segment property map (ids and
# the tags each carries, tags stored as one character code per tag index) and visible segments.
LOADED_JS = """(name) => {
  const layer = annotome.viewer().layerManager.getLayerByName(name).layer;
  const map = layer.displayState.segmentPropertyMap.value;
  if (!map) return null;
  const inline = map.segmentPropertyMap.inlineProperties;
  const ids = Array.from(inline.ids, String);
  const tags = map.tags;
  const tagged = {};
  if (tags) ids.forEach((id, i) => {
    tagged[id] = Array.from(tags.values[i], (c) => tags.tags[c.charCodeAt(0)]);
  });
  const visible = Array.from(
    layer.displayState.segmentationGroupState.value.visibleSegments, String).sort();
  return {ids, tagNames: tags ? tags.tags : [], tagged, visible};
}"""


def _login(page: Any, url: str, username: str, next_path: str) -> None:
    page.goto(f"{url}/accounts/login/?next={next_path}")
    page.fill("#id_username", username)
    page.fill("#id_password", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(f"**{next_path}")


def _wait(what: str, check: Any, seconds: float = 120) -> Any:
    deadline = time.monotonic() + seconds
    while True:
        value = check()
        if value:
            return value
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.2)


def _loaded(page: Any, name: str) -> dict[str, Any]:
    page.wait_for_function(
        "(name) => { const l = annotome.viewer().layerManager.getLayerByName(name);"
        " return l && l.layer.displayState.segmentPropertyMap.value !== undefined; }",
        arg=name,
        timeout=READY_MS,
    )
    loaded = page.evaluate(LOADED_JS, name)
    assert loaded is not None
    return dict(loaded)


def test_verdict_tags_in_neuroglancer_and_a_curated_layer_without_false_positives(
    celery_worker: LiveWorker,
    live_server: Any,
    browser_context: Any,
    settings: Any,
) -> None:
    settings.NEUROGLANCER_EVENTS_MAX_SECONDS = 20
    SHOTS.mkdir(parents=True, exist_ok=True)
    users = get_user_model().objects
    owner = users.create_user("owner", password=PASSWORD)
    reviewer = users.create_user("rev", password=PASSWORD)
    dataset = build_nuclei_dataset(owner, slug="curate", visibility=Visibility.PUBLIC)
    layer = Layer.objects.get(dataset=dataset, kind=LayerKind.SEGMENTATION)
    mesh = Layer.objects.get(dataset=dataset, kind=LayerKind.MESH)
    detections_build_now(layer)
    segments = sorted(Detection.objects.filter(layer=layer).values_list("segment_id", flat=True))
    assert len(segments) >= len(PLAN) + 2
    campaign = services.campaign_create(
        owner, layer, CampaignSettings(name="Curate", seed=2), members=[("rev", "reviewer")]
    )

    # Verdicts through the API, one request each (a burst the properties job coalesces).
    session = requests.Session()
    session.headers["Authorization"] = f"Token {Token.objects.create(user=reviewer).key}"
    given = dict(zip(segments, PLAN, strict=False))
    for segment_id, verdict in given.items():
        answer = session.post(
            f"{live_server.url}/api/v1/proofreading/campaigns/{campaign.id}/verdicts/",
            json={"segment_id": segment_id, "verdict": verdict},
            timeout=30,
        )
        assert answer.status_code == 201, answer.text
    mesh_dir = dataset.root / mesh.path

    def properties_done() -> bool:
        props = read_segment_properties(mesh_dir)
        tags = props.tag_property(VERDICT_PROPERTY) if props else None
        if props is None or tags is None:
            return False
        return sum(1 for i in range(len(props.ids)) if tags.tags_of(i)) == len(given)

    _wait("the worker's verdict properties", properties_done)

    page = browser_context.new_page()
    property_requests: list[str] = []
    page.on(
        "request",
        lambda r: property_requests.append(r.url) if "segment_properties/info" in r.url else None,
    )
    dialogs: list[str] = []
    page.on("dialog", lambda d: (dialogs.append(d.message), d.accept()))

    # The manager publishes the curated layer from the campaign list and watches it finish.
    _login(page, live_server.url, "owner", "/proofreading/")
    controls = page.locator(f'.curate-publish[data-campaign="{campaign.id}"]')
    controls.locator("button.curate-start").click()
    page.wait_for_function(
        '(id) => { const s = document.querySelector(`.curate-publish[data-campaign="${id}"]`)'
        ".dataset.state; return s === 'succeeded' || s === 'failed' || s === 'cancelled'; }",
        arg=campaign.id,
        timeout=180_000,
    )
    page.screenshot(path=str(SHOTS / "campaign-list-published.png"), full_page=True)
    caption = controls.locator(".curate-status").inner_text()
    accepted = sorted(s for s, v in given.items() if v in ("tp", "tp_distortion"))
    assert caption == f"Published layer nuclei-curated ({len(accepted)} objects).", caption
    assert (
        controls.locator("a.curate-open").get_attribute("href")
        == "/datasets/curate/?show=nuclei-curated"
    )

    # The viewer: the original layer's loaded properties carry the verdict tags...
    page.goto(f"{live_server.url}/datasets/curate/")
    assert page.evaluate("() => annotome.ready.then((r) => r.errors)") == []
    original = _loaded(page, "nuclei")
    assert set(original["tagNames"]) >= {"tp", "tp_distortion", "fp", "uncertain"}
    for segment_id in segments:
        expected = [given[segment_id]] if segment_id in given else []
        assert original["tagged"][str(segment_id)] == expected, segment_id
    # ... fetched under the versioned URL (a rewrite gets a new one, never a cached copy).
    assert any("?v=" in url for url in property_requests), property_requests

    # ... and the curated layer holds the accepted objects only: no false positive is loaded,
    # listed or shown.
    curated = _loaded(page, "nuclei-curated")
    assert sorted(int(i) for i in curated["ids"]) == accepted
    assert sorted(int(i) for i in curated["visible"]) == accepted
    assert all(curated["tagged"][str(s)] == [given[s]] for s in accepted)
    false_positives = {str(s) for s, v in given.items() if v == "fp"}
    assert not false_positives & set(curated["ids"])
    state = page.evaluate("() => annotome.viewer().state.toJSON()")
    curated_state = next(la for la in state["layers"] if la["name"] == "nuclei-curated")
    assert any("labels/nuclei-curated" in json.dumps(src) for src in curated_state["source"])
    page.wait_for_function("() => annotome.viewer().isReady()", timeout=READY_MS)
    page.screenshot(path=str(SHOTS / "viewer-curated.png"))

    # The publication's link: the curated layer shown and selected, its source hidden.
    page.goto(f"{live_server.url}/datasets/curate/?show=nuclei-curated")
    assert page.evaluate("() => annotome.ready.then((r) => r.errors)") == []
    state = page.evaluate("() => annotome.viewer().state.toJSON()")
    shown = {la["name"]: la.get("visible", True) for la in state["layers"]}
    assert shown["nuclei-curated"] is True and shown["nuclei"] is False, shown
    assert state["selectedLayer"]["layer"] == "nuclei-curated"
    page.wait_for_function("() => annotome.viewer().isReady()", timeout=READY_MS)
    page.screenshot(path=str(SHOTS / "viewer-curated-only.png"))
    assert dialogs == []
