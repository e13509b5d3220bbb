"""Adding task boxes through the API, from each of the four sources, and bad boxes refused
with a clear 4xx (a malformed table with its line number, boxes outside the volume, a table
too large); the coverage endpoint's rectangles and states."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from annotation_testdata import campaign_with, image_layer
from django.conf import settings
from rest_framework.test import APIClient

from pipeline.importers import convert_to_ome_zarr
from webapp.annotation import services
from webapp.annotation.api.serializers import MAX_CSV
from webapp.annotation.models import AnnotationCampaign, Assignment, TaskBox
from webapp.datasets.models import Dataset, Layer, LayerKind
from webapp.proofreading.models import CampaignMember as ProofreadingMember
from webapp.proofreading.models import MissedObject, ProofreadingCampaign

pytestmark = pytest.mark.django_db
DATA = Path(__file__).resolve().parents[2] / "data" / "segvoldata_c432"


def _boxes_url(campaign: AnnotationCampaign) -> str:
    return f"/api/v1/annotation/campaigns/{campaign.pk}/boxes/"


def _as(api: APIClient, user: Any) -> APIClient:
    api.force_authenticate(user)
    return api


def _post(api: APIClient, campaign: AnnotationCampaign, **body: Any) -> Any:
    return api.post(_boxes_url(campaign), body, format="json")


def test_tiling_the_volume_and_a_region(api: APIClient, people: dict[str, Any]) -> None:
    campaign = campaign_with(image_layer(people["owner"]), people["owner"], redundancy=2)
    answer = _post(_as(api, people["owner"]), campaign, source="tile")
    assert answer.status_code == 201, answer.content
    assert answer.json()["created"] == 8
    assert Assignment.objects.filter(box__campaign=campaign).count() == 16
    region = {"start": [0, 0, 0], "size": [10, 32, 64]}
    answer = _post(api, campaign, source="tile", region=region, priority=5)
    assert answer.status_code == 201, answer.content
    boxes = answer.json()["boxes"]
    assert [b["start"] for b in boxes] == [[0, 0, 0], [0, 0, 32]]
    assert {b["priority"] for b in boxes} == {5}
    assert all(b["name"].startswith("tile2-") for b in boxes)


def test_members_other_than_managers_may_not_add_boxes(
    campaign: AnnotationCampaign, api: APIClient, people: dict[str, Any]
) -> None:
    assert _post(_as(api, people["a1"]), campaign, source="tile").status_code == 403
    assert _post(_as(api, people["rv"]), campaign, source="tile").status_code == 403
    assert _post(_as(api, people["outsider"]), campaign, source="tile").status_code == 404


def _masked_dataset(owner: Any) -> tuple[Layer, Layer]:
    """A 20 x 64 x 64 image whose label layer "organ" covers its left half (x < 32)."""
    root = Path(settings.DATA_ROOT) / "datasets" / "masked"
    root.parent.mkdir(parents=True, exist_ok=True)
    image = np.random.default_rng(1).integers(0, 1000, (20, 64, 64)).astype(np.uint16)
    labels = np.zeros((20, 64, 64), dtype=np.uint32)
    labels[:, :, :32] = 1
    with tempfile.TemporaryDirectory() as tmp:
        np.save(Path(tmp) / "image.npy", image)
        np.save(Path(tmp) / "organ.npy", labels)
        result = convert_to_ome_zarr(
            Path(tmp) / "image.npy",
            root,
            voxel_size=(400.0, 200.0, 200.0),
            unit="nanometer",
            labels={"organ": Path(tmp) / "organ.npy"},
            chunk=16,
        )
    dataset = Dataset.objects.create(name="Masked", slug="masked", owner=owner)

    def layer(name: str, kind: str, info: Any) -> Layer:
        return Layer.objects.create(
            dataset=dataset,
            name=name,
            kind=kind,
            path=info.path,
            ngff_version=info.ngff_version,
            shape=list(info.shape),
            axes=list(info.axes),
            dtype=info.dtype,
            voxel_size=list(info.voxel_size),
            unit=info.unit,
            levels=info.levels,
        )

    return (
        layer("image", LayerKind.IMAGE, result.image),
        layer("organ", LayerKind.SEGMENTATION, result.labels["organ"]),
    )


def test_a_stratified_sample_inside_a_mask(api: APIClient, people: dict[str, Any]) -> None:
    image, _ = _masked_dataset(people["owner"])
    campaign = campaign_with(image, people["owner"])
    api = _as(api, people["owner"])
    answer = _post(api, campaign, source="sample", count=4, seed=7, mask_layer="organ")
    assert answer.status_code == 201, answer.content
    boxes = answer.json()["boxes"]
    assert len(boxes) == 4
    assert all(b["start"][2] == 0 for b in boxes), boxes  # the left half only
    assert boxes[0]["source_ref"] == "seed 7, mask organ"
    # Without a mask, a sample of the whole volume; a count is needed; unknown masks refused.
    assert _post(api, campaign, source="sample", count=3).status_code == 201
    missing = _post(api, campaign, source="sample")
    assert missing.status_code == 400 and "count" in missing.json()["message"]
    unknown = _post(api, campaign, source="sample", count=2, mask_layer="nope")
    assert unknown.status_code == 400 and "no layer 'nope'" in unknown.json()["message"]
    not_labels = _post(api, campaign, source="sample", count=2, mask_layer="image")
    assert not_labels.status_code == 400


def test_the_published_box_table(api: APIClient, people: dict[str, Any]) -> None:
    layer = image_layer(people["owner"], shape=(5000, 9000, 7000))
    campaign = campaign_with(layer, people["owner"])
    text = (DATA / "C432_XNH_bbox_test.csv").read_text(encoding="utf-8")
    answer = _post(_as(api, people["owner"]), campaign, source="csv", csv=text)
    assert answer.status_code == 201, answer.content
    assert answer.json()["created"] == 18
    first = next(b for b in answer.json()["boxes"] if b["name"] == "GL_ctr")
    assert first["start"] == [1000, 4638, 6075] and first["size"] == [500, 500, 500]
    assert first["source"] == "csv"
    again = _post(api, campaign, source="csv", csv=text)
    assert again.status_code == 409


def test_bad_tables_and_boxes_are_refused(api: APIClient, people: dict[str, Any]) -> None:
    campaign = campaign_with(image_layer(people["owner"]), people["owner"])
    api = _as(api, people["owner"])
    malformed = _post(
        api, campaign, source="csv", csv="id,x,y,z,w,h,d\na,1,1,1,2,2,2\nb,1,x,1,2,2,2\n"
    )
    assert malformed.status_code == 400
    assert "line 3" in malformed.json()["message"]
    short = _post(api, campaign, source="csv", csv="id,x,y,z,w,h,d\na,1,1\n")
    assert short.status_code == 400 and "line 2" in short.json()["message"]
    outside = _post(api, campaign, source="csv", csv="id,x,y,z,w,h,d\nbig,60,0,0,10,10,10\n")
    assert outside.status_code == 400
    assert "not inside the volume" in outside.json()["message"]
    zero = _post(api, campaign, source="csv", csv="id,x,y,z,w,h,d\nflat,0,0,0,0,4,4\n")
    assert zero.status_code == 400
    region = {"start": [0, 0, 60], "size": [10, 10, 10]}
    assert _post(api, campaign, source="tile", region=region).status_code == 400
    assert _post(api, campaign, source="csv").status_code == 400
    rows = "id,x,y,z,w,h,d\n" + "".join(f"b{i},0,0,0,1,1,1\n" for i in range(400_000))
    assert len(rows) > MAX_CSV
    oversized = _post(api, campaign, source="csv", csv=rows)
    assert oversized.status_code in (400, 413)
    assert not TaskBox.objects.filter(campaign=campaign).exists()


def test_boxes_around_the_missed_objects_of_a_proofreading_campaign(
    api: APIClient, people: dict[str, Any]
) -> None:
    owner = people["owner"]
    layer = image_layer(owner)
    campaign = campaign_with(layer, owner)
    labels = Layer.objects.create(
        dataset=layer.dataset,
        name="nuclei",
        kind=LayerKind.SEGMENTATION,
        path="image.ome.zarr/labels/nuclei",
        ngff_version="0.5",
        shape=list(layer.shape),
        axes=["z", "y", "x"],
        dtype="uint32",
        voxel_size=list(layer.voxel_size),
        unit="nanometer",
    )
    source = ProofreadingCampaign.objects.create(layer=labels, name="Check", created_by=owner)
    ProofreadingMember.objects.create(campaign=source, user=owner, role="manager")
    for z, y, x in ((5, 40, 60), (2, 3, 4)):
        MissedObject.objects.create(campaign=source, created_by=owner, z=z, y=y, x=x)
    api = _as(api, owner)
    answer = _post(api, campaign, source="missed", proofreading_campaign=source.pk)
    assert answer.status_code == 201, answer.content
    boxes = answer.json()["boxes"]
    assert [b["size"] for b in boxes] == [[10, 32, 32]] * 2
    assert boxes[0]["start"] == [0, 24, 32]
    assert {b["source"] for b in boxes} == {"missed"}
    # Someone else's campaign, or one over another dataset, is refused.
    other = ProofreadingCampaign.objects.create(layer=labels, name="Not mine", created_by=owner)
    assert _post(api, campaign, source="missed", proofreading_campaign=other.pk).status_code == 400
    elsewhere = campaign_with(image_layer(owner), owner)
    answer = _post(api, elsewhere, source="missed", proofreading_campaign=source.pk)
    assert answer.status_code == 400 and "another dataset" in answer.json()["message"]


def test_coverage_rectangles_and_states(
    campaign: AnnotationCampaign, api: APIClient, people: dict[str, Any]
) -> None:
    """8 tiles of 10 x 32 x 32 over 20 x 64 x 64 voxels: four rectangles, each drawn twice
    (two z layers), a quarter of the thumbnail each; states follow the slots."""
    box = TaskBox.objects.filter(campaign=campaign).order_by("id").first()
    assert box is not None
    services.next_task(campaign, people["a1"])  # takes a slot of the first box
    answer = _as(api, people["a2"]).get(f"/api/v1/annotation/campaigns/{campaign.pk}/coverage/")
    assert answer.status_code == 200, answer.content
    body = answer.json()
    assert body["total"] == 8 and not body["truncated"]
    assert body["shape"] == [20, 64, 64] and body["slice_z"] == 10
    w, h = body["width"], body["height"]
    assert w == h  # a square y-x extent
    rects = {tuple(b["rect"]) for b in body["boxes"]}
    assert rects == {
        (0.0, 0.0, w / 2, h / 2),
        (w / 2, 0.0, w / 2, h / 2),
        (0.0, h / 2, w / 2, h / 2),
        (w / 2, h / 2, w / 2, h / 2),
    }
    states = {b["id"]: b["state"] for b in body["boxes"]}
    taken = Assignment.objects.get(box__campaign=campaign, annotator=people["a1"]).box_id
    assert states[taken] == "in_progress"
    assert body["counts"] == {
        "todo": 7,
        "in_progress": 1,
        "submitted": 0,
        "approved": 0,
        "flagged": 0,
    }
    assert sum(b["crosses_slice"] for b in body["boxes"]) == 4  # z 10-19 holds slice 10
    assert (
        _as(api, people["outsider"])
        .get(f"/api/v1/annotation/campaigns/{campaign.pk}/coverage/")
        .status_code
        == 404
    )
