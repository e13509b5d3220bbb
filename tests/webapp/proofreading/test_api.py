"""Proofreading API: creation, permissions per role, bad input, agreement and consensus on a
constructed case, dashboard, downloads, undo, skips, flags, missed points, the schema."""

from __future__ import annotations

import csv
import io
from typing import Any

import pandas as pd
import pyarrow.parquet as pq
import pytest
from proofreading_testdata import SegmentationLayerFactory
from rest_framework.test import APIClient

from pipeline.thresholds import verdict_filter_scores
from webapp.datasets.models import LayerKind, Visibility
from webapp.proofreading import selectors
from webapp.proofreading.models import CampaignItem, ProofreadingCampaign, Verdict
from webapp.proofreading.verdict_sets import threshold_classes

pytestmark = pytest.mark.django_db

LIST = "/api/v1/proofreading/campaigns/"


def url(campaign: ProofreadingCampaign, tail: str = "") -> str:
    return f"{LIST}{campaign.id}/{tail}"


def as_user(user: Any) -> APIClient:
    client = APIClient()
    if user is not None:
        client.force_authenticate(user)
    return client


def body(response: Any) -> bytes:
    if getattr(response, "streaming", False):
        return b"".join(response.streaming_content)
    return bytes(response.content)


def items_in_order(campaign: ProofreadingCampaign) -> list[CampaignItem]:
    return list(CampaignItem.objects.filter(campaign=campaign).order_by("queue_key"))


# --- creation -----------------------------------------------------------------------------------


def test_manager_creates_a_campaign(layer: Any, people: dict[str, Any]) -> None:
    owner = as_user(people["owner"])
    request = {
        "dataset": layer.dataset.slug,
        "layer": "nuclei",
        "name": "Sample of 10",
        "selection": "sample",
        "sample_size": 10,
        "seed": 5,
        "reviewers_per_item": 2,
        "order": "region",
        "members": [{"username": "r1", "role": "reviewer"}, {"username": "r1", "role": "expert"}],
    }
    response = owner.post(LIST, request, format="json")
    assert response.status_code == 201, response.json()
    data = response.json()
    assert data["n_items"] == 10 and data["my_roles"] == ["manager"]
    assert data["selection_params"] == {"sample_size": 10, "population": 40, "seed": 5}
    assert [c["name"] for c in data["verdict_set"]] == ["tp", "tp_distortion", "fp", "uncertain"]
    assert (data["dataset"], data["layer"], data["created_by"]) == (
        layer.dataset.slug,
        "nuclei",
        "owner",
    )
    mine = as_user(people["r1"]).get(LIST).json()
    assert [(c["id"], c["my_roles"]) for c in mine["results"]] == [
        (data["id"], ["expert", "reviewer"])
    ]
    assert as_user(people["outsider"]).get(LIST).json()["count"] == 0


def test_creation_refusals(layer: Any, people: dict[str, Any]) -> None:
    owner, outsider = as_user(people["owner"]), as_user(people["outsider"])
    base = {"dataset": layer.dataset.slug, "layer": "nuclei", "name": "C"}
    response = outsider.post(LIST, base, format="json")
    assert response.status_code == 403
    assert "change the dataset" in response.json()["message"]
    SegmentationLayerFactory(dataset=layer.dataset, name="image", kind=LayerKind.IMAGE)
    cases: list[tuple[dict[str, Any], str]] = [
        ({**base, "dataset": "nope"}, "No dataset 'nope'"),
        ({**base, "layer": "image"}, "no segmentation layer 'image'"),
        ({**base, "selection": "sample"}, "needs sample_size"),
        ({**base, "reviewers_per_item": 0}, "reviewers_per_item"),
        ({**base, "order": "sideways"}, "order"),
        (
            {
                **base,
                "verdict_set": [
                    {"name": "tp", "label": "Yes", "colour": "#00ff00", "key": "1"},
                    {"name": "fp", "label": "No", "colour": "#ff0000", "key": "1"},
                ],
            },
            "each key must be unique",
        ),
        ({**base, "members": [{"username": "ghost", "role": "reviewer"}]}, "No user named"),
    ]
    for request, message in cases:
        response = owner.post(LIST, request, format="json")
        assert response.status_code == 400, (request, response.json())
        assert message in response.json()["message"], response.json()
    assert not ProofreadingCampaign.objects.exists()
    layer.dataset.visibility = Visibility.PRIVATE
    layer.dataset.save()
    response = outsider.post(LIST, base, format="json")
    assert response.status_code == 400 and "No dataset" in response.json()["message"]


