"""The painting editor in real Chromium: an annotator paints one object on three xy slices with
mouse drags, interpolates between them (V), undoes and redoes it (Ctrl+Z, Ctrl+Y), saves
(Ctrl+S) and reloads the page: the server holds exactly the voxels the page shows, and the
canvases drew the object in its colour over the grey image and the image alone elsewhere.

A second test paints strokes and switches slices in a box of ``ANNOTOME_BENCH_BOX`` voxels a
side (64 in the suite; ``bench/editor.py`` runs it on 256^3) and prints how long each stroke
event and each slice switch took, with an empty animation-frame round trip measured in the same
page as the baseline."""

from __future__ import annotations

import itertools
import os
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from django.contrib.auth import get_user_model
from nuclei_dataset import build_nuclei_dataset
from viewer_mouse import failed_responses

from pipeline.label_store import labels_read
from tests.runs_testdata import painted_campaign_2d
from webapp.annotation import selectors, services
from webapp.annotation.models import AnnotationCampaign, Assignment, Role
from webapp.datasets.models import Layer, LayerKind, Visibility

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]
PASSWORD = "paint-pass-123"
BOX = 32  # voxels per side of a task box
SLICES = (12, 16, 20)  # the xy slices painted by hand
PAINT_READY = "() => annotome.paint !== null && annotome.paint.ready.then(() => true)"


