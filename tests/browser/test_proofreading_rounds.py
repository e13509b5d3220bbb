"""The experts' second round and missed objects in real Chromium: an expert settles a detection a
reviewer found uncertain (the final verdict is the expert's, through the API), and a reviewer
drops a missed-object point where the mouse is; Neuroglancer's annotation layer shows it and the
CSV lists it."""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from django.contrib.auth import get_user_model
from nuclei_dataset import build_nuclei_dataset
from test_proofreading_queue import PASSWORD, READY_MS, current, login, settle

from webapp.datasets.models import Layer, LayerKind, Visibility
from webapp.detections.services import detections_build_now
from webapp.proofreading import services
from webapp.proofreading.models import MissedObject, ProofreadingCampaign
from webapp.proofreading.services import CampaignSettings

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]
MISSED = "missed objects"

LAYER_JS = """(name) => { const s = annotome.viewer().state.toJSON();
  return s.layers.find((l) => l.name === name) || null; }"""


def campaign_for(*members: tuple[str, str]) -> ProofreadingCampaign:
    users = get_user_model().objects
    owner = users.create_user("owner", password=PASSWORD)
    for username, _ in members:
        if not users.filter(username=username).exists():
            users.create_user(username, password=PASSWORD)
    dataset = build_nuclei_dataset(owner, slug="nuclei", visibility=Visibility.PUBLIC)
    layer = Layer.objects.get(dataset=dataset, kind=LayerKind.SEGMENTATION)
    detections_build_now(layer)
    return services.campaign_create(
        owner, layer, CampaignSettings(name="Rounds", seed=5), members=list(members)
    )


def open_queue(page: Any) -> dict[str, Any]:
    assert page.evaluate("() => annotome.ready.then((r) => r.errors)") == []
    page.wait_for_function("() => annotome.current() !== undefined", timeout=READY_MS)
    settle(page)
    return current(page)


def failures(page: Any) -> list[str]:
    failed: list[str] = []
    page.on(
        "response",
        lambda r: (
            failed.append(f"{r.status} {r.url}") if r.status >= 400 and "/c/" not in r.url else None
        ),
    )
    return failed


def test_expert_settles_an_uncertain_detection_in_the_second_round(
    live_server: Any, browser_context: Any, settings: Any, artifacts_dir: Path
) -> None:
    settings.NEUROGLANCER_EVENTS_MAX_SECONDS = 20
    campaign = campaign_for(("rev", "reviewer"), ("exp", "expert"))
    users = get_user_model().objects
    rev = users.get(username="rev")
    uncertain, sure = services.items_next(campaign, rev, count=2)
    services.verdict_create(campaign, rev, uncertain.item.id, "uncertain")
    services.verdict_create(campaign, rev, sure.item.id, "tp")

    page = browser_context.new_page()
    failed = failures(page)
    login(page, live_server.url, "exp", "/proofreading/")
    link = page.locator(f"tr[data-campaign='{campaign.id}'] a.second-round-link")
    assert link.inner_text() == "1 waiting for an expert"
    link.click()
    page.wait_for_url(f"**/proofreading/{campaign.id}/?round=2")
    item = open_queue(page)
    assert item["id"] == uncertain.item.id
    # The earlier verdicts, with who and when; the raw data in one 2D panel, the segment faint.
    earlier = page.inner_text("#queue-earlier")
    assert "rev" in earlier and "Uncertain" in earlier, earlier  # the label, not the name
    assert page.locator("#queue-earlier time").count() == 1
    assert "(uncertain)" in page.inner_text("#queue-earlier-reason")
    state = page.evaluate("() => annotome.viewer().state.toJSON()")
    assert state["layout"] == "xy"
    segmentation = next(la for la in state["layers"] if la["name"] == campaign.layer.name)
    assert segmentation["selectedAlpha"] == pytest.approx(0.2)
    assert segmentation["segments"] == [str(item["segment_id"])]
    centre = [item["detection"][f"centroid_{a}"] for a in "xyz"]
    assert state["position"] == pytest.approx(centre, abs=0.01)
    page.screenshot(path=str(artifacts_dir / "second-round.png"))

    # Neuroglancer's own keys step through the slices (the focus in the viewer).
    box = page.locator("#neuroglancer").bounding_box()
    page.mouse.click(box["x"] + box["width"] * 0.5, box["y"] + box["height"] * 0.6)
    assert page.evaluate("() => document.activeElement.id") == "neuroglancer"
    z_of = "() => annotome.viewer().state.toJSON().position[2]"
    z = page.evaluate(z_of)
    # One slice forward, then two back: Neuroglancer moves to the centre of the next voxel
    # (whole coordinates; the centroid's voxel is the one whose cell [i - 0.5, i + 0.5) holds it).
    page.keyboard.press(".")
    page.wait_for_function(f"(z) => ({z_of})() > z + 0.4", arg=z, timeout=10_000)
    forward = page.evaluate(z_of)
    assert forward == np.floor(z + 0.5) + 1, (z, forward)
    page.keyboard.press(",")
    page.keyboard.press(",")
    page.wait_for_function(f"(z) => ({z_of})() < z - 1.5", arg=forward, timeout=10_000)
    assert page.evaluate(z_of) == pytest.approx(forward - 2, abs=1e-3)

    # The expert's verdict (key 1, true positive) is final.
    page.keyboard.press("1")
    page.wait_for_function("() => annotome.current() === undefined", timeout=20_000)
    page.evaluate("() => annotome.settled()")
    page.wait_for_selector("#queue-empty", state="visible")
    assert page.is_hidden("#queue-error"), page.inner_text("#queue-error")
    api = f"{live_server.url}/api/v1/proofreading/campaigns/{campaign.id}/"
    answer = page.request.get(f"{api}items/{uncertain.item.id}/")
    assert answer.status == 200
    body = answer.json()
    assert (body["status"], body["verdict"], body["verdict_source"]) == ("decided", "tp", "expert")
    assert sorted((v["reviewer"], v["round"], v["verdict"]) for v in body["verdicts"]) == [
        ("exp", 2, "tp"),
        ("rev", 1, "uncertain"),
    ]
    # Another expert can no longer change it: the item left the second round.
    again = page.request.post(
        f"{api}verdicts/",
        data={"item": uncertain.item.id, "verdict": "fp", "round": 2},
        headers={"X-CSRFToken": page.evaluate("() => annotome.config.csrfToken")},
    )
    assert again.status == 409, again.text()
    export = page.request.get(f"{api}export.csv")
    rows = {int(r["segment_id"]): r for r in csv.DictReader(io.StringIO(export.text()))}
    row = rows[uncertain.item.segment_id]
    assert (row["verdict"], row["round2_verdict"], row["round2_expert"]) == ("tp", "tp", "exp")
    assert rows[sure.item.segment_id]["verdict"] == "tp"
    assert failed == []