# --- permissions --------------------------------------------------------------------------------


def test_permissions_per_role(campaign: ProofreadingCampaign, people: dict[str, Any]) -> None:
    anonymous = as_user(None)
    outsider, reviewer = as_user(people["outsider"]), as_user(people["r1"])
    expert, manager = as_user(people["expert"]), as_user(people["owner"])
    reports = ["agreement/", "dashboard/", "dashboard.csv", "export.csv", "export.parquet"]

    assert anonymous.get(LIST).status_code == 401
    assert anonymous.get(url(campaign)).status_code == 401
    assert anonymous.post(url(campaign, "next/"), {}, format="json").status_code == 401

    for tail in ["", "items/", "verdicts/", "members/", "missed/", "missed.csv", *reports]:
        assert outsider.get(url(campaign, tail)).status_code == 404, tail
    response = outsider.post(url(campaign, "next/"), {}, format="json")
    assert response.status_code == 404
    assert "not one of its members" in response.json()["message"]

    assert reviewer.get(url(campaign)).json()["my_roles"] == ["reviewer"]
    assert reviewer.patch(url(campaign), {"name": "x"}, format="json").status_code == 403
    response = reviewer.post(
        url(campaign, "members/"), {"username": "r3", "role": "expert"}, format="json"
    )
    assert response.status_code == 403
    assert "managers" in response.json()["message"]
    for tail in reports:
        assert reviewer.get(url(campaign, tail)).status_code == 403, tail
    assert reviewer.delete(url(campaign)).status_code == 403
    assert len(reviewer.post(url(campaign, "next/"), {}, format="json").json()) == 1

    for tail in reports:
        assert expert.get(url(campaign, tail)).status_code == 200, tail
    response = expert.post(url(campaign, "next/"), {"round": 1}, format="json")
    assert response.status_code == 403 and "not a reviewer" in response.json()["message"]
    assert expert.post(url(campaign, "next/"), {"round": 2}, format="json").json() == []

    for tail in reports:
        assert manager.get(url(campaign, tail)).status_code == 200, tail
    assert manager.patch(url(campaign), {"name": "Renamed"}, format="json").json()["name"] == (
        "Renamed"
    )
    response = manager.post(url(campaign, "next/"), {}, format="json")
    assert response.status_code == 403


