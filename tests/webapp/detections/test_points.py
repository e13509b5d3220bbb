"""The detections as Neuroglancer points: written by every table build, served as the dataset's
data (owner yes, others 404), reported by the status API, offered by the viewer state, rebuilt
with the table and removed with the layer."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pytest
from detections_testdata import VOXEL_NM
from django.test import Client

from pipeline.annotation_points import read_point, read_points_info, read_related_points
from webapp.datasets.models import JobStatus, ShareLink
from webapp.detections.models import Detection
from webapp.detections.points import (
    layer_points_dir,
    layer_points_path,
    layer_points_source_url,
    points_dir_name,
)
from webapp.detections.services import detections_build_now
from webapp.viewer.services import build_viewer_state, detections_points_layer

pytestmark = pytest.mark.django_db


def body(response: Any) -> bytes:
    return b"".join(response.streaming_content) if response.streaming else response.content


def test_a_build_writes_every_detection_as_a_point(imported: Any) -> None:
    dataset, layer, _, labels = imported
    directory = dataset.root / "annotations" / "nuclei-detections"
    assert layer_points_dir(layer) == directory
    assert layer_points_path(layer) == "annotations/nuclei-detections"
    info = read_points_info(directory)
    # The label image's voxels (x y z, metres) and extent.
    assert info["dimensions"] == {"x": [1e-7, "m"], "y": [2e-7, "m"], "z": [4e-7, "m"]}
    assert info["upper_bound"] == pytest.approx([n - 0.5 for n in labels.shape[::-1]])
    rows = list(Detection.objects.filter(layer=layer).order_by("segment_id"))
    assert [r.segment_id for r in rows] == [1, 2, 40]
    for row in rows:
        point = read_point(directory, row.segment_id)
        assert point is not None
        # At the centroid's physical position: um = position * voxel size.
        um = [point.position[i] * VOXEL_NM[2 - i] / 1000 for i in range(3)]
        assert um == pytest.approx([row.centroid_x_um, row.centroid_y_um, row.centroid_z_um])
        assert point.segments == (row.segment_id,)
        assert point.properties["volume"] == pytest.approx(row.volume, rel=1e-6)
        assert point.properties["sphericity"] == pytest.approx(row.sphericity, rel=1e-6)
        assert [p.id for p in read_related_points(directory, row.segment_id)] == [row.segment_id]
    # Nothing left in the build's work directory or beside the source.
    assert sorted(p.name for p in directory.parent.iterdir()) == ["nuclei-detections"]


def test_the_source_is_served_to_the_owner_and_hidden_from_others(
    imported: Any, owner: Any, other: Any
) -> None:
    dataset, _layer, _, _ = imported
    url = f"/data/{dataset.slug}/annotations/nuclei-detections/info"
    owner_client = Client()
    owner_client.force_login(owner)
    response = owner_client.get(url)
    assert response.status_code == 200
    assert json.loads(body(response))["@type"] == "neuroglancer_annotations_v1"
    chunk = owner_client.get(f"/data/{dataset.slug}/annotations/nuclei-detections/spatial0/0_0_0")
    assert chunk.status_code == 200
    assert int(np.frombuffer(body(chunk)[:8], "<u8")[0]) == 3  # all three points, level 0
    # A shard read the way Neuroglancer reads it: a Range request for the shard index.
    shard = owner_client.get(
        f"/data/{dataset.slug}/annotations/nuclei-detections/by_id/0.shard",
        HTTP_RANGE="bytes=0-15",
    )
    assert shard.status_code == 206 and len(body(shard)) == 16

    other_client = Client()
    other_client.force_login(other)
    assert other_client.get(url).status_code == 404
    assert Client().get(url).status_code == 404  # anonymous
    # A share link opens it like the rest of the dataset.
    link = ShareLink.objects.create(dataset=dataset, created_by=owner)
    shared = Client().get(f"/s/{link.token}/data/{dataset.slug}/annotations/nuclei-detections/info")
    assert shared.status_code == 200


def test_status_api_gives_the_points_source(
    imported: Any, owner: Any, other: Any, api: Any, make_layer: Any
) -> None:
    dataset, layer, _, _ = imported
    api.force_authenticate(owner)
    response = api.get(f"/api/v1/datasets/{dataset.slug}/detections/")
    assert response.status_code == 200
    (status,) = response.json()
    points = status["points"]
    assert points["path"] == f"/data/{dataset.slug}/annotations/nuclei-detections/"
    source = points["neuroglancer_source"]
    assert source.startswith(
        f"http://testserver/data/{dataset.slug}/annotations/nuclei-detections/?v="
    )
    assert source.endswith("|neuroglancer-precomputed:")
    assert source == layer_points_source_url(layer, "http://testserver/")
    one = api.get(f"/api/v1/datasets/{dataset.slug}/layers/nuclei/detections/table/")
    assert one.json()["points"] == points

    # A layer whose table was never built has none.
    bare = make_layer(slug="bare")
    answer = api.get(f"/api/v1/datasets/{bare.dataset.slug}/detections/").json()
    assert [s["points"] for s in answer] == [None]
    api.force_authenticate(other)
    assert api.get(f"/api/v1/datasets/{dataset.slug}/detections/").status_code == 404


def test_a_rebuild_rewrites_the_points_under_a_new_url(imported: Any) -> None:
    _dataset, layer, _, _ = imported
    directory = layer_points_dir(layer)
    before = layer_points_source_url(layer, "http://h/")
    (directory / "marker").write_text("from the previous build")
    build = detections_build_now(layer)
    assert build.status == JobStatus.SUCCEEDED, (build.error, build.log)
    assert not (directory / "marker").exists()  # replaced as a whole
    after = layer_points_source_url(layer, "http://h/")
    assert after is not None and after != before
    assert read_point(directory, 40) is not None
    assert sorted(p.name for p in directory.parent.iterdir()) == ["nuclei-detections"]


def test_deleting_the_layer_removes_its_points(
    imported: Any, django_capture_on_commit_callbacks: Any
) -> None:
    _, layer, _, _ = imported
    directory = layer_points_dir(layer)
    assert (directory / "info").is_file()
    with django_capture_on_commit_callbacks(execute=True):
        layer.delete()
    assert not directory.exists()


def test_unsafe_layer_names_get_an_id_directory(make_layer: Any) -> None:
    layer = make_layer()
    assert points_dir_name(layer) == "nuclei"
    layer.name = "nuclei (curated) / v2"
    assert points_dir_name(layer) == f"_layer-{layer.id}"
    assert layer_points_source_url(layer, "http://h/") is None  # not built


def test_viewer_state_offers_the_points_as_a_hidden_linked_layer(imported: Any, owner: Any) -> None:
    dataset, layer, _, _ = imported
    state = build_viewer_state(dataset, "http://host/").to_json()
    names = [la["name"] for la in state["layers"]]
    assert names[-1] == "nuclei detections"
    points = state["layers"][-1]
    assert points["type"] == "annotation"
    assert points["visible"] is False
    assert points["linkedSegmentationLayer"] == {"segment_id": "nuclei"}
    assert points["source"] == layer_points_source_url(layer, "http://host/")
    assert "setPointMarkerSize" in points["shader"]
    # Through a share link the source is the link's data URL.
    link = ShareLink.objects.create(dataset=dataset, created_by=owner)
    shared = build_viewer_state(dataset, "http://host/", link.token).to_json()
    assert shared["layers"][-1]["source"].startswith(
        f"http://host/s/{link.token}/data/{dataset.slug}/annotations/nuclei-detections/?v="
    )
    # The reusable builder: visible on request, a clashing name numbered.
    shown = detections_points_layer(
        layer, "http://host/", visible=True, taken={"nuclei detections"}
    )
    assert shown is not None
    assert shown.name == "nuclei detections 2" and "visible" not in shown.to_json()


def test_no_points_layer_before_a_build(make_layer: Any) -> None:
    layer = make_layer()
    state = build_viewer_state(layer.dataset, "http://host/").to_json()
    assert all(la["type"] != "annotation" for la in state["layers"])
    assert detections_points_layer(layer, "http://host/") is None
