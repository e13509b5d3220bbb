"""Issue 9's story, whole, in real Chromium against the site as ``make up`` runs it (gunicorn
with its config and a real Celery worker; on PostgreSQL and Redis where the run has them).

Users are made with ``manage.py shell`` as an operator would; everything else is done in the
pages. The demo admin (the manager) creates a campaign on the demo dataset (N = 2, two boxes),
adds the reviewer and tiles the volume. Annotator a1 takes the next task, places three points
and a bounding box with the mouse, reloads (all four come back from the server), deletes a
point and submits; a2 does the same box, some points near a1's, one far. The reviewer sees
both as layers with their agreement, rejects a1's with a comment (R, then R again with the
comment) and approves a2's (A). a1 reads the comment on the task page, adds the missing point
and resubmits; the reviewer approves it. The manager accepts the consensus on the campaign
page and downloads the ground truth CSV: exactly the consensus points (the mean of each
matched pair; a2's lone point is not there), in um from the dataset's voxel size and origin.
No answer is a 4xx (but absent chunks) or 5xx, no page throws, and the server logs no
traceback.

Issue 10's story, on the same site (other users, another campaign): the manager creates a
painted campaign (N = 2) in the form and imports one box around a nucleus of the demo's known
truth. p1 paints an object over three slices, interpolates it (V), Alt+clicks the nucleus and
accepts the proposal (Enter), erases a stroke from it, undoes and redoes (Ctrl+Z, Ctrl+Y), saves
(Ctrl+S), runs "Propose all" and walks it (Esc, Enter), and submits (which saves first); p2
paints the same two objects. The reviewer's painted agreement is pipeline.label_agreement's on
the stored volumes (read back with zarr), the object only p1 painted is listed as left out, the
consensus is a layer; the manager accepts the consensus, the dashboard plots the painted
agreement, and labels.zip from the page's link holds exactly the consensus voxels at the box's
physical position (read back with ome-zarr).
"""

from __future__ import annotations

import csv
import io
import itertools
import math
import re
import time
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import requests
import zarr
from ome_zarr.io import parse_url
from ome_zarr.reader import Multiscales, Reader
from scipy import ndimage
from site_harness import MakeUpSite, make_up_site, postgres_answers
from test_label_editor import BOX, PAINT_READY, drag, volume
from viewer_mouse import ctrl_click, mouse_voxel, viewer_ready, xy_panel

from pipeline.label_agreement import label_consensus, pair_label_agreement
from pipeline.synthetic import make_nuclei_volume

pytestmark = [pytest.mark.browser, pytest.mark.integration, pytest.mark.slow]

PASSWORD = "story-pass-123"
COMMENT = "The point at the top right is a nucleus: put it back."
USERS = f"""
from django.contrib.auth import get_user_model
users = get_user_model().objects
for name in ("a1", "a2", "rv"):
    users.create_user(name, password="{PASSWORD}")
"""
# The review's local annotation layers (the dataset's detections layer has a server source).
LAYERS_JS = """() => { const s = annotome.viewer().state.toJSON();
  const out = {};
  for (const l of s.layers) if (Array.isArray(l.annotations)) out[l.name] = l.annotations.length;
  return out; }"""
# Neuroglancer asks for chunks the store does not hold (its fill value): 404 by design.
ABSENT_CHUNK = re.compile(r"/data/[-\w]+/.+/c/[\d/]+$")
# Painted labels' OME-Zarr files: zarr asks for all-zero chunks (absent) and probes metadata.
# (A version's mesh source answers an id it lacks with an empty manifest, not 404.)
ABSENT_LABELS = re.compile(
    r"/annotation/.+/(labels/v\d+|label-consensus/[-\w]+)/"
    r"(s0/c/[\d/]+|s0/\d+/\d+/\d+|(s0/)?(\.zmetadata|zarr\.json|\.zattrs|\.zgroup|\.zarray))$"
)


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MakeUpSite]:
    """One ``make up`` for both stories (its start is most of a story's time); they use users
    and campaigns of their own. Redis databases of its own: test_make_up_site may run at the
    same time (xdist)."""
    workdir = tmp_path_factory.mktemp("story-site")
    with make_up_site(workdir, on_postgres=postgres_answers(), redis_dbs=(10, 9)) as runner:
        yield runner


class Seat:
    """A browser context (its own cookies) where one user at a time is signed in."""

    def __init__(self, story: Story, context: Any) -> None:
        self.story, self.context = story, context
        self.page: Any = None
        context.on("response", story.response)
        context.on("weberror", lambda e: story.bad.append(f"page error: {e.error}"))

    def sign_in(self, username: str, password: str, next_path: str) -> Any:
        """Close the last user's page (its pollers stop), forget their session, log in."""
        if self.page is not None:
            self.page.close()
        self.context.clear_cookies()
        self.page = self.context.new_page()
        self.page.goto(f"{self.story.site.url}/accounts/login/?next={next_path}")
        self.page.fill("#id_username", username)
        self.page.fill("#id_password", password)
        self.page.click("button[type=submit]")
        self.page.wait_for_url(f"**{next_path}")
        return self.page

    def shot(self, name: str) -> None:
        self.page.screenshot(path=str(self.story.shots / f"story-{name}.png"))
        print(f"{name}: {time.monotonic() - self.story.started:.1f} s", flush=True)

    def api(self) -> requests.Session:
        """The signed-in user's session, for reads the test checks the pages against."""
        session = requests.Session()
        session.cookies.update({c["name"]: c["value"] for c in self.context.cookies()})
        return session