def make_campaign(
    owner: Any,
    annotator: Any,
    shape: int = 96,
    box: int = BOX,
    around: tuple[int, int, int] | None = None,
) -> AnnotationCampaign:
    """A painted campaign over the nuclei dataset: its boxes tile the volume, or one box is
    centred ``around`` a voxel (z, y, x)."""
    dataset = build_nuclei_dataset(
        owner,
        slug="nuclei",
        shape=(shape, shape, shape),
        n_nuclei=max(20, (shape // 96) ** 3 * 20),
        visibility=Visibility.PUBLIC,
    )
    layer = Layer.objects.get(dataset=dataset, kind=LayerKind.IMAGE)
    voxel = services.layer_geometry(layer)["voxel_size_um"]
    spec = services.CampaignSpec(
        name="Nuclei painted",
        instructions="Paint every nucleus.",
        label_schema=None,
        box_size_um=[box * v for v in voxel],
        redundancy=1,
    )
    campaign = services.campaign_create(owner, dataset, layer, spec)
    campaign.painted = True
    campaign.save()
    services.member_add(campaign, owner, annotator.username, Role.ANNOTATOR)
    if around is None:
        services.boxes_tile(campaign, owner)
    else:
        services.boxes_from_points(campaign, owner, [("target", around)], "test")
    return campaign


def login(page: Any, url: str, username: str, next_path: str) -> None:
    page.goto(f"{url}/accounts/login/?next={next_path}")
    page.fill("#id_username", username)
    page.fill("#id_password", PASSWORD)
    page.click("button[type=submit]")


def open_task(page: Any, url: str, campaign: AnnotationCampaign) -> None:
    """Sign in as the annotator "ann", take the campaign's next task and wait for its Paint tab."""
    login(page, url, "ann", f"/annotation/{campaign.id}/next/")
    page.wait_for_url("**/annotation/task/*/")
    assert page.evaluate(PAINT_READY)


def drag(page: Any, canvas: dict[str, float], points: list[tuple[float, float]]) -> None:
    """A mouse drag over voxel positions (x, y) of the xy canvas, in small steps."""
    scale = canvas["width"] / BOX

    def at(x: float, y: float) -> tuple[float, float]:
        return canvas["x"] + (x + 0.5) * scale, canvas["y"] + (y + 0.5) * scale

    page.mouse.move(*at(*points[0]))
    page.mouse.down()
    for point in points[1:]:
        page.mouse.move(*at(*point), steps=6)
    page.mouse.up()


def volume(page: Any) -> np.ndarray:
    data = page.evaluate("() => Array.from(annotome.paint.editor.volume.data)")
    return np.asarray(data, np.uint32).reshape(BOX, BOX, BOX)


def pixel(page: Any, plane: str, u: int, v: int) -> list[int]:
    return page.evaluate(
        """([plane, u, v]) => Array.from(document
             .querySelector(`[data-paint-view=${plane}] canvas`)
             .getContext("2d").getImageData(u, v, 1, 1).data)""",
        [plane, u, v],
    )


def stored(row: Assignment) -> np.ndarray:
    row.refresh_from_db()
    labels = selectors.labels_at(row)
    return labels_read(labels.blobs, labels.geometry, labels.chunks)


def test_annotator_paints_interpolates_undoes_saves_and_reloads(
    live_server: Any, browser_context: Any, artifacts_dir: Path
) -> None:
    users = get_user_model().objects
    owner = users.create_user("owner", password=PASSWORD)
    ann = users.create_user("ann", password=PASSWORD)
    campaign = make_campaign(owner, ann)
    page = browser_context.new_page()
    failed = failed_responses(page)
    open_task(page, live_server.url, campaign)
    row = Assignment.objects.get(annotator=ann)
    assert page.evaluate("() => annotome.paint.editor.volume.shape") == [BOX, BOX, BOX]
    canvas = page.locator("[data-paint-view=xy] canvas").bounding_box()
    assert canvas is not None and canvas["width"] == pytest.approx(canvas["height"])
    assert canvas["width"] > 400  # fitted to the tab: the main view, not a thumbnail
    fitted = assert_views_on_screen(page)
    # A banner above the page (the next task's "Submitted box ..." flash) pushes the tab down:
    # the views refit and stay on screen; closed, they grow back.
    page.evaluate(
        """() => { const b = document.createElement("div"); b.id = "test-banner";
                   b.style.height = "90px"; document.body.prepend(b); }"""
    )
    page.wait_for_function(
        f"() => document.querySelector('[data-paint-view=xy] canvas')"
        f".getBoundingClientRect().height < {fitted['xy']['height'] - 40}"
    )
    assert_views_on_screen(page)
    page.evaluate("() => document.getElementById('test-banner').remove()")
    page.wait_for_function(
        f"() => document.querySelector('[data-paint-view=xy] canvas')"
        f".getBoundingClientRect().height === {fitted['xy']['height']}"
    )

    # New object (C), then one horizontal stroke on each of three slices (F/D move the slice).
    page.keyboard.press("c")
    object_id = page.evaluate("() => annotome.paint.editor.activeId")
    assert object_id == 1
    assert page.evaluate("() => annotome.paint.editor.slice('xy')") == BOX // 2
    for z in SLICES:
        current = page.evaluate("() => annotome.paint.editor.slice('xy')")
        key = "f" if z > current else "d"
        for _ in range(abs(z - current)):
            page.keyboard.press(key)
        assert page.evaluate("() => annotome.paint.editor.slice('xy')") == z
        drag(page, canvas, [(10, 16), (16, 15), (22, 16)])
    painted = volume(page)
    assert sorted(set(np.nonzero(painted == object_id)[0])) == list(SLICES)
    on_slice = (painted[16] == object_id).sum()
    assert 150 < on_slice < 300  # a stroke 12 voxels long, 9 wide
    assert painted[16, 16, 16] == object_id and painted[16, 16, 27] == 0

    # V interpolates along z; Ctrl+Z takes it back, Ctrl+Y redoes it.
    page.keyboard.press("v")
    interpolated = page.evaluate("() => annotome.paint.editor.interpolated")
    assert interpolated == [{"plane": "xy", "id": object_id, "slices": [13, 14, 15, 17, 18, 19]}]
    after_v = volume(page)
    assert sorted(set(np.nonzero(after_v == object_id)[0])) == list(range(12, 21))
    filled_text = "object 1, xy slices 14\u201316, 18\u201320"  # 1-based, as the views number them
    assert page.inner_text("[data-paint=interpolated]") == filled_text
    page.keyboard.press("Control+z")
    assert (volume(page) == painted).all()
    page.keyboard.press("Control+y")
    assert (volume(page) == after_v).all()

    # The canvas of slice 20 shows the object coloured over the image, the image elsewhere.
    body = page.request.get(
        f"{live_server.url}/api/v1/annotation/assignments/{row.pk}/labels/image/"
    )
    assert body.status == 200
    image = np.frombuffer(body.body(), np.uint8).reshape(BOX, BOX, BOX)
    labelled = pixel(page, "xy", 16, 16)
    background = pixel(page, "xy", 2, 2)
    grey = int(image[20, 2, 2])
    assert background == [grey, grey, grey, 255]
    assert labelled[3] == 255 and len(set(labelled[:3])) > 1  # a colour, not grey
    # The xz view through y = 16 shows the object over slices 12-20 (rows z) at x = 16.
    assert len(set(pixel(page, "xz", 16, 14)[:3])) > 1
    assert len(set(pixel(page, "xz", 16, 25)[:3])) == 1
    page.screenshot(path=str(artifacts_dir / "label-editor-painted.png"))

    # The side panel counts the painted object as soon as the painting pauses, before a save.
    page.wait_for_function(
        "() => document.querySelector('#task-count').textContent === '1 painted · 0 points'"
    )
    # The header says the painting is not saved yet; Ctrl+S saves version 1, and the server
    # holds exactly the page's voxels.
    assert "Painted changes not saved" in page.inner_text("#task-save")
    page.keyboard.press("Control+s")
    page.wait_for_function("() => annotome.paint.version() === 1", timeout=10_000)
    assert (stored(row) == after_v).all()
    # The task panel follows: one version sequence for points and labels, the save listed.
    page.wait_for_function("() => document.querySelector('#task-save').dataset.version === '1'")
    page.wait_for_function(
        "() => document.querySelector('#task-save').textContent.startsWith('All changes saved')"
    )
    page.wait_for_selector("#task-versions li")
    assert "painted: 1 chunk(s) changed, 1 with labels" in page.inner_text("#task-versions li")
    # The side panel's Objects counts the painted object (no points in this task).
    page.wait_for_function(
        "() => document.querySelector('#task-count').textContent === '1 painted · 0 points'"
    )
    objects = page.request.get(
        f"{live_server.url}/api/v1/annotation/assignments/{row.pk}/labels/objects/"
    ).json()["objects"]
    assert [o["segment_id"] for o in objects] == [object_id]
    assert objects[0]["voxels"] == int((after_v == object_id).sum())

    # After a reload the labels come back from the stored chunks and are drawn.
    page.reload()
    assert page.evaluate(PAINT_READY)
    assert page.evaluate("() => annotome.paint.version()") == 1
    assert (volume(page) == after_v).all()
    page.keyboard.press("f")  # slice 17 (an interpolated one)
    assert page.evaluate("() => annotome.paint.editor.slice('xy')") == 17
    # The save recorded the interpolated slices: listed, and marked on the slice shown.
    assert page.inner_text("[data-paint=interpolated]") == filled_text
    xy_label = "[data-paint-view=xy] .paint-slice"
    assert page.inner_text(xy_label) == f"xy · z 17 of 0\u2013{BOX - 1} · interpolated (object 1)"
    assert len(set(pixel(page, "xy", 16, 16)[:3])) > 1
    grey = int(image[17, 2, 2])
    assert pixel(page, "xy", 2, 2) == [grey, grey, grey, 255]
    assert [f for f in failed if "/labels/" in f and not f.startswith("404")] == []

    # Another session saves first (version 2: object 50 on slice 2); this page's next save is
    # stale (409), and "Reload my changes on top" saves its stroke over version 2.
    theirs = stored(row)
    theirs[2, 4:8, 4:8] = 50
    services.labels_save(row, ann, 1, {(0, 0, 0): theirs})
    page.keyboard.press("c")
    assert page.evaluate("() => annotome.paint.editor.activeId") == object_id + 1
    drag(page, canvas, [(10, 28), (22, 28)])  # slice 17
    page.keyboard.press("Control+s")
    page.wait_for_selector("[data-paint=conflict]:not([hidden])")
    assert "Version 2" in page.inner_text("[data-paint=conflict]")
    page.click("[data-paint=conflict] button")
    page.wait_for_function("() => annotome.paint.version() === 3", timeout=10_000)
    assert page.is_hidden("[data-paint=conflict]")
    final = stored(row)
    assert (final == volume(page)).all()
    assert (final[2, 4:8, 4:8] == 50).all()
    assert page.inner_text("#task-count") == "3 painted · 0 points"  # 50, and this page's two
    assert (final[17, 28, 12:21] == object_id + 1).all()
    assert ((final == object_id) == (after_v == object_id)).all()

    # A proposal (the assistance's hook) is outlined in yellow; Enter paints it as a new
    # object, Esc drops the next one; onProposalDone hears both.
    page.evaluate(
        """() => { window.done = []; annotome.paint.editor.onProposalDone =
             (accepted, p) => window.done.push([accepted, p.id]); }"""
    )
    proposal = {
        "id": "p1",
        "bbox": [24, 4, 20, 25, 10, 26],  # slice 24, y 4-9, x 20-25
        "rle": [0, 36],
        "voxels": 36,
        "score": 0.8,
        "source": "watershed",
    }
    page.evaluate("(p) => annotome.paint.showProposal(p)", proposal)
    assert page.evaluate("() => annotome.paint.editor.slice('xy')") == 24
    assert pixel(page, "xy", 20, 6) == [255, 255, 0, 255]  # on the outline
    assert pixel(page, "xy", 22, 6)[:3] != [255, 255, 0]  # inside it
    page.keyboard.press("Enter")
    accepted = volume(page)
    new_id = int(accepted[24, 6, 22])
    assert new_id not in (0, object_id, object_id + 1, 50)
    assert (accepted[24, 4:10, 20:26] == new_id).all() and (accepted == new_id).sum() == 36
    assert page.evaluate("() => annotome.paint.editor.provenanceNow()")[str(new_id)] == {
        "source": "proposal",
        "proposal_source": "watershed",
    }
    page.evaluate("(p) => annotome.paint.showProposal({...p, id: 'p2'})", proposal)
    page.keyboard.press("Escape")
    assert page.evaluate("() => window.done") == [[True, "p1"], [False, "p2"]]
    assert (volume(page) == accepted).all()


def test_restoring_a_version_brings_its_voxels_back_into_the_editor_and_the_viewer(
    live_server: Any, browser_context: Any
) -> None:
    """Restore in the task's version list: the Paint tab and the "painted labels" layer show the
    restored voxels (not the ones painted since), and painting not yet saved is saved first, so
    the restore loses nothing."""
    users = get_user_model().objects
    owner = users.create_user("owner", password=PASSWORD)
    ann = users.create_user("ann", password=PASSWORD)
    campaign = make_campaign(owner, ann)
    page = browser_context.new_page()
    open_task(page, live_server.url, campaign)
    row = Assignment.objects.get(annotator=ann)
    canvas = page.locator("[data-paint-view=xy] canvas").bounding_box()
    assert canvas is not None

    def stroke_and_save(y: int, version: int) -> np.ndarray:
        page.keyboard.press("c")
        drag(page, canvas, [(8, y), (20, y)])
        page.keyboard.press("Control+s")
        page.wait_for_function(f"() => annotome.paint.version() === {version}", timeout=10_000)
        return volume(page)

    v1 = stroke_and_save(8, 1)
    v2 = stroke_and_save(24, 2)
    assert (v2 != v1).any()
    page.wait_for_selector("#task-versions li[data-version='2']")
    # A third stroke, not saved, then "restore" on version 1.
    page.keyboard.press("c")
    drag(page, canvas, [(8, 16), (20, 16)])
    unsaved = volume(page)
    page.click("#task-versions li[data-version='1'] .task-version-restore")
    # The unsaved stroke became version 3, the restore version 4.
    page.wait_for_function("() => annotome.paint.version() === 4", timeout=15_000)
    assert (volume(page) == v1).all()
    assert (stored(row) == v1).all()
    held = selectors.labels_at(row, 3)
    assert (labels_read(held.blobs, held.geometry, held.chunks) == unsaved).all()
    assert not page.evaluate("() => annotome.paint.unsaved()")
    assert page.evaluate("() => annotome.paint.editor.history.undo()") is None
    assert page.inner_text("[data-paint=status]") == "Restored version 1 as version 4."
    page.wait_for_selector("#task-versions li[data-version='4']")
    assert "restored version 1" in page.inner_text("#task-versions li[data-version='4']")
    # The viewer's painted labels follow: its sources are version 4's.
    page.wait_for_function(
        """() => annotome.viewer().layerManager.getLayerByName("painted labels").layer
             .dataSources.every((s) => s.spec.url.includes("/labels/v4/"))""",
        timeout=15_000,
    )
    # Painting goes on from the restored voxels: the next save is version 5 on top of 4.
    v5 = stroke_and_save(28, 5)
    assert (stored(row) == v5).all() and ((v5 == 0) | (v5 == v1) | (v1 == 0)).all()


# Listeners added after the page's own, so they run once its handler has drawn: each records
# the time from the input event to the end of its handling, and from a key to the second
# animation frame after it (the frame that shows the handled change).
MEASURE = """() => {
  const m = { move: [], hover: [], key: {}, handled: {}, frames: [], framing: false };
  const stats = annotome.paint.stats;
  const canvas = document.querySelector("[data-paint-view=xy] canvas");
  canvas.addEventListener("mousemove", (e) => {
    (e.buttons ? m.move : m.hover).push([performance.now() - e.timeStamp, stats.lastMoveMs]);
  });
  window.addEventListener("keydown", (e) => {
    const t0 = e.timeStamp;
    (m.handled[e.key] ??= []).push(stats.lastKeyMs);
    requestAnimationFrame(() => requestAnimationFrame(() => {
      (m.key[e.key] ??= []).push(performance.now() - t0);
    }));
  }, true);
  const tick = (t) => {
    if (m.framing) m.frames.push(t);
    requestAnimationFrame(tick);
  };
  requestAnimationFrame(tick);
  window.editorBench = m;
}"""


def assert_views_on_screen(page: Any) -> dict[str, dict[str, float]]:
    """The three slice views lie wholly inside the window (1280 x 800) and the Paint tab: none
    below the fold (the fixed sizes put yz there), none under the side panel."""
    boxes = page.evaluate(
        """() => {
          const tab = document.getElementById("paint").getBoundingClientRect();
          const out = {tab: {left: tab.left, right: tab.right, bottom: tab.bottom},
                       window: {width: innerWidth, height: innerHeight}};
          for (const plane of ["xy", "xz", "yz"]) {
            const r = document.querySelector(`[data-paint-view=${plane}] canvas`)
              .getBoundingClientRect();
            out[plane] = {left: r.left, top: r.top, right: r.right, bottom: r.bottom,
                          width: r.width, height: r.height};
          }
          return out;
        }"""
    )
    for plane in ("xy", "xz", "yz"):
        box = boxes[plane]
        assert box["width"] > 100 and box["height"] > 100, boxes
        assert box["bottom"] <= min(boxes["window"]["height"], boxes["tab"]["bottom"]), boxes
        assert boxes["tab"]["left"] <= box["left"] and box["right"] <= boxes["tab"]["right"], boxes
    return {plane: boxes[plane] for plane in ("xy", "xz", "yz")}


def test_xz_and_yz_views_keep_the_physical_aspect_and_the_mouse_hits_its_voxel(
    live_server: Any, browser_context: Any, artifacts_dir: Path
) -> None:
    """Voxels of 400 nm z and 200 nm xy: the xz and yz views of the 32^3 box are drawn twice as
    tall as wide, all three on screen, and a click on a voxel of the stretched xz view paints
    that voxel and no other."""
    users = get_user_model().objects
    owner = users.create_user("owner", password=PASSWORD)
    ann = users.create_user("ann", password=PASSWORD)
    # One box from voxel 16 along each axis: the tab shows the dataset's coordinates.
    campaign = make_campaign(owner, ann, shape=64, around=(32, 32, 32))
    campaign.geometry = {**campaign.geometry, "voxel_size_um": [0.4, 0.2, 0.2]}
    campaign.save()
    page = browser_context.new_page()
    open_task(page, live_server.url, campaign)
    sizes = assert_views_on_screen(page)
    start = page.evaluate("() => annotome.config.box.start")
    assert start == [16, 16, 16], start
    # Positions and slices as Neuroglancer's position bar gives them (x y z, the dataset's).
    assert "x 32 y 32 z 32" in page.inner_text("[data-paint=info]")
    assert page.inner_text("[data-paint-view=xy] .paint-slice") == "xy · z 32 of 16\u201347"
    assert page.inner_text("[data-paint-view=yz] .paint-slice") == "yz · x 32 of 16\u201347"
    assert sizes["xy"]["width"] == pytest.approx(sizes["xy"]["height"], abs=1)
    for plane in ("xz", "yz"):
        assert sizes[plane]["height"] == pytest.approx(2 * sizes[plane]["width"], abs=1)
    # A one-voxel brush clicked on the centre of xz voxel (x 10, z 20) at slice y 16.
    page.evaluate("() => { annotome.paint.editor.radius = 0.5; }")
    object_id = page.evaluate("() => annotome.paint.editor.activeId")
    px_x, px_z = sizes["xz"]["width"] / BOX, sizes["xz"]["height"] / BOX
    at = {"x": 10.5 * px_x, "y": 20.5 * px_z}
    page.locator("[data-paint-view=xz] canvas").click(position=at)
    painted = volume(page)
    assert list(zip(*np.nonzero(painted), strict=True)) == [(20, 16, 10)]
    assert painted[20, 16, 10] == object_id
    page.locator("[data-paint-view=xz] canvas").hover(position=at)
    page.screenshot(path=str(artifacts_dir / "label-editor-anisotropic.png"), full_page=True)
    # The painting keys are read beside the views, without scrolling; not on the viewer's tab.
    keys = page.locator("#paint-keys")
    where = keys.bounding_box()
    assert keys.is_visible() and where is not None, where
    assert where["y"] + where["height"] <= page.viewport_size["height"], where
    page.click("#tab-viewer")
    assert keys.is_hidden()
    page.click("#tab-paint")
    assert keys.is_visible()


def test_a_2d_image_is_painted_in_its_xy_view_alone(
    live_server: Any, browser_context: Any, artifacts_dir: Path
) -> None:
    """A painted campaign on a 2D image (the real dsb2018 crop): its boxes are one pixel deep,
    so the Paint tab shows the xy view alone over the tab (no xz and yz strips one pixel high),
    without the sphere brush, interpolation or the slice keys; a stroke saves as the box's 2D
    labels."""
    users = get_user_model().objects
    owner = users.create_user("owner", password=PASSWORD)
    ann = users.create_user("ann", password=PASSWORD)
    campaign = painted_campaign_2d(owner)
    services.member_add(campaign, owner, ann.username, Role.ANNOTATOR)
    page = browser_context.new_page()
    failed = failed_responses(page)
    open_task(page, live_server.url, campaign)
    row = Assignment.objects.get(annotator=ann)
    assert page.evaluate("() => annotome.paint.editor.volume.shape") == [1, 128, 128]
    assert page.locator("[data-paint-view=xz]").is_hidden()
    assert page.locator("[data-paint-view=yz]").is_hidden()
    for tool in ("[data-paint-tool=sphere]", "[data-paint-action=interpolate]"):
        assert page.locator(tool).is_hidden(), tool
    assert page.locator("[data-paint=interpolated]").is_hidden()
    keys = page.inner_text("#paint-keys")
    assert "brush" in keys and "sphere" not in keys and "interpolate" not in keys, keys
    tab = page.locator("#paint").bounding_box()
    canvas = page.locator("[data-paint-view=xy] canvas").bounding_box()
    assert tab is not None and canvas is not None
    assert canvas["width"] == pytest.approx(canvas["height"], abs=1)
    # Fitted to the tab's whole width or height, not to the 60 % a volume's xy view gets.
    assert canvas["width"] > 0.6 * tab["width"] or canvas["y"] + canvas["height"] > 0.9 * (
        tab["y"] + tab["height"]
    ), (canvas, tab)
    assert canvas["y"] + canvas["height"] <= page.viewport_size["height"], canvas
    assert page.inner_text("[data-paint-view=xy] .paint-slice") == "xy"
    assert " z " not in page.inner_text("[data-paint=info]")
    page.keyboard.press("s")  # the sphere's key does nothing here
    assert page.evaluate("() => annotome.paint.editor.tool") == "brush"

    page.keyboard.press("c")
    object_id = page.evaluate("() => annotome.paint.editor.activeId")
    scale = canvas["width"] / 128
    page.mouse.move(canvas["x"] + 30.5 * scale, canvas["y"] + 64.5 * scale)
    page.mouse.down()
    page.mouse.move(canvas["x"] + 90.5 * scale, canvas["y"] + 64.5 * scale, steps=12)
    page.mouse.up()
    page.keyboard.press("Control+s")
    page.wait_for_function("() => !annotome.paint.unsaved() && annotome.paint.version() === 1")
    labels = stored(row)
    assert labels.shape == (1, 128, 128)
    painted = np.nonzero(labels[0] == object_id)
    assert set(labels.ravel()) == {0, object_id}
    assert painted[1].min() <= 31 and painted[1].max() >= 89  # the stroke's length, in x
    assert painted[0].min() >= 60 and painted[0].max() <= 69  # and its width, in y
    page.screenshot(path=str(artifacts_dir / "label-editor-2d.png"))
    assert [f for f in failed if not (f.startswith("404") and "/labels/" in f)] == []


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values, dtype=np.float64), q))