def test_reviewers_see_only_their_own_verdicts(
    campaign: ProofreadingCampaign, people: dict[str, Any]
) -> None:
    r1, r2, manager = as_user(people["r1"]), as_user(people["r2"]), as_user(people["owner"])
    item = r1.post(url(campaign, "next/"), {}, format="json").json()[0]["item"]
    assert item["status"] is None and item["verdicts"] is None  # blind first round
    assert item["detection"]["segment_id"] == item["segment_id"]
    mine = r1.post(url(campaign, "verdicts/"), {"item": item["id"], "verdict": "tp"}, format="json")
    assert mine.status_code == 201, mine.json()
    theirs = r2.post(
        url(campaign, "verdicts/"),
        {"segment_id": item["segment_id"], "verdict": "fp"},
        format="json",
    ).json()
    assert [v["reviewer"] for v in r1.get(url(campaign, "verdicts/")).json()["results"]] == ["r1"]
    assert r1.get(url(campaign, f"verdicts/{theirs['id']}/")).status_code == 404
    patch = r1.patch(url(campaign, f"verdicts/{theirs['id']}/"), {"verdict": "tp"}, format="json")
    assert patch.status_code == 404
    # Managers see everything, but change nobody's verdict.
    assert len(manager.get(url(campaign, "verdicts/")).json()["results"]) == 2
    patch = manager.patch(
        url(campaign, f"verdicts/{theirs['id']}/"), {"verdict": "tp"}, format="json"
    )
    assert patch.status_code == 403 and "own verdicts" in patch.json()["message"]
    seen = manager.get(url(campaign, f"items/{item['id']}/")).json()
    assert seen["status"] == "second_round" and seen["reason"] == "disagreement"
    assert sorted((v["reviewer"], v["verdict"]) for v in seen["verdicts"]) == [
        ("r1", "tp"),
        ("r2", "fp"),
    ]
    mine_only = r1.get(url(campaign, f"items/{item['id']}/")).json()
    assert mine_only["verdicts"] is None
    assert [v["verdict"] for v in mine_only["my_verdicts"]] == ["tp"]
    assert r1.get(url(campaign, "items/?status=decided")).status_code == 400
    assert r1.get(url(campaign, "items/?decided_by_me=true")).json()["count"] == 1
    assert manager.get(url(campaign, "items/?status=second_round")).json()["count"] == 1
    # Changing one's own verdict is kept in the history.
    changed = r1.patch(
        url(campaign, f"verdicts/{mine.json()['id']}/"), {"verdict": "fp"}, format="json"
    )
    assert changed.status_code == 200 and changed.json()["verdict"] == "fp"
    history = manager.get(url(campaign, "history/")).json()["results"]
    assert [(e["actor"], e["action"], e["before"], e["after"]) for e in history] == [
        ("r1", "create", "", "tp"),
        ("r2", "create", "", "fp"),
        ("r1", "change", "tp", "fp"),
    ]
    assert len(r2.get(url(campaign, "history/")).json()["results"]) == 1


def test_bad_input_gets_clear_answers(
    campaign: ProofreadingCampaign, people: dict[str, Any], layer: Any
) -> None:
    r1 = as_user(people["r1"])
    other = ProofreadingCampaign.objects.create(layer=layer, name="other")
    foreign = CampaignItem.objects.create(campaign=other, segment_id=1, queue_key=0)
    item = r1.post(url(campaign, "next/"), {}, format="json").json()[0]["item"]
    verdicts = url(campaign, "verdicts/")
    cases: list[tuple[dict[str, Any], int, str]] = [
        ({"item": foreign.id, "verdict": "tp"}, 400, f"Item {foreign.id} is not part"),
        ({"segment_id": 10**12, "verdict": "tp"}, 400, "is not part of campaign"),
        ({"item": item["id"], "verdict": "maybe"}, 400, "Unknown verdict 'maybe'"),
        ({"item": item["id"], "segment_id": 1, "verdict": "tp"}, 400, "exactly one"),
        ({"verdict": "tp"}, 400, "exactly one"),
        ({"item": 2**70, "verdict": "tp"}, 400, "item"),
        ({"item": item["id"], "verdict": "tp", "round": 3}, 400, "round"),
        ({"item": item["id"], "verdict": "tp", "round": 2}, 403, "experts"),
    ]
    for request, code, message in cases:
        response = r1.post(verdicts, request, format="json")
        assert response.status_code == code, (request, response.json())
        assert message in response.json()["message"], response.json()
    first = r1.post(verdicts, {"item": item["id"], "verdict": "tp"}, format="json")
    assert first.status_code == 201
    double = r1.post(verdicts, {"item": item["id"], "verdict": "fp"}, format="json")
    assert double.status_code == 409 and "already gave verdict" in double.json()["message"]
    for request in ({"count": 0}, {"count": 101}, {"round": 0}, {"count": "many"}):
        assert r1.post(url(campaign, "next/"), request, format="json").status_code == 400
    bulk = r1.post(url(campaign, "verdicts/bulk/"), {"items": [], "verdict": "tp"}, format="json")
    assert bulk.status_code == 400
    assert r1.get(url(campaign, "export.xlsx")).status_code in (403, 400)
    manager = as_user(people["owner"])
    response = manager.get(url(campaign, "export.xlsx"))
    assert response.status_code == 400 and "csv or parquet" in response.json()["message"]
    assert r1.get(f"{LIST}999999/").status_code == 404


