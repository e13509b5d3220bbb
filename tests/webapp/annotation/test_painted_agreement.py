"""Agreement and consensus between the painted label volumes of a box, the accepted ground-truth
volume and the export that uses it, on constructed volumes whose answers are known.

Box one (20 x 64 x 64 voxels of an image 40 x 128 x 128, origin off zero) is painted by three
annotators with cubes:

- a1: A (id 1, 8^3 at 2,2,2), B (id 2, 8^3 at 2,30,30), C (id 3, 6^3 at 12,50,50)
- a2: A (id 10, as a1's), B (id 20, a1's shifted one voxel in x: IoU 448/576), D (id 30, 4^3)
- a3: A (id 5, as a1's), C (id 6, as a1's)

so a1-a2 match A and B (F1 2/3), a1-a3 A and C (F1 4/5), a2-a3 A (F1 2/5); at the default quorum
(2 of 3) the consensus is A (512 voxels), B where a1 and a2 agree (448) and C (216), D is left
out; at quorum 3 only A remains.
"""

from __future__ import annotations

import csv
import io
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import zarr
from annotation_testdata import painted_campaign
from ome_zarr.io import parse_url
from ome_zarr.reader import Label, Multiscales, Reader
from rest_framework.test import APIClient

from pipeline.label_store import chunk_decode
from webapp.annotation import painted_agreement, selectors, services
from webapp.annotation.models import AnnotationCampaign, Assignment, AuditEntry, BoxLabelTruth

pytestmark = pytest.mark.django_db

SHAPE = (40, 128, 128)
VOXEL_NM = (400.0, 200.0, 200.0)
ORIGIN_UM = [0.8, 1.6, 2.4]
BOX_UM = [8.0, 12.8, 12.8]
BOX = (20, 64, 64)
API = "/api/v1/annotation"


def cube(out: np.ndarray, value: int, at: tuple[int, int, int], size: int) -> np.ndarray:
    out[at[0] : at[0] + size, at[1] : at[1] + size, at[2] : at[2] + size] = value
    return out


def volumes() -> dict[str, np.ndarray]:
    a1, a2, a3 = (np.zeros(BOX, np.uint32) for _ in range(3))
    cube(a1, 1, (2, 2, 2), 8)
    cube(a1, 2, (2, 30, 30), 8)
    cube(a1, 3, (12, 50, 50), 6)
    cube(a2, 10, (2, 2, 2), 8)
    cube(a2, 20, (2, 30, 31), 8)
    cube(a2, 30, (12, 2, 50), 4)
    cube(a3, 5, (2, 2, 2), 8)
    cube(a3, 6, (12, 50, 50), 6)
    return {"a1": a1, "a2": a2, "a3": a3}


def expected_consensus(quorum: int) -> np.ndarray:
    out = np.zeros(BOX, np.uint32)
    cube(out, 1, (2, 2, 2), 8)
    if quorum == 2:
        out[2:10, 30:38, 31:38] = 2  # where a1's and a2's B agree
        cube(out, 3, (12, 50, 50), 6)
    return out


@pytest.fixture
def painted(people: dict[str, Any]) -> AnnotationCampaign:
    """N = 3, annotators a1-a3, reviewer rv; painted; 8 boxes of one 64^3 chunk each."""
    return painted_campaign(people, SHAPE, BOX_UM, ORIGIN_UM, redundancy=3)


def _paint(campaign: AnnotationCampaign, user: Any, labels: np.ndarray) -> Assignment:
    row = services.next_task(campaign, user)
    assert row is not None
    services.labels_save(row, user, row.version, {(0, 0, 0): labels})
    row.refresh_from_db()
    return services.submit(row, user, row.version)


@pytest.fixture
def handed_in(painted: AnnotationCampaign, people: dict[str, Any]) -> dict[str, Assignment]:
    """Box one painted and submitted by a1, a2, a3 (not yet reviewed)."""
    rows = {name: _paint(painted, people[name], v) for name, v in volumes().items()}
    assert len({r.box_id for r in rows.values()}) == 1
    return rows