class Story:
    """Every answer and page error of the story's browser contexts, recorded."""

    def __init__(self, site: MakeUpSite, shots: Path) -> None:
        self.site, self.shots = site, shots
        self.bad: list[str] = []
        self.seen: list[tuple[int, str]] = []  # every answer's status and URL path
        self.started = time.monotonic()

    def response(self, response: Any) -> None:
        path = response.url.split("?")[0]
        self.seen.append((response.status, path))
        expected = response.status == 404 and (
            ABSENT_CHUNK.search(path) or ABSENT_LABELS.search(path)
        )
        if response.status >= 400 and not expected:
            self.bad.append(f"{response.status} {response.request.method} {response.url}")


# --- the task page -------------------------------------------------------------------------


def take_next_task(seat: Seat, campaign_id: int) -> int:
    """From the campaign list, the row's "Next task" link; the task page's assignment id."""
    page = seat.page
    page.click(f"tr[data-campaign='{campaign_id}'] a.next-task-link")
    page.wait_for_url("**/annotation/task/*/")
    viewer_ready(page)
    return int(page.evaluate("() => annotome.config.assignmentId"))


def panel_grid(page: Any) -> tuple[float, float, float]:
    """The x-y panel's centre and a unit of screen distance (a fifth of its shorter side)."""
    panel = xy_panel(page)
    unit = min(panel["width"], panel["height"]) * 0.2
    return panel["x"] + panel["width"] / 2, panel["y"] + panel["height"] / 2, unit


def place_points(page: Any, at: list[tuple[float, float]]) -> list[list[float]]:
    """Ctrl+click each screen position with the point tool; the voxel under each."""
    page.click("button[data-tool=annotatePoint]")
    before = page.evaluate("() => annotome.count()")
    placed = []
    for x, y in at:
        placed.append(mouse_voxel(page, x, y))
        ctrl_click(page, x, y)
    page.wait_for_function(f"() => annotome.count() === {before + len(at)}", timeout=10_000)
    return placed


def saved(page: Any, version: int) -> None:
    """Every change is on the server, at ``version`` or later."""
    page.evaluate("() => annotome.settled()")
    page.wait_for_function(
        f"() => annotome.dirty() === 0 && annotome.version() >= {version}", timeout=10_000
    )
    assert page.evaluate("() => annotome.errors") == []


def submit(page: Any, assignment_id: int) -> None:
    """Submit and next: the page hands the task in and moves on to the annotator's next."""
    page.click("#task-submit")
    page.wait_for_url(lambda url: f"/task/{assignment_id}/" not in url, timeout=30_000)
    # The page that opens says what was handed in (the next task, or the list).
    flash = page.wait_for_selector("li.flash", timeout=30_000)
    assert flash is not None and "Submitted box" in flash.inner_text(), flash


def flat(rows: list[list[float]]) -> list[float]:
    return [v for row in rows for v in row]


def points_of(api: requests.Session, url: str, assignment_id: int) -> list[list[float]]:
    got = api.get(f"{url}/api/v1/annotation/assignments/{assignment_id}/annotations/", timeout=30)
    assert got.status_code == 200, got.text
    return [a["coords"][0] for a in got.json()["annotations"] if a["kind"] == "point"]


# --- the review page -----------------------------------------------------------------------


def review_loads(page: Any, count: int) -> None:
    page.wait_for_function(f"() => annotome.loads() >= {count}", timeout=60_000)
    page.evaluate("() => annotome.settled()")
    errors = page.evaluate("() => annotome.errors")
    assert errors == [], errors


def test_annotation_story_from_campaign_to_ground_truth_csv(
    site: MakeUpSite, browser_context: Any, artifacts_dir: Path
) -> None:
    started = time.monotonic()
    site.manage("shell", "-c", USERS)
    story = Story(site, artifacts_dir)
    desk = Seat(story, browser_context)  # the manager and the annotators, in turn
    # The reviewer's own context: the review page stays open while a1 fixes the task.
    review_context = browser_context.browser.new_context(viewport={"width": 1280, "height": 800})
    try:
        play_the_story(site, story, desk, Seat(story, review_context))
    finally:
        review_context.close()
    log = site.output()
    assert "Traceback" not in log, log[log.index("Traceback") - 2000 :][:6000]
    assert story.bad == [], story.bad
    print(f"\nthe story took {time.monotonic() - started:.1f} s after make up was ready")