def test_undo_and_stale_undo(campaign: ProofreadingCampaign, people: dict[str, Any]) -> None:
    r1 = as_user(people["r1"])
    handed = r1.post(url(campaign, "next/"), {"count": 3}, format="json").json()
    assert len(handed) == 3 and all(h["round"] == 1 for h in handed)
    ids = [h["item"]["id"] for h in handed]
    first = r1.post(url(campaign, "verdicts/"), {"item": ids[0], "verdict": "tp"}, format="json")
    second = r1.post(url(campaign, "verdicts/"), {"item": ids[1], "verdict": "fp"}, format="json")
    stale = r1.post(url(campaign, "undo/"), {"verdict": first.json()["id"]}, format="json")
    assert stale.status_code == 409 and "Stale undo" in stale.json()["message"]
    undone = r1.post(url(campaign, "undo/"), {"verdict": second.json()["id"]}, format="json")
    assert undone.status_code == 200, undone.json()
    assert undone.json()["verdict"]["live"] is False
    assert undone.json()["handout"]["item"]["id"] == ids[1]
    again = r1.post(url(campaign, "undo/"), {"verdict": second.json()["id"]}, format="json")
    assert again.status_code == 409 and "already undone" in again.json()["message"]
    other = as_user(people["r2"])
    response = other.post(url(campaign, "undo/"), {"verdict": first.json()["id"]}, format="json")
    assert response.status_code == 403
    listed = r1.get(url(campaign, "verdicts/?include_undone=true")).json()["results"]
    assert [(v["verdict"], v["live"]) for v in listed] == [("tp", True), ("fp", False)]


def test_skip_flag_and_missed_points(
    campaign: ProofreadingCampaign, people: dict[str, Any]
) -> None:
    r1, manager = as_user(people["r1"]), as_user(people["owner"])
    item = r1.post(url(campaign, "next/"), {}, format="json").json()[0]["item"]
    skip = r1.post(url(campaign, "skip/"), {"item": item["id"]}, format="json")
    assert skip.status_code == 201 and skip.json()["action"] == "skip"
    assert r1.post(url(campaign, "next/"), {}, format="json").json()[0]["item"]["id"] != item["id"]
    no_reason = r1.post(url(campaign, "flags/"), {"item": item["id"], "reason": ""}, format="json")
    assert no_reason.status_code == 400
    flag = r1.post(
        url(campaign, "flags/"), {"segment_id": item["segment_id"], "reason": "cut"}, format="json"
    )
    assert flag.status_code == 201
    assert [f["reason"] for f in manager.get(url(campaign, "flags/")).json()["results"]] == ["cut"]
    point = r1.post(url(campaign, "missed/"), {"z": 1, "y": 2, "x": 3, "note": "n"}, format="json")
    assert point.status_code == 201 and point.json()["created_by"] == "r1"
    outside = r1.post(url(campaign, "missed/"), {"z": -5, "y": 0, "x": 0}, format="json")
    assert outside.status_code == 400 and "outside the layer" in outside.json()["message"]
    listed = as_user(people["r2"]).get(url(campaign, "missed/")).json()
    assert listed["count"] == 1
    table = pd.read_csv(io.BytesIO(body(r1.get(url(campaign, "missed.csv")))))
    assert table[["z", "y", "x"]].values.tolist() == [[1.0, 2.0, 3.0]]
    assert table[["z_um", "y_um", "x_um"]].values[0].tolist() == pytest.approx([1.4, 2.4, 3.6])
    deleted = as_user(people["r2"]).delete(url(campaign, f"missed/{point.json()['id']}/"))
    assert deleted.status_code == 403
    assert r1.delete(url(campaign, f"missed/{point.json()['id']}/")).status_code == 204


# --- agreement, dashboard, exports --------------------------------------------------------------

R1 = ["tp", "tp", "tp", "tp", "fp", "fp", "fp", "tp", "fp", "tp"]
R2 = ["tp", "tp", "tp", "fp", "fp", "fp", "tp", "fp", "fp", "tp"]
EXPERT = {3: "tp", 6: "fp", 7: "fp"}


