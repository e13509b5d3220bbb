"""A reviewer proofreads in the queue page with the keys; verdicts reach the database and the
campaign's CSV, and Neuroglancer really shows one centred segment at a time."""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from nuclei_dataset import build_nuclei_dataset
from site_login import log_in

from webapp.datasets.models import Layer, LayerKind, Visibility
from webapp.detections.models import Detection
from webapp.detections.services import detections_build_now
from webapp.proofreading import services
from webapp.proofreading.models import MissedObject, ReviewEvent, Verdict
from webapp.proofreading.services import CampaignSettings

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]
READY_MS = 90_000
PASSWORD = "queue-pass-123"

VIEW_JS = """() => { const s = annotome.viewer().state.toJSON();
  const layer = s.layers.find((l) => l.name === annotome.config.layer);
  return {position: s.position, segments: layer.segments || [],
          crossSectionScale: s.crossSectionScale, projectionScale: s.projectionScale}; }"""


def login(page: Any, url: str, username: str, next_path: str) -> None:
    log_in(page, url, username, PASSWORD, next_path)


def current(page: Any) -> dict[str, Any]:
    item = page.evaluate("() => annotome.current() || null")
    assert item is not None, page.inner_text("#queue-error")
    return dict(item)


def settle(page: Any) -> None:
    page.evaluate("() => annotome.settled()")
    page.evaluate("() => annotome.drawn()")


def assert_shows_alone(page: Any, item: dict[str, Any]) -> None:
    """Neuroglancer is centred on the item's centroid and shows its segment only."""
    view = page.evaluate(VIEW_JS)
    detection = item["detection"]
    expected = [detection[f"centroid_{a}"] for a in "xyz"]
    assert all(abs(p - e) < 0.01 for p, e in zip(view["position"], expected, strict=True)), (
        view,
        expected,
    )
    assert view["segments"] == [str(item["segment_id"])], view
    box = max(detection[f"bbox_{a}1"] - detection[f"bbox_{a}0"] for a in "xyz")
    # Zoomed to the object: the panel shows a few times its box, not the 96-voxel volume.
    assert view["crossSectionScale"] < 96 / 300, view
    assert view["projectionScale"] < 4 * box * 1.8, view
    visible = page.evaluate(
        """() => annotome.viewer().layerManager.getLayerByName(annotome.config.layer).layer
             .displayState.segmentationGroupState.value.visibleSegments.size"""
    )
    assert visible == 1


def press_and_wait(page: Any, key: str, before: dict[str, Any]) -> dict[str, Any]:
    page.keyboard.press(key)
    page.wait_for_function(
        "(id) => { const c = annotome.current(); return c && c.id !== id; }",
        arg=before["id"],
        timeout=20_000,
    )
    settle(page)
    return current(page)


