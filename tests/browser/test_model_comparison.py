"""The model comparison page in real Chromium: three model versions made directly (no training;
their layers copies of a real label image, so Neuroglancer loads them), reached from the
viewer's "Models" link. The latest two are ticked and plotted per held-out box as uPlot bars
(a box only some versions were evaluated on has bars for those only); ticking and unticking
versions and choosing another score redraws the plot; "Compare in viewer" opens the viewer
with both versions' layers shown; the owner makes a version current and opens a proofreading
campaign on one (refused with the reason while its detections are missing). No page throws."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from nuclei_dataset import build_nuclei_dataset

from tests.models_testdata import add_model_version
from tests.webapp.proofreading.proofreading_testdata import synthetic_frame, table_with
from webapp.datasets.models import Visibility

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]
READY_MS = 90_000
PASSWORD = "models-pass-123"


def plotted(page: Any, chart: str = "perBoxChart") -> dict[str, Any]:
    """What uPlot holds: the series' labels and, per series, its non-null values."""
    return page.evaluate(
        """(chart) => {
          const c = annotome[chart];
          const data = c.plotData();
          const labels = c.seriesLabels();
          return {
            categories: c.drawn().categories,
            series: Object.fromEntries(labels.map((l, i) =>
              [l, data[i + 1].filter((v) => v !== null)])),
          };
        }""",
        chart,
    )


