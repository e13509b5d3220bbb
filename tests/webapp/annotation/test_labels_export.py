"""A painted campaign's approved labels exported for training (``labels.zip``) and the
morphometrics of painted objects (``labels/objects/``): the zip read back with ome-zarr-py,
zarr and the pipeline's own readers, a tiny model trained on it through the pipeline's entry
point, permissions per role.

The image is 40 x 128 x 128 voxels of 400 x 200 x 200 nm with its origin off zero; the boxes are
20 x 64 x 64 (8 of them), each one chunk of labels.
"""

from __future__ import annotations

import csv
import io
import math
import tempfile
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import zarr
from annotation_testdata import painted_campaign
from django.test import Client
from ome_zarr.io import parse_url
from ome_zarr.reader import Label, Multiscales, Reader
from rest_framework.test import APIClient

from pipeline.evaluation import boxes_read_csv
from pipeline.ome_zarr_io import create_single_level_image
from pipeline.run import _read_boxes
from tests.label_training import train_tiny_model
from webapp.annotation import services
from webapp.annotation.models import AnnotationCampaign, Assignment, TaskBox

pytestmark = pytest.mark.django_db

SHAPE = (40, 128, 128)
VOXEL_NM = (400.0, 200.0, 200.0)
ORIGIN_UM = [0.8, 1.6, 2.4]
BOX_UM = [8.0, 12.8, 12.8]
BOX = (20, 64, 64)
RADIUS_UM = 3.0
API = "/api/v1/annotation"


def sphere(value: int, centre: tuple[float, float, float] = (10, 32, 32)) -> np.ndarray:
    """A ball of radius RADIUS_UM (physical, so 7.5 voxels in z and 15 in y and x)."""
    z, y, x = np.ogrid[: BOX[0], : BOX[1], : BOX[2]]
    out = np.zeros(BOX, np.uint32)
    inside = (
        ((z - centre[0]) * VOXEL_NM[0]) ** 2
        + ((y - centre[1]) * VOXEL_NM[1]) ** 2
        + ((x - centre[2]) * VOXEL_NM[2]) ** 2
    ) <= (RADIUS_UM * 1000) ** 2
    out[inside] = value
    return out


def cube(value: int, at: tuple[int, int, int], size: int = 6) -> np.ndarray:
    out = np.zeros(BOX, np.uint32)
    out[at[0] : at[0] + size, at[1] : at[1] + size, at[2] : at[2] + size] = value
    return out


@pytest.fixture
def painted(people: dict[str, Any]) -> AnnotationCampaign:
    """N = 2, annotators a1-a3, reviewer rv; painted; 8 boxes."""
    return painted_campaign(people, SHAPE, BOX_UM, ORIGIN_UM, redundancy=2)


def _paint(
    campaign: AnnotationCampaign, user: Any, labels: np.ndarray | None, approve: Any = None
) -> Assignment:
    """The user's next task painted with ``labels`` (none: left empty), submitted, approved by
    ``approve`` when given."""
    row = services.next_task(campaign, user)
    assert row is not None
    if labels is not None:
        services.labels_save(row, user, row.version, {(0, 0, 0): labels})
        row.refresh_from_db()
    row = services.submit(row, user, row.version)
    if approve is not None:
        row = services.approve(row, approve)
    return row


@pytest.fixture
def approved(painted: AnnotationCampaign, people: dict[str, Any]) -> dict[str, Any]:
    """Box one: a1 (slot 0) and a2 (slot 1) approved with different labels. Box two: a3 (slot
    0) approved with nothing painted, a1 (slot 1) approved with labels. Box three: a2 approved
    with nothing painted; a3 painted it too, submitted, not approved: it is left out."""
    rv = people["rv"]
    one_labels = sphere(7) + cube(3, (2, 2, 2))
    two_labels = sphere(5, (9, 30, 36))
    one = _paint(painted, people["a1"], one_labels, rv)
    other = _paint(painted, people["a2"], cube(9, (5, 40, 40)), rv)
    assert other.box_id == one.box_id and (one.slot, other.slot) == (0, 1)
    empty = _paint(painted, people["a3"], None, rv)
    two = _paint(painted, people["a1"], two_labels, rv)
    assert two.box_id == empty.box_id and (empty.slot, two.slot) == (0, 1)
    three = _paint(painted, people["a2"], None, rv)
    pending = _paint(painted, people["a3"], cube(4, (0, 0, 0)))
    assert pending.box_id == three.box_id and len({one.box_id, two.box_id, three.box_id}) == 3
    return {"one": (one, one_labels), "two": (two, two_labels), "three": three}


def _client(user: Any) -> APIClient:
    client = APIClient()
    client.force_authenticate(user)
    return client


