"""Review reports and export: point agreement, consensus and its acceptance, the ground-truth
CSV / JSON and boxes table, with permissions per role (SQLite and PostgreSQL)."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any

import pytest
from annotation_testdata import point_op
from rest_framework.test import APIClient

from pipeline.evaluation import boxes_read_csv
from webapp.annotation import services
from webapp.annotation.models import (
    AnnotationCampaign,
    Assignment,
    AuditEntry,
    BoxGroundTruth,
    TaskBox,
)

pytestmark = pytest.mark.django_db

API = "/api/v1/annotation/campaigns"
# Voxels of 0.4 x 0.2 x 0.2 um (z y x); tolerance 3 um. The first tile is (0,0,0) + (10,32,32).
A1_POINTS = [(2, 5, 5), (5, 10, 10), (8, 20, 20)]
A2_POINTS = [(2, 5, 6), (5, 10, 10), (8, 30, 5)]  # the last is 3.6 um from a1's last


def _work(
    campaign: AnnotationCampaign, user: Any, points: list[tuple[int, int, int]]
) -> Assignment:
    row = services.next_task(campaign, user)
    assert row is not None
    ops = [point_op(f"{user.username}-{k}", *p) for k, p in enumerate(points)]
    services.save(row, user, row.version, ops)
    row.refresh_from_db()
    return services.submit(row, user, row.version)


def _client(api: APIClient, user: Any) -> APIClient:
    api.force_authenticate(user)
    return api


@pytest.fixture
def submitted(
    campaign: AnnotationCampaign, people: dict[str, Any]
) -> tuple[Assignment, Assignment]:
    one = _work(campaign, people["a1"], A1_POINTS)
    two = _work(campaign, people["a2"], A2_POINTS)
    assert one.box_id == two.box_id
    return one, two


def _approve_both(people: dict[str, Any], pair: tuple[Assignment, Assignment]) -> None:
    for row in pair:
        services.approve(row, people["rv"])


def test_agreement_of_a_box_and_per_annotator(
    api: APIClient, campaign: AnnotationCampaign, people: dict[str, Any], submitted: Any
) -> None:
    body = _client(api, people["rv"]).get(f"{API}/{campaign.pk}/agreement/").json()
    assert body["boxes_compared"] == 1
    box = body["boxes"][0]
    assert box["box"] == submitted[0].box_id
    assert [a["annotator"] for a in box["annotators"]] == ["a1", "a2"]
    (pair,) = box["pairs"]
    assert (pair["reference"], pair["other"], pair["matched"]) == ("a1", "a2", 2)
    assert pair["precision"] == pair["recall"] == pair["f1"] == pytest.approx(2 / 3, abs=1e-4)
    assert pair["mean_distance_um"] == pytest.approx(0.1)
    assert {a["annotator"]: a["n_points"] for a in body["annotators"]} == {"a1": 3, "a2": 3}
    # A tighter tolerance: only the exact match.
    tight = api.get(f"{API}/{campaign.pk}/agreement/?tolerance_um=0.05").json()
    assert tight["boxes"][0]["pairs"][0]["matched"] == 1
    one_box = api.get(f"{API}/{campaign.pk}/boxes/{submitted[0].box_id}/agreement/").json()
    assert one_box["pairs"] == box["pairs"]
    assert api.get(f"{API}/{campaign.pk}/agreement/?tolerance_um=-1").status_code == 400


def test_consensus_is_of_approved_tasks_and_a_manager_accepts_it(
    api: APIClient, campaign: AnnotationCampaign, people: dict[str, Any], submitted: Any
) -> None:
    box_id = submitted[0].box_id
    url = f"{API}/{campaign.pk}/boxes/{box_id}/consensus/"
    before = _client(api, people["owner"]).get(url).json()
    assert (before["pending"], before["points"], before["quorum"]) == (2, [], 2)
    assert api.post(url, {}, format="json").status_code == 409  # nothing approved yet
    _approve_both(people, submitted)
    body = api.get(url).json()
    assert body["annotators"] == ["a1", "a2"]
    assert [(p["zyx"], p["support"]) for p in body["points"]] == [
        ([2.0, 5.0, 5.5], 2),
        ([5.0, 10.0, 10.0], 2),
    ]
    assert body["points"][0]["zyx_um"] == pytest.approx([0.8, 1.0, 1.1])
    assert len(api.get(url + "?quorum=1").json()["points"]) == 4
    assert api.get(url + "?quorum=3").status_code == 400
    # Reviewers read it but do not accept it.
    rv = APIClient()
    rv.force_authenticate(people["rv"])
    assert rv.get(url).status_code == 200
    assert rv.post(url, {}, format="json").status_code == 403
    accepted = api.post(url, {}, format="json")
    assert accepted.status_code == 200, accepted.content
    assert accepted.json()["accepted"]["count"] == 2
    truth = BoxGroundTruth.objects.get(box_id=box_id)
    assert (truth.quorum, truth.tolerance_um, truth.accepted_by) == (2, 3.0, people["owner"])
    assert [p["coords"] for p in truth.points] == [[[2.0, 5.0, 5.5]], [[5.0, 10.0, 10.0]]]
    # The boxes list says which box has an accepted consensus, and of how many points.
    boxes = {b["id"]: b for b in api.get(f"{API}/{campaign.pk}/boxes/?limit=100").json()["results"]}
    assert boxes.pop(box_id)["consensus_points"] == 2
    assert {b["consensus_points"] for b in boxes.values()} == {None}
    entry = AuditEntry.objects.get(campaign=campaign, action="consensus.accept")
    assert entry.box_id == box_id and entry.detail["points"] == 2
    # Accepting again with quorum 1 replaces it.
    assert api.post(url, {"quorum": 1}, format="json").json()["accepted"]["count"] == 4
    assert BoxGroundTruth.objects.filter(box_id=box_id).count() == 1


def test_permissions_of_the_reports(
    api: APIClient, campaign: AnnotationCampaign, people: dict[str, Any], submitted: Any
) -> None:
    box_id = submitted[0].box_id
    urls = [
        f"{API}/{campaign.pk}/agreement/",
        f"{API}/{campaign.pk}/boxes/{box_id}/agreement/",
        f"{API}/{campaign.pk}/boxes/{box_id}/consensus/",
        f"{API}/{campaign.pk}/export.csv",
        f"{API}/{campaign.pk}/export.json",
        f"{API}/{campaign.pk}/boxes.csv",
    ]
    for name, expected in (("a1", 403), ("outsider", 404), ("rv", 200), ("owner", 200)):
        client = APIClient()
        client.force_authenticate(people[name])
        for url in urls:
            assert client.get(url).status_code == expected, (name, url)
        post = client.post(urls[2], {}, format="json").status_code
        assert post == {"a1": 403, "outsider": 404, "rv": 403, "owner": 409}[name]
    assert APIClient().get(urls[3]).status_code in (401, 403)
    assert APIClient().get(f"{API}/{campaign.pk}/boxes/999999/consensus/").status_code in (
        401,
        403,
    )
    owner = APIClient()
    owner.force_authenticate(people["owner"])
    assert owner.get(f"{API}/{campaign.pk}/boxes/999999/consensus/").status_code == 404


def _rows(text: str) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(text)))


def test_export_holds_the_consensus_else_the_approved_work(
    api: APIClient,
    campaign: AnnotationCampaign,
    people: dict[str, Any],
    submitted: Any,
    tmp_path: Path,
) -> None:
    _approve_both(people, submitted)
    client = _client(api, people["owner"])
    box_id = submitted[0].box_id
    accept = client.post(f"{API}/{campaign.pk}/boxes/{box_id}/consensus/", {}, format="json")
    assert accept.status_code == 200
    # A second box: a3 draws a point and a line, approved; its slot-mate a1 is not approved.
    row = services.next_task(campaign, people["a3"])
    assert row is not None and row.box_id != box_id
    box = TaskBox.objects.get(pk=row.box_id)
    z, y, x = box.start
    line = {
        "op": "upsert",
        "uid": "line-1",
        "kind": "line",
        "label": "nucleus",
        "object_id": 7,
        "coords": [[z + 1, y + 2, x + 3], [z + 4, y + 5, x + 6]],
    }
    services.save(row, people["a3"], 0, [point_op("p", z + 2, y + 2, x + 2), line])
    row.refresh_from_db()
    services.approve(services.submit(row, people["a3"], row.version), people["rv"])

    response = client.get(f"{API}/{campaign.pk}/export.csv")
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/csv")
    assert "attachment" in response["Content-Disposition"]
    rows = _rows(response.content.decode())
    consensus = [r for r in rows if r["box_id"] == str(box_id)]
    assert [(r["annotator"], r["kind"], r["class"], r["point"]) for r in consensus] == [
        ("consensus", "point", "nucleus", "0")
    ] * 2
    assert [(r["z"], r["y"], r["x"]) for r in consensus] == [("2", "5", "5.5"), ("5", "10", "10")]
    assert [(r["z_um"], r["y_um"], r["x_um"]) for r in consensus] == [
        ("0.8", "1", "1.1"),
        ("2", "2", "2"),
    ]
    assert {r["author"] for r in consensus} == {"owner"}
    other = [r for r in rows if r["box_id"] == str(box.pk)]
    assert [(r["annotator"], r["uid"], r["kind"], r["point"]) for r in other] == [
        ("a3", "p", "point", "0"),
        ("a3", "line-1", "line", "0"),
        ("a3", "line-1", "line", "1"),
    ]
    assert other[2]["object_id"] == "7" and other[2]["version"] == "1"
    assert float(other[2]["z_um"]) == pytest.approx((z + 4) * 0.4)
    assert other[0]["author"] == "a3"
    assert len(rows) == 5  # nothing of the boxes without ground truth

    data = json.loads(client.get(f"{API}/{campaign.pk}/export.json").content)
    assert data["campaign"]["voxel_size_um"] == pytest.approx([0.4, 0.2, 0.2])
    by_id = {b["id"]: b for b in data["boxes"]}
    assert set(by_id) == {box_id, box.pk}
    assert by_id[box_id]["source"] == "consensus"
    assert by_id[box.pk]["source"] == "approved"
    assert by_id[box.pk]["size"] == list(box.size)
    assert by_id[box.pk]["size_um"] == pytest.approx(
        [s * v for s, v in zip(box.size, (0.4, 0.2, 0.2), strict=True)]
    )
    assert by_id[box_id]["annotations"][0]["coords_um"] == [pytest.approx([0.8, 1.0, 1.1])]
    assert by_id[box_id]["annotations"][0]["support"] == 2

    table = client.get(f"{API}/{campaign.pk}/boxes.csv").content
    path = tmp_path / "boxes.csv"
    path.write_bytes(table)
    read = {b.name: b for b in boxes_read_csv(path)}
    first = TaskBox.objects.get(pk=box_id)
    assert set(read) == {first.name, box.name}
    assert read[box.name].start == box.start and read[box.name].size == box.size
    # ... and the campaign's own box import reads it too.
    from pipeline.task_boxes import parse_boxes_csv

    specs = parse_boxes_csv(table.decode(), services.campaign_shape(campaign))
    assert {s.name: (s.start, s.size) for s in specs}[first.name] == (first.start, first.size)