def test_agreement_consensus_dashboard_and_exports_on_a_constructed_case(
    campaign: ProofreadingCampaign, people: dict[str, Any]
) -> None:
    r1, r2 = as_user(people["r1"]), as_user(people["r2"])
    expert, manager = as_user(people["expert"]), as_user(people["owner"])
    items = items_in_order(campaign)[:10]
    for client, verdicts in ((r1, R1), (r2, R2)):
        for item, verdict in zip(items, verdicts, strict=True):
            response = client.post(
                url(campaign, "verdicts/"), {"item": item.id, "verdict": verdict}, format="json"
            )
            assert response.status_code == 201, response.json()

    report = manager.get(url(campaign, "agreement/")).json()
    # By hand: 7 of 10 agree; Cohen p_e = .6*.5 + .4*.5 = .5 -> kappa .4; Fleiss pooled
    # p = (.55, .45) -> P_e = .505 -> kappa (.7 - .505) / .495.
    assert report["percent_agreement"]["pairwise"] == pytest.approx(0.7)
    assert report["percent_agreement"]["unanimous"] == pytest.approx(0.7)
    (pair,) = report["pairs"]
    assert (pair["reviewer_a"], pair["reviewer_b"], pair["n_common"]) == ("r1", "r2", 10)
    assert pair["kappa"] == pytest.approx(0.4)
    assert report["fleiss"]["kappa"] == pytest.approx((0.7 - 0.505) / 0.495)
    assert report["fleiss"]["n_detections"] == 10 and report["fleiss"]["n_raters"] == 2
    assert report["status_counts"] == {"pending": 30, "second_round": 3, "decided": 7}
    assert report["verdict_counts"] == {"fp": 3, "tp": 4}

    handouts = expert.post(url(campaign, "next/"), {"round": 2, "count": 5}, format="json").json()
    routed = {items.index(next(i for i in items if i.id == h["item"]["id"])) for h in handouts}
    assert routed == set(EXPERT)
    for handout in handouts:
        shown = handout["item"]["verdicts"]  # the expert sees the earlier verdicts
        assert sorted(v["reviewer"] for v in shown) == ["r1", "r2"]
        position = next(i for i, it in enumerate(items) if it.id == handout["item"]["id"])
        response = expert.post(
            url(campaign, "verdicts/"),
            {"item": handout["item"]["id"], "verdict": EXPERT[position], "round": 2},
            format="json",
        )
        assert response.status_code == 201, response.json()

    dashboard = manager.get(url(campaign, "dashboard/")).json()
    assert (dashboard["total"], dashboard["decided"]) == (40, 10)
    assert dashboard["progress"] == pytest.approx(0.25)
    assert dashboard["by_verdict"] == {"tp": 5, "tp_distortion": 0, "fp": 5, "uncertain": 0}
    assert dashboard["by_round"] == {"1": 20, "2": 3}
    assert dashboard["decided_by"] == {"first_round": 7, "expert": 3}
    figures = {r["reviewer"]: r for r in dashboard["reviewers"]}
    assert figures["r1"]["agreement_with_consensus"] == pytest.approx(0.9)
    assert figures["r2"]["agreement_with_consensus"] == pytest.approx(0.8)
    assert figures["r1"]["decisions"] == 10 and figures["expert"]["decisions_round2"] == 3
    assert figures["r1"]["median_seconds"] is None  # no hand-outs: no times
    assert figures["expert"]["median_seconds"] is not None
    assert figures["owner"]["roles"] == ["manager"] and figures["r3"]["decisions"] == 0

    rows = list(csv.reader(io.StringIO(body(manager.get(url(campaign, "dashboard.csv"))).decode())))
    assert rows[0] == ["section", "name", "reviewer", "value"]
    assert ["reviewer", "decisions", "r1", "10"] in rows
    assert ["verdict", "tp", "", "5"] in rows

    table = pd.read_csv(io.BytesIO(body(manager.get(url(campaign, "export.csv")))))
    assert len(table) == 40 and list(table["segment_id"]) == sorted(table["segment_id"])
    by_segment = table.set_index("segment_id")
    for position, item in enumerate(items):
        row = by_segment.loc[item.segment_id]
        final = EXPERT.get(position, R1[position])
        assert row["verdict"] == final
        assert row["round1_verdicts"] == f"r1={R1[position]};r2={R2[position]}"
        assert row["round1_count"] == 2
        assert row["verdict_source"] == ("expert" if position in EXPERT else "first_round")
        if position in EXPERT:
            assert (row["round2_verdict"], row["round2_expert"]) == (final, "expert")
    assert table["verdict"].isna().sum() == 30
    parquet = pq.read_table(io.BytesIO(body(manager.get(url(campaign, "export.parquet")))))
    frame = parquet.to_pandas()
    assert len(frame) == 40 and frame["verdict"].notna().sum() == 10
    assert str(parquet.schema.field("round1_count").type) == "int64"

    # The same table feeds pipeline.thresholds: scores of a filter against the verdicts.
    detections = selectors.campaign_detections_frame(campaign)
    classes = threshold_classes(campaign.verdict_set)
    scores = verdict_filter_scores(detections, 0.0, 0.0, classes=classes)
    assert (scores.precision, scores.recall) == (pytest.approx(0.5), pytest.approx(1.0))


