"""Review in the browser: two annotators' work on one box side by side as Neuroglancer layers,
reject with a comment and approve with the keys, the fix resubmitted and approved, then the
manager accepts the consensus and the export CSV holds exactly those points in um."""

from __future__ import annotations

import csv
import io
import time
from pathlib import Path
from typing import Any

import pytest
import requests
from django.contrib.auth import get_user_model
from nuclei_dataset import build_nuclei_dataset
from rest_framework.authtoken.models import Token

from webapp.annotation import services
from webapp.annotation.models import AnnotationCampaign, Assignment, AssignmentState, Role
from webapp.datasets.models import Layer, LayerKind, Visibility

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]
READY_MS = 90_000
PASSWORD = "review-pass-123"

LAYERS_JS = """() => { const s = annotome.viewer().state.toJSON();
  const out = {};
  for (const l of s.layers) if (l.type === "annotation") out[l.name] = (l.annotations || []).length;
  return out; }"""


def point(uid: str, z: float, y: float, x: float) -> dict[str, Any]:
    return {"op": "upsert", "uid": uid, "kind": "point", "label": "nucleus", "coords": [[z, y, x]]}


def hand_in(campaign: AnnotationCampaign, user: Any, ops: list[dict[str, Any]]) -> Assignment:
    row = services.next_task(campaign, user)
    assert row is not None
    services.save(row, user, row.version, ops)
    row.refresh_from_db()
    return services.submit(row, user, row.version)