def test_compare_versions_per_box_and_open_both_in_the_viewer(
    live_server: Any, browser_context: Any, artifacts_dir: Path
) -> None:
    owner = get_user_model().objects.create_user("owner", password=PASSWORD)
    dataset = build_nuclei_dataset(
        owner, slug="compare", shape=(48, 64, 64), n_nuclei=8, visibility=Visibility.PRIVATE
    )
    nuclei = dataset.layers.get(name="nuclei")
    v1 = add_model_version(
        dataset, 1, per_box_all={"b1": (1, 2, 3), "b2": (2, 1, 2)}, labels_from=nuclei,
        per_box_filtered={"b1": (1, 0, 3), "b2": (2, 0, 2)},
    )  # fmt: skip
    v2 = add_model_version(
        dataset, 2, per_box_all={"b1": (3, 1, 1), "b2": (3, 0, 1), "b10": (2, 2, 0)},
        per_box_filtered={"b1": (3, 0, 1), "b2": (3, 0, 1), "b10": (2, 0, 0)},
        labels_from=nuclei,
    )  # fmt: skip
    v3 = add_model_version(
        dataset, 3, per_box_all={"b2": (4, 0, 0), "b10": (1, 0, 1), "b12": (3, 1, 0)},
        per_box_filtered={"b2": (4, 0, 0), "b10": (1, 0, 1), "b12": (3, 0, 0)},
        labels_from=nuclei,
    )  # fmt: skip
    page = browser_context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))

    viewer_path = f"/datasets/{dataset.slug}/"
    page.goto(f"{live_server.url}/accounts/login/?next={viewer_path}")
    page.fill("#id_username", "owner")
    page.fill("#id_password", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(f"**{viewer_path}")
    page.click("#models-link")
    page.wait_for_url(f"**/datasets/{dataset.slug}/models/")
    page.evaluate("() => annotome.ready")
    assert page.locator("#models-table tbody tr").count() == 3
    # "Created" in the reader's locale, as the scripts write dates (the server's fallback is
    # "2026-12-06 11:56").
    created = page.locator(f"tr[data-model='{v1.pk}'] time.when")
    assert created.inner_text() == page.evaluate(
        """(iso) => new Date(iso).toLocaleString(undefined,
             { dateStyle: "medium", timeStyle: "short" })""",
        created.get_attribute("datetime"),
    )

    # The latest two are ticked and drawn, boxes in natural order, bars where evaluated.
    assert page.evaluate("() => annotome.chosen()") == [v2.pk, v3.pk]
    assert page.locator("input.model-choose:checked").count() == 2
    drawn = plotted(page)
    assert drawn["categories"] == ["b1", "b2", "b10", "b12"]
    rounded = {k: [round(x, 3) for x in v] for k, v in drawn["series"].items()}
    assert rounded == {"v2": [0.75, 0.857, 0.667], "v3": [1.0, 0.667, 0.857]}
    assert page.locator("#models-per-box canvas").count() == 1
    assert page.locator("#models-per-box").get_attribute("data-bars") == '{"v2":3,"v3":3}'
    assert page.locator("#models-per-box").get_attribute("data-labelled") == "6"  # values
    overall = plotted(page, "overallChart")
    assert overall["categories"] == ["v2", "v3"]
    assert list(overall["series"]) == ["all objects", "after the filter"]
    assert len(overall["series"]["all objects"]) == 2
    page.screenshot(path=str(artifacts_dir / "models-page.png"), full_page=True)

    # Tick v1: a third series; untick v3: box b12 (held out by v3 only) goes.
    page.check(f"tr[data-model='{v1.pk}'] input.model-choose")
    assert list(plotted(page)["series"]) == ["v1", "v2", "v3"]
    assert len(page.evaluate("() => annotome.perBoxChart.plotData()")) == 4
    page.uncheck(f"tr[data-model='{v3.pk}'] input.model-choose")
    drawn = plotted(page)
    assert drawn["categories"] == ["b1", "b2", "b10"]
    assert {k: len(v) for k, v in drawn["series"].items()} == {"v1": 2, "v2": 3}
    # Another score: precision after the filter (no false positive left: all 1).
    page.select_option("#models-metric", "precision")
    page.select_option("#models-variant", "filtered")
    assert plotted(page)["series"] == {"v1": [1, 1], "v2": [1, 1, 1]}
    page.screenshot(path=str(artifacts_dir / "models-page-toggled.png"), full_page=True)

    # Back to v2 and v3; "Compare in viewer" shows both layers.
    page.check(f"tr[data-model='{v3.pk}'] input.model-choose")
    page.uncheck(f"tr[data-model='{v1.pk}'] input.model-choose")
    link = page.locator("#models-compare-viewer")
    assert link.is_visible()
    assert link.get_attribute("href") == f"{viewer_path}?show=model-v3,model-v2"
    link.click()
    page.wait_for_url(f"**{viewer_path}?show=model-v3,model-v2")
    assert page.evaluate("() => annotome.ready.then((r) => r.errors)") == []
    state = page.evaluate("() => annotome.viewer().state.toJSON()")
    shown = {la["name"]: la.get("visible", True) for la in state["layers"]}
    assert shown["model-v2"] is True and shown["model-v3"] is True, shown
    archived = {la["name"] for la in state["layers"] if la.get("archived")}
    assert {"model-v1", "nuclei"} <= archived and not {"model-v2", "model-v3"} & archived
    assert state["selectedLayer"]["layer"] == "model-v3"
    # Side by side: a row of two viewers, each with the image and one version, both drawn.
    layout = state["layout"]
    assert layout["type"] == "row", layout
    assert [child["layers"][-1] for child in layout["children"]] == ["model-v3", "model-v2"]
    assert all(child["layers"][:-1] == ["image"] for child in layout["children"]), layout
    frame = page.frame_locator("#neuroglancer")
    assert frame.locator(".neuroglancer-layer-group-viewer").count() == 2
    panels = frame.locator(".neuroglancer-layer-group-viewer .neuroglancer-rendered-data-panel")
    assert panels.count() == 8  # four panels (xy, xz, yz, 3D) in each
    loaded = page.evaluate(
        """(names) => names.map((n) => {
          const layer = annotome.viewer().layerManager.getLayerByName(n);
          return layer.layer.dataSources.every((s) => s.loadState && !s.loadState.error);
        })""",
        ["model-v2", "model-v3"],
    )
    assert loaded == [True, True]
    page.wait_for_function("() => annotome.viewer().isReady()", timeout=READY_MS)
    page.screenshot(path=str(artifacts_dir / "models-viewer.png"))

    # The owner makes v2 the current model, then opens a proofreading campaign on a version:
    # refused with the reason while its detections table is missing, opened once it exists.
    page.goto(f"{live_server.url}/datasets/{dataset.slug}/models/")
    page.evaluate("() => annotome.ready")
    assert page.locator(".model-current").count() == 0
    page.click(f"tr[data-model='{v2.pk}'] button.model-make-current")
    page.wait_for_selector(f"tr[data-model='{v2.pk}'] .model-current")
    assert page.locator(".model-current").count() == 1
    assert page.locator(f"tr[data-model='{v2.pk}'] button.model-make-current").count() == 0
    page.click(f"tr[data-model='{v3.pk}'] button.model-proofread")
    page.wait_for_selector("#models-error:not([hidden])")
    assert "no detections table yet" in page.inner_text("#models-error")
    table_with(v2.layer, synthetic_frame(12, seed=4))
    page.click(f"tr[data-model='{v2.pk}'] button.model-proofread")
    page.wait_for_url("**/proofreading/*/")
    assert "Proofread model v2" in page.inner_text("main")
    flash = page.locator("li.flash")
    assert "a new proofreading campaign of 12 detections" in flash.inner_text()
    page.screenshot(path=str(artifacts_dir / "models-proofreading.png"))
    # Again: the open campaign, said so on its page (the models page had no time to).
    campaign_url = page.url
    page.go_back()
    page.evaluate("() => annotome.ready")
    page.click(f"tr[data-model='{v2.pk}'] button.model-proofread")
    page.wait_for_url(campaign_url)
    assert "was already open" in page.locator("li.flash").inner_text()
    assert errors == [], errors