def play_the_story(site: MakeUpSite, story: Story, desk: Seat, reviewer: Seat) -> None:
    url = site.url
    admin_password = site.admin_password()

    # 1. The manager (the demo admin) creates the campaign in the form: the demo's image, N = 2,
    # boxes of half the volume's depth (two boxes); the annotators in the form, the reviewer
    # on the campaign page; then tiles the volume.
    page = desk.sign_in("admin", admin_password, "/annotation/")
    page.fill("#f-name", "Story")
    page.select_option("#f-dataset", "demo-nuclei")
    page.select_option("#f-layer", "image")
    # The form suggests a box for the demo's 51.2 um volume: 10 um, 5 x 5 x 5 boxes tiled.
    assert [page.input_value(f"#f-box-{axis}") for axis in "zyx"] == ["10", "10", "10"]
    for axis, um in zip("zyx", ("25.6", "51.2", "51.2"), strict=True):
        page.fill(f"#f-box-{axis}", um)
    page.fill("#f-redundancy", "2")
    for name in ("a1", "a2"):
        page.click("#member-add")
        page.locator("#members-input .m-username").last.fill(name)
    page.click("#f-submit")
    page.wait_for_url(re.compile(r".*/annotation/\d+/$"))
    campaign_id = int(page.url.rstrip("/").rsplit("/", 1)[-1])
    page.fill("#member-username", "rv")
    page.select_option("#member-role", "reviewer")
    page.click("#member-form button[type=submit]")
    page.wait_for_selector("#members-table td:text-is('rv')")
    page.evaluate("() => annotome.ready")
    page.click("#tile-submit")
    page.wait_for_selector("#add-status[data-added='2']")
    page.wait_for_selector("#boxes-table[data-count='2']")
    members = page.locator("#members-table tbody tr").evaluate_all(
        "(rows) => rows.map((r) => [r.cells[0].textContent, r.cells[1].textContent])"
    )
    assert sorted(members) == [
        ["a1", "Annotator"],
        ["a2", "Annotator"],
        ["admin", "Manager"],
        ["rv", "Reviewer"],
    ]
    campaign = desk.api().get(f"{url}/api/v1/annotation/campaigns/{campaign_id}/").json()
    assert campaign["redundancy"] == 2 and campaign["box_size_um"] == [25.6, 51.2, 51.2]
    desk.shot("1-campaign")

    # 2. a1: the next task; three points and a box with the mouse; saved; reloaded; one point
    # deleted (Ctrl+Alt+right-click); submitted.
    desk.sign_in("a1", PASSWORD, "/annotation/")
    first = take_next_task(desk, campaign_id)
    page = desk.page
    cx, cy, u = panel_grid(page)
    page.mouse.click(cx, cy)  # focus the viewer (a plain click draws nothing)
    a1_at = [(cx - u, cy - u), (cx + u, cy - u), (cx, cy + u)]
    a1_points = place_points(page, a1_at)
    page.click("button[data-tool=annotateBoundingBox]")
    corner_a, corner_b = (cx - 1.6 * u, cy + 1.4 * u), (cx - 0.9 * u, cy + 1.8 * u)
    box_a, box_b = mouse_voxel(page, *corner_a), mouse_voxel(page, *corner_b)
    ctrl_click(page, *corner_a)
    page.mouse.move(*corner_b)
    ctrl_click(page, *corner_b)
    page.wait_for_function("() => annotome.count() === 4")
    saved(page, 1)
    box_name = page.evaluate("() => annotome.config.box.name")
    desk.shot("2-a1-drawn")
    page.reload()
    viewer_ready(page)
    page.wait_for_function("() => annotome.count() === 4")
    drawn = page.evaluate("() => annotome.annotations()")
    points = sorted((a for a in drawn if a["kind"] == "point"), key=lambda a: a["object_id"])
    # Where the mouse was, within a pixel and a half (a voxel is about a pixel here).
    per_pixel = abs(a1_points[1][2] - a1_points[0][2]) / (a1_at[1][0] - a1_at[0][0])
    near = max(0.25, 1.5 * per_pixel)
    assert flat([p["coords"][0] for p in points]) == pytest.approx(flat(a1_points), abs=near)
    (bbox,) = [a for a in drawn if a["kind"] == "axis_aligned_bounding_box"]
    corners = sorted(bbox["coords"])
    assert flat([c[1:] for c in corners]) == pytest.approx(
        flat([c[1:] for c in sorted([box_a, box_b])]), abs=near
    )
    # Delete the second point: hover it until Neuroglancer picks it, Ctrl+Alt+right-click.
    x, y = a1_at[1]
    doomed = points[1]["uid"]
    page.mouse.move(x + 1, y)
    page.mouse.move(x, y)
    page.wait_for_function(
        "(uid) => annotome.viewer().mouseState.pickedAnnotationId === uid", arg=doomed
    )
    before_delete = page.evaluate("() => annotome.version()")  # before: the save may be quick
    ctrl_click(page, x, y, alt=True, button="right")
    page.wait_for_function("() => annotome.count() === 3", timeout=10_000)
    assert doomed not in [a["uid"] for a in page.evaluate("() => annotome.annotations()")]
    saved(page, before_delete + 1)
    handed_in = page.evaluate("() => annotome.version()")
    submit(page, first)

    # 3. a2: the same box (its second slot); points near a1's three (the deleted one too) and
    # one far from all of them.
    desk.sign_in("a2", PASSWORD, "/annotation/")
    second = take_next_task(desk, campaign_id)
    page = desk.page
    assert second != first
    assert page.evaluate("() => annotome.config.box.name") == box_name
    assert page.evaluate("() => annotome.count()") == 0
    cx, cy, u = panel_grid(page)
    page.mouse.click(cx, cy)
    nudges = [(4, 3), (-3, 2), (3, -2)]  # pixels
    a2_at = [(ax + dx, ay + dy) for (ax, ay), (dx, dy) in zip(a1_at, nudges, strict=True)]
    a2_at.append((cx + u, cy + u))
    place_points(page, a2_at)
    saved(page, 1)
    desk.shot("3-a2-drawn")
    submit(page, second)

    # 4. The reviewer: a1's task first, both annotators' work as layers, their agreement; R
    # without a comment asks for one; with it, a1's goes back; a2's comes next and is approved.
    # The page stays open.
    page = reviewer.sign_in("rv", PASSWORD, "/annotation/")
    page.click(f"tr[data-campaign='{campaign_id}'] a:text-is('Review')")
    page.wait_for_url(f"**/annotation/{campaign_id}/review/")
    assert page.evaluate("() => annotome.ready.then((r) => r.errors)") == []
    review_loads(page, 1)
    assert page.evaluate("() => annotome.current().id") == first
    assert page.evaluate(LAYERS_JS) == {"task box": 1, "a1": 3, "a2": 4}
    assert "a1" in page.inner_text("#review-facts")
    assert page.is_visible("#review-agreement-section")
    agreement = page.inner_text("#review-agreement")
    # a1 (the reference, first slot) 2 points, a2 4: both of a1's matched; P 0.5, R 1.
    assert "2 of 2 / 4" in agreement and "0.667" in agreement, agreement
    assert f"v{handed_in} " in page.inner_text("#review-history")
    reviewer.shot("4-review")
    page.click("#review-current h2")
    page.keyboard.press("r")
    page.wait_for_function("() => document.activeElement.id === 'review-comment'")
    assert "comment is required" in page.inner_text("#review-status")
    page.fill("#review-comment", COMMENT)
    page.keyboard.press("Escape")
    page.keyboard.press("r")
    review_loads(page, 2)
    assert page.evaluate("() => annotome.current().id") == second
    assert page.evaluate(LAYERS_JS) == {"task box": 1, "a2": 4, "a1": 3}
    page.keyboard.press("a")
    review_loads(page, 3)
    assert page.evaluate("() => annotome.current()") is None
    assert page.is_visible("#review-empty")
    assert page.evaluate("() => annotome.decided()") == 2
    # Nothing left: no task's history, and the whole view in x y z order (as first loaded).
    assert page.inner_text("#review-history").strip() == ""
    page.wait_for_function("() => annotome.viewer().isReady()", timeout=60_000)
    assert list(page.evaluate("() => annotome.viewer().state.toJSON().dimensions")) == list("xyz")

    # 5. a1: "Next task" brings the rejected task back first, with the reviewer's comment; a1
    # puts the point back and resubmits.
    desk.sign_in("a1", PASSWORD, "/annotation/")
    assert take_next_task(desk, campaign_id) == first
    page = desk.page
    assert page.inner_text("#task-state") == "Rejected"
    assert COMMENT in page.inner_text("#task-rejection")
    page.wait_for_function("() => annotome.count() === 3")
    desk.shot("5-a1-rejected")
    cx, cy, u = panel_grid(page)
    page.mouse.click(cx, cy)
    x, y = a1_at[1]
    place_points(page, [(x + 1, y - 1)])
    saved(page, handed_in + 1)
    fixed = page.evaluate("() => annotome.version()")
    submit(page, first)

    # 6. The reviewer, on the page left open: N brings the resubmitted task in place, at its
    # new version, in full agreement now; A approves it and nothing is left.
    page = reviewer.page
    page.keyboard.press("n")
    review_loads(page, 4)
    assert page.evaluate("() => annotome.current().id") == first
    assert page.evaluate(LAYERS_JS) == {"task box": 1, "a1": 4, "a2": 4}
    assert f"v{fixed} " in page.inner_text("#review-history")
    assert COMMENT in page.inner_text("#review-facts")  # the last review, shown
    assert "3 of 3 / 4" in page.inner_text("#review-agreement")
    page.keyboard.press("a")
    review_loads(page, 5)
    assert page.evaluate("() => annotome.current()") is None
    assert page.is_visible("#review-empty")
    assert page.evaluate("() => annotome.decided()") == 3
    reviewer.shot("6-review-done")

    # 7. The manager accepts the box's consensus on the campaign page and downloads the CSV.
    page = desk.sign_in("admin", admin_password, f"/annotation/{campaign_id}/")
    page.evaluate("() => annotome.ready")
    row = page.locator("#boxes-table tbody tr").filter(has=page.locator("button.consensus-accept"))
    assert row.count() == 1
    box_id = int(row.get_attribute("data-box") or 0)
    row.locator("button.consensus-accept").click()
    page.wait_for_selector(f"#boxes-status[data-accepted='{box_id}']")
    page.wait_for_selector(
        f"#boxes-table tr[data-box='{box_id}'] td.box-truth:has-text('consensus, 3 points')"
    )
    assert "3 point(s)" in page.inner_text("#boxes-status"), page.inner_text("#boxes-status")
    desk.shot("7-consensus")
    with page.expect_download() as download:
        page.click("#campaign-exports a:text-is('Ground truth CSV')")
    rows = list(csv.DictReader(io.StringIO(Path(download.value.path()).read_text())))

    # Expected: the mean of each matched pair of the points as the server holds them, in um
    # from the dataset's own voxel size and origin (its store's level 0).
    api = desk.api()
    for assignment in (first, second):
        got = api.get(f"{url}/api/v1/annotation/assignments/{assignment}/", timeout=30).json()
        assert got["state"] == "approved", got
    a1_saved, a2_saved = points_of(api, url, first), points_of(api, url, second)
    dataset = api.get(f"{url}/api/v1/datasets/demo-nuclei/", timeout=30).json()
    (image,) = [layer for layer in dataset["layers"] if layer["name"] == "image"]
    assert image["unit"] == "nanometer"
    voxel_um = [v / 1000 for v in image["voxel_size"]]
    origin_um = level0_origin_um(api.get(f"{url}/data/demo-nuclei/image.ome.zarr/zarr.json"))
    tolerance = float(campaign["match_tolerance_um"])
    expected = consensus_by_hand(a1_saved, a2_saved, voxel_um, tolerance)
    assert len(a1_saved) == 3 and len(a2_saved) == 4 and len(expected) == 3
    assert {r["annotator"] for r in rows} == {"consensus"}
    assert {(r["kind"], r["class"], r["author"], r["box_id"]) for r in rows} == {
        ("point", "nucleus", "admin", str(box_id))
    }
    got = sorted([float(r[a]) for a in "zyx"] for r in rows)
    assert len(got) == 3
    assert flat(got) == pytest.approx(flat(sorted(expected)), abs=1e-4)
    for r in rows:
        zyx = [float(r[a]) for a in "zyx"]
        um = [float(r[f"{a}_um"]) for a in "zyx"]
        physical = zip(origin_um, zyx, voxel_um, strict=True)
        assert um == pytest.approx([o + v * s for o, v, s in physical])