def test_reviewer_drops_a_missed_point_at_the_mouse(
    live_server: Any, browser_context: Any, settings: Any, artifacts_dir: Path
) -> None:
    settings.NEUROGLANCER_EVENTS_MAX_SECONDS = 20
    campaign = campaign_for(("rev", "reviewer"), ("other", "reviewer"))
    other = get_user_model().objects.get(username="other")
    earlier = services.missed_object_add(campaign, other, 10, 20, 30, "seen before")

    page = browser_context.new_page()
    failed = failures(page)
    login(page, live_server.url, "rev", f"/proofreading/{campaign.id}/")
    open_queue(page)
    # Everyone's points are drawn in the annotation layer from the start.
    page.wait_for_function("() => annotome.missedPoints().length === 1")
    layer = page.evaluate(LAYER_JS, MISSED)
    assert layer["type"] == "annotation"
    assert [a["point"] for a in layer["annotations"]] == [[30, 20, 10]]
    assert page.inner_text("#queue-missed-count") == "1"

    # The mouse over the xy panel (top left of four), away from the centre of the view.
    box = page.locator("#neuroglancer").bounding_box()
    page.mouse.move(box["x"] + box["width"] * 0.25 + 60, box["y"] + box["height"] * 0.25 + 45)
    page.wait_for_function("() => annotome.viewer().mouseState.active", timeout=10_000)
    mouse = page.evaluate("() => Array.from(annotome.viewer().mouseState.position)")
    centre = page.evaluate("() => annotome.viewer().state.toJSON().position")
    assert max(abs(m - c) for m, c in zip(mouse[:2], centre[:2], strict=True)) > 2, (mouse, centre)
    page.keyboard.press("m")
    page.wait_for_function(
        "() => document.getElementById('queue-status').textContent.includes('at the mouse')"
    )
    page.wait_for_function("() => annotome.missedPoints().length === 2")
    assert page.is_hidden("#queue-error"), page.inner_text("#queue-error")
    point = MissedObject.objects.exclude(id=earlier.id).get(campaign=campaign)
    assert point.created_by.username == "rev"
    assert [point.x, point.y, point.z] == pytest.approx(mouse[:3], abs=1e-3)
    layer = page.evaluate(LAYER_JS, MISSED)
    points = {a["id"]: a["point"] for a in layer["annotations"]}
    assert points[f"missed-{point.id}"] == pytest.approx(mouse[:3], abs=1e-3)
    # What Neuroglancer draws: the layer's annotation source holds it.
    drawn = page.evaluate(
        """(name) => annotome.viewer().layerManager.getLayerByName(name).layer
             .localAnnotations.toJSON().map((a) => a.id)""",
        MISSED,
    )
    assert sorted(drawn) == sorted(points)
    assert page.inner_text("#queue-missed-count") == "2"
    assert "missed objects: 2" in page.inner_text("#queue-counters")
    page.screenshot(path=str(artifacts_dir / "missed-point.png"))

    response = page.request.get(
        f"{live_server.url}/api/v1/proofreading/campaigns/{campaign.id}/missed.csv"
    )
    assert response.status == 200
    rows = {int(r["id"]): r for r in csv.DictReader(io.StringIO(response.text()))}
    assert set(rows) == {earlier.id, point.id}
    assert [float(rows[point.id][a]) for a in "xyz"] == pytest.approx(
        [point.x, point.y, point.z], abs=1e-6
    )
    assert rows[point.id]["created_by"] == "rev"

    # Removing one's own point updates the layer and the count.
    page.click(f"#queue-missed-list button[data-missed='{point.id}']")
    page.wait_for_function("() => annotome.missedPoints().length === 1")
    layer = page.evaluate(LAYER_JS, MISSED)
    assert [a["id"] for a in layer["annotations"]] == [f"missed-{earlier.id}"]
    assert page.inner_text("#queue-missed-count") == "1"
    assert not MissedObject.objects.filter(id=point.id).exists()
    assert failed == []