def test_reviewer_classifies_with_keys_undo_skip_flag_and_missed_point(
    live_server: Any, browser_context: Any, settings: Any, artifacts_dir: Path
) -> None:
    settings.NEUROGLANCER_EVENTS_MAX_SECONDS = 20
    users = get_user_model().objects
    owner = users.create_user("owner", password=PASSWORD)
    users.create_user("rev", password=PASSWORD)
    dataset = build_nuclei_dataset(owner, slug="nuclei", visibility=Visibility.PUBLIC)
    layer = Layer.objects.get(dataset=dataset, kind=LayerKind.SEGMENTATION)
    detections_build_now(layer)
    assert Detection.objects.filter(layer=layer).count() >= 10
    campaign = services.campaign_create(
        owner,
        layer,
        CampaignSettings(name="Queue test", seed=5),
        members=[("rev", "reviewer")],
    )

    page = browser_context.new_page()
    failed: list[str] = []
    page.on(
        "response",
        lambda r: (
            failed.append(f"{r.status} {r.url}") if r.status >= 400 and "/c/" not in r.url else None
        ),
    )
    dialogs: list[str] = []

    def answer(dialog: Any) -> None:
        dialogs.append(dialog.message)
        dialog.accept("two nuclei merged")

    page.on("dialog", answer)
    login(page, live_server.url, "rev", f"/proofreading/{campaign.id}/")
    assert page.evaluate("() => annotome.ready.then((r) => r.errors)") == []
    page.wait_for_function("() => annotome.current() !== undefined", timeout=READY_MS)
    settle(page)
    page.wait_for_function("() => annotome.viewer().isReady()", timeout=READY_MS)
    first = current(page)
    assert_shows_alone(page, first)
    assert page.inner_text("#queue-segment") == str(first["segment_id"])
    assert "Volume" in page.inner_text("#queue-measurements")
    assert page.is_hidden("#queue-error")
    page.screenshot(path=str(artifacts_dir / "queue.png"))
    # Prefetch: more than the current item is in hand.
    assert len(page.evaluate("() => annotome.queued()")) > 1

    page.click("#queue-current h2")  # keys go to the page, not a form field
    second = press_and_wait(page, "1", first)  # tp
    assert_shows_alone(page, second)
    third = press_and_wait(page, "3", second)  # fp on the second...
    page.keyboard.press("u")  # ...undone: the second comes back
    page.wait_for_function(
        "(id) => annotome.current() && annotome.current().id === id", arg=second["id"]
    )
    settle(page)
    assert_shows_alone(page, second)
    assert "undone" in page.inner_text("#queue-status")
    third_again = press_and_wait(page, "2", second)  # tp_distortion on the second
    assert third_again["id"] == third["id"]
    fourth = press_and_wait(page, "s", third)  # skip the third
    page.keyboard.press("f")  # flag the fourth (a prompt asks why), it stays
    page.wait_for_function(
        "() => document.getElementById('queue-status').textContent.includes('flagged')"
    )
    assert dialogs and str(fourth["segment_id"]) in dialogs[0]
    assert current(page)["id"] == fourth["id"]
    fifth = press_and_wait(page, "4", fourth)  # uncertain
    sixth = press_and_wait(page, "1", fifth)  # tp
    page.keyboard.press("3")  # fp on the sixth
    page.wait_for_function(
        "(id) => { const c = annotome.current(); return !c || c.id !== id; }", arg=sixth["id"]
    )
    settle(page)
    # Ctrl+Z undoes the last (the sixth's fp) and gives it again.
    page.keyboard.press("Control+z")
    page.wait_for_function(
        "(id) => annotome.current() && annotome.current().id === id", arg=sixth["id"]
    )
    settle(page)
    after = press_and_wait(page, "3", sixth)
    assert_shows_alone(page, after)

    # A missed object at the centre of the view.
    page.keyboard.press("m")
    page.wait_for_function(
        "() => document.getElementById('queue-status').textContent.includes('Missed object')"
    )
    assert page.is_hidden("#queue-error"), page.inner_text("#queue-error")
    assert "Decided by me: 5" in page.inner_text("#queue-counters")
    page.screenshot(path=str(artifacts_dir / "queue-after.png"))

    # Keys reach the queue while Neuroglancer has the focus, and not Neuroglancer (whose digit
    # keys would toggle layers).
    box = page.locator("#neuroglancer").bounding_box()
    page.mouse.click(box["x"] + box["width"] * 0.75, box["y"] + box["height"] * 0.75)
    assert page.evaluate("() => document.activeElement.id") == "neuroglancer"
    visibility = """() => Object.fromEntries(annotome.viewer().state.toJSON().layers
                       .map((la) => [la.name, la.visible !== false]))"""
    before_key = page.evaluate(visibility)
    eighth = press_and_wait(page, "1", after)
    assert_shows_alone(page, eighth)
    # No layer toggled (the detections points layer starts hidden and stays so).
    assert page.evaluate(visibility) == before_key
    assert before_key["nuclei"] is True and before_key.get("nuclei detections") is False

    expected = {
        first["segment_id"]: "tp",
        second["segment_id"]: "tp_distortion",
        fourth["segment_id"]: "uncertain",
        fifth["segment_id"]: "tp",
        sixth["segment_id"]: "fp",
        after["segment_id"]: "tp",
    }
    live = {
        v.item.segment_id: v.verdict
        for v in Verdict.objects.filter(item__campaign=campaign, undone_at__isnull=True)
    }
    assert live == expected
    undone = Verdict.objects.filter(item__campaign=campaign, undone_at__isnull=False)
    assert sorted((v.item.segment_id, v.verdict) for v in undone) == sorted(
        [(second["segment_id"], "fp"), (sixth["segment_id"], "fp")]
    )
    events = ReviewEvent.objects.filter(item__campaign=campaign)
    assert [e.item.segment_id for e in events.filter(action="skip")] == [third["segment_id"]]
    flags = list(events.filter(action="flag"))
    assert [(f.item.segment_id, f.reason) for f in flags] == [
        (fourth["segment_id"], "two nuclei merged")
    ]
    missed = MissedObject.objects.get(campaign=campaign)
    centroid = after["detection"]
    assert abs(missed.x - centroid["centroid_x"]) < 0.01
    assert abs(missed.z - centroid["centroid_z"]) < 0.01

    # The manager downloads the campaign's CSV: the reviewer's verdicts are in it.
    page.click("form[action='/accounts/logout/'] button")
    page.wait_for_load_state()
    login(page, live_server.url, "owner", "/proofreading/")
    response = page.request.get(
        f"{live_server.url}/api/v1/proofreading/campaigns/{campaign.id}/export.csv"
    )
    assert response.status == 200
    rows = {int(r["segment_id"]): r for r in csv.DictReader(io.StringIO(response.text()))}
    for segment, verdict in expected.items():
        assert rows[segment]["round1_verdicts"] == f"rev={verdict}", rows[segment]
    assert rows[first["segment_id"]]["verdict"] == "tp"
    assert rows[sixth["segment_id"]]["verdict"] == "fp"
    assert rows[third["segment_id"]]["round1_verdicts"] == ""
    assert failed == []
