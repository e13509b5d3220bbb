"""A reviewer counts disector pairs in the browser: the campaign list links the studies, the
counting page opens on the first pair's reference section, M marks the object under the mouse,
the mark is labelled matched or unmatched and drawn as an annotation, Tab flips to the look-up
section, N counts the pair, and the estimate panel follows."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from django.contrib.auth import get_user_model
from nuclei_dataset import build_nuclei_dataset
from site_login import log_in

from pipeline.ome_zarr_io import open_spatial_level
from webapp.datasets.models import Layer, LayerKind, Visibility
from webapp.detections.services import detections_build_now
from webapp.proofreading import services as proofreading_services
from webapp.proofreading.services import CampaignSettings
from webapp.stereology import services
from webapp.stereology.models import DisectorMark, PairCount

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]
READY_MS = 90_000
PASSWORD = "disector-pass-123"


def login(page: Any, url: str, username: str, next_path: str) -> None:
    log_in(page, url, username, PASSWORD, next_path)


def hover_voxel(page: Any, z: int, y: int, x: int) -> None:
    """Centre the view on voxel (z, y, x) and put the mouse on the panel's centre."""
    page.evaluate("(p) => annotome.viewer().state.restoreState({position: p})", [x, y, z])
    panel = page.frame_locator("#neuroglancer").locator(".neuroglancer-rendered-data-panel")
    box = panel.first.bounding_box()
    page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
    page.wait_for_function(
        """(p) => { const m = annotome.viewer().mouseState;
             return m.active && Math.abs(m.position[0] - p[0]) < 1
               && Math.abs(m.position[1] - p[1]) < 1; }""",
        arg=[x, y],
    )


