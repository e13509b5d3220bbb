"""The assistance in the painting editor, in real Chromium with a real Celery worker: Alt+click
inside a nucleus proposes its 3D mask (the classical seeded watershed: the dataset has no
model), Enter accepts it as a new object, the eraser corrects it, Ctrl+S saves it with its
provenance; then "Propose all" runs the box's job with a progress bar and the annotator walks
its proposals with Enter and Esc.

The nuclei volume is the one ``nuclei_dataset`` builds (seed 3); its truth comes from the same
generator, so the proposal's Dice with the clicked nucleus is measured, not assumed.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from django.contrib.auth import get_user_model
from test_label_editor import BOX, PAINT_READY, login, make_campaign, stored, volume
from viewer_mouse import failed_responses

from pipeline.synthetic import make_nuclei_volume
from webapp.annotation.models import Assignment

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]
PASSWORD = "paint-pass-123"
NUCLEUS = 4  # of the seed-3 volume: z 13-28, y 36-53, x 31-47, away from the others
CENTRE = (21, 45, 39)


def dice(a: np.ndarray, b: np.ndarray) -> float:
    return float(2 * (a & b).sum() / (a.sum() + b.sum()))


def xy_point(canvas: dict[str, float], x: float, y: float) -> dict[str, float]:
    scale = canvas["width"] / BOX
    return {"x": (x + 0.5) * scale, "y": (y + 0.5) * scale}


def test_alt_click_proposes_the_nucleus_the_eraser_corrects_and_propose_all_walks_with_keys(
    celery_worker: Any, live_server: Any, browser_context: Any, artifacts_dir: Path
) -> None:
    users = get_user_model().objects
    owner = users.create_user("owner", password=PASSWORD)
    ann = users.create_user("ann", password=PASSWORD)
    campaign = make_campaign(owner, ann, around=CENTRE)
    page = browser_context.new_page()
    failed = failed_responses(page)
    login(page, live_server.url, "ann", f"/annotation/{campaign.id}/next/")
    page.wait_for_url("**/annotation/task/*/")
    row = Assignment.objects.select_related("box").get(annotator=ann)
    z0, y0, x0 = row.box.start
    assert tuple(row.box.size) == (BOX, BOX, BOX)
    truth = make_nuclei_volume((96, 96, 96), 20, 3, 200.0)[1]
    nucleus = truth[z0 : z0 + BOX, y0 : y0 + BOX, x0 : x0 + BOX] == NUCLEUS
    assert nucleus.sum() == (truth == NUCLEUS).sum()  # wholly inside the box
    assert page.evaluate(PAINT_READY)
    page.wait_for_function("() => annotome.assist() !== null")

    # Move to the nucleus's middle slice, Alt+click its centre: a proposal is outlined.
    cz, cy, cx = CENTRE[0] - z0, CENTRE[1] - y0, CENTRE[2] - x0
    while (current := page.evaluate("() => annotome.paint.editor.slice('xy')")) != cz:
        page.keyboard.press("f" if cz > current else "d")
    xy = page.locator("[data-paint-view=xy] canvas")
    canvas = xy.bounding_box()
    assert canvas is not None
    xy.click(position=xy_point(canvas, cx, cy), modifiers=["Alt"])
    page.wait_for_function("() => annotome.paint.editor.proposal !== null", timeout=20_000)
    assert "Enter accepts" in page.inner_text("[data-assist=status]")
    page.screenshot(path=str(artifacts_dir / "label-assist-click.png"))
    page.keyboard.press("Enter")
    accepted = volume(page)
    object_id = int(accepted[cz, cy, cx])
    assert object_id != 0
    grown = accepted == object_id
    assert dice(grown, nucleus) >= 0.9, dice(grown, nucleus)

    # The eraser takes a stroke out of it on this slice; the rest stays.
    page.keyboard.press("e")
    stroke_y = cy + 3
    start, end = xy_point(canvas, cx - 6, stroke_y), xy_point(canvas, cx + 6, stroke_y)
    page.mouse.move(canvas["x"] + start["x"], canvas["y"] + start["y"])
    page.mouse.down()
    page.mouse.move(canvas["x"] + end["x"], canvas["y"] + end["y"], steps=8)
    page.mouse.up()
    corrected = volume(page)
    assert (corrected[cz, stroke_y, cx - 4 : cx + 5] == 0).all()
    assert (corrected[cz + 3] == accepted[cz + 3]).all()  # other slices untouched
    assert 0 < (grown & (corrected == 0)).sum() < grown.sum() // 4

    # Ctrl+S stores exactly the page's voxels, with the object's provenance.
    page.keyboard.press("Control+s")
    page.wait_for_function("() => annotome.paint.version() === 1", timeout=10_000)
    assert (stored(row) == corrected).all()
    objects = page.request.get(
        f"{live_server.url}/api/v1/annotation/assignments/{row.pk}/labels/objects/"
    ).json()["objects"]
    assert [(o["segment_id"], o["provenance"]) for o in objects] == [
        (object_id, {"source": "click", "proposal_source": "watershed"})
    ]

    # Propose all: the job runs on the worker, the bar shows, then the proposals one by one.
    page.click("[data-assist=propose]")
    page.wait_for_function(
        "() => annotome.assist().queue() !== null && annotome.assist().queue().counts.total > 0",
        timeout=60_000,
    )
    counts = page.evaluate("() => annotome.assist().queue().counts")
    assert counts["pending"] == counts["total"] >= 2
    # The clicked nucleus is painted already: propose-all's copy of it is left out.
    assert "1 already painted, left out" in page.inner_text("[data-assist=status]")
    assert page.evaluate("() => annotome.paint.editor.proposal !== null")
    first = page.evaluate("() => annotome.paint.editor.proposal.p.id")
    page.keyboard.press("Escape")
    assert page.evaluate("() => annotome.assist().queue().counts.rejected") == 1
    second = page.evaluate("() => annotome.paint.editor.proposal.p.id")
    assert second != first
    before = volume(page)
    page.keyboard.press("Enter")
    after = volume(page)
    new_ids = set(np.unique(after[after != before]).tolist()) - {0}
    assert len(new_ids) == 1
    assert page.evaluate("() => annotome.assist().queue().counts.accepted") == 1
    assert page.evaluate("() => annotome.paint.editor.provenanceNow()")[str(new_ids.pop())] == {
        "source": "proposal",
        "proposal_source": "watershed",
    }
    assert "accepted" in page.inner_text("[data-assist=status]")
    page.screenshot(path=str(artifacts_dir / "label-assist-propose.png"))
    assert [f for f in failed if not f.startswith("404")] == []
