"""The review page's painted objects in real Chromium (live server): an annotator's two painted
cubes (one by hand, one accepted from a click, saved through the services) are listed on the
reviewer's page with the pipeline's morphometrics and provenance, drawn in the volume-sphericity
scatter, and "show" moves Neuroglancer to an object's centroid. No page error, no 5xx."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from django.contrib.auth import get_user_model
from nuclei_dataset import build_nuclei_dataset

from webapp.annotation import services
from webapp.annotation.models import AnnotationCampaign, Role

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]
PASSWORD = "morpho-pass-123"
BOX = (32, 32, 32)
BOX_START = (0, 8, 16)  # z y x of the box imported below (voxels of 200 nm)


def make_campaign() -> AnnotationCampaign:
    """A painted campaign (N = 1) whose one box a1 painted and submitted: object 1, a cube of
    10^3 voxels by hand; object 2, a cube of 8^3 accepted from a click."""
    users = get_user_model().objects
    owner, a1 = (users.create_user(n, password=PASSWORD) for n in ("owner", "a1"))
    users.create_user("rv", password=PASSWORD)
    dataset = build_nuclei_dataset(owner, slug="morpho", shape=(64, 64, 64), n_nuclei=4)
    layer = dataset.layers.get(name="image")
    spec = services.CampaignSpec(name="Morphometrics", box_size_um=[6.4, 6.4, 6.4], redundancy=1)
    campaign = services.campaign_create(owner, dataset, layer, spec)
    campaign.painted = True
    campaign.save()
    services.member_add(campaign, owner, "a1", Role.ANNOTATOR)
    services.member_add(campaign, owner, "rv", Role.REVIEWER)
    services.boxes_import_csv(
        campaign, owner, "bbox_ID,x,y,z,w,h,d\nb1,16,8,0,32,32,32\nb2,16,8,32,32,32,32\n"
    )
    labels = np.zeros(BOX, np.uint32)
    labels[4:14, 4:14, 4:14] = 1
    labels[16:24, 16:24, 16:24] = 2
    provenance = {"1": {"source": "manual"}, "2": {"source": "click"}}
    for _ in range(2):  # b1, then b2 (the same objects: the second is for moving on)
        row = services.next_task(campaign, a1)
        assert row is not None
        services.labels_save(row, a1, row.version, {(0, 0, 0): labels}, provenance)
        row.refresh_from_db()
        services.submit(row, a1, row.version)
    return campaign


def test_reviewer_sees_the_painted_objects_measured_plotted_and_shown(
    live_server: Any, browser_context: Any, artifacts_dir: Path
) -> None:
    campaign = make_campaign()
    bad: list[str] = []
    page = browser_context.new_page()
    page.on("pageerror", lambda e: bad.append(f"page error: {e}"))
    page.on(
        "response",
        lambda r: bad.append(f"{r.status} {r.url}") if r.status >= 500 else None,
    )
    path = f"/annotation/{campaign.pk}/review/"
    page.goto(f"{live_server.url}/accounts/login/?next={path}")
    page.fill("#id_username", "rv")
    page.fill("#id_password", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(f"**{path}")
    page.wait_for_function("() => annotome.loads() >= 1", timeout=90_000)
    page.evaluate("() => annotome.settled()")
    assert page.evaluate("() => annotome.errors") == []

    assert page.is_visible("#review-objects-section")
    assert "2 object(s)" in page.inner_text("#review-objects-summary")
    rows = page.locator("#review-objects tbody tr")
    assert rows.count() == 2
    first = rows.nth(0).locator("td").all_inner_texts()
    second = rows.nth(1).locator("td").all_inner_texts()
    # 1000 and 512 voxels of (0.2 um)^3: 8 and 4.1 um^3; provenance as the save said.
    assert (first[0], first[1], first[4]) == ("1", "8", "manual")
    assert (second[0], second[1], second[4]) == ("2", "4.1", "click")
    for cells in (first, second):
        assert float(cells[2]) > 0  # surface, um^2
        assert 0.5 < float(cells[3]) <= 1.05  # a cube's smoothed mesh: near-spherical
    legend = page.inner_text("#review-objects-legend")
    assert "manual (1)" in legend and "click (1)" in legend
    # The facts count the painted objects (points are an extra in a painted campaign).
    facts = page.locator("#review-facts dd").all_inner_texts()
    terms = page.locator("#review-facts dt").all_inner_texts()
    assert dict(zip(terms, facts, strict=True))["Painted objects"] == "2", (terms, facts)
    assert "0 point(s)" in page.inner_text("#review-layers")
    # The dataset's own segmentation starts hidden: drawn over the box it was taken for the
    # annotator's painting.
    layers = page.evaluate("() => annotome.viewer().state.toJSON().layers")
    nuclei = next(la for la in layers if la["name"] == "nuclei")
    assert nuclei.get("visible") is False, nuclei
    assert all(la.get("visible", True) for la in layers if la["type"] == "image"), layers

    # The scatter: both objects drawn on uPlot's canvas, not blank.
    page.wait_for_function("() => annotome.objectsPlot()?.draws() >= 1")
    assert page.get_attribute("#review-objects-plot", "data-points") == "2"
    drawn = page.evaluate(
        """() => { const c = document.querySelector('#review-objects-plot canvas');
          const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
          let coloured = 0;
          for (let i = 0; i < d.length; i += 4)
            if (d[i + 3] > 0 && !(d[i] === d[i + 1] && d[i + 1] === d[i + 2])) coloured++;
          return coloured; }"""
    )
    assert drawn > 20  # the two coloured squares (blue, orange); axes and grid are grey

    # "show" moves Neuroglancer to object 2's centroid: box voxel 19.5 each way (voxel i's
    # centre at i in Neuroglancer's x y z as in the API).
    rows.nth(1).locator("button.object-show").click()
    position = page.evaluate("() => annotome.viewer().state.toJSON().position")
    z, y, x = (s + 19.5 for s in BOX_START)
    assert position == [x, y, z]
    page.wait_for_timeout(500)
    page.locator("#review-panel").screenshot(path=str(artifacts_dir / "review-objects.png"))
    page.screenshot(path=str(artifacts_dir / "review-objects-page.png"))
    assert bad == []
    # The decision stays in sight (1280x800) below the figures that fill the panel, scrolled
    # to its top as a reviewer starts reading.
    page.evaluate("() => { document.getElementById('review-panel').scrollTop = 0; }")
    assert page.locator("#review-box").is_visible()
    viewport = page.viewport_size
    assert viewport is not None
    for button in ("#review-approve", "#review-reject"):
        box = page.locator(button).bounding_box()
        assert box is not None and box["y"] >= 0 and box["y"] + box["height"] <= viewport["height"]
    page.screenshot(path=str(artifacts_dir / "review-objects-top.png"))

    # Approve (A): the next task (b2) opens in place, in the same x y z order (restoring a
    # whole state over the same image layer once gave Neuroglancer's z y x order).
    page.locator("#review-panel").click(position={"x": 5, "y": 5})
    page.keyboard.press("a")
    page.wait_for_function("() => annotome.loads() >= 2", timeout=90_000)
    page.evaluate("() => annotome.settled()")
    assert "b2" in page.inner_text("#review-current")
    page.wait_for_function("() => annotome.viewer().isReady()", timeout=60_000)
    page.wait_for_timeout(500)
    names = page.evaluate("() => annotome.viewer().state.toJSON().dimensions")
    assert list(names) == ["x", "y", "z"], names
    assert bad == []

    # a1, a reviewer too, finds nothing to review: the one submitted task is a1's own, and the
    # page says why rather than only "nothing waits".
    services.member_add(campaign, campaign.members.get(role=Role.MANAGER).user, "a1", Role.REVIEWER)
    own = browser_context.browser.new_context().new_page()  # a session of its own
    own.goto(f"{live_server.url}/accounts/login/?next={path}")
    own.fill("#id_username", "a1")
    own.fill("#id_password", PASSWORD)
    own.click("button[type=submit]")
    own.wait_for_url(f"**{path}")
    own.wait_for_function(
        "() => document.querySelector('#review-empty [data-own]').textContent !== ''",
        timeout=60_000,
    )
    assert "1 submitted task(s) of yours wait for another reviewer" in own.inner_text(
        "#review-empty"
    )
    # With nothing to review the dataset's whole view shows, in the viewer page's x y z order
    # (once its layers have loaded: restored anew, Neuroglancer took the image's z y x order).
    own.wait_for_function("() => annotome.viewer().isReady()", timeout=60_000)
    own.wait_for_timeout(500)  # the order flipped after the image layer loaded again
    names = own.evaluate("() => annotome.viewer().state.toJSON().dimensions")
    assert list(names) == ["x", "y", "z"], names
    # ... with the layer panel (the nuclei's list of every object) closed.
    selected = own.evaluate("() => annotome.viewer().state.toJSON().selectedLayer") or {}
    assert selected.get("layer") == "nuclei" and not selected.get("visible"), selected
    assert own.inner_text("#review-history").strip() == ""
    # N on the empty queue looks again and says so (the status line had kept "No task to
    # decide" from an earlier key).
    own.click("#review-next")
    own.wait_for_function(
        "() => document.querySelector('#review-status').textContent.includes('Nothing waits')"
    )
