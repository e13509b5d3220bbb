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
"""

from __future__ import annotations

import csv
import io
import math
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from site_harness import MakeUpSite, make_up_site, postgres_answers
from viewer_mouse import ctrl_click, mouse_voxel, viewer_ready, xy_panel

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


@pytest.fixture
def site(tmp_path: Path) -> Iterator[MakeUpSite]:
    # Redis databases of its own: test_make_up_site may run at the same time (xdist).
    with make_up_site(tmp_path, on_postgres=postgres_answers(), redis_dbs=(10, 9)) as runner:
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
        self.started = time.monotonic()

    def response(self, response: Any) -> None:
        expected = response.status == 404 and ABSENT_CHUNK.search(response.url.split("?")[0])
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