def _region(box: TaskBox) -> tuple[slice, ...]:
    return tuple(slice(s, s + n) for s, n in zip(box.start, box.size, strict=True))


def _unpack(response: Any, into: Path) -> Path:
    body = b"".join(response.streaming_content)
    with zipfile.ZipFile(io.BytesIO(body)) as archive:
        assert archive.testzip() is None
        archive.extractall(into)
    return into


def _only_node(path: Path) -> Any:
    nodes = [n for n in Reader(parse_url(str(path)))() if n.load(Multiscales)]
    assert len(nodes) == 1 and nodes[0].load(Label) is not None
    return nodes[0]


def _transforms(node: Any) -> dict[str, list[float]]:
    return {t["type"]: t[t["type"]] for t in node.metadata["coordinateTransformations"][0]}


def test_the_zip_holds_the_approved_labels_on_the_image_grid_and_trains_a_model(
    painted: AnnotationCampaign,
    approved: dict[str, Any],
    people: dict[str, Any],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    (one, one_labels), (two, two_labels) = approved["one"], approved["two"]
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    response = _client(people["rv"]).get(f"{API}/campaigns/{painted.pk}/labels.zip")
    assert response.status_code == 200, response.content
    assert response["Content-Type"] == "application/zip"
    assert response["Content-Disposition"].endswith(f'annotation{painted.pk}-labels.zip"')
    out = _unpack(response, tmp_path / "export")

    origin_nm = [v * 1000 for v in ORIGIN_UM]
    truth = np.zeros(SHAPE, np.uint32)
    truth[_region(one.box)] = one_labels  # a1's, slot 0, not a2's
    truth[_region(two.box)] = two_labels  # a1's: a3's approved slot 0 painted nothing
    # ome-zarr-py reads one label image of the image's grid: the boxes' voxels, 0 elsewhere.
    node = _only_node(out / "labels.ome.zarr")
    read = np.asarray(node.data[0])
    assert read.shape == SHAPE and read.dtype == np.uint32
    assert (read == truth).all()
    assert _transforms(node) == {"scale": list(VOXEL_NM), "translation": origin_nm}
    assert [a["unit"] for a in node.metadata["axes"]] == ["nanometer"] * 3
    # Only the chunks holding labels are written: the two boxes' (zarr, not ome-zarr-py).
    array = zarr.open_array(str(out / "labels.ome.zarr" / "s0"), mode="r")
    assert array.nchunks_initialized == 2
    # The mask: 1 on the two exported boxes, 0 elsewhere (box three painted nothing).
    mask = _only_node(out / "mask.ome.zarr")
    annotated = np.zeros(SHAPE, np.uint8)
    annotated[_region(one.box)] = annotated[_region(two.box)] = 1
    assert (np.asarray(mask.data[0]) == annotated).all()
    assert _transforms(mask)["translation"] == origin_nm
    # Each box alone, at its physical position.
    for row, labels in ((one, one_labels), (two, two_labels)):
        alone = _only_node(out / "boxes" / f"{row.box_id}.ome.zarr")
        assert (np.asarray(alone.data[0]) == labels).all()
        assert _transforms(alone)["translation"] == [
            o + s * v for o, s, v in zip(origin_nm, row.box.start, VOXEL_NM, strict=True)
        ]
    # The boxes table, as the pipeline's own reader and the run's check read it.
    boxes = boxes_read_csv(out / "boxes.csv")
    assert [(b.name, b.start, b.size) for b in boxes] == [
        (r.box.name, r.box.start, r.box.size) for r in (one, two)
    ]
    assert len(_read_boxes(out / "boxes.csv", SHAPE)) == 2
    sources = list(csv.DictReader((out / "sources.csv").open()))
    assert [(s["box_id"], s["annotator"], s["version"], s["objects"]) for s in sources] == [
        (str(one.box_id), "a1", str(one.version), "2"),
        (str(two.box_id), "a1", str(two.version), "1"),
    ]
    objects = list(csv.DictReader((out / "labels_objects.csv").open()))
    assert [(o["box_id"], o["segment_id"]) for o in objects] == [
        (str(one.box_id), "3"),
        (str(one.box_id), "7"),
        (str(two.box_id), "5"),
    ]
    ball = objects[1]
    assert math.isclose(float(ball["volume_um3"]), 4 / 3 * math.pi * RADIUS_UM**3, rel_tol=0.03)
    assert float(ball["sphericity"]) > 0.95
    # Centroid of box one's ball in the image grid and in um.
    centre = [s + c for s, c in zip(one.box.start, (10, 32, 32), strict=True)]
    assert [float(ball[f"centroid_{a}"]) for a in "zyx"] == pytest.approx(centre)
    assert [float(ball[f"centroid_{a}_um"]) for a in "zyx"] == pytest.approx(
        [o + c * v / 1000 for o, c, v in zip(ORIGIN_UM, centre, VOXEL_NM, strict=True)]
    )
    # The files the zip was made of are gone once it is sent.
    assert not list(scratch.iterdir())

    # A tiny model trains on it through the pipeline's own entry point (data.labels/boxes).
    rng = np.random.default_rng(0)
    image = (truth > 0).astype(np.float32) * 100 + rng.normal(0, 10, SHAPE).astype(np.float32)
    image_path = tmp_path / "image.ome.zarr"
    create_single_level_image(
        image_path, SHAPE, dtype="float32", chunks=(40, 64, 64), voxel_size=VOXEL_NM, name="i"
    )[:] = image
    train_tiny_model(image_path, out / "labels.ome.zarr", out / "boxes.csv", tmp_path / "run")


def test_who_may_download_and_what_is_refused(
    painted: AnnotationCampaign, people: dict[str, Any], campaign: AnnotationCampaign
) -> None:
    url = f"{API}/campaigns/{painted.pk}/labels.zip"
    # Painted, nothing approved yet: 400 saying so.
    nothing = _client(people["owner"]).get(url)
    assert nothing.status_code == 400
    assert "No box has approved painted labels" in nothing.json()["message"]
    _paint(painted, people["a1"], sphere(2), people["rv"])
    for name, expected in (("a1", 403), ("outsider", 404), ("rv", 200), ("owner", 200)):
        response = _client(people[name]).get(url)
        assert response.status_code == expected, name
        if expected == 200:
            body = b"".join(response.streaming_content)
            assert "labels.ome.zarr/zarr.json" in zipfile.ZipFile(io.BytesIO(body)).namelist()
    assert APIClient().get(url).status_code in (401, 403)
    # A campaign of points: 400 naming where its ground truth is.
    points = _client(people["owner"]).get(f"{API}/campaigns/{campaign.pk}/labels.zip")
    assert points.status_code == 400
    assert "not painted" in points.json()["message"]
    assert "export.csv" in points.json()["message"]


def test_morphometrics_of_painted_objects_per_version(
    painted: AnnotationCampaign, people: dict[str, Any]
) -> None:
    a1 = people["a1"]
    row = services.next_task(painted, a1)
    assert row is not None
    services.labels_save(row, a1, 0, {(0, 0, 0): sphere(7)})
    services.labels_save(row, a1, 1, {(0, 0, 0): sphere(7) + cube(3, (2, 2, 2))})
    url = f"{API}/assignments/{row.pk}/labels/objects/"
    body = _client(a1).get(url).json()
    assert (body["version"], body["current_version"]) == (2, 2)
    assert [o["segment_id"] for o in body["objects"]] == [3, 7]
    small, ball = body["objects"]
    voxel_um3 = math.prod(VOXEL_NM) * 1e-9
    assert small["voxels"] == 216 and small["volume_um3"] == pytest.approx(216 * voxel_um3)
    assert ball["volume_um3"] == pytest.approx(4 / 3 * math.pi * RADIUS_UM**3, rel=0.03)
    assert ball["surface_area_um2"] == pytest.approx(4 * math.pi * RADIUS_UM**2, rel=0.05)
    assert 0.95 < ball["sphericity"] <= 1.01
    assert small["sphericity"] < 0.9  # a cube: about 0.81-0.83
    start = row.box.start
    assert [ball[f"centroid_{a}"] for a in "zyx"] == pytest.approx(
        [s + c for s, c in zip(start, (10, 32, 32), strict=True)]
    )
    # An earlier version; versions past the current one are refused.
    first = _client(a1).get(url, {"version": 1}).json()
    assert first["version"] == 1 and [o["segment_id"] for o in first["objects"]] == [7]
    assert _client(a1).get(url, {"version": 0}).json()["objects"] == []
    assert _client(a1).get(url, {"version": 3}).status_code == 400
    # Who may read: as labels/ (the annotator, reviewers, managers; others 404).
    for name, expected in (("rv", 200), ("owner", 200), ("a2", 404), ("outsider", 404)):
        assert _client(people[name]).get(url).status_code == expected, name


def test_the_campaign_and_review_pages_link_the_zip_of_a_painted_campaign(
    painted: AnnotationCampaign, campaign: AnnotationCampaign, people: dict[str, Any]
) -> None:
    client = Client()
    client.force_login(people["rv"])
    for page in ("", "review/"):
        html = client.get(f"/annotation/{painted.pk}/{page}").content.decode()
        assert f'href="{API}/campaigns/{painted.pk}/labels.zip"' in html, page
        html = client.get(f"/annotation/{campaign.pk}/{page}").content.decode()
        assert f"{API}/campaigns/{campaign.pk}/export.csv" in html, page
        assert "labels.zip" not in html, page