def test_reviewer_marks_objects_and_sees_matches_and_the_estimate(
    live_server: Any, browser_context: Any, settings: Any, artifacts_dir: Path
) -> None:
    settings.NEUROGLANCER_EVENTS_MAX_SECONDS = 20
    users = get_user_model().objects
    owner = users.create_user("owner", password=PASSWORD)
    rev = users.create_user("rev", password=PASSWORD)
    dataset = build_nuclei_dataset(owner, slug="nuclei", visibility=Visibility.PUBLIC)
    layer = Layer.objects.get(dataset=dataset, kind=LayerKind.SEGMENTATION)
    detections_build_now(layer)
    campaign = proofreading_services.campaign_create(
        owner, layer, CampaignSettings(name="Disector test"), members=[("rev", "reviewer")]
    )
    # 96 sections of 0.2 um: h = 2 um is 10 sections.
    study = services.study_create(owner, campaign, name="Miss rate", n_pairs=4, h_um=2, seed=1)
    first = study.pairs[0]
    labels = np.asarray(open_spatial_level(dataset.root / layer.path).array[first["reference"]])
    # An object of the reference section, at its pixel farthest inside; and background.
    ids, sizes = np.unique(labels[labels > 0], return_counts=True)
    obj = int(ids[np.argmax(sizes)])
    from scipy import ndimage

    inside = ndimage.distance_transform_edt(labels == obj)
    y_obj, x_obj = (int(v) for v in np.unravel_index(np.argmax(inside), inside.shape))
    outside = ndimage.distance_transform_edt(labels == 0)
    y_bg, x_bg = (int(v) for v in np.unravel_index(np.argmax(outside), outside.shape))

    page = browser_context.new_page()
    failed: list[str] = []
    page.on(
        "response",
        lambda r: (
            failed.append(f"{r.status} {r.url}") if r.status >= 400 and "/c/" not in r.url else None
        ),
    )
    login(page, live_server.url, "rev", "/proofreading/")
    page.click(f"a[href='/stereology/campaigns/{campaign.id}/']")
    page.wait_for_url(f"**/stereology/campaigns/{campaign.id}/")
    assert page.locator("#study-form").count() == 0  # reviewers do not create studies
    page.click(f"a[href='/stereology/{study.id}/']")
    page.wait_for_url(f"**/stereology/{study.id}/")
    assert page.evaluate("() => annotome.ready.then((r) => r.errors)") == []
    page.wait_for_function("() => annotome.viewer().isReady()", timeout=READY_MS)
    position = page.evaluate("() => annotome.viewer().state.toJSON().position")
    assert position[2] == pytest.approx(first["reference"])
    assert "Pair 1 / 4" in page.inner_text("#disector-where")
    assert "REFERENCE" in page.inner_text("#disector-where")
    page.screenshot(path=str(artifacts_dir / "disector-open.png"))

    page.click("#disector-panel h2")  # keys go to the page
    hover_voxel(page, first["reference"], y_obj, x_obj)
    page.keyboard.press("m")
    page.wait_for_function("() => annotome.marks().length === 1")
    page.wait_for_selector("#disector-marks li.mark-matched")
    assert page.inner_text("#disector-marks li .mark-label") == f"matched: segment {obj}"
    page.wait_for_function(
        "() => document.getElementById('disector-estimate').dataset.qMinus === '1'"
    )
    hover_voxel(page, first["reference"], y_bg, x_bg)
    page.keyboard.press("m")
    page.wait_for_selector("#disector-marks li.mark-unmatched")
    assert "unmatched: no detection" in page.inner_text("#disector-marks")
    page.wait_for_function(
        "() => document.getElementById('disector-estimate').dataset.qMinus === '2'"
    )
    estimate = page.inner_text("#disector-estimate")
    assert "Pooled" in estimate and "2 (1 detected)" in estimate
    assert "Miss rate of the counted objects" in estimate and "50.0 %" in estimate
    # Two objects: D / N and 1 - D / N are withheld, not shown as 1000 % and -900 %.
    assert "not enough counted objects yet (2 counted; at least 10 needed)" in estimate
    assert "\u2013 \u2013" not in estimate and "-" not in estimate.split("Detections")[1]
    page.locator("#disector-estimate").screenshot(path=str(artifacts_dir / "disector-estimate.png"))
    # The marks are points in the two annotation layers.
    counts = page.evaluate(
        """() => ['disector: detected', 'disector: missed'].map((n) =>
             [...annotome.viewer().layerManager.getLayerByName(n).layer.localAnnotations].length)"""
    )
    assert counts == [1, 1]
    page.screenshot(path=str(artifacts_dir / "disector-reference.png"))

    page.keyboard.press("Tab")
    page.wait_for_function("() => annotome.side() === 'lookup'")
    position = page.evaluate("() => annotome.viewer().state.toJSON().position")
    assert position[2] == pytest.approx(first["lookup"])
    assert position[1] == pytest.approx(y_bg)  # flipped in place
    assert "LOOK-UP" in page.inner_text("#disector-where")
    page.screenshot(path=str(artifacts_dir / "disector-lookup.png"))
    page.keyboard.press("m")  # refused on the look-up section
    page.wait_for_selector("#disector-error:not([hidden])")
    assert "reference section" in page.inner_text("#disector-error")

    page.keyboard.press("n")  # counts pair 1, goes to pair 2's reference
    page.wait_for_function("() => annotome.pair() === 1 && annotome.side() === 'reference'")
    page.evaluate("() => annotome.settled()")
    assert "1 counted" in page.inner_text("#disector-where")
    page.keyboard.press("n")  # pair 2 counted with no marks (Q- = 0)
    page.wait_for_function("() => annotome.pair() === 2")
    page.evaluate("() => annotome.settled()")
    page.wait_for_function(
        "() => document.getElementById('disector-counted').textContent.includes('counted 2 of 4')"
    )
    assert "Pairs counted2" in page.inner_text("#disector-estimate").replace("\t", "").replace(
        "\n", ""
    )
    page.screenshot(path=str(artifacts_dir / "disector-after.png"))
    assert page.is_hidden("#disector-error")
    assert not failed, failed

    marks = DisectorMark.objects.filter(study=study, reviewer=rev).order_by("id")
    assert [(m.segment_id, m.matched) for m in marks] == [(obj, True), (None, False)]
    assert sorted(PairCount.objects.filter(study=study).values_list("pair", flat=True)) == [0, 1]