def level0_origin_um(answer: requests.Response) -> list[float]:
    """The translation of the store's first scale level, in um (zero when it has none)."""
    assert answer.status_code == 200
    multiscale = answer.json()["attributes"]["ome"]["multiscales"][0]
    assert [a["unit"] for a in multiscale["axes"]] == ["nanometer"] * 3
    for transform in multiscale["datasets"][0]["coordinateTransformations"]:
        if transform["type"] == "translation":
            return [v / 1000 for v in transform["translation"]]
    return [0.0, 0.0, 0.0]


def consensus_by_hand(
    ours: list[list[float]], theirs: list[list[float]], voxel_um: list[float], tolerance: float
) -> list[list[float]]:
    """The midpoints of the pairs within the tolerance. The points were placed so that no
    choice is left to the matching: each pair is well within it, every other distance well
    beyond it (checked here)."""

    def um(p: list[float], q: list[float]) -> float:
        return math.dist(*([v * s for v, s in zip(r, voxel_um, strict=True)] for r in (p, q)))

    out = []
    for p in ours:
        distances = sorted((um(p, q), k) for k, q in enumerate(theirs))
        (d0, k0), (d1, _) = distances[0], distances[1]
        assert d0 < 0.75 * tolerance and d1 > 2 * tolerance, (p, distances)
        q = theirs[k0]
        out.append([(a + b) / 2 for a, b in zip(p, q, strict=True)])
    return out


