"""The managers' annotation pages in real Chromium: a manager creates a campaign through the
form, imports a CSV of boxes (a malformed one shows the server's message with its line
number), tiles the volume, sees the boxes in the table and on the coverage map (one SVG
rectangle per box), and opens "Show in viewer": Neuroglancer's state holds the "task boxes"
layer with one annotation per box."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from nuclei_dataset import build_nuclei_dataset

from webapp.annotation.coverage import STATE_COLOURS, drawn_boxes
from webapp.annotation.models import AnnotationCampaign, TaskBox
from webapp.datasets.models import Layer

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]
PASSWORD = "annotate-pass-123"
READY_MS = 45_000

BOXES_CSV = (
    "bbox_ID,x,y,z,w,h,d\nleft,0,0,0,20,20,20\nmiddle,20,20,20,20,20,20\nright,40,40,40,24,24,24\n"
)
BAD_CSV = "bbox_ID,x,y,z,w,h,d\nok,0,0,0,8,8,8\nbad,1,two,3,8,8,8\n"

# WCAG contrast ratio of each matched element's text colour against the body's background.
CONTRASTS_JS = """(selector) => {
  const rgb = (c) => c.match(/[0-9.]+/g).slice(0, 3).map(Number);
  const lum = ([r, g, b]) => [r, g, b].map((v) => {
      v /= 255; return v <= 0.03928 ? v / 12.92 : ((v + 0.055) / 1.055) ** 2.4; })
    .reduce((sum, v, i) => sum + v * [0.2126, 0.7152, 0.0722][i], 0);
  const back = lum(rgb(getComputedStyle(document.body).backgroundColor));
  return [...document.querySelectorAll(selector)].map((e) => {
    const fore = lum(rgb(getComputedStyle(e).color));
    return (Math.max(fore, back) + 0.05) / (Math.min(fore, back) + 0.05);
  });
}"""
TASK_BOXES_JS = """() => {
  const viewer = document.getElementById('neuroglancer').contentWindow.viewer;
  const layer = viewer.state.toJSON().layers.find((l) => l.name === 'task boxes');
  return layer ? layer.annotations.map((a) => [a.type, a.pointA, a.pointB, a.props]) : null;
}"""


def test_manager_creates_a_campaign_adds_boxes_and_sees_them(
    live_server: Any, browser_context: Any, tmp_path: Path, artifacts_dir: Path
) -> None:
    users = get_user_model().objects
    owner = users.create_user("owner", password=PASSWORD)
    users.create_user("ann", password=PASSWORD)
    dataset = build_nuclei_dataset(owner, slug="nuclei", shape=(64, 64, 64), n_nuclei=6)
    # A second image layer four times coarser (a 51.2 um volume): the suggested box follows the
    # layer chosen, not the dataset's first.
    coarse = Layer.objects.get(dataset=dataset, name="image")
    coarse.pk, coarse.name = None, "coarse"
    coarse.voxel_size = [4 * float(v) for v in coarse.voxel_size]
    coarse.save()
    page = browser_context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))

    page.goto(f"{live_server.url}/accounts/login/?next=/annotation/")
    page.fill("#id_username", "owner")
    page.fill("#id_password", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url("**/annotation/")

    # The creation form: one default class, a box suggested for the dataset's 12.8 um volume (a
    # quarter, rounded down to 2 um); boxes of 6.4 um (32 voxels) here.
    assert page.locator("#schema-table tbody tr").count() == 1
    assert page.input_value("#schema-table .c-name") == "nucleus"
    assert [page.input_value(f"#f-box-{axis}") for axis in "zyx"] == ["2", "2", "2"]
    assert page.input_value("#f-layer") == "image"
    page.select_option("#f-layer", "coarse")
    assert [page.input_value(f"#f-box-{axis}") for axis in "zyx"] == ["10", "10", "10"]
    page.select_option("#f-layer", "image")
    assert [page.input_value(f"#f-box-{axis}") for axis in "zyx"] == ["2", "2", "2"]
    page.fill("#f-name", "Nuclei centres")
    page.fill("#f-instructions", "Click the centre of every **nucleus**.")
    page.click("#schema-add")
    rows = page.locator("#schema-table tbody tr")
    rows.nth(1).locator(".c-name").fill("cell")
    rows.nth(1).locator(".c-key").fill("2")
    for axis in "zyx":
        page.fill(f"#f-box-{axis}", "6.4")
    page.fill("#f-redundancy", "2")
    page.check("#f-painted")
    page.click("#member-add")
    page.locator("#members-input .m-username").fill("ann")
    # The rows' Remove buttons can be read on the form (they once took the dark header's
    # near-white): a contrast ratio of at least 4.5 against the page's background.
    ratios = page.evaluate(CONTRASTS_JS, "#schema-table button, #members-input button")
    assert len(ratios) >= 3 and min(ratios) >= 4.5, ratios
    page.click("#f-submit")
    page.wait_for_url(re.compile(r".*/annotation/\d+/$"))
    campaign = AnnotationCampaign.objects.get(name="Nuclei centres")
    assert [c["name"] for c in campaign.label_schema] == ["nucleus", "cell"]
    assert campaign.box_size_um == [6.4, 6.4, 6.4] and campaign.redundancy == 2
    assert campaign.painted
    assert "painted as voxel labels" in page.inner_text(".facts")
    assert sorted(campaign.members.values_list("user__username", "role")) == [
        ("ann", "annotator"),
        ("owner", "manager"),
    ]
    page.evaluate("() => annotome.ready")

    # A malformed table: the server's message, with its line number, on the page.
    bad = tmp_path / "bad.csv"
    bad.write_text(BAD_CSV)
    page.set_input_files("#csv-file", str(bad))
    page.click("#csv-submit")
    page.wait_for_selector("#add-error:not([hidden])")
    assert "line 3" in page.inner_text("#add-error")

    good = tmp_path / "boxes.csv"
    good.write_text(BOXES_CSV)
    page.set_input_files("#csv-file", str(good))
    page.click("#csv-submit")
    page.wait_for_selector("#add-status[data-added='3']")
    assert page.is_hidden("#add-error")
    page.click("#tile-submit")
    page.wait_for_selector("#add-status[data-added='8']")
    page.wait_for_selector("#boxes-table[data-count='11']")
    assert TaskBox.objects.filter(campaign=campaign).count() == 11
    names = page.locator("#boxes-table tbody tr td:first-child").all_inner_texts()
    assert len(names) == 11 and {"left", "middle", "right"} <= set(names)
    assert sum(n.startswith("tile") for n in names) == 8
    page.wait_for_selector("#coverage-svg[data-boxes='11']")
    assert page.locator("#coverage-svg rect").count() == 11
    assert page.locator("#coverage-svg rect[data-state='todo']").count() == 11
    assert page.evaluate("() => document.getElementById('coverage-image').naturalWidth") > 0
    page.screenshot(path=str(artifacts_dir / "annotation-campaign.png"), full_page=True)

    # Show in viewer: the dataset's view with the boxes as an annotation layer.
    page.click("#show-in-viewer")
    page.wait_for_url(f"**/annotation/{campaign.pk}/viewer/")
    page.evaluate("() => annotome.ready")
    page.wait_for_function(f"({TASK_BOXES_JS}) !== null", timeout=READY_MS)
    boxes = page.evaluate(TASK_BOXES_JS)
    assert len(boxes) == 11
    assert {b[0] for b in boxes} == {"axis_aligned_bounding_box"}
    right = TaskBox.objects.get(campaign=campaign, name="right")
    assert [right.x0 - 0.5, right.y0 - 0.5, right.z0 - 0.5] in [b[1] for b in boxes]
    # Each box in its state's colour, as on the coverage map (Neuroglancer kept the property).
    (drawn,) = (b for b in boxes if b[1] == [right.x0 - 0.5, right.y0 - 0.5, right.z0 - 0.5])
    states = {b.id: b.state for b in drawn_boxes(campaign)[0]}
    assert drawn[3] == [STATE_COLOURS[states[right.pk]]], drawn
    assert len({b[3][0] for b in boxes}) == len(set(states.values()))
    assert "11 boxes" in page.inner_text("#task-boxes-note")
    page.wait_for_function(
        "() => document.getElementById('neuroglancer').contentWindow.viewer.isReady()",
        timeout=READY_MS,
    )
    page.screenshot(path=str(artifacts_dir / "campaign-viewer.png"))
    assert errors == []
