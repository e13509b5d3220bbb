"""The annotation campaign's dashboard in real Chromium: with tasks taken, saved, submitted,
approved and rejected through the services, the manager opens the dashboard, its uPlot plots
draw and its table shows each annotator's figures; an approval made through the API then
appears on the page without a reload (the page polls)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from rest_framework.test import APIClient

from tests.model_factories import DatasetFactory, LayerFactory
from webapp.annotation import services
from webapp.annotation.models import Assignment, Role

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]
PASSWORD = "dash-pass-123"


def login(page: Any, url: str, username: str, next_path: str) -> None:
    page.goto(f"{url}/accounts/login/?next={next_path}")
    page.fill("#id_username", username)
    page.fill("#id_password", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(f"**{next_path}")


def point(uid: str, box: Any, dy: int = 0) -> dict[str, Any]:
    centre = [s + n // 2 for s, n in zip(box.start, box.size, strict=True)]
    return {"op": "upsert", "uid": uid, "kind": "point", "label": "nucleus",
            "coords": [[centre[0], centre[1] + dy, centre[2]]]}  # fmt: skip


def make_world() -> tuple[Any, dict[str, Any]]:
    users = get_user_model().objects
    people = {
        name: users.create_user(name, password=PASSWORD) for name in ("owner", "ann1", "ann2", "rv")
    }
    dataset = DatasetFactory(owner=people["owner"], visibility="public")
    layer = LayerFactory(dataset=dataset, shape=[20, 64, 64])
    spec = services.CampaignSpec(name="Nuclei", box_size_um=[4.0, 6.4, 6.4], redundancy=2)
    campaign = services.campaign_create(people["owner"], dataset, layer, spec)
    for name in ("ann1", "ann2"):
        services.member_add(campaign, people["owner"], name, Role.ANNOTATOR)
    services.member_add(campaign, people["owner"], "rv", Role.REVIEWER)
    services.boxes_tile(campaign, people["owner"])  # 8 boxes, 16 slots
    for name, points in (("ann1", 3), ("ann2", 2)):
        row = services.next_task(campaign, people[name])
        assert row is not None
        services.save(row, people[name], 0, [point(f"p{i}", row.box, i) for i in range(points)])
        services.submit(row, people[name], 1)
    first = Assignment.objects.get(box__campaign=campaign, annotator=people["ann1"])
    services.approve(first, people["rv"])
    return campaign, people


def test_dashboard_draws_plots_and_follows_an_approval(
    live_server: Any, browser_context: Any, artifacts_dir: Path
) -> None:
    campaign, people = make_world()
    page = browser_context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    path = f"/annotation/{campaign.id}/dashboard/"
    login(page, live_server.url, "owner", path)
    page.evaluate("() => annotome.ready")
    assert page.inner_text("#progress-text").startswith("0 of 8 boxes complete")
    for plot in ("boxes", "slots", "timeline", "approved", "minutes", "rejections"):
        assert page.locator(f"#plot-{plot} canvas").count() == 1, plot
        assert page.locator(f"#plot-{plot} .uplot").count() == 1, plot
    assert page.evaluate("() => annotome.charts.slots.values()") == {
        "todo": 14,
        "in progress": 0,
        "submitted": 1,
        "approved": 1,
        "rejected": 0,
    }
    assert page.evaluate("() => annotome.charts.approved.values()") == {"ann1": 1, "ann2": 0}
    rows = page.inner_text("#annotator-table tbody").splitlines()
    cells = {r.split("\t")[0]: r.split("\t")[1:7] for r in rows}
    # tasks, in progress, submitted, approved, rejected, objects
    assert cells == {"ann1": ["1", "0", "0", "1", "0", "3"], "ann2": ["1", "0", "1", "0", "0", "2"]}
    # Both annotators handed in the first box: its agreement (3 points against 2, the 2 within
    # the tolerance: F1 0.8) is plotted, and the figures are shown.
    assert page.is_visible("#plot-agreement") and page.is_visible("#plot-agreement-annotators")
    bins = page.evaluate("() => annotome.charts.agreement.values()")
    assert sum(v or 0 for v in bins.values()) == 1, bins
    assert "over 1 box" in page.inner_text("#agreement-text")
    csv_href = page.get_attribute("#dashboard-csv", "href")
    assert csv_href == f"/api/v1/annotation/campaigns/{campaign.id}/dashboard.csv"
    page.screenshot(path=str(artifacts_dir / "annotation-dashboard-before.png"), full_page=True)

    refreshes = page.evaluate("() => annotome.refreshes()")
    api = APIClient()
    api.force_authenticate(people["rv"])
    base = f"/api/v1/annotation/campaigns/{campaign.id}/"
    handed = api.post(f"{base}review/next/")
    assert handed.status_code == 200 and handed.json()["annotator"] == "ann2"
    approved = api.post(
        f"/api/v1/annotation/assignments/{handed.json()['id']}/approve/", {}, format="json"
    )
    assert approved.status_code == 200, approved.content
    page.wait_for_function(
        "() => document.querySelector('#progress-text').textContent.startsWith('1 of 8')",
        timeout=15_000,
    )
    assert page.evaluate("() => annotome.refreshes()") > refreshes
    assert page.evaluate("() => annotome.charts.approved.values()") == {"ann1": 1, "ann2": 1}
    assert page.evaluate("() => annotome.charts.boxes.values()")["complete"] == 1
    timeline = page.evaluate("() => annotome.charts.timeline.values()")
    assert sum(timeline.values()) == 2
    row = page.inner_text("#annotator-table tbody tr[data-annotator='ann2']").split("\t")
    assert row[4] == "1" and row[-1].startswith("0.0 %")
    page.screenshot(path=str(artifacts_dir / "annotation-dashboard-after.png"), full_page=True)
    assert errors == []