# --- issue 10: the painted story -----------------------------------------------------------
#
# The demo dataset is make_nuclei_volume's default volume (load_demo: 256^3, 300 nuclei, seed 0,
# 200 nm voxels), so its truth is known: nucleus 70 lies wholly in the 32^3 box starting at
# z 48, y 60, x 142 (voxels), 8-25 of the box on each axis; parts of nuclei 36 and 80 are in the
# box too (the propose-all job finds three objects), none where the strokes go.
DEMO_TRUTH = {"shape": (256, 256, 256), "n_nuclei": 300, "seed": 0, "voxel_size_nm": 200.0}
NUCLEUS = 70
BOX_START = (48, 60, 142)  # z y x voxels
PAINTED_USERS = f"""
from django.contrib.auth import get_user_model
users = get_user_model().objects
for name in ("p1", "p2", "prv"):
    users.create_user(name, password="{PASSWORD}")
"""
STROKE = [(4, 2), (10, 3), (16, 2)]  # x y of the box, away from the nucleus
STROKE_SLICES = (12, 16, 20)
CONSENSUS_LAYER_JS = """() => {
  const layer = annotome.viewer().state.toJSON().layers.find((l) => l.name === 'consensus');
  return layer ? {type: layer.type, source: layer.source, segments: layer.segments} : null;
}"""


def dice(a: np.ndarray, b: np.ndarray) -> float:
    return float(2 * (a & b).sum() / (a.sum() + b.sum()))


def figure(value: float | None) -> str:
    """As the review page writes a figure: three significant digits, no trailing zeros."""
    if value is None:
        return "\u2013"
    rounded = float(f"{value:.3g}")
    return str(int(rounded)) if rounded.is_integer() else repr(rounded)


def painted_task(seat: Seat, campaign_id: int) -> tuple[Any, int]:
    """The campaign row's "Next task": the painting editor, ready; the assignment id."""
    page = seat.page
    page.click(f"tr[data-campaign='{campaign_id}'] a.next-task-link")
    page.wait_for_url("**/annotation/task/*/")
    assert page.evaluate(PAINT_READY)
    page.wait_for_function("() => annotome.assist() !== null", timeout=30_000)
    return page, int(page.evaluate("() => annotome.config.assignmentId"))


def to_slice(page: Any, z: int) -> None:
    """F and D move the xy slice, one key a slice."""
    while (current := page.evaluate("() => annotome.paint.editor.slice('xy')")) != z:
        page.keyboard.press("f" if z > current else "d")


def xy_canvas(page: Any) -> dict[str, float]:
    canvas = page.locator("[data-paint-view=xy] canvas").bounding_box()
    assert canvas is not None
    return canvas


def paint_strokes(page: Any) -> tuple[int, np.ndarray]:
    """A new object (C), one drag on each of three slices, V interpolates between them."""
    page.keyboard.press("c")
    object_id = int(page.evaluate("() => annotome.paint.editor.activeId"))
    canvas = xy_canvas(page)
    for z in STROKE_SLICES:
        to_slice(page, z)
        drag(page, canvas, STROKE)
    painted = volume(page)
    assert sorted(set(np.nonzero(painted == object_id)[0])) == list(STROKE_SLICES)
    page.keyboard.press("v")
    interpolated = page.evaluate("() => annotome.paint.editor.interpolated")
    assert interpolated == [{"plane": "xy", "id": object_id, "slices": [13, 14, 15, 17, 18, 19]}], (
        interpolated
    )
    after = volume(page)
    assert sorted(set(np.nonzero(after == object_id)[0])) == list(range(12, 21))
    return object_id, after


def click_nucleus(page: Any, centre: tuple[int, int, int]) -> tuple[int, np.ndarray]:
    """Alt+click the nucleus's centre on its middle slice, Enter accepts the proposal."""
    cz, cy, cx = centre
    to_slice(page, cz)
    canvas = xy_canvas(page)
    scale = canvas["width"] / BOX
    page.locator("[data-paint-view=xy] canvas").click(
        position={"x": (cx + 0.5) * scale, "y": (cy + 0.5) * scale}, modifiers=["Alt"]
    )
    page.wait_for_function("() => annotome.paint.editor.proposal !== null", timeout=30_000)
    assert "Enter accepts" in page.inner_text("[data-assist=status]")
    page.keyboard.press("Enter")
    accepted = volume(page)
    object_id = int(accepted[cz, cy, cx])
    assert object_id != 0
    return object_id, accepted


def save_labels(page: Any, version: int) -> None:
    page.keyboard.press("Control+s")
    page.wait_for_function(f"() => annotome.paint.version() === {version}", timeout=20_000)