def test_members_and_settings(campaign: ProofreadingCampaign, people: dict[str, Any]) -> None:
    manager = as_user(people["owner"])
    members = url(campaign, "members/")
    added = manager.post(members, {"username": "r3", "role": "expert"}, format="json")
    assert added.status_code == 201 and added.json()["added_by"] == "owner"
    assert (
        manager.post(members, {"username": "r3", "role": "expert"}, format="json").status_code
        == 409
    )
    unknown = manager.post(members, {"username": "ghost", "role": "expert"}, format="json")
    assert unknown.status_code == 400
    listed = manager.get(members).json()
    assert ("r3", "expert") in [(m["username"], m["role"]) for m in listed]
    assert manager.delete(url(campaign, f"members/{added.json()['id']}/")).status_code == 204
    (own,) = [m for m in listed if m["username"] == "owner"]
    last = manager.delete(url(campaign, f"members/{own['id']}/"))
    assert last.status_code == 409 and "at least one manager" in last.json()["message"]
    assert manager.delete(url(campaign, "members/999999/")).status_code == 404
    closed = manager.patch(url(campaign), {"state": "closed"}, format="json")
    assert closed.status_code == 200 and closed.json()["state"] == "closed"
    response = as_user(people["r1"]).post(url(campaign, "next/"), {}, format="json")
    assert response.status_code == 409 and "closed" in response.json()["message"]
    manager.patch(url(campaign), {"state": "open"}, format="json")
    item = items_in_order(campaign)[0]
    as_user(people["r1"]).post(
        url(campaign, "verdicts/"), {"item": item.id, "verdict": "tp"}, format="json"
    )
    kept = manager.delete(url(campaign))
    assert kept.status_code == 409 and "close it instead" in kept.json()["message"]
    Verdict.objects.all().delete()
    assert manager.delete(url(campaign)).status_code == 204


def test_bulk_verdicts_are_all_or_nothing(
    campaign: ProofreadingCampaign, people: dict[str, Any]
) -> None:
    r1 = as_user(people["r1"])
    ids = [item.id for item in items_in_order(campaign)[:4]]
    response = r1.post(
        url(campaign, "verdicts/bulk/"), {"items": ids[:3], "verdict": "tp"}, format="json"
    )
    assert response.status_code == 201 and len(response.json()) == 3
    response = r1.post(
        url(campaign, "verdicts/bulk/"), {"items": ids[2:], "verdict": "fp"}, format="json"
    )
    assert response.status_code == 409  # ids[2] was decided: ids[3] is not recorded either
    assert not Verdict.objects.filter(item_id=ids[3]).exists()


