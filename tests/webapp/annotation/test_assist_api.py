"""Model-assisted objects over the API: object from a click, propose-all run by a real Celery
worker, provenance of painted objects, and who may do what.

The image holds three balls of 2 um radius (two touching, one apart) in voxels of
400 x 200 x 200 nm; the campaign's one box covers it, so box-local is image voxels.
"""

from __future__ import annotations

import json
import time
from typing import Any

import numpy as np
import pytest
from annotation_testdata import campaign_with, image_layer, painted_campaign
from django.core.files.uploadedfile import SimpleUploadedFile
from rest_framework.test import APIClient
from scipy import ndimage

from pipeline.assist import rle_decode
from pipeline.ome_zarr_io import create_single_level_image
from webapp.annotation import services
from webapp.annotation.models import AnnotationCampaign, Assignment, AssistJob, Revision
from webapp.datasets.models import Layer

SHAPE = (20, 64, 64)
VOXEL_NM = (400.0, 200.0, 200.0)
BOX_UM = [8.0, 12.8, 12.8]  # the whole image: one box
CENTRES = [(10, 20, 18), (10, 20, 36), (10, 46, 44)]  # voxels; the first two touch
RADIUS_NM = 2000.0
API = "/api/v1/annotation/assignments/"


def truth() -> np.ndarray:
    """Labels 1..3 of the balls (a touching voxel goes to the nearer centre)."""
    grid = np.indices(SHAPE).reshape(3, -1).T * np.array(VOXEL_NM)
    distances = np.stack([np.linalg.norm(grid - np.array(c) * VOXEL_NM, axis=1) for c in CENTRES])
    labels = np.where(distances.min(axis=0) <= RADIUS_NM, distances.argmin(axis=0) + 1, 0)
    return labels.reshape(SHAPE).astype(np.uint32)


def write_image(layer: Layer) -> None:
    rng = np.random.default_rng(0)
    image = ndimage.gaussian_filter(np.where(truth() > 0, 1000.0, 300.0), (0.5, 1.0, 1.0))
    image = np.clip(image + rng.normal(0, 30, SHAPE), 0, None).astype(np.uint16)
    path = layer.dataset.root / layer.path
    path.parent.mkdir(parents=True, exist_ok=True)
    array = create_single_level_image(
        path, SHAPE, dtype=np.uint16, chunks=(10, 32, 32), voxel_size=VOXEL_NM, name="image"
    )
    array[...] = image


@pytest.fixture
def painted(people: dict[str, Any]) -> AnnotationCampaign:
    campaign = painted_campaign(people, SHAPE, BOX_UM, [0.0, 0.0, 0.0])
    write_image(campaign.image_layer)
    return campaign


@pytest.fixture
def task(painted: AnnotationCampaign, people: dict[str, Any]) -> Assignment:
    row = services.next_task(painted, people["a1"])
    assert row is not None and tuple(row.box.start) == (0, 0, 0)
    assert tuple(row.box.size) == SHAPE
    return row


def client(people: dict[str, Any], name: str) -> APIClient:
    api = APIClient()
    api.force_authenticate(people[name])
    return api


def decoded(proposal: dict[str, Any]) -> np.ndarray:
    """The proposal pasted into a box-sized volume."""
    z0, y0, x0, z1, y1, x1 = proposal["bbox"]
    out = np.zeros(SHAPE, bool)
    out[z0:z1, y0:y1, x0:x1] = rle_decode(proposal["rle"], (z1 - z0, y1 - y0, x1 - x0))
    return out


def dice(a: np.ndarray, b: np.ndarray) -> float:
    return 2 * int((a & b).sum()) / (int(a.sum()) + int(b.sum()))


