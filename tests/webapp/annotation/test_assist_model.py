"""The current model powers the painting editor's assistance: a click and "propose all" read
the model's published segmentation of the campaign's image; where the model sees nothing, a
click still grows an object from the image; a model that segmented another layer is applied
to the box by the propose-all job; without a current model, the watershed.

Same image as test_assist_api (three balls, one box over the whole image). The model's
segmentation found balls 1 and 2 (sparse, large ids) and missed ball 3; its probability map
is 0.6 on ball 1 and 0.9 on ball 2.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from django.test import Client
from django.urls import reverse
from models_testdata import add_model_version
from test_assist_api import (  # the same image, box and helpers
    API,
    CENTRES,
    SHAPE,
    VOXEL_NM,
    client,
    decoded,
    dice,
    painted,  # noqa: F401  (fixture)
    task,  # noqa: F401  (fixture)
    truth,
)

from pipeline.ome_zarr_io import create_single_level_image
from pipeline.unet import UNet, UNetConfig
from webapp.annotation import assist
from webapp.annotation.models import AnnotationCampaign, Assignment
from webapp.core.current_models import current_model
from webapp.datasets.models import Layer, LayerKind
from webapp.runs.models import ModelVersion

IDS = {1: 1000, 2: 70_000}  # ball -> the model's segment id


def model_labels() -> np.ndarray:
    labels = truth()
    out = np.zeros(SHAPE, np.uint32)
    for ball, segment in IDS.items():
        out[labels == ball] = segment
    return out


def write(path: Path, data: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    array = create_single_level_image(
        path, SHAPE, dtype=data.dtype, chunks=(10, 32, 32), voxel_size=VOXEL_NM, name=path.name
    )
    array[...] = data


def publish_model(campaign: AnnotationCampaign, *, with_probability: bool = True) -> ModelVersion:
    """Model v1 of the campaign's dataset, current, its segmentation and map on disk."""
    dataset = campaign.image_layer.dataset
    version = add_model_version(dataset, 1, per_box_all=None)
    ModelVersion.objects.filter(pk=version.pk).update(current=True)
    segmentation = version.layer
    assert segmentation is not None
    write(dataset.root / segmentation.path, model_labels())
    if with_probability:
        labels = truth()
        probability = np.where(labels == 1, 0.6, np.where(labels == 2, 0.9, 0.05))
        Layer.objects.create(
            dataset=dataset,
            name="model-v1-probability",
            kind=LayerKind.IMAGE,
            path="predictions/model-v1/probability.ome.zarr",
            shape=list(SHAPE),
            axes=["z", "y", "x"],
            dtype="float32",
            voxel_size=list(VOXEL_NM),
            source_layer=segmentation,
        )
        write(dataset.root / "predictions/model-v1/probability.ome.zarr", probability.astype("f4"))
    return version


@pytest.mark.django_db
def test_a_click_takes_the_models_object_and_falls_back_where_it_sees_none(
    painted: AnnotationCampaign,  # noqa: F811
    task: Assignment,  # noqa: F811
    people: dict[str, Any],
) -> None:
    page = Client()
    page.force_login(people["a1"])
    task_url = reverse("annotation:task", args=[task.pk])
    assert "this dataset has no model yet" in page.get(task_url).content.decode()
    publish_model(painted)
    said = "Proposals come from model v1, the dataset&#x27;s current model."
    assert said in page.get(task_url).content.decode()
    api, url = client(people, "a1"), f"{API}{task.pk}/assist/click/"
    labels = truth()
    for ball in (1, 2):
        z, y, x = CENTRES[ball - 1]
        answer = api.post(url, {"z": z, "y": y + 1, "x": x}, format="json")
        assert answer.status_code == 200, answer.content
        body = answer.json()
        proposal = body["proposal"]
        assert proposal["source"] == "model" and proposal["model"] == "model v1"
        # Exactly the model's object (not a watershed of the image: balls 1 and 2 touch).
        assert np.array_equal(decoded(proposal), labels == ball)
        assert proposal["score"] == pytest.approx(0.6 if ball == 1 else 0.9, abs=1e-4)
        assert body["reason"] == f"An object of {proposal['voxels']} voxels (model v1)."
    # Ball 3: the model missed it; the click still grows it from the image, and says so.
    z, y, x = CENTRES[2]
    body = api.post(url, {"z": z, "y": y, "x": x}, format="json").json()
    assert body["proposal"]["source"] == "watershed" and "model" not in body["proposal"]
    assert body["reason"].startswith("model v1 sees no object here.")
    assert dice(decoded(body["proposal"]), labels == 3) >= 0.9


