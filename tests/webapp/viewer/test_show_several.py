"""``?show=`` with several segmentation layers (the model comparison's "Compare in viewer"):
``?show=a,b`` shows those and hides the other segmentations, selecting the first; a name with a
comma of its own still means that one layer; one unknown name gives the default view and 404,
as a single unknown name does."""

from __future__ import annotations

from typing import Any

import pytest
from django.test import Client

from tests.webapp.viewer.test_pages import page_state
from webapp.datasets.models import Dataset, Layer, LayerKind, Visibility
from webapp.viewer.views import shown_layer_names

pytestmark = pytest.mark.django_db


def add_segmentation(dataset: Dataset, name: str) -> Layer:
    source = Layer.objects.get(dataset=dataset, name="nuclei")
    return Layer.objects.create(
        dataset=dataset,
        name=name,
        kind=LayerKind.SEGMENTATION,
        path=f"image.ome.zarr/labels/{name}",
        ngff_version="0.5",
        dtype="uint32",
        shape=source.shape,
        axes=source.axes,
        voxel_size=source.voxel_size,
        unit=source.unit,
    )


def visibility(state: dict[str, Any]) -> dict[str, bool]:
    return {la["name"]: la.get("visible", True) for la in state["layers"]}


def test_show_takes_a_comma_separated_list_of_segmentations(
    client: Client, make_dataset: Any
) -> None:
    cells = make_dataset("cells", Visibility.PUBLIC)
    for name in ("model-v1", "model-v2", "odd,name"):
        add_segmentation(cells, name)

    response = client.get("/datasets/cells/?show=model-v2,model-v1")
    assert response.status_code == 200
    state = page_state(response)
    shown = {
        la["name"]: la.get("visible", True) for la in state["layers"] if not la.get("archived")
    }
    assert shown == {"image": True, "model-v1": True, "model-v2": True}
    assert state["selectedLayer"]["layer"] == "model-v2"
    # Side by side: one viewer per version shown, the image under each.
    assert state["layout"] == {
        "type": "row",
        "children": [
            {"type": "viewer", "layers": ["image", "model-v2"], "layout": "4panel"},
            {"type": "viewer", "layers": ["image", "model-v1"], "layout": "4panel"},
        ],
    }
    assert page_state(client.get("/datasets/cells/?show=model-v1"))["layout"] == "4panel"
    # The segmentations neither viewer shows are archived, not dropped by Neuroglancer.
    archived = {la["name"] for la in state["layers"] if la.get("archived")}
    assert archived == {"nuclei", "odd,name"}
    # Percent-encoded commas, blanks and repeats read the same.
    same = client.get("/datasets/cells/?show=model-v2%2C%20model-v1,,model-v2")
    assert page_state(same) == state

    # A layer whose own name holds a comma is that one layer.
    odd = page_state(client.get("/datasets/cells/", {"show": "odd,name"}))
    assert [n for n, shown in visibility(odd).items() if shown] == ["image", "odd,name"]

    # One name the dataset lacks (or not a segmentation): the default view, 404.
    plain = visibility(page_state(client.get("/datasets/cells/")))
    for bad in ("model-v1,no-such-layer", "model-v1,image", "model-v1,nuclei meshes"):
        wrong = client.get("/datasets/cells/", {"show": bad})
        assert wrong.status_code == 404, bad
        assert "has no segmentation layer named" in wrong.content.decode()
        assert visibility(page_state(wrong)) == plain


def test_shown_layer_names_reads_one_name_or_a_list() -> None:
    names = {"a", "b", "c,d"}
    assert shown_layer_names("", names) == []
    assert shown_layer_names("a", names) == ["a"]
    assert shown_layer_names("c,d", names) == ["c,d"]
    assert shown_layer_names("b, a,,b", names) == ["b", "a"]
    assert shown_layer_names("x", names) == ["x"]
    assert shown_layer_names(" , ", names) == []


def test_a_runs_probability_map_is_listed_hidden_and_not_under_the_compared_versions(
    client: Client, make_dataset: Any
) -> None:
    """A published run's probability map is an image layer made from its segmentation: shown by
    default it would hide the raw image, so it is listed hidden, and a comparison's viewers hold
    the raw image and one version each."""
    cells = make_dataset("cells", Visibility.PUBLIC)
    image = Layer.objects.get(dataset=cells, name="image")
    for name in ("model-v1", "model-v2"):
        segmentation = add_segmentation(cells, name)
        Layer.objects.create(
            dataset=cells, name=f"{name}-probability", kind=LayerKind.IMAGE,
            source_layer=segmentation, path=f"predictions/{name}/probability.ome.zarr",
            ngff_version="0.5", dtype="float32", shape=image.shape, axes=image.axes,
            voxel_size=image.voxel_size, unit=image.unit,
        )  # fmt: skip
    default = page_state(client.get("/datasets/cells/"))
    shown = visibility(default)
    assert shown["image"] is True
    assert shown["model-v1-probability"] is False and shown["model-v2-probability"] is False
    compared = page_state(client.get("/datasets/cells/?show=model-v2,model-v1"))
    assert [c["layers"] for c in compared["layout"]["children"]] == [
        ["image", "model-v2"],
        ["image", "model-v1"],
    ]