@pytest.mark.django_db
def test_click_proposes_the_ball_holding_the_voxel(
    task: Assignment, people: dict[str, Any]
) -> None:
    api = client(people, "a1")
    url = f"{API}{task.pk}/assist/click/"
    labels = truth()
    for index, (z, y, x) in enumerate(CENTRES, start=1):
        answer = api.post(url, {"z": z, "y": y + 2, "x": x - 1}, format="json")
        assert answer.status_code == 200, answer.content
        proposal = answer.json()["proposal"]
        assert proposal is not None and proposal["source"] == "watershed"
        z0, y0, x0, z1, y1, x1 = proposal["bbox"]
        assert 0 <= z0 < z1 <= SHAPE[0] and 0 <= y0 < y1 <= SHAPE[1] and 0 <= x0 < x1 <= SHAPE[2]
        mask = decoded(proposal)
        assert mask.sum() == proposal["voxels"]
        assert dice(mask, labels == index) >= 0.9, index
    # Background: nothing, with the reason.
    answer = api.post(url, {"z": 2, "y": 2, "x": 60}, format="json")
    assert answer.status_code == 200
    assert answer.json()["proposal"] is None and answer.json()["reason"]


@pytest.mark.django_db
@pytest.mark.parametrize(
    "body",
    [
        {"z": 20, "y": 0, "x": 0},  # past the box
        {"z": -1, "y": 0, "x": 0},
        {"z": "a", "y": 0, "x": 0},
        {"z": 1, "y": 2},
        {"z": 2**40, "y": 0, "x": 0},
    ],
)
def test_bad_clicks_are_400(task: Assignment, people: dict[str, Any], body: Any) -> None:
    answer = client(people, "a1").post(f"{API}{task.pk}/assist/click/", body, format="json")
    assert answer.status_code == 400, answer.content
    assert answer.json()


@pytest.mark.django_db
def test_who_may_ask_and_read(task: Assignment, people: dict[str, Any]) -> None:
    click, proposals = f"{API}{task.pk}/assist/click/", f"{API}{task.pk}/assist/proposals/"
    outsider, reviewer = client(people, "outsider"), client(people, "rv")
    point = {"z": 10, "y": 20, "x": 18}
    assert outsider.post(click, point, format="json").status_code == 404
    assert outsider.post(proposals).status_code == 404
    assert outsider.get(proposals).status_code == 404
    assert reviewer.post(click, point, format="json").status_code == 403
    assert reviewer.post(proposals).status_code == 403
    assert reviewer.get(proposals).status_code == 404  # no job yet
    # Another annotator of the campaign does not see this task at all.
    assert client(people, "a2").post(click, point, format="json").status_code == 404
    assert not AssistJob.objects.exists()
    # A submitted task is no longer editable: 409 with the version.
    services.submit(task, people["a1"], 0)
    answer = client(people, "a1").post(click, point, format="json")
    assert answer.status_code == 409 and answer.json()["current_version"] == 0


@pytest.mark.django_db
def test_points_campaign_has_nothing_to_propose(people: dict[str, Any]) -> None:
    campaign = campaign_with(
        image_layer(people["owner"]), people["owner"], annotators=(people["a1"],)
    )
    services.boxes_tile(campaign, people["owner"])
    row = services.next_task(campaign, people["a1"])
    assert row is not None
    answer = client(people, "a1").post(
        f"{API}{row.pk}/assist/click/", {"z": 0, "y": 0, "x": 0}, format="json"
    )
    assert answer.status_code == 400 and "not painted" in answer.json()["message"]


def test_a_worker_proposes_every_ball_with_progress(
    celery_worker: Any, painted: AnnotationCampaign, task: Assignment, people: dict[str, Any]
) -> None:
    api, url = client(people, "a1"), f"{API}{task.pk}/assist/proposals/"
    started = api.post(url)
    assert started.status_code == 202, started.content
    assert started.json()["state"] in ("queued", "running")
    # Asking again while it runs answers the same job.
    again = api.post(url)
    assert again.status_code == 202 and again.json()["id"] == started.json()["id"]
    seen: list[float] = []
    deadline = time.monotonic() + 120
    while True:
        body = api.get(url).json()
        seen.append(body["progress"])
        assert 0.0 <= body["progress"] <= 1.0 and body["state"] != "failed", body
        if body["state"] == "done":
            break
        assert time.monotonic() < deadline, body
        time.sleep(0.1)
    assert body["progress"] == 1.0 and "3 objects" in body["message"]
    assert seen == sorted(seen)  # progress only moves forward
    labels = truth()
    proposals = body["proposals"]
    assert len(proposals) == 3
    assert len({p["id"] for p in proposals}) == 3
    for index in range(1, 4):
        assert max(dice(decoded(p), labels == index) for p in proposals) >= 0.9
    # The reviewer reads the same proposals.
    assert client(people, "rv").get(url).json()["proposals"] == proposals
    job = AssistJob.objects.get()
    assert job.finished is not None and job.requested_by == people["a1"]