def _client(user: Any) -> APIClient:
    """Signed in (a session, as a browser: the OME-Zarr files are plain views)."""
    client = APIClient()
    client.force_login(user)
    return client


def _box_url(campaign: AnnotationCampaign, row: Assignment, what: str) -> str:
    return f"{API}/campaigns/{campaign.pk}/boxes/{row.box_id}/{what}/"


def _pairs(body: dict[str, Any]) -> dict[tuple[str, str], dict[str, Any]]:
    return {(p["reference"], p["other"]): p for p in body["pairs"]}


def test_box_agreement_per_pair_as_constructed(
    painted: AnnotationCampaign, handed_in: dict[str, Assignment], people: dict[str, Any]
) -> None:
    response = _client(people["rv"]).get(_box_url(painted, handed_in["a1"], "label-agreement"))
    assert response.status_code == 200, response.content
    body = response.json()
    assert [(a["annotator"], a["n_objects"], a["state"]) for a in body["annotators"]] == [
        ("a1", 3, "submitted"),
        ("a2", 3, "submitted"),
        ("a3", 2, "submitted"),
    ]
    pairs = _pairs(body)
    assert set(pairs) == {("a1", "a2"), ("a1", "a3"), ("a2", "a3")}
    one_two = pairs[("a1", "a2")]
    assert (one_two["matched"], one_two["precision"], one_two["recall"]) == (2, 0.6667, 0.6667)
    assert one_two["f1"] == 0.6667
    fg1, fg2, both = 512 + 512 + 216, 512 + 512 + 64, 512 + 448
    assert (one_two["foreground_reference"], one_two["foreground_other"]) == (fg1, fg2)
    assert one_two["foreground_intersection"] == both
    assert one_two["dice"] == round(2 * both / (fg1 + fg2), 4)
    assert one_two["mean_matched_iou"] == round((1 + 448 / 576) / 2, 4)
    one_three = pairs[("a1", "a3")]
    assert (one_three["matched"], one_three["f1"], one_three["precision"]) == (2, 0.8, 1.0)
    assert one_three["recall"] == 0.6667 and one_three["mean_matched_iou"] == 1.0
    assert one_three["dice"] == round(2 * 728 / (fg1 + 728), 4)
    two_three = pairs[("a2", "a3")]
    assert (two_three["matched"], two_three["f1"]) == (1, 0.4)
    assert body["mean_f1"] == round((2 / 3 + 0.8 + 0.4) / 3, 4)
    summaries = {s["annotator"]: s for s in body["summaries"]}
    assert summaries["a1"]["precision"] == round(4 / 6, 4)  # 4 of a1's 6 pair-objects matched
    assert summaries["a3"]["recall"] == round(3 / 6, 4)  # 3 of the others' 6 objects matched