@pytest.mark.django_db
def test_the_model_is_used_only_over_the_layer_and_grid_it_segmented(
    painted: AnnotationCampaign,  # noqa: F811
) -> None:
    version = publish_model(painted, with_probability=False)
    image = painted.image_layer
    found = current_model(image.dataset_id, image.pk)
    assert found is not None and found.name == "model v1"
    assert found.segmentation == image.dataset.root / version.layer.path  # type: ignore[union-attr]
    assert found.probability is None
    # Another image layer of the dataset: only the model file can serve it.
    other = Layer.objects.create(
        dataset=image.dataset, name="other", kind=LayerKind.IMAGE, path="other.ome.zarr",
        shape=list(SHAPE), axes=["z", "y", "x"], voxel_size=list(VOXEL_NM),
    )  # fmt: skip
    elsewhere = current_model(image.dataset_id, other.pk)
    assert elsewhere is not None and elsewhere.segmentation is None
    assert elsewhere.model_file == found.model_file
    # A segmentation on another grid (the run segmented a coarser level): not used.
    Layer.objects.filter(pk=version.layer_id).update(shape=[10, 32, 32])
    coarse = current_model(image.dataset_id, image.pk)
    assert coarse is not None and coarse.segmentation is None
    # No current model: nothing, and the other dataset's model is not this one's.
    ModelVersion.objects.update(current=False)
    assert current_model(image.dataset_id, image.pk) is None


@pytest.mark.django_db
def test_a_model_of_another_layer_predicts_the_box(
    painted: AnnotationCampaign,  # noqa: F811
    task: Assignment,  # noqa: F811
    tmp_path: Path,
) -> None:
    """The propose-all job's fallback: the model file applied to the box (here a small
    untrained U-Net: the test is that its maps, not the image, made the proposals)."""
    from pipeline.model_io import save_model

    version = publish_model(painted)
    elsewhere = Layer.objects.create(
        dataset=painted.image_layer.dataset, name="elsewhere", kind=LayerKind.IMAGE,
        path="elsewhere.ome.zarr", shape=list(SHAPE), axes=["z", "y", "x"],
        voxel_size=list(VOXEL_NM),
    )  # fmt: skip
    assert version.run is not None
    version.run.image_layer = elsewhere
    version.run.save(update_fields=["image_layer"])
    model = current_model(painted.image_layer.dataset_id, painted.image_layer_id)
    assert model is not None and model.segmentation is None
    save_model(
        model.model_file,
        UNet(UNetConfig(width=2, depth=1)),
        mean=600.0,
        std=300.0,
        voxel_size=VOXEL_NM,
        metadata={},
    )
    image, voxel_size = assist.box_image(task)
    seen: list[str] = []
    found, note = assist.box_objects(
        task, image, voxel_size, model, tmp_path, lambda stage, *_: seen.append(stage)
    )
    assert note == ""
    assert any("predict" in stage for stage in seen), seen
    assert all(item.source == "model" for item in found)
    # Its file gone: the image's watershed, and the job's message says why.
    model.model_file.unlink()
    found, note = assist.box_objects(task, image, voxel_size, model, tmp_path, lambda *_: None)
    assert note == " The file of model v1 is missing: the image's watershed instead."
    assert {item.source for item in found} == {"watershed"} and len(found) == 3


def test_a_worker_proposes_the_models_objects(
    celery_worker: Any,
    painted: AnnotationCampaign,  # noqa: F811
    task: Assignment,  # noqa: F811
    people: dict[str, Any],
) -> None:
    publish_model(painted)
    api, url = client(people, "a1"), f"{API}{task.pk}/assist/proposals/"
    assert api.post(url).status_code == 202
    deadline = time.monotonic() + 120
    while (body := api.get(url).json())["state"] not in ("done", "failed"):
        assert time.monotonic() < deadline, body
        time.sleep(0.1)
    assert body["state"] == "done", body
    assert body["message"] == "2 objects proposed (model v1)."
    proposals = body["proposals"]
    # The model's two objects, most probable first; ball 3 (missed) is not proposed.
    labels = truth()
    assert [p["model"] for p in proposals] == ["model v1", "model v1"]
    assert np.array_equal(decoded(proposals[0]), labels == 2)
    assert np.array_equal(decoded(proposals[1]), labels == 1)


@pytest.mark.django_db
def test_a_damaged_published_segmentation_falls_back_to_the_image(
    painted: AnnotationCampaign,  # noqa: F811
    task: Assignment,  # noqa: F811
    people: dict[str, Any],
    tmp_path: Path,
) -> None:
    version = publish_model(painted)
    assert version.layer is not None
    store = painted.image_layer.dataset.root / version.layer.path
    for meta in [*store.glob(".zattrs"), *store.glob("zarr.json")]:
        meta.unlink()  # no longer an OME-Zarr image
    z, y, x = CENTRES[0]
    body = client(people, "a1").post(
        f"{API}{task.pk}/assist/click/", {"z": z, "y": y, "x": x}, format="json"
    )
    assert body.status_code == 200, body.content
    assert body.json()["proposal"]["source"] == "watershed"
    assert body.json()["reason"].startswith("model v1's segmentation could not be read.")
    image, voxel_size = assist.box_image(task)
    model = assist.box_model(task)
    found, note = assist.box_objects(task, image, voxel_size, model, tmp_path, lambda *_: None)
    assert {item.source for item in found} == {"watershed"} and len(found) == 3
    assert note == " model v1's segmentation could not be read: the image's watershed instead."