def stored_labels(
    api: requests.Session, url: str, assignment_id: int, into: Path
) -> tuple[np.ndarray, int]:
    """The assignment's current labels as the server serves them (its OME-Zarr files, zarr v2),
    read back with zarr, and their version."""
    base = f"{url}/api/v1/annotation/assignments/{assignment_id}/labels/"
    state = api.get(base, timeout=30)
    assert state.status_code == 200, state.text
    source = state.json()["source"]
    if not source.startswith("http"):
        source = url + source
    array = into / f"a{assignment_id}v{state.json()['version']}" / "s0"
    array.mkdir(parents=True)
    meta = api.get(f"{source.rstrip('/')}/s0/.zarray", timeout=30)
    assert meta.status_code == 200, meta.text
    (array / ".zarray").write_bytes(meta.content)
    spec = meta.json()
    grid = [range(-(-n // c)) for n, c in zip(spec["shape"], spec["chunks"], strict=True)]
    for index in itertools.product(*grid):
        key = ".".join(map(str, index)) if spec.get("dimension_separator", ".") == "." else None
        name = "/".join(map(str, index))
        chunk = api.get(f"{source.rstrip('/')}/s0/{name}", timeout=30)
        if chunk.status_code == 404:
            continue  # all zero
        assert chunk.status_code == 200, (name, chunk.status_code)
        target = array / (key or name)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(chunk.content)
    labels = np.asarray(zarr.open_array(str(array), mode="r", zarr_format=2)[...])
    return labels, int(state.json()["version"])


def test_painted_story_from_campaign_to_consensus_labels_zip(
    site: MakeUpSite, browser_context: Any, artifacts_dir: Path, tmp_path: Path
) -> None:
    started = time.monotonic()
    site.manage("shell", "-c", PAINTED_USERS)
    truth = make_nuclei_volume(**DEMO_TRUTH)[1]  # type: ignore[arg-type]
    story = Story(site, artifacts_dir)
    desk = Seat(story, browser_context)
    play_the_painted_story(site, story, desk, truth, tmp_path)
    log = site.output()
    assert "Traceback" not in log, log[log.index("Traceback") - 2000 :][:6000]
    assert story.bad == [], "\n".join(story.bad)
    print(f"\nthe painted story took {time.monotonic() - started:.1f} s")


def play_the_painted_story(
    site: MakeUpSite, story: Story, desk: Seat, truth: np.ndarray, tmp: Path
) -> None:
    url = site.url
    admin_password = site.admin_password()
    region = tuple(slice(s, s + BOX) for s in BOX_START)
    nucleus = truth[region] == NUCLEUS
    assert nucleus.sum() == (truth == NUCLEUS).sum()  # wholly inside the box
    assert not truth[region][11:22, 0:8, 0:21].any()  # where the strokes go (radius 4)
    centre = tuple(round(float(c)) for c in ndimage.center_of_mass(nucleus))
    assert nucleus[centre]

    # 1. The manager creates a painted campaign (N = 2, boxes of 32 voxels) on the demo image
    # in the form, adds the reviewer, and imports one box around the nucleus from a CSV.
    page = desk.sign_in("admin", admin_password, "/annotation/")
    page.fill("#f-name", "Painted story")
    page.select_option("#f-dataset", "demo-nuclei")
    page.select_option("#f-layer", "image")
    for axis in "zyx":
        page.fill(f"#f-box-{axis}", "6.4")
    page.fill("#f-redundancy", "2")
    page.check("#f-painted")
    for name in ("p1", "p2"):
        page.click("#member-add")
        page.locator("#members-input .m-username").last.fill(name)
    page.click("#f-submit")
    page.wait_for_url(re.compile(r".*/annotation/\d+/$"))
    campaign_id = int(page.url.rstrip("/").rsplit("/", 1)[-1])
    page.fill("#member-username", "prv")
    page.select_option("#member-role", "reviewer")
    page.click("#member-form button[type=submit]")
    page.wait_for_selector("#members-table td:text-is('prv')")
    page.evaluate("() => annotome.ready")
    z0, y0, x0 = BOX_START
    boxes_csv = tmp / "boxes.csv"
    boxes_csv.write_text(f"bbox_ID,x,y,z,w,h,d\nnucleus,{x0},{y0},{z0},{BOX},{BOX},{BOX}\n")
    page.set_input_files("#csv-file", str(boxes_csv))
    page.click("#csv-submit")
    page.wait_for_selector("#add-status[data-added='1']")
    page.wait_for_selector("#boxes-table[data-count='1']")
    api = desk.api()
    campaign = api.get(f"{url}/api/v1/annotation/campaigns/{campaign_id}/", timeout=30).json()
    assert campaign["painted"] is True and campaign["redundancy"] == 2, campaign
    desk.shot("painted-1-campaign")

    # 2. p1 paints an object over three slices and interpolates it (V); Alt+clicks the
    # nucleus and accepts its proposal (Enter); erases a stroke from it (E); undoes the
    # eraser (Ctrl+Z) and redoes it (Ctrl+Y); saves (Ctrl+S). "Propose all" runs the box's job
    # on the worker; p1 drops its first proposal (Esc) and accepts the next (Enter), an object
    # p2 will not paint; "Submit and next" saves that change before it submits.
    desk.sign_in("p1", PASSWORD, "/annotation/")
    page, first = painted_task(desk, campaign_id)
    assert page.evaluate("() => annotome.paint.editor.volume.shape") == [BOX, BOX, BOX]
    stroke_id, _ = paint_strokes(page)
    nucleus_id, accepted = click_nucleus(page, centre)
    grown = accepted == nucleus_id
    assert dice(grown, nucleus) >= 0.9, dice(grown, nucleus)
    assert (accepted == stroke_id).sum() > 0  # the painted object stays
    desk.shot("painted-2-p1-proposal")
    cz, cy, cx = centre
    page.keyboard.press("e")
    canvas = xy_canvas(page)
    stroke_y = cy + 3
    drag(page, canvas, [(cx - 6, stroke_y), (cx + 6, stroke_y)])
    corrected = volume(page)
    assert (corrected[cz, stroke_y, cx - 4 : cx + 5] == 0).all()
    assert (corrected[cz + 3] == accepted[cz + 3]).all()  # other slices untouched
    assert 0 < (grown & (corrected == 0)).sum() < grown.sum() // 4
    page.keyboard.press("Control+z")
    assert (volume(page) == accepted).all()
    page.keyboard.press("Control+y")
    assert (volume(page) == corrected).all()
    desk.shot("painted-3-p1-erased")
    save_labels(page, 1)
    assert (stored_labels(desk.api(), url, first, tmp)[0] == corrected).all()
    objects = desk.api().get(
        f"{url}/api/v1/annotation/assignments/{first}/labels/objects/", timeout=30
    )
    provenance = {o["segment_id"]: o["provenance"] for o in objects.json()["objects"]}
    assert set(provenance) == {stroke_id, nucleus_id}
    assert provenance[nucleus_id] == {"source": "click", "proposal_source": "watershed"}
    page.click("[data-assist=propose]")
    page.wait_for_function(
        "() => annotome.assist().queue() !== null && annotome.assist().queue().counts.total > 0",
        timeout=60_000,
    )
    counts = page.evaluate("() => annotome.assist().queue().counts")
    assert counts["pending"] == counts["total"] == 2, counts  # nuclei 36 and 80
    # The clicked nucleus is painted already: propose-all's copy of it is left out.
    assert "1 already painted, left out" in page.inner_text("[data-assist=status]")
    first_proposal = page.evaluate("() => annotome.paint.editor.proposal.p.id")
    page.keyboard.press("Escape")
    assert page.evaluate("() => annotome.assist().queue().counts.rejected") == 1
    assert page.evaluate("() => annotome.paint.editor.proposal.p.id") != first_proposal
    page.keyboard.press("Enter")
    final = volume(page)
    (extra_id,) = set(np.unique(final[final != corrected]).tolist()) - {0}
    assert page.evaluate("() => annotome.assist().queue().counts.accepted") == 1
    assert page.evaluate("() => annotome.paint.editor.provenanceNow()")[str(extra_id)] == {
        "source": "proposal",
        "proposal_source": "watershed",
    }
    assert "accepted" in page.inner_text("[data-assist=status]")
    desk.shot("painted-4-p1-propose-all")
    assert page.evaluate("() => annotome.paint.unsaved()")
    submit(page, first)
    p1_saved, p1_version = stored_labels(desk.api(), url, first, tmp)
    assert (p1_saved == final).all() and p1_version == 2

    # 3. p2, the same box: the nucleus by Alt+click and Enter, the object by the same strokes.
    desk.sign_in("p2", PASSWORD, "/annotation/")
    page, second = painted_task(desk, campaign_id)
    assert second != first
    assert not volume(page).any()
    click_nucleus(page, centre)
    paint_strokes(page)
    save_labels(page, 1)
    desk.shot("painted-5-p2")
    p2_saved, p2_version = stored_labels(desk.api(), url, second, tmp)
    assert (p2_saved == volume(page)).all()
    submit(page, second)

    # 4. The reviewer: the painted agreement equals label_agreement's on the stored volumes;
    # the object only p1 painted is listed as left out ("show" goes to it); the consensus is a
    # segmentation layer whose files Neuroglancer reads; both volumes approved with A.
    volumes = {"p1": p1_saved, "p2": p2_saved}
    pair = pair_label_agreement(p1_saved, p2_saved, names=("p1", "p2"))
    assert (pair.matched, pair.n_reference, pair.n_other) == (2, 3, 2)
    expected_consensus = label_consensus(volumes, quorum=2)
    (alone,) = expected_consensus.unmatched
    assert len(expected_consensus.objects) == 2 and (alone.annotator, alone.id) == ("p1", extra_id)
    reviewer = desk
    page = reviewer.sign_in("prv", PASSWORD, "/annotation/")
    page.click(f"tr[data-campaign='{campaign_id}'] a:text-is('Review')")
    page.wait_for_url(f"**/annotation/{campaign_id}/review/")
    review_loads(page, 1)
    assert page.evaluate("() => annotome.current().id") == first
    assert page.is_visible("#review-painted-section")
    assert not page.is_visible("#review-agreement-section")  # no point agreement
    cells = page.locator("#review-painted tbody tr").first.locator("td").all_inner_texts()
    assert cells == [
        "p1 / p2",
        "2 of 3 / 2",
        figure(pair.precision),
        figure(pair.recall),
        figure(pair.f1),
        figure(pair.dice),
        figure(pair.mean_matched_iou),
    ], (cells, pair)
    assert f"mean Dice {figure(pair.dice)}" in page.inner_text("#review-painted-summary")
    consensus_note = page.inner_text("#review-consensus")
    assert "quorum 2 of 2" in consensus_note and "2 object(s)" in consensus_note, consensus_note
    assert "1 left out" in consensus_note, consensus_note
    at = " ".join(str(round(c)) for c in alone.centroid)
    assert page.locator("#review-unmatched li span").all_inner_texts() == [
        f"p1 #{extra_id}: {alone.voxels} voxels at {at} (box z y x), alone"
    ]
    page.click("#review-unmatched li[data-annotator='p1'] button.unmatched-show")
    position = page.evaluate("() => annotome.viewer().state.toJSON().position")
    assert position == pytest.approx(
        [s + c for s, c in zip(BOX_START, alone.centroid, strict=True)][::-1]  # x y z
    )
    layer = page.evaluate(CONSENSUS_LAYER_JS)
    assert layer is not None and layer["type"] == "segmentation", layer
    assert sorted(layer["segments"]) == ["1", "2"], layer
    token = f"q2-{first}v{p1_version}-{second}v{p2_version}"
    files = f"/label-consensus/{token}/s0/"
    assert layer["source"].endswith(f"/label-consensus/{token}/"), layer
    for _ in range(240):  # Neuroglancer reads the consensus's array metadata and its chunk
        got = {path[path.index(files) :] for status, path in story.seen if files in path}
        if {f"{files}zarr.json", f"{files}c/0/0/0"} <= got:
            break
        page.wait_for_timeout(250)
    assert {f"{files}zarr.json", f"{files}c/0/0/0"} <= got, got
    assert all(status == 200 for status, path in story.seen if path.endswith(f"{files}c/0/0/0"))
    # Read as NGFF 0.5: no probe of a metadata file the consensus does not have.
    metadata = re.compile(r"(zarr\.json|\.zattrs|\.zgroup|\.zarray)$")
    probed = [(s, p) for s, p in story.seen if f"/label-consensus/{token}/" in p]
    assert all(s == 200 for s, p in probed if metadata.search(p)), probed
    reviewer.shot("painted-6-review")
    page.click("#review-current h2")
    page.keyboard.press("a")
    review_loads(page, 2)
    assert page.evaluate("() => annotome.current().id") == second
    page.keyboard.press("a")
    review_loads(page, 3)
    assert page.is_visible("#review-empty")

    # 5. The manager chooses the consensus as the box's ground truth on the campaign page and
    # downloads labels.zip from the page's link.
    page = desk.sign_in("admin", admin_password, f"/annotation/{campaign_id}/")
    page.evaluate("() => annotome.ready")
    (box_id,) = page.locator("#boxes-table tbody tr").evaluate_all(
        "(rows) => rows.map((r) => Number(r.dataset.box))"
    )
    page.click(f"button.truth-choose[data-box='{box_id}']")
    chooser = page.locator(f"form.truth-chooser[data-box='{box_id}']")
    chooser.wait_for()
    assert "p1's volume (3 objects)" in chooser.inner_text(), chooser.inner_text()
    chooser.locator("input[value=consensus]").check()
    assert chooser.locator("input.truth-quorum").input_value() == "2"
    chooser.locator("button[type=submit]").click()
    page.wait_for_selector(f"#boxes-status[data-accepted='{box_id}']")
    cell = f"#boxes-table tr[data-box='{box_id}'] td.box-truth"
    page.wait_for_selector(f"{cell}:has-text('consensus (quorum 2), 2 objects')")
    desk.shot("painted-7-truth")
    with page.expect_download() as download:
        page.click("#campaign-exports a:text-is('Painted labels for training (zip)')")
    out = tmp / "labels"
    with zipfile.ZipFile(download.value.path()) as archive:
        archive.extractall(out)

    # The box's OME-Zarr holds exactly the consensus voxels, translated to the box's place:
    # the image's origin plus the box's start times the voxel size.
    nodes = [
        n
        for n in Reader(parse_url(str(out / "boxes" / f"{box_id}.ome.zarr")))()
        if n.load(Multiscales)
    ]
    assert len(nodes) == 1
    exported = np.asarray(nodes[0].data[0])
    assert exported.shape == (BOX, BOX, BOX)
    assert (exported == expected_consensus.labels).all()
    transforms = {
        t["type"]: t[t["type"]] for t in nodes[0].metadata["coordinateTransformations"][0]
    }
    image_meta = api.get(f"{url}/data/demo-nuclei/image.ome.zarr/zarr.json", timeout=30)
    origin_nm = [v * 1000 for v in level0_origin_um(image_meta)]
    voxel_nm = DEMO_TRUTH["voxel_size_nm"]
    assert transforms["scale"] == [voxel_nm] * 3
    assert transforms["translation"] == pytest.approx(
        [o + s * voxel_nm for o, s in zip(origin_nm, BOX_START, strict=True)]
    )
    whole = [n for n in Reader(parse_url(str(out / "labels.ome.zarr")))() if n.load(Multiscales)]
    image = np.asarray(whole[0].data[0])
    region = tuple(slice(s, s + BOX) for s in BOX_START)
    assert (image[region] == expected_consensus.labels).all()
    assert np.count_nonzero(image) == np.count_nonzero(expected_consensus.labels)
    sources = list(csv.DictReader(io.StringIO((out / "sources.csv").read_text())))
    assert [(s["box"], s["source"], s["quorum"], s["accepted_by"]) for s in sources] == [
        ("nucleus", "consensus", "2", "admin")
    ]

    # 6. The dashboard plots the painted agreement, not the (empty) point agreement.
    page.goto(f"{url}/annotation/{campaign_id}/dashboard/")
    page.wait_for_function("() => annotome.refreshes() >= 1", timeout=30_000)
    assert page.is_visible("figure:has(#plot-label-f1)")
    assert page.is_visible("figure:has(#plot-label-dice)")
    assert not page.is_visible("figure:has(#plot-agreement)")
    assert f"mean Dice {pair.dice:.2f}" in page.inner_text("#agreement-text")
    # Its tables: every figure of the annotator pair, and the box.
    cells = page.locator("#label-pairs tbody tr").first.locator("td").all_inner_texts()
    assert cells[:3] == ["p1 / p2", "1", str(pair.matched)], cells
    shown = [float(c) for c in cells[3:]]
    wanted = [pair.precision, pair.recall, pair.f1, pair.dice, pair.mean_matched_iou]
    assert shown == pytest.approx(wanted, abs=0.006), cells
    box_cells = page.locator("#label-boxes tbody tr").first.locator("td").all_inner_texts()
    assert box_cells[0] == "nucleus"
    assert [float(c) for c in box_cells[1:]] == pytest.approx([pair.f1, pair.dice], abs=0.006)
    desk.shot("painted-8-dashboard")