def test_agreement_is_cached_by_the_versions_and_changes_with_them(
    painted: AnnotationCampaign,
    handed_in: dict[str, Assignment],
    people: dict[str, Any],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    url = _box_url(painted, handed_in["a1"], "label-agreement")
    rv = _client(people["rv"])
    first = rv.get(url).json()
    calls: list[int] = []
    real = painted_agreement._figures

    def counted(works: list[Any], comparison: Any = None) -> dict[str, Any]:
        calls.append(len(works))
        return real(works, comparison)

    monkeypatch.setattr(painted_agreement, "_figures", counted)
    assert rv.get(url).json() == first
    assert calls == []  # the same versions: read from the cache
    services.approve(handed_in["a1"], people["rv"])  # the state is not cached, the figures are
    assert rv.get(url).json()["annotators"][0]["state"] == "approved"
    assert calls == []
    # a2 is sent back and paints B exactly as a1 did: a new version, new figures.
    a2 = handed_in["a2"]
    services.reject(a2, people["rv"], "B is one voxel off")
    a2.refresh_from_db()
    fixed = volumes()["a2"]
    fixed[fixed == 20] = 0
    cube(fixed, 20, (2, 30, 30), 8)
    services.labels_save(a2, people["a2"], a2.version, {(0, 0, 0): fixed})
    a2.refresh_from_db()
    services.submit(a2, people["a2"], a2.version)
    again = rv.get(url).json()
    assert calls == [3]
    assert _pairs(again)[("a1", "a2")]["mean_matched_iou"] == 1.0
    # The consensus of new volumes leaves their agreement in the cache: a2 once more.
    services.reject(a2, people["rv"], "paint D bigger")
    a2.refresh_from_db()
    cube(fixed, 30, (12, 2, 50), 5)
    services.labels_save(a2, people["a2"], a2.version, {(0, 0, 0): fixed})
    a2.refresh_from_db()
    services.submit(a2, people["a2"], a2.version)
    rv.get(_box_url(painted, handed_in["a1"], "label-consensus"))
    assert calls == [3, 3]  # computed with the consensus, from its comparison
    assert rv.get(url).json()["annotators"][1]["version"] == a2.version
    assert calls == [3, 3]  # and then read from the cache


def test_campaign_agreement_rows_per_box_and_pooled_per_pair(
    painted: AnnotationCampaign, handed_in: dict[str, Assignment], people: dict[str, Any]
) -> None:
    # Box two: a1 and a2 paint the same single object; a3 has not painted it.
    same = np.zeros(BOX, np.uint32)
    cube(same, 4, (5, 5, 5), 5)
    two = [_paint(painted, people[name], same) for name in ("a1", "a2")]
    assert two[0].box_id == two[1].box_id != handed_in["a1"].box_id
    body = _client(people["owner"]).get(f"{API}/campaigns/{painted.pk}/label-agreement/").json()
    assert body["boxes_compared"] == 2
    assert [b["box"] for b in body["boxes"]] == sorted([handed_in["a1"].box_id, two[0].box_id])
    pooled = {(p["reference"], p["other"]): p for p in body["pairs"]}
    one_two = pooled[("a1", "a2")]
    # Box one 2 of 3 + 3 matched, box two 1 of 1 + 1: 3 matched of 4 + 4.
    assert (one_two["boxes"], one_two["matched"], one_two["n_reference"]) == (2, 3, 4)
    assert one_two["f1"] == 0.75
    assert pooled[("a1", "a3")]["boxes"] == 1


def test_consensus_at_two_quorums_and_its_files(
    painted: AnnotationCampaign, handed_in: dict[str, Assignment], people: dict[str, Any]
) -> None:
    rv = _client(people["rv"])
    url = _box_url(painted, handed_in["a1"], "label-consensus")
    body = rv.get(url).json()
    assert body["quorum"] == 2 and body["pending"] == 3 and body["accepted"] is None
    assert [(o["id"], o["voxels"], o["support"]) for o in body["objects"]] == [
        (1, 512, 3),
        (2, 448, 2),
        (3, 216, 2),
    ]
    assert body["objects"][0]["members"] == [["a1", 1], ["a2", 10], ["a3", 5]]
    assert [(u["annotator"], u["id"], u["support"]) for u in body["unmatched"]] == [("a2", 30, 1)]
    assert body["unmatched"][0]["centroid"] == [13.5, 3.5, 51.5]
    assert body["neuroglancer_source"] == f"zarr3://{body['source']}"
    # The files: metadata at the box's physical position, the one chunk the consensus.
    source = body["source"]
    array = rv.get(f"{source}s0/zarr.json").json()
    assert array["shape"] == list(BOX) and array["data_type"] == "uint32"
    group = rv.get(f"{source}zarr.json").json()
    multiscales = group["attributes"]["ome"]["multiscales"]
    translation = multiscales[0]["datasets"][0]["coordinateTransformations"][1]
    start = painted.boxes.get(pk=handed_in["a1"].box_id).start
    assert translation["translation"] == [
        o * 1000 + s * v for o, s, v in zip(ORIGIN_UM, start, VOXEL_NM, strict=True)
    ]
    chunk = rv.get(f"{source}s0/c/0/0/0")
    assert chunk.status_code == 200 and chunk["Cache-Control"].endswith("immutable")
    geometry = selectors.label_geometry(painted.boxes.get(pk=handed_in["a1"].box_id))
    decoded = chunk_decode(chunk.content, geometry, (0, 0, 0))
    assert (decoded == expected_consensus(2)).all()
    # Quorum 3: only A; B and C listed with their support of 2.
    strict = rv.get(url, {"quorum": 3}).json()
    assert [o["voxels"] for o in strict["objects"]] == [512]
    assert [(u["annotator"], u["id"], u["support"]) for u in strict["unmatched"]] == [
        ("a1", 2, 2),
        ("a1", 3, 2),
        ("a2", 20, 2),
        ("a2", 30, 1),
        ("a3", 6, 2),
    ]
    strict_chunk = rv.get(f"{strict['source']}s0/0/0/0")  # zarr v2 key, same bytes
    assert (chunk_decode(strict_chunk.content, geometry, (0, 0, 0)) == expected_consensus(3)).all()
    # Out of range: 400; a stale URL (versions no longer handed in), an outsider: 404.
    assert rv.get(url, {"quorum": 4}).status_code == 400
    assert rv.get(url, {"quorum": "x"}).status_code == 400
    services.reject(handed_in["a3"], people["rv"], "paint B")
    assert rv.get(f"{source}s0/c/0/0/0").status_code == 404
    outsider = _client(people["outsider"])
    assert outsider.get(url).status_code == 404
    fresh = rv.get(url).json()  # a1 and a2 only: quorum 2 of 2
    assert [o["support"] for o in fresh["objects"]] == [2, 2]
    assert outsider.get(f"{fresh['source']}s0/0/0/0").status_code == 404
    assert rv.get(f"{fresh['source']}s0/0/0/0").status_code == 200


def test_who_may_read_and_not_painted(
    painted: AnnotationCampaign,
    handed_in: dict[str, Assignment],
    people: dict[str, Any],
    campaign: AnnotationCampaign,
) -> None:
    row = handed_in["a1"]
    for what in ("label-agreement", "label-consensus", "label-truth"):
        url = _box_url(painted, row, what)
        for name, expected in (("a1", 403), ("outsider", 404), ("rv", 200), ("owner", 200)):
            assert _client(people[name]).get(url).status_code == expected, (what, name)
        assert (
            _client(people["rv"]).get(url.replace(f"/{row.box_id}/", "/999999/")).status_code == 404
        )
    points_box = campaign.boxes.first()
    assert points_box is not None
    refused = _client(people["owner"]).get(
        f"{API}/campaigns/{campaign.pk}/boxes/{points_box.pk}/label-agreement/"
    )
    assert refused.status_code == 400 and "not painted" in refused.json()["message"]
    assert (
        _client(people["owner"]).get(f"{API}/campaigns/{campaign.pk}/label-agreement/").status_code
        == 400
    )


def test_accepting_the_truth_and_what_is_refused(
    painted: AnnotationCampaign, handed_in: dict[str, Assignment], people: dict[str, Any]
) -> None:
    url = _box_url(painted, handed_in["a1"], "label-truth")
    owner = _client(people["owner"])
    assert owner.get(url).json()["accepted"] is None
    # Reviewers read, managers accept.
    assert (
        _client(people["rv"]).post(url, {"source": "consensus"}, format="json").status_code == 403
    )
    # Not yet reviewed: 409 naming whom to review.
    pending = owner.post(url, {"source": "consensus"}, format="json")
    assert pending.status_code == 409 and "a1, a2, a3" in pending.json()["message"]
    for row in handed_in.values():
        services.approve(row, people["rv"])
    assert owner.post(url, {"source": "consensus", "quorum": 4}, format="json").status_code == 400
    assert owner.post(url, {"source": "other"}, format="json").status_code == 400
    accepted = owner.post(url, {"source": "consensus"}, format="json")
    assert accepted.status_code == 200, accepted.content
    truth = accepted.json()["accepted"]
    assert (truth["source"], truth["quorum"], truth["objects"], truth["chunks"]) == (
        "consensus",
        2,
        3,
        1,
    )
    assert [m["annotator"] for m in truth["members"]] == ["a1", "a2", "a3"]
    assert truth["accepted_by"] == "owner"
    audit = AuditEntry.objects.get(action="labels.truth")
    assert audit.detail["quorum"] == 2 and audit.detail["replaced"] is False
    # One annotator's volume instead: it must be this box's and approved.
    other_box = painted.boxes.exclude(pk=handed_in["a1"].box_id).first()
    assert other_box is not None
    assert (
        owner.post(url, {"source": "assignment", "assignment": 999999}, format="json").status_code
        == 400
    )
    chosen = owner.post(
        url, {"source": "assignment", "assignment": handed_in["a3"].pk}, format="json"
    )
    assert chosen.status_code == 200
    assert chosen.json()["accepted"]["source"] == "assignment"
    assert chosen.json()["accepted"]["objects"] == 2
    assert BoxLabelTruth.objects.count() == 1
    # Nothing handed in: 409.
    empty = owner.post(
        f"{API}/campaigns/{painted.pk}/boxes/{other_box.pk}/label-truth/",
        {"source": "consensus"},
        format="json",
    )
    assert empty.status_code == 409
    # Its consensus: nothing to compare, no files.
    alone = owner.get(f"{API}/campaigns/{painted.pk}/boxes/{other_box.pk}/label-consensus/").json()
    assert (alone["annotators"], alone["objects"], alone["source"]) == ([], [], None)


def _only_node(path: Path) -> Any:
    nodes = [n for n in Reader(parse_url(str(path)))() if n.load(Multiscales)]
    assert len(nodes) == 1 and nodes[0].load(Label) is not None
    return nodes[0]


def test_the_export_holds_exactly_the_accepted_consensus_at_its_position(
    painted: AnnotationCampaign,
    handed_in: dict[str, Assignment],
    people: dict[str, Any],
    tmp_path: Path,
) -> None:
    for row in handed_in.values():
        services.approve(row, people["rv"])
    owner = _client(people["owner"])
    url = _box_url(painted, handed_in["a1"], "label-truth")
    assert owner.post(url, {"source": "consensus"}, format="json").status_code == 200
    # Accepted truth is a copy: a later change of an annotator's volume leaves it as it was.
    response = owner.get(f"{API}/campaigns/{painted.pk}/labels.zip")
    assert response.status_code == 200, response.content
    with zipfile.ZipFile(io.BytesIO(b"".join(response.streaming_content))) as archive:
        archive.extractall(tmp_path / "export")
    out = tmp_path / "export"
    box = painted.boxes.get(pk=handed_in["a1"].box_id)
    region = tuple(slice(s, s + n) for s, n in zip(box.start, box.size, strict=True))
    truth = np.zeros(SHAPE, np.uint32)
    truth[region] = expected_consensus(2)
    node = _only_node(out / "labels.ome.zarr")
    assert (np.asarray(node.data[0]) == truth).all()
    alone = _only_node(out / "boxes" / f"{box.pk}.ome.zarr")
    assert (np.asarray(alone.data[0]) == expected_consensus(2)).all()
    transforms = {t["type"]: t[t["type"]] for t in alone.metadata["coordinateTransformations"][0]}
    assert transforms["translation"] == [
        o * 1000 + s * v for o, s, v in zip(ORIGIN_UM, box.start, VOXEL_NM, strict=True)
    ]
    array = zarr.open_array(str(out / "boxes" / f"{box.pk}.ome.zarr" / "s0"), mode="r")
    assert int(np.count_nonzero(array[:])) == 512 + 448 + 216
    sources = list(csv.DictReader((out / "sources.csv").open()))
    assert [
        (s["box_id"], s["source"], s["annotator"], s["quorum"], s["members"], s["objects"])
        for s in sources
    ] == [
        (
            str(box.pk),
            "consensus",
            "consensus",
            "2",
            ";".join(f"{n}@v{handed_in[n].version}" for n in ("a1", "a2", "a3")),
            "3",
        )
    ]
    assert sources[0]["accepted_by"] == "owner" and sources[0]["assignment_id"] == ""


def test_dashboard_plots_painted_agreement_and_no_point_agreement(
    painted: AnnotationCampaign, handed_in: dict[str, Assignment], people: dict[str, Any]
) -> None:
    rv = _client(people["rv"])
    data = rv.get(f"{API}/campaigns/{painted.pk}/dashboard/").json()
    assert data["agreement"] is None  # points: none in a painted campaign
    # Each annotator's objects are the painted ones, counted when the task was handed in.
    painted_counts = {a["annotator"]: a["objects"] for a in data["annotators"]}
    assert {k: painted_counts[k] for k in ("a1", "a2", "a3")} == {"a1": 3, "a2": 3, "a3": 2}
    assert handed_in["a1"].__class__.objects.get(pk=handed_in["a1"].pk).painted_objects == 3
    label = data["painted_agreement"]
    assert label["boxes_compared"] == 1
    assert label["boxes"][0]["mean_f1"] == round((2 / 3 + 0.8 + 0.4) / 3, 4)
    pairs = {(p["reference"], p["other"]): p for p in label["pairs"]}
    assert pairs[("a2", "a3")]["f1"] == 0.4
    assert pairs[("a1", "a3")]["dice"] == round(2 * 728 / (1240 + 728), 4)
    text = rv.get(f"{API}/campaigns/{painted.pk}/dashboard.csv").content.decode()
    rows = list(csv.reader(io.StringIO(text)))
    assert ["label_agreement_pair", "f1", "a2 / a3", "0.4"] in rows
    box = painted.boxes.get(pk=handed_in["a1"].box_id)
    assert [
        f"label_agreement_box {box.name}",
        "mean_f1",
        "",
        str(label["boxes"][0]["mean_f1"]),
    ] in rows
    # The boxes list names an accepted truth.
    for row in handed_in.values():
        services.approve(row, people["rv"])
    _client(people["owner"]).post(
        _box_url(painted, handed_in["a1"], "label-truth"), {"source": "consensus"}, format="json"
    )
    boxes = rv.get(f"{API}/campaigns/{painted.pk}/boxes/", {"limit": 50}).json()["results"]
    assert {b["id"]: b["label_truth"] for b in boxes}[box.pk] == "consensus (quorum 2), 3 objects"


def test_blob_gc_keeps_accepted_truth_and_a_collected_consensus_is_written_again(
    painted: AnnotationCampaign, handed_in: dict[str, Assignment], people: dict[str, Any]
) -> None:
    from webapp.annotation import label_truth
    from webapp.annotation.label_gc import labels_gc

    rv = _client(people["rv"])
    url = _box_url(painted, handed_in["a1"], "label-consensus")
    source = rv.get(url).json()["source"]
    assert rv.get(f"{source}s0/0/0/0").status_code == 200
    # The consensus is no version's: the GC takes its chunk, and asking again writes it again.
    assert labels_gc(painted.pk, min_age_s=0).blobs_removed == 1
    again = rv.get(rv.get(url).json()["source"] + "s0/0/0/0")
    assert again.status_code == 200
    box = painted.boxes.get(pk=handed_in["a1"].box_id)
    assert (
        chunk_decode(again.content, selectors.label_geometry(box), (0, 0, 0))
        == (expected_consensus(2))
    ).all()
    # Accepted as ground truth, its chunk is live.
    for row in handed_in.values():
        services.approve(row, people["rv"])
    box.campaign = painted
    label_truth.label_truth_accept(box, people["owner"], "consensus")
    assert labels_gc(painted.pk, min_age_s=0).blobs_removed == 0
    truth = painted_agreement.truth_labels(box, BoxLabelTruth.objects.get(box=box))
    assert all(truth.blobs.path(k).is_file() for k in truth.chunks.values())