def test_the_schema_documents_the_endpoints(api: APIClient) -> None:
    schema = api.get("/api/schema/?format=json").json()
    paths = schema["paths"]
    base = "/api/v1/proofreading/campaigns/{campaign_id}/"
    for tail in [
        "",
        "members/",
        "members/{member_id}/",
        "items/",
        "items/{item_id}/",
        "next/",
        "verdicts/",
        "verdicts/bulk/",
        "verdicts/{verdict_id}/",
        "undo/",
        "skip/",
        "flags/",
        "history/",
        "missed/",
        "missed/{missed_id}/",
        "missed.csv",
        "agreement/",
        "dashboard/",
        "dashboard.csv",
        "export.{table_format}",
    ]:
        assert base + tail in paths, tail
    assert "/api/v1/proofreading/campaigns/" in paths
    for path, method in [("verdicts/", "post"), ("undo/", "post"), ("next/", "post")]:
        responses = paths[base + path][method]["responses"]
        assert {"400", "401", "403", "404", "409"} <= set(responses), (path, responses.keys())
    assert {"401", "404"} <= set(paths[base + "agreement/"]["get"]["responses"])


def test_second_round_payload_and_the_experts_final_verdict(
    campaign: ProofreadingCampaign, people: dict[str, Any]
) -> None:
    """The expert's hand-out carries the first-round verdicts with names and times (reviewers'
    hand-outs carry none); the expert's verdict stays final whatever the first round does
    afterwards, until the expert undoes it."""
    r1, r2, expert = as_user(people["r1"]), as_user(people["r2"]), as_user(people["expert"])
    handed = r1.post(url(campaign, "next/"), {"count": 1}, format="json").json()
    assert handed[0]["item"]["verdicts"] is None and handed[0]["item"]["status"] is None
    item = handed[0]["item"]["id"]
    assert r2.post(url(campaign, "next/"), {"count": 1}, format="json").json()[0]["item"]["id"] == (
        item
    )
    first = r1.post(
        url(campaign, "verdicts/"), {"item": item, "verdict": "uncertain"}, format="json"
    )
    assert first.status_code == 201
    assert (
        r2.post(
            url(campaign, "verdicts/"), {"item": item, "verdict": "tp"}, format="json"
        ).status_code
        == 201
    )

    (handout,) = expert.post(url(campaign, "next/"), {"round": 2}, format="json").json()
    shown = handout["item"]
    assert (shown["id"], shown["status"], shown["reason"]) == (item, "second_round", "uncertain")
    assert [(v["reviewer"], v["round"], v["verdict"]) for v in shown["verdicts"]] == [
        ("r1", 1, "uncertain"),
        ("r2", 1, "tp"),
    ]
    assert all(v["created"] and v["updated"] for v in shown["verdicts"])
    # A first-round reviewer cannot work in round 2 nor read the others' verdicts.
    assert r1.post(url(campaign, "next/"), {"round": 2}, format="json").status_code == 403
    assert r1.get(url(campaign, f"items/{item}/")).json()["verdicts"] is None

    settled = expert.post(
        url(campaign, "verdicts/"), {"item": item, "verdict": "fp", "round": 2}, format="json"
    )
    assert settled.status_code == 201
    final = expert.get(url(campaign, f"items/{item}/")).json()
    assert (final["status"], final["verdict"], final["verdict_source"]) == (
        "decided",
        "fp",
        "expert",
    )
    # r1 changes their first-round verdict afterwards: the expert's verdict stands.
    change = r1.patch(
        url(campaign, f"verdicts/{first.json()['id']}/"), {"verdict": "tp"}, format="json"
    )
    assert change.status_code == 200
    final = expert.get(url(campaign, f"items/{item}/")).json()
    assert (final["verdict"], final["verdict_source"]) == ("fp", "expert")
    # Only the expert's own undo takes it back: the consensus is then the first round's again
    # (which now agrees, r1 having changed their verdict).
    undo = expert.post(url(campaign, "undo/"), {"verdict": settled.json()["id"]}, format="json")
    assert undo.status_code == 200
    reopened = expert.get(url(campaign, f"items/{item}/")).json()
    assert (reopened["status"], reopened["verdict"], reopened["verdict_source"]) == (
        "decided",
        "tp",
        "first_round",
    )
