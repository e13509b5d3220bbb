"""The current model in the painting editor, in real Chromium: the task page says the dataset's
model v1 proposes; an Alt+click on a nucleus proposes v1's object (which, to tell it from the
image's watershed, covers only the nucleus's lower half), Enter paints exactly it, and the save
records that model v1 proposed it; "Propose all" then offers the model's other objects of the
box, naming it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import zarr
from django.contrib.auth import get_user_model
from scipy import ndimage
from test_label_editor import BOX, PASSWORD, make_campaign, open_task, stored, volume
from viewer_mouse import failed_responses

from pipeline.assist import DEFAULT_MIN_DIAMETER_NM, ball_voxels
from pipeline.box_image import read_box
from tests.models_testdata import add_model_version
from webapp.annotation.models import Assignment
from webapp.datasets.models import Layer, LayerKind
from webapp.runs.models import ModelVersion

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]
NUCLEUS_CENTRE = (48, 48, 48)  # the box is centred here; the nucleus nearest is chosen


def full_resolution(path: Path) -> Any:
    """The writable full-resolution array of the OME-Zarr image at ``path`` (0.4 or 0.5)."""
    group = zarr.open_group(str(path), mode="r+")
    attrs = group.attrs.asdict()
    multiscales = attrs.get("ome", attrs)["multiscales"]
    return group[multiscales[0]["datasets"][0]["path"]]


def test_an_alt_click_proposes_the_current_models_object(
    celery_worker: Any, live_server: Any, browser_context: Any, artifacts_dir: Path
) -> None:
    users = get_user_model().objects
    owner = users.create_user("owner", password=PASSWORD)
    ann = users.create_user("ann", password=PASSWORD)
    campaign = make_campaign(owner, ann, around=NUCLEUS_CENTRE)
    dataset = campaign.image_layer.dataset
    truth_layer = Layer.objects.get(dataset=dataset, kind=LayerKind.SEGMENTATION)
    box = campaign.boxes.get()
    truth = read_box(dataset.root / truth_layer.path, box.start, box.size)
    assert truth.shape == (BOX, BOX, BOX)
    # The nucleus nearest the box's centre; the model keeps its voxels below the centre.
    ids = [i for i in np.unique(truth) if i]
    centres = {i: ndimage.center_of_mass(truth == i) for i in ids}
    nucleus = min(ids, key=lambda i: np.linalg.norm(np.array(centres[i]) - BOX / 2))
    cz, cy, cx = (round(float(c)) for c in centres[nucleus])
    assert truth[cz, cy, cx] == nucleus
    version = add_model_version(dataset, 1, per_box_all=None, labels_from=truth_layer)
    ModelVersion.objects.filter(pk=version.pk).update(current=True)
    assert version.layer is not None
    labels = full_resolution(dataset.root / version.layer.path)
    z, y, x = (int(v) for v in box.start)
    region = np.asarray(labels[z : z + BOX, y : y + BOX, x : x + BOX])
    upper = (region == nucleus) & (np.arange(BOX)[:, None, None] > cz)
    region[upper] = 0
    labels[z : z + BOX, y : y + BOX, x : x + BOX] = region
    expected = region == nucleus
    assert 0 < expected.sum() < (truth == nucleus).sum()

    page = browser_context.new_page()
    failed = failed_responses(page)
    open_task(page, live_server.url, campaign)
    row = Assignment.objects.get(annotator=ann)
    said = page.inner_text("[data-assist=source]")
    assert said == "Proposals come from model v1, the dataset's current model.", said

    while (current := page.evaluate("() => annotome.paint.editor.slice('xy')")) != cz:
        page.keyboard.press("f" if cz > current else "d")
    canvas = page.locator("[data-paint-view=xy] canvas").bounding_box()
    assert canvas is not None
    scale = canvas["width"] / BOX
    page.locator("[data-paint-view=xy] canvas").click(
        position={"x": (cx + 0.5) * scale, "y": (cy + 0.5) * scale}, modifiers=["Alt"]
    )
    page.wait_for_function("() => annotome.paint.editor.proposal !== null", timeout=30_000)
    status = page.inner_text("[data-assist=status]")
    assert f"Object of {int(expected.sum())} voxels (model v1)" in status, status
    page.screenshot(path=str(artifacts_dir / "assist-model-proposal.png"))
    page.keyboard.press("Enter")
    painted = volume(page)
    object_id = int(painted[cz, cy, cx])
    assert object_id and np.array_equal(painted == object_id, expected)

    page.keyboard.press("Control+s")
    page.wait_for_function("() => annotome.paint.version() === 1", timeout=20_000)
    assert np.array_equal(stored(row) == object_id, expected)
    objects = page.request.get(
        f"{live_server.url}/api/v1/annotation/assignments/{row.pk}/labels/objects/"
    ).json()["objects"]
    assert [o["provenance"] for o in objects] == [
        {"source": "click", "proposal_source": "model", "model": "model v1"}
    ]
    # "Propose all" (a job on the worker): the model's other objects of the box, its source
    # still named while the annotator works through them; the accepted one is left out.
    page.click("[data-assist=propose]")
    page.wait_for_function(
        "() => /to decide of/.test(document.querySelector('[data-assist=status]').textContent)",
        timeout=120_000,
    )
    status = page.inner_text("[data-assist=status]")
    ids, sizes = np.unique(region[region > 0], return_counts=True)
    found = int((sizes >= ball_voxels(DEFAULT_MIN_DIAMETER_NM, (200.0,) * 3)).sum())
    assert status.startswith(f"{found} objects proposed (model v1). 0 accepted"), status
    assert "(1 already painted, left out)" in status, status
    # Neuroglancer probes the painted labels' zarr metadata and reads absent (all-zero) chunks.
    assert [f for f in failed if not ("/labels/v" in f and f.startswith("404"))] == []
