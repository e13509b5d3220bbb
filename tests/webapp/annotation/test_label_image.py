"""labels/image/: the task box's image as the painting editor reads it (uint8 bytes, its shape and
stretch in headers), for the annotator, reviewer and manager; 404 for anyone else."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from annotation_testdata import painted_campaign

from pipeline.box_image import stretch_uint8
from pipeline.ome_zarr_io import create_single_level_image
from webapp.annotation import services
from webapp.annotation.models import AnnotationCampaign, Assignment, TaskBox

pytestmark = pytest.mark.django_db

SHAPE = (20, 96, 80)
API = "/api/v1/annotation/assignments/"


def write_image(campaign: AnnotationCampaign, data: np.ndarray) -> None:
    layer = campaign.image_layer
    path = Path(layer.dataset.root) / layer.path
    array = create_single_level_image(
        path, data.shape, dtype=data.dtype, chunks=(8, 32, 32), voxel_size=None, name="img"
    )
    array[...] = data


@pytest.fixture
def image(settings: Any, tmp_path: Path) -> np.ndarray:
    settings.DATA_ROOT = str(tmp_path)
    rng = np.random.default_rng(3)
    return rng.integers(100, 4000, SHAPE, dtype=np.uint16)


@pytest.fixture
def painted(people: dict[str, Any], image: np.ndarray) -> AnnotationCampaign:
    # Boxes of 10 x 64 x 64 voxels over 20 x 96 x 80: the far boxes reach past the image.
    campaign = painted_campaign(people, SHAPE, [4.0, 12.8, 12.8], [0.0, 0.0, 0.0])
    write_image(campaign, image)
    return campaign


def task_for(campaign: AnnotationCampaign, user: Any) -> Assignment:
    row = services.next_task(campaign, user)
    assert row is not None
    return row


def test_the_bytes_are_the_stretched_box_with_shape_and_range(
    painted: AnnotationCampaign, image: np.ndarray, people: dict[str, Any], api: Any
) -> None:
    row = task_for(painted, people["a1"])
    box = row.box
    api.force_authenticate(people["a1"])
    response = api.get(f"{API}{row.pk}/labels/image/")
    assert response.status_code == 200, response.content
    assert response["Content-Type"] == "application/octet-stream"
    z, y, x = box.start
    raw = image[z : z + box.depth, y : y + box.height, x : x + box.width]
    assert raw.size > 1000
    want, (low, high) = stretch_uint8(raw)
    assert response["X-Shape"] == ",".join(str(n) for n in raw.shape)
    got_low, got_high = (float(v) for v in response["X-Value-Range"].split(","))
    assert got_low == pytest.approx(low, rel=1e-5) and got_high == pytest.approx(high, rel=1e-5)
    got = np.frombuffer(response.content, np.uint8).reshape(raw.shape)
    assert (got == want).all() and got.std() > 10


def test_a_box_reaching_past_the_image_is_clipped(
    painted: AnnotationCampaign, image: np.ndarray, people: dict[str, Any], api: Any
) -> None:
    row = task_for(painted, people["a1"])
    TaskBox.objects.filter(pk=row.box_id).update(z0=10, y0=64, x0=64, depth=10, height=64, width=64)
    api.force_authenticate(people["a1"])
    response = api.get(f"{API}{row.pk}/labels/image/")
    assert response.status_code == 200
    assert response["X-Shape"] == "10,32,16"
    want, _ = stretch_uint8(image[10:20, 64:96, 64:80])
    assert response.content == want.tobytes()


def test_who_may_read_the_image(
    painted: AnnotationCampaign, people: dict[str, Any], api: Any
) -> None:
    row = task_for(painted, people["a1"])
    url = f"{API}{row.pk}/labels/image/"
    for name, status in (("a1", 200), ("rv", 200), ("owner", 200), ("a2", 404), ("outsider", 404)):
        api.force_authenticate(people[name])
        assert api.get(url).status_code == status, name
    api.force_authenticate(None)
    assert api.get(url).status_code in (401, 403)


def test_a_missing_image_is_404_not_500(
    painted: AnnotationCampaign, people: dict[str, Any], api: Any
) -> None:
    row = task_for(painted, people["a1"])
    layer = painted.image_layer
    layer.path = "gone.ome.zarr"
    layer.save()
    api.force_authenticate(people["a1"])
    response = api.get(f"{API}{row.pk}/labels/image/")
    assert response.status_code == 404
    assert "cannot be read" in response.json()["message"]