def frame_gaps(page: Any) -> list[float]:
    times = page.evaluate("() => editorBench.frames")
    return [b - a for a, b in itertools.pairwise(times)]


def test_editor_draws_strokes_and_switches_slices_at_screen_rate(
    live_server: Any, browser_context: Any
) -> None:
    side = int(os.environ.get("ANNOTOME_BENCH_BOX", "64"))
    users = get_user_model().objects
    owner = users.create_user("owner", password=PASSWORD)
    ann = users.create_user("ann", password=PASSWORD)
    campaign = make_campaign(owner, ann, shape=side, box=side)
    page = browser_context.new_page()
    open_task(page, live_server.url, campaign)
    assert page.evaluate("() => annotome.paint.editor.volume.shape") == [side, side, side]
    page.evaluate(MEASURE)
    canvas = page.locator("[data-paint-view=xy] canvas").bounding_box()
    assert canvas is not None
    scale = canvas["width"] / side

    # Baseline: frame gaps while idle, and key-to-frame of a key the editor ignores.
    page.evaluate("() => { editorBench.framing = true; }")
    page.wait_for_timeout(1000)
    page.evaluate("() => { editorBench.framing = false; }")
    idle_gaps = frame_gaps(page)
    page.evaluate("() => { editorBench.frames = []; }")
    for _ in range(30):
        page.keyboard.press("x")
        page.wait_for_timeout(40)
    # Baseline of a stroke event: the same moves without the button (the cursor follows).
    for k in range(4):
        y = canvas["y"] + (side * (k + 1) / 10) * scale
        page.mouse.move(canvas["x"] + 2 * scale, y)
        page.mouse.move(canvas["x"] + (side - 3) * scale, y + 5 * scale, steps=40)

    # Strokes: 8 drags across the slice, 40 mouse moves each, radius 4 then 12.
    page.evaluate("() => { editorBench.framing = true; }")
    for k in range(8):
        if k == 4:
            page.evaluate("() => annotome.paint.editor.setRadius(12)")
        y = canvas["y"] + (side * (k + 1) / 10) * scale
        page.mouse.move(canvas["x"] + 2 * scale, y)
        page.mouse.down()
        page.mouse.move(canvas["x"] + (side - 3) * scale, y + 5 * scale, steps=40)
        page.mouse.up()
    page.evaluate("() => { editorBench.framing = false; }")
    stroke_gaps = frame_gaps(page)
    z = page.evaluate("() => annotome.paint.editor.slice('xy')")
    painted = page.evaluate(
        "(z) => { const e = annotome.paint.editor; const [, h, w] = e.volume.shape;"
        " let n = 0; for (let i = z * h * w; i < (z + 1) * h * w; i++)"
        " if (e.volume.data[i]) n++; return n; }",
        z,
    )
    assert painted > side * side // 10  # the strokes painted a good part of the slice

    # Slice switches: F and D alternately, each waited for.
    for k in range(60):
        page.keyboard.press("f" if k % 2 == 0 else "d")
        page.wait_for_timeout(40)
    assert page.evaluate("() => annotome.paint.editor.slice('xy')") == z
    page.wait_for_timeout(100)
    m = page.evaluate("() => editorBench")
    switches = m["key"]["f"] + m["key"]["d"]
    baseline = m["key"]["x"]
    moves = [v[0] for v in m["move"]]
    hover = [v[0] for v in m["hover"]]
    move_handled = [v[1] for v in m["move"]]
    hover_handled = [v[1] for v in m["hover"]]
    switch_handled = m["handled"]["f"] + m["handled"]["d"]
    assert len(moves) >= 8 * 30 and len(switches) == 60 and len(baseline) == 30
    print(
        f"\neditor {side}^3 box, xy canvas {canvas['width']:.0f} px: "
        f"stroke event p50 {percentile(moves, 50):.2f} ms p95 {percentile(moves, 95):.2f} ms "
        f"({len(moves)} events) vs hover p50 {percentile(hover, 50):.2f} ms p95 "
        f"{percentile(hover, 95):.2f} ms; frame gap while painting p50 "
        f"{percentile(stroke_gaps, 50):.1f} ms p95 {percentile(stroke_gaps, 95):.1f} ms "
        f"vs idle p50 {percentile(idle_gaps, 50):.1f} ms p95 {percentile(idle_gaps, 95):.1f} ms; "
        f"slice switch key-to-frame median {percentile(switches, 50):.1f} ms p95 "
        f"{percentile(switches, 95):.1f} ms vs empty key-to-frame median "
        f"{percentile(baseline, 50):.1f} ms p95 {percentile(baseline, 95):.1f} ms "
        f"(x{percentile(switches, 50) / percentile(baseline, 50):.2f}); in the page's handlers: "
        f"stroke move p50 {percentile(move_handled, 50):.2f} ms p95 "
        f"{percentile(move_handled, 95):.2f} ms (hover {percentile(hover_handled, 50):.2f} ms), "
        f"slice switch p50 {percentile(switch_handled, 50):.2f} ms p95 "
        f"{percentile(switch_handled, 95):.2f} ms"
    )