def part(array: np.ndarray) -> SimpleUploadedFile:
    return SimpleUploadedFile("chunk", array.astype("<u4").tobytes(), "application/octet-stream")


@pytest.mark.django_db
def test_provenance_round_trip_and_refusals(task: Assignment, people: dict[str, Any]) -> None:
    api = client(people, "a1")
    url, objects = f"{API}{task.pk}/labels/", f"{API}{task.pk}/labels/objects/"
    labels = truth()
    first = {
        "1": {"source": "click"},
        "2": {"source": "proposal", "proposal_source": "model", "model": "model v2"},
        "3": {"source": "manual", "interpolated": {"xy": [5, 4, 6], "yz": [], "xz": [9]}},
    }
    answer = api.post(
        url,
        {"base_version": "0", "provenance": json.dumps(first), "0.0.0": part(labels[:, :64, :64])},
        format="multipart",
    )
    assert answer.status_code == 200, answer.content
    found = {o["segment_id"]: o["provenance"] for o in api.get(objects).json()["objects"]}
    interpolated_3 = {"source": "manual", "interpolated": {"xy": [4, 5, 6], "xz": [9]}}
    assert found == {1: first["1"], 2: first["2"], 3: interpolated_3}
    # The labels' state gives the editor the same map (it carries it into its next saves).
    assert api.get(url).json()["provenance"] == {"1": first["1"], "2": first["2"],
                                                 "3": interpolated_3}  # fmt: skip
    # Refusals: nothing saved.
    for bad in (
        "{not json",
        "[1, 2]",
        json.dumps({"0": {"source": "manual"}}),
        json.dumps({"x": {"source": "manual"}}),
        json.dumps({"3": {"source": "magic"}}),
        json.dumps({"3": "manual"}),
        json.dumps({"3": {"source": "proposal", "proposal_source": "oracle"}}),
        json.dumps({"3": {"source": "manual", "colour": "red"}}),
        json.dumps({"3": {"source": "click", "proposal_source": "model", "model": ""}}),
        json.dumps({"3": {"source": "click", "proposal_source": "model", "model": 3}}),
        json.dumps({"3": {"source": "click", "model": "m" * 101}}),
        json.dumps({"3": {"source": "manual", "interpolated": [4, 5]}}),
        json.dumps({"3": {"source": "manual", "interpolated": {"zz": [4]}}}),
        json.dumps({"3": {"source": "manual", "interpolated": {"xy": [-1]}}}),
        json.dumps({"3": {"source": "manual", "interpolated": {"xy": [1.5]}}}),
        json.dumps({"3": {"source": "manual", "interpolated": {"xy": list(range(4097))}}}),
    ):
        changed = labels.copy()
        changed[changed == 3] = 4
        answer = api.post(
            url,
            {"base_version": "1", "provenance": bad, "0.0.0": part(changed)},
            format="multipart",
        )
        assert answer.status_code == 400, (bad, answer.content)
        assert "provenance" in answer.json()["message"]
    assert Revision.objects.filter(assignment=task).count() == 1
    # A later save adds to the map; earlier objects keep theirs.
    changed = labels.copy()
    changed[changed == 3] = 4
    answer = api.post(
        url,
        {
            "base_version": "1",
            "provenance": json.dumps({"4": {"source": "manual"}}),
            "0.0.0": part(changed),
        },
        format="multipart",
    )
    assert answer.status_code == 200, answer.content
    found = {o["segment_id"]: o["provenance"] for o in api.get(objects).json()["objects"]}
    assert found == {1: first["1"], 2: first["2"], 4: {"source": "manual"}}
    # Version 1 still reads as it was; a restore brings its provenance back.
    old = {
        o["segment_id"]: o["provenance"] for o in api.get(f"{objects}?version=1").json()["objects"]
    }
    assert old == {1: first["1"], 2: first["2"], 3: interpolated_3}
    services.restore(task, people["a1"], 1, 2)
    found = {o["segment_id"]: o["provenance"] for o in api.get(objects).json()["objects"]}
    assert found == {1: first["1"], 2: first["2"], 3: interpolated_3}
