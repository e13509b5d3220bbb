"""The thresholds page and the dashboard in real Chromium: a threshold line dragged with the
mouse changes precision and recall to what this test computes from the database; Fit draws
the pipeline's thresholds; Save stores them as the layer's filter (read back through the API);
the dashboard draws its plots and shows a verdict given through the API without a reload."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from django.contrib.auth import get_user_model
from rest_framework.test import APIClient

from pipeline.detections import DETECTION_COLUMNS
from pipeline.thresholds import fit_thresholds_from_verdicts
from webapp.datasets.models import Dataset, JobStatus, Layer, LayerKind, Visibility
from webapp.detections.builds import detections_replace
from webapp.detections.filters import FilterValues, layer_filter_set
from webapp.detections.models import DetectionBuild
from webapp.proofreading import services
from webapp.proofreading.models import CampaignItem, ItemStatus, ProofreadingCampaign
from webapp.proofreading.services import CampaignSettings
from webapp.proofreading.thresholds import verdict_table
from webapp.proofreading.verdict_sets import threshold_classes

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]
PASSWORD = "plots-pass-123"
N = 400
SHOTS = Path("/tmp/plots-shots")


def login(page: Any, url: str, username: str, next_path: str) -> None:
    page.goto(f"{url}/accounts/login/?next={next_path}")
    page.fill("#id_username", username)
    page.fill("#id_password", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(f"**{next_path}")


def detections_frame(n: int, seed: int = 4) -> pd.DataFrame:
    """``n`` objects: volumes log-uniform over 1-1000 um^3, sphericity 0.2-1, spread in space."""
    rng = np.random.default_rng(seed)
    centre = rng.uniform(10, 90, size=(n, 3))
    data: dict[str, Any] = {
        "segment_id": np.arange(1, n + 1),
        "voxels": rng.integers(10, 10_000, n),
        "volume": 10 ** rng.uniform(0, 3, n),
        "surface_area": rng.uniform(1, 100, n),
        "sphericity": rng.uniform(0.2, 1.0, n),
        "mean_intensity": rng.uniform(0, 1000, n),
        "mean_probability": np.full(n, np.nan),
    }
    for axis, name in enumerate("zyx"):
        data[f"centroid_{name}"] = centre[:, axis]
        data[f"centroid_{name}_um"] = centre[:, axis]
        data[f"bbox_{name}0"] = (centre[:, axis] - 3).astype(int)
        data[f"bbox_{name}1"] = (centre[:, axis] + 3).astype(int)
        data[f"bbox_{name}0_um"] = centre[:, axis] - 3.5
        data[f"bbox_{name}1_um"] = centre[:, axis] + 2.5
    return pd.DataFrame(data, columns=list(DETECTION_COLUMNS))


def verdicts_for(frame: pd.DataFrame, seed: int = 9) -> dict[int, str]:
    """Mostly: big round objects are true positives, small or flat ones false positives; some
    noise, some distortion, some uncertain; a quarter left undecided."""
    rng = np.random.default_rng(seed)
    out: dict[int, str] = {}
    for row in frame.itertuples():
        if rng.random() < 0.25:
            continue
        good = row.volume > 30 and row.sphericity > 0.5
        if rng.random() < 0.1:
            good = not good
        if rng.random() < 0.08:
            out[int(row.segment_id)] = "uncertain"
        elif good:
            out[int(row.segment_id)] = "tp_distortion" if rng.random() < 0.3 else "tp"
        else:
            out[int(row.segment_id)] = "fp"
    return out


def make_world() -> tuple[Any, ProofreadingCampaign, dict[int, str]]:
    users = get_user_model().objects
    owner = users.create_user("owner", password=PASSWORD)
    users.create_user("rev", password=PASSWORD)
    users.create_user("rev2", password=PASSWORD)
    dataset = Dataset.objects.create(
        name="Plots", slug="plots", owner=owner, visibility=Visibility.PUBLIC
    )
    layer = Layer.objects.create(
        dataset=dataset,
        name="nuclei",
        kind=LayerKind.SEGMENTATION,
        path="image.ome.zarr/labels/nuclei",
        ngff_version="0.5",
        shape=[100, 100, 100],
        axes=["z", "y", "x"],
        dtype="uint32",
        voxel_size=[1000.0, 1000.0, 1000.0],
        unit="nanometer",
    )
    frame = detections_frame(N)
    build = DetectionBuild.objects.create(
        layer=layer, owner=owner, status=JobStatus.RUNNING, attempts=1
    )
    detections_replace(layer, build, frame)
    DetectionBuild.objects.filter(id=build.id).update(
        status=JobStatus.SUCCEEDED, n_detections=N, finished=build.created
    )
    campaign = services.campaign_create(
        owner,
        layer,
        CampaignSettings(name="Plots test", seed=3),
        members=[("rev", "reviewer"), ("rev2", "reviewer")],
    )
    verdicts = verdicts_for(frame)
    for name in ("tp", "tp_distortion", "fp", "uncertain"):
        CampaignItem.objects.filter(
            campaign=campaign, segment_id__in=[s for s, v in verdicts.items() if v == name]
        ).update(status=ItemStatus.DECIDED, verdict=name, verdict_source="first_round")
    return owner, campaign, verdicts


def expected_scores(
    campaign: ProofreadingCampaign, verdicts: dict[int, str], bounds: dict[str, Any]
) -> tuple[float | None, float | None]:
    """Precision and recall of ``bounds`` computed here from the database, not by the page."""
    rows = CampaignItem.objects.filter(campaign=campaign, status=ItemStatus.DECIDED).values_list(
        "segment_id", "detection__volume", "detection__sphericity"
    )
    tp = fp = positives = 0
    for segment_id, volume, sphericity in rows:
        verdict = verdicts[segment_id]
        if verdict == "uncertain":
            continue
        kept = (
            (bounds["volumeMin"] is None or volume >= bounds["volumeMin"])
            and (bounds["volumeMax"] is None or volume <= bounds["volumeMax"])
            and (bounds["sphericityMin"] is None or sphericity >= bounds["sphericityMin"])
        )
        positive = verdict in ("tp", "tp_distortion")
        positives += positive
        tp += kept and positive
        fp += kept and not positive
    precision = tp / (tp + fp) if tp + fp else None
    recall = tp / positives if positives else None
    return precision, recall


def shown(page: Any) -> tuple[str, str]:
    return page.inner_text("#score-precision"), page.inner_text("#score-recall")


def fmt(value: float | None) -> str:
    return "\u2013" if value is None else f"{value:.3f}"  # an en dash, as the page


def drag(page: Any, selector: str, dx: float, dy: float) -> None:
    box = page.locator(selector).bounding_box()
    assert box is not None, selector
    x, y = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
    page.mouse.move(x, y)
    page.mouse.down()
    page.mouse.move(x + dx / 2, y + dy / 2, steps=5)
    page.mouse.move(x + dx, y + dy, steps=5)
    page.mouse.up()


def test_thresholds_page_drag_fit_and_save(
    live_server: Any, browser_context: Any, artifacts_dir: Path
) -> None:
    owner, campaign, verdicts = make_world()
    layer_filter_set(
        campaign.layer, owner, FilterValues(volume_min=5.0, sphericity_min=0.3), source="test"
    )
    SHOTS.mkdir(parents=True, exist_ok=True)
    page = browser_context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    login(page, live_server.url, "owner", f"/proofreading/{campaign.id}/thresholds/")
    page.evaluate("() => annotome.ready")
    page.wait_for_function("() => annotome.draws() > 0")
    assert page.locator("#thresholds-plot canvas").count() == 1
    assert "left out of P/R" in page.inner_text("#thresholds-legend")
    assert "Uncertain verdicts are left out" in page.inner_text("#score-note")

    bounds = page.evaluate("() => annotome.bounds()")
    assert bounds == {"volumeMin": 5.0, "volumeMax": None, "sphericityMin": 0.3}
    assert shown(page) == tuple(map(fmt, expected_scores(campaign, verdicts, bounds)))
    page.screenshot(path=str(SHOTS / "thresholds-before.png"))

    # Drag the volume line right (towards 30 um^3) and the sphericity line up.
    before = shown(page)
    drag(page, "#line-volumeMin", 120, 0)
    moved = page.evaluate("() => annotome.bounds()")
    assert moved["volumeMin"] > 10, moved
    assert moved["sphericityMin"] == 0.3
    assert shown(page) == tuple(map(fmt, expected_scores(campaign, verdicts, moved)))
    assert shown(page) != before
    drag(page, "#line-sphericityMin", 0, -100)
    moved = page.evaluate("() => annotome.bounds()")
    assert moved["sphericityMin"] > 0.4, moved
    assert shown(page) == tuple(map(fmt, expected_scores(campaign, verdicts, moved)))
    # The input shows the dragged value.
    assert float(page.input_value("#t-sphericity-min")) == pytest.approx(
        moved["sphericityMin"], rel=1e-5
    )
    page.screenshot(path=str(SHOTS / "thresholds-dragged.png"))

    # Fit: the pipeline's search on the verdicts, drawn at once.
    page.fill("#fit-min-recall", "0.9")
    page.click("#fit-button")
    page.wait_for_selector("#fit-status[data-fitted='1']")
    fit = fit_thresholds_from_verdicts(
        verdict_table(campaign), classes=threshold_classes(campaign.verdict_set), min_recall=0.9
    )
    fitted = page.evaluate("() => annotome.bounds()")
    assert fitted == {
        "volumeMin": fit.t_volume,
        "volumeMax": None,
        "sphericityMin": fit.t_sphericity,
    }
    assert fit.scores is not None
    assert shown(page) == (fmt(fit.scores.precision), fmt(fit.scores.recall))
    assert shown(page) == tuple(map(fmt, expected_scores(campaign, verdicts, fitted)))
    assert fit.scores.recall >= 0.9

    page.click("#save-button")
    page.wait_for_selector("#save-status[data-saved]")
    stored = APIClient()
    stored.force_authenticate(owner)
    answer = stored.get("/api/v1/datasets/plots/layers/nuclei/detections/filter/").json()
    assert answer["filter"]["volume_min"] == fit.t_volume
    assert answer["filter"]["sphericity_min"] == fit.t_sphericity
    assert answer["filter"]["volume_max"] is None
    assert answer["filter"]["created_by"] == "owner"
    assert [h["source"] for h in answer["history"]][1] == "test"
    page.screenshot(path=str(SHOTS / "thresholds-fitted.png"), full_page=True)
    assert errors == []


def test_dashboard_draws_plots_and_follows_verdicts(
    live_server: Any, browser_context: Any, artifacts_dir: Path
) -> None:
    _, campaign, _ = make_world()
    SHOTS.mkdir(parents=True, exist_ok=True)
    reviewer = get_user_model().objects.get(username="rev")
    api = APIClient()
    api.force_authenticate(reviewer)
    base = f"/api/v1/proofreading/campaigns/{campaign.id}/"

    def verdict(value: str) -> None:
        handed = api.post(f"{base}next/", {"count": 1}, format="json")
        assert handed.status_code == 200, handed.content
        item = handed.json()[0]["item"]["id"]
        given = api.post(f"{base}verdicts/", {"item": item, "verdict": value}, format="json")
        assert given.status_code == 201, given.content

    verdict("tp")
    decided = CampaignItem.objects.filter(campaign=campaign, status=ItemStatus.DECIDED).count()
    page = browser_context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    # The campaign list links the manager to both reports; the dashboard opens from it.
    login(page, live_server.url, "owner", "/proofreading/")
    row = page.locator(f"tr[data-campaign='{campaign.id}']")
    assert row.locator("a", has_text="Thresholds").count() == 1
    page.screenshot(path=str(SHOTS / "campaign-list.png"), full_page=True)
    row.locator("a", has_text="Dashboard").click()
    page.wait_for_url(f"**/proofreading/{campaign.id}/dashboard/")
    page.evaluate("() => annotome.ready")
    assert page.inner_text("#progress-text").startswith(f"{decided} of {N} decided")
    for plot in ("status", "verdict", "round", "decisions", "seconds", "agreement"):
        assert page.locator(f"#plot-{plot} canvas").count() == 1, plot
    assert "Fleiss' kappa" in page.inner_text("#fleiss-text")
    decisions = page.evaluate("() => annotome.charts.decisions.values()")
    assert decisions == {"rev": 1, "rev2": 0}
    assert page.get_attribute("#dashboard-csv", "href") == f"{base}dashboard.csv"
    page.screenshot(path=str(SHOTS / "dashboard-before.png"), full_page=True)

    refreshes = page.evaluate("() => annotome.refreshes()")
    verdict("fp")
    page.wait_for_function(
        "(n) => document.querySelector('#progress-text').textContent.startsWith(n + ' of')",
        arg=decided + 1,
        timeout=15_000,
    )
    assert page.evaluate("() => annotome.refreshes()") > refreshes
    assert page.evaluate("() => annotome.charts.decisions.values()") == {"rev": 2, "rev2": 0}
    rows = page.inner_text("#reviewer-table tbody").splitlines()
    assert [r.split("\t")[:3] for r in rows if r.startswith("rev\t")] == [["rev", "reviewer", "2"]]
    page.screenshot(path=str(SHOTS / "dashboard-after.png"), full_page=True)
    assert errors == []


def test_report_pages_for_other_roles(live_server: Any, browser_context: Any) -> None:
    _, campaign, _ = make_world()
    get_user_model().objects.create_user("outsider", password=PASSWORD)
    page = browser_context.new_page()
    login(page, live_server.url, "rev", "/proofreading/")
    # The list links the reports only for managers and experts.
    assert page.locator("text=Dashboard").count() == 0
    for tail in ("thresholds/", "dashboard/"):
        assert page.goto(f"{live_server.url}/proofreading/{campaign.id}/{tail}").status == 403
    page.context.clear_cookies()
    login(page, live_server.url, "outsider", "/proofreading/")
    for tail in ("thresholds/", "dashboard/"):
        assert page.goto(f"{live_server.url}/proofreading/{campaign.id}/{tail}").status == 404
