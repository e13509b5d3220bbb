"""The typed state builder and the server-side viewer state of a dataset."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from django.conf import settings

from pipeline.precomputed import (
    VOLUME_PROPERTY,
    NumberProperty,
    write_mesh,
    write_mesh_info,
    write_segment_properties,
)
from pipeline.precomputed_multires import LodMesh, MultiresMeshWriter, OctreeLayout
from pipeline.precomputed_sharding import ShardingSpec
from webapp.datasets.models import Dataset, Layer, LayerKind, Visibility
from webapp.viewer.services import (
    build_viewer_state,
    default_segments,
    mesh_segment_ids,
    rebase_state_sources,
)
from webapp.viewer.state import Dimension, ImageLayer, SegmentationLayer, camera_for_extent

BASE = "http://testserver/"
pytestmark = pytest.mark.django_db

TETRAHEDRON = LodMesh(
    np.array([[0, 0, 0], [100, 0, 0], [0, 100, 0], [0, 0, 100]], dtype=np.float64),
    np.array([[0, 2, 1], [0, 1, 3], [0, 3, 2], [1, 2, 3]], dtype=np.int64),
)
TETRAHEDRON_LAYOUT = OctreeLayout(np.zeros(3), np.full(3, 100.0), 1)


def test_dimension_units_in_metres() -> None:
    assert Dimension.from_voxel("x", 200, "nanometer").to_json() == pytest.approx([2e-7, "m"])
    assert Dimension.from_voxel("x", 0.5, "micrometer").to_json() == pytest.approx([5e-7, "m"])
    assert Dimension.from_voxel("x", 3, "pixel").to_json() == [3.0, ""]


def test_default_state_geometry_sources_and_contrast(make_dataset: Any) -> None:
    dataset = make_dataset(shape=(40, 60, 80), labels_version="0.4")
    state = build_viewer_state(dataset, BASE).to_json()

    # Voxel size is stored z, y, x = 400, 200, 100 nm; Neuroglancer axes are x, y, z.
    assert list(state["dimensions"]) == ["x", "y", "z"]
    assert state["dimensions"]["x"] == pytest.approx([1e-7, "m"])
    assert state["dimensions"]["y"] == pytest.approx([2e-7, "m"])
    assert state["dimensions"]["z"] == pytest.approx([4e-7, "m"])
    assert state["position"] == [40.0, 30.0, 20.0]  # middle voxels of x=80, y=60, z=40
    assert state["layout"] == "4panel"
    assert 0 < state["crossSectionScale"] < 1
    assert state["projectionScale"] >= 80

    image, seg = state["layers"]
    assert image["type"] == "image"
    assert image["source"] == "zarr3://http://testserver/data/cells/image.ome.zarr"
    assert image["shaderControls"]["normalized"]["range"] == [100.0, 900.0]
    assert "#uicontrol invlerp normalized" in image["shader"]
    assert seg["type"] == "segmentation"
    assert seg["name"] == "nuclei"
    assert seg["source"] == [
        "zarr2://http://testserver/data/cells/image.ome.zarr/labels/nuclei",
        "precomputed://http://testserver/data/cells/meshes/nuclei",
    ]
    assert state["selectedLayer"] == {"layer": "nuclei", "visible": True}
    json.dumps(state)  # plain JSON all the way down


def test_share_token_sources(make_dataset: Any) -> None:
    dataset = make_dataset()
    state = build_viewer_state(dataset, BASE, share_token="tok").to_json()
    assert state["layers"][0]["source"] == (
        "zarr3://http://testserver/s/tok/data/cells/image.ome.zarr"
    )
    assert (
        state["layers"][1]["source"][1]
        == "precomputed://http://testserver/s/tok/data/cells/meshes/nuclei"
    )


def test_multichannel_2d_image_gets_one_coloured_layer_per_channel(owner: Any) -> None:
    dataset = Dataset.objects.create(name="Cells 2D", slug="c2d", owner=owner)
    Layer.objects.create(
        dataset=dataset,
        name="image",
        kind=LayerKind.IMAGE,
        path="image.ome.zarr",
        ngff_version="0.5",
        shape=[2, 100, 50],
        axes=["c", "y", "x"],
        voxel_size=[0.5, 0.25],
        unit="micrometer",
        dtype="uint8",
        channels=2,
    )
    state = build_viewer_state(dataset, BASE).to_json()
    assert list(state["dimensions"]) == ["x", "y"]
    assert state["dimensions"]["x"] == pytest.approx([2.5e-7, "m"])
    assert state["position"] == [25.0, 50.0]
    assert state["layout"] == "xy"  # one large panel for a plane, not xz / yz / 3D
    assert state["crossSectionScale"] == pytest.approx(100 * 1.1 / 640, abs=1e-4)
    layers = state["layers"]
    assert [la["localPosition"] for la in layers] == [[0], [1]]
    assert all(la["blend"] == "additive" for la in layers)
    assert layers[0]["shaderControls"]["color"] != layers[1]["shaderControls"]["color"]
    assert layers[0]["shaderControls"]["normalized"]["range"] == [0.0, 255.0]
    assert "selectedLayer" not in state


def test_segments_come_from_segment_properties(tmp_path: Path) -> None:
    mesh_dir = tmp_path / "meshes"
    write_mesh_info(mesh_dir)  # what the pipeline writes, read back through it
    write_segment_properties(
        mesh_dir,
        [12, 3, 0, 9, 7],
        labels=["a", "b", "zero", "c", "d"],
        numbers=[NumberProperty(VOLUME_PROPERTY, "volume", [5, 1, 0, 9, 2])],
    )
    assert mesh_segment_ids(mesh_dir) == [3, 7, 9, 12]


def test_small_datasets_open_with_every_object_selected_large_ones_with_none() -> None:
    assert default_segments([3, 7, 9], limit=3) == [3, 7, 9]
    assert default_segments([3, 7, 9, 12], limit=3) == []
    assert default_segments([], limit=0) == []


def test_viewer_state_selects_objects_by_the_setting(
    nuclei_dataset: Dataset, settings: Any
) -> None:
    settings.VIEWER_DEFAULT_SEGMENTS = 5
    layer = build_viewer_state(nuclei_dataset, BASE).layers[1]
    assert isinstance(layer, SegmentationLayer)
    assert (layer.segments, layer.n_objects, len(layer.sources)) == ([], 6, 2)
    assert layer.to_json()["segments"] == []
    settings.VIEWER_DEFAULT_SEGMENTS = 6
    assert build_viewer_state(nuclei_dataset, BASE).to_json()["layers"][1]["segments"] == [
        str(i) for i in range(1, 7)
    ]


def test_segments_without_properties_come_from_the_stored_meshes(tmp_path: Path) -> None:
    sharded = tmp_path / "sharded"
    with MultiresMeshWriter(sharded, ShardingSpec(minishard_bits=2), with_properties=False) as w:
        for segment_id in (12, 4, 2**40):
            w.add(segment_id, [TETRAHEDRON], TETRAHEDRON_LAYOUT, [1.0])
    assert mesh_segment_ids(sharded) == [4, 12, 2**40]
    legacy = tmp_path / "legacy"
    write_mesh_info(legacy, with_properties=False)
    for segment_id in (5, 1):
        write_mesh(legacy, segment_id, TETRAHEDRON.vertices, TETRAHEDRON.faces)
    assert mesh_segment_ids(legacy) == [1, 5]
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "info").write_text('{"@type": "neuroglancer_legacy_mesh", "segment_properties": "p"}')
    (broken / "p").mkdir()
    (broken / "p" / "info").write_text("{not json")
    assert mesh_segment_ids(broken) == []  # the viewer still opens, without meshes
    assert mesh_segment_ids(tmp_path / "absent") == []


def test_real_dataset_selects_every_meshed_segment(nuclei_dataset: Dataset) -> None:
    state = build_viewer_state(nuclei_dataset, BASE).to_json()
    seg = state["layers"][1]
    assert seg["segments"] == [str(i) for i in range(1, 7)]
    assert state["position"] == [24.0, 24.0, 24.0]
    image = nuclei_dataset.layers.get(kind=LayerKind.IMAGE)
    low, high = state["layers"][0]["shaderControls"]["normalized"]["range"]
    assert (low, high) == (image.contrast_min, image.contrast_max)
    assert low < high
    assert Path(settings.DATA_ROOT, "datasets", "real", "meshes", "nuclei", "info").is_file()


def test_rebase_points_saved_sources_at_the_current_access_path(make_dataset: Any) -> None:
    dataset = make_dataset(visibility=Visibility.PUBLIC)
    saved = build_viewer_state(dataset, "http://elsewhere:9000/", share_token="old").to_json()
    saved["layers"][0]["source"] = {
        "url": saved["layers"][0]["source"],
        "transform": {"outputDimensions": {}},
    }
    saved["layers"].append({"type": "image", "name": "ext", "source": "zarr3://https://x.org/a"})
    rebased = rebase_state_sources(saved, dataset, BASE)
    assert rebased["layers"][0]["source"]["url"] == (
        "zarr3://http://testserver/data/cells/image.ome.zarr"
    )
    assert rebased["layers"][0]["source"]["transform"] == {"outputDimensions": {}}
    assert rebased["layers"][1]["source"] == [
        "zarr3://http://testserver/data/cells/image.ome.zarr/labels/nuclei",
        "precomputed://http://testserver/data/cells/meshes/nuclei",
    ]
    assert rebased["layers"][2]["source"] == "zarr3://https://x.org/a"
    assert rebased["position"] == saved["position"]


def test_layer_dataclasses_round_trip_flags() -> None:
    hidden = SegmentationLayer(name="s", sources=["zarr3://a"], segments=[2, 1], visible=False)
    data = hidden.to_json()
    assert data["source"] == "zarr3://a"
    assert data["segments"] == ["2", "1"]
    assert data["visible"] is False
    assert "blend" not in ImageLayer(name="i", source="zarr3://a", contrast=(0, 1)).to_json()


def test_the_default_view_is_on_a_voxel_centre_whatever_the_shape() -> None:
    """Neuroglancer centres voxel i at i: an odd side's middle voxel, never a boundary (i + 0.5,
    which Neuroglancer draws as the next section)."""
    position, _, _ = camera_for_extent([81, 61, 41])
    assert position == [40.0, 30.0, 20.0]
    assert camera_for_extent([1, 1, 1])[0] == [0.0, 0.0, 0.0]