def login(page: Any, url: str, username: str, next_path: str) -> None:
    page.goto(f"{url}/accounts/login/?next={next_path}")
    page.fill("#id_username", username)
    page.fill("#id_password", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(f"**{next_path}")


def wait_loads(page: Any, count: int) -> None:
    page.wait_for_function(f"() => annotome.loads() >= {count}", timeout=30_000)
    page.evaluate("() => annotome.settled()")
    errors = page.evaluate("() => annotome.errors")
    assert errors == [], errors


def test_reviewer_compares_rejects_approves_and_the_manager_exports(
    live_server: Any, browser_context: Any, artifacts_dir: Path
) -> None:
    started = time.monotonic()
    users = get_user_model().objects
    owner = users.create_user("owner", password=PASSWORD)
    a1, a2 = (users.create_user(n, password=PASSWORD) for n in ("a1", "a2"))
    users.create_user("rv", password=PASSWORD)
    dataset = build_nuclei_dataset(owner, slug="nuclei", visibility=Visibility.PUBLIC)
    image = Layer.objects.get(dataset=dataset, kind=LayerKind.IMAGE)
    spec = services.CampaignSpec(name="Review test", box_size_um=[9.6] * 3, redundancy=2)
    campaign = services.campaign_create(owner, dataset, image, spec)
    for name, role in (("a1", Role.ANNOTATOR), ("a2", Role.ANNOTATOR), ("rv", Role.REVIEWER)):
        services.member_add(campaign, owner, name, role)
    services.boxes_tile(campaign, owner)
    box_corner = {
        "op": "upsert",
        "uid": "a1-box",
        "kind": "axis_aligned_bounding_box",
        "label": "nucleus",
        "coords": [[1, 1, 1], [5, 5, 5]],
    }
    # Voxels of 0.2 um; tolerance 3 um. a1's third point and a2's third are far apart (each
    # unmatched); a1's box is not a point (not compared).
    first = hand_in(
        campaign,
        a1,
        [
            point("a1-1", 10, 10, 10),
            point("a1-2", 20, 20, 20),
            point("a1-3", 30, 30, 30),
            box_corner,
        ],
    )
    second = hand_in(
        campaign,
        a2,
        [point("a2-1", 10, 10, 11), point("a2-2", 20, 20, 20), point("a2-3", 40, 5, 5)],
    )
    assert first.box_id == second.box_id

    page = browser_context.new_page()
    failed: list[str] = []
    page.on("response", lambda r: failed.append(f"{r.status} {r.url}") if r.status >= 400 else None)
    login(page, live_server.url, "rv", f"/annotation/{campaign.pk}/review/")
    assert page.evaluate("() => annotome.ready.then((r) => r.errors)") == []
    wait_loads(page, 1)
    assert page.evaluate("() => annotome.current().id") == first.pk
    # Both annotators' work as layers named by annotator, with the right counts.
    assert page.evaluate(LAYERS_JS) == {"task box": 1, "a1": 4, "a2": 3}
    assert "a1" in page.inner_text("#review-facts")
    assert page.is_visible("#review-agreement-section")
    agreement = page.inner_text("#review-agreement")
    assert "2 of 3 / 3" in agreement and "0.667" in agreement, agreement
    assert "v1" in page.inner_text("#review-history")
    page.screenshot(path=str(artifacts_dir / "annotation-review.png"))

    # R without a comment asks for one; with it, a1's task goes back.
    page.click("#review-current h2")
    page.keyboard.press("r")
    page.wait_for_function("() => document.activeElement.id === 'review-comment'")
    assert "comment is required" in page.inner_text("#review-status")
    page.fill("#review-comment", "The point at the top is not a nucleus; add the missing one.")
    page.keyboard.press("Escape")
    page.keyboard.press("r")
    wait_loads(page, 2)
    assert page.evaluate("() => annotome.current().id") == second.pk
    assert page.evaluate(LAYERS_JS) == {"task box": 1, "a2": 3, "a1": 4}
    page.keyboard.press("a")
    wait_loads(page, 3)
    assert page.evaluate("() => annotome.current()") is None
    assert page.is_visible("#review-empty")
    assert page.evaluate("() => annotome.decided()") == 2
    first.refresh_from_db()
    second.refresh_from_db()
    assert (first.state, second.state) == (AssignmentState.REJECTED, AssignmentState.APPROVED)
    assert first.review_comment.startswith("The point at the top")

    # The annotator fixes it (through the API) and resubmits; N brings it back; A approves.
    api = requests.Session()
    api.headers["Authorization"] = f"Token {Token.objects.create(user=a1).key}"
    base = f"{live_server.url}/api/v1/annotation"
    fix = api.post(
        f"{base}/assignments/{first.pk}/annotations/",
        json={
            "base_version": 1,
            "ops": [{"op": "delete", "uid": "a1-3"}, point("a1-4", 40, 5, 6)],
        },
        timeout=30,
    )
    assert fix.status_code == 200, fix.text
    assert api.post(
        f"{base}/assignments/{first.pk}/submit/", json={"base_version": 2}, timeout=30
    ).ok
    page.keyboard.press("n")
    wait_loads(page, 4)
    assert page.evaluate("() => annotome.current().id") == first.pk
    assert page.evaluate(LAYERS_JS) == {"task box": 1, "a1": 4, "a2": 3}
    assert "v2" in page.inner_text("#review-history")
    assert "3 of 3 / 3" in page.inner_text("#review-agreement")
    page.keyboard.press("a")
    wait_loads(page, 5)
    first.refresh_from_db()
    assert first.state == AssignmentState.APPROVED

    # The manager accepts the consensus and downloads the CSV.
    manager = requests.Session()
    manager.headers["Authorization"] = f"Token {Token.objects.create(user=owner).key}"
    accepted = manager.post(
        f"{base}/campaigns/{campaign.pk}/boxes/{first.box_id}/consensus/", json={}, timeout=30
    )
    assert accepted.status_code == 200, accepted.text
    assert accepted.json()["accepted"]["count"] == 3
    export = manager.get(f"{base}/campaigns/{campaign.pk}/export.csv", timeout=30)
    assert export.status_code == 200
    rows = list(csv.DictReader(io.StringIO(export.text)))
    voxel = campaign.geometry["voxel_size_um"]
    origin = campaign.geometry["origin_um"]
    expected = [(10, 10, 10.5), (20, 20, 20), (40, 5, 5.5)]
    got = sorted(
        (float(r["z"]), float(r["y"]), float(r["x"])) for r in rows if r["annotator"] == "consensus"
    )
    assert len(rows) == 3 and got == sorted(expected), rows
    for r in rows:
        zyx = (float(r["z"]), float(r["y"]), float(r["x"]))
        um = [float(r[f"{a}_um"]) for a in "zyx"]
        assert um == pytest.approx([o + v * s for o, v, s in zip(origin, zyx, voxel, strict=True)])
        assert r["class"] == "nucleus" and r["author"] == "owner"
    assert voxel == pytest.approx([0.2, 0.2, 0.2])
    assert not [f for f in failed if "/c/" not in f], failed
    assert time.monotonic() - started < 90
