"""The model registry beyond training from scratch: a run that fine-tunes a registered model or
segments with one (on another dataset too), checked before anything is queued; a dataset's
current model (one at most; a new version takes over unless it scores lower on held-out
boxes); a proofreading campaign opened on a version's segmentation in one request.

No worker runs here (see test_runs_api.py); ``tests/integration/test_runs.py`` runs them."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from pipeline.model_io import save_model
from pipeline.suggest import entropy_cells
from pipeline.unet import UNet, UNetConfig
from tests.model_factories import DatasetFactory, LayerFactory
from tests.models_testdata import add_model_version
from tests.runs_testdata import RUNS_API, SHAPE, client
from tests.webapp.proofreading.proofreading_testdata import synthetic_frame, table_with
from webapp.annotation import services as annotation_services
from webapp.annotation.models import AnnotationCampaign, TaskBox
from webapp.datasets.models import Visibility
from webapp.detections.filters import FilterValues, layer_filter_set
from webapp.proofreading.models import CampaignState, ProofreadingCampaign, QueueOrder, Selection
from webapp.runs import publish
from webapp.runs.models import ModelVersion, PipelineRun

pytestmark = pytest.mark.django_db

API = RUNS_API


def registered(dataset: Any, number: int = 1, f1: float | None = None) -> ModelVersion:
    """A version with a real (untrained, width 2) model file; held-out F1 ``f1`` if given."""
    per_box = None if f1 is None else {"b": (int(f1 * 10), 10 - int(f1 * 10), 10 - int(f1 * 10))}
    version = add_model_version(dataset, number, per_box_all=per_box)
    path = publish.model_file(version)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_model(path, UNet(UNetConfig(width=2, depth=1)), mean=0, std=1, voxel_size=(200.0,) * 3,
               metadata={})  # fmt: skip
    return version


def test_a_fine_tune_starts_from_a_registered_model_and_keeps_its_network(
    who: dict[str, Any], campaign: AnnotationCampaign
) -> None:
    other = DatasetFactory(owner=who["outsider"], visibility=Visibility.PUBLIC)
    LayerFactory(dataset=other)
    parent = registered(other)  # another owner's public dataset: anyone may build on it
    body = {"campaign": campaign.pk, "preset": "tiny", "parent": parent.pk}
    answer = client(who["manager"]).post(API, body, format="json")
    assert answer.status_code == 202, answer.content
    assert answer.json()["mode"] == "fine-tune" and answer.json()["parent"] == parent.pk
    run = PipelineRun.objects.get(pk=answer.json()["id"])
    assert run.config["training"]["init_model"] == str(publish.model_file(parent))
    assert "model" not in run.config  # the tiny preset's width is the parent's now
    assert run.config["training"]["max_epochs"] == 6  # the preset's schedule stays
    assert sum(b["held_out"] for b in run.ground_truth["boxes"]) == 1
    run.delete()
    for extra, status, message in (
        ({"params": {"model.width": 8}}, 400, "keeps that model's network"),
        ({"model": parent.pk}, 400, "not both"),
        ({"parent": 10**6}, 404, "No such model version"),
    ):
        answer = client(who["manager"]).post(API, {**body, **extra}, format="json")
        assert answer.status_code == status and message in answer.json()["message"], extra
    other.visibility = Visibility.PRIVATE
    other.save()
    answer = client(who["manager"]).post(API, body, format="json")
    assert answer.status_code == 404 and "No such model version" in answer.json()["message"]
    publish.model_file(parent).unlink()
    answer = client(who["outsider"]).post(  # the parent's owner, not a campaign manager
        API, {**body, "campaign": campaign.pk}, format="json"
    )
    assert answer.status_code == 404  # cannot see the campaign
    assert not PipelineRun.objects.filter(campaign=campaign).exists()


def test_a_registered_model_segments_another_dataset_and_is_evaluated_on_every_box(
    who: dict[str, Any], campaign: AnnotationCampaign
) -> None:
    source = DatasetFactory(owner=who["owner"], visibility=Visibility.PRIVATE)
    LayerFactory(dataset=source)
    model = registered(source)
    target = DatasetFactory(owner=who["owner"])
    image = LayerFactory(dataset=target)
    (target.root / image.path).mkdir(parents=True)
    answer = client(who["owner"]).post(
        API, {"dataset": target.slug, "model": model.pk, "preset": "tiny"}, format="json"
    )
    assert answer.status_code == 202, answer.content
    run = PipelineRun.objects.get(pk=answer.json()["id"])
    assert (run.mode, run.campaign, run.image_layer, run.parent) == ("predict", None, image, model)
    assert run.config["model"] == {"path": str(publish.model_file(model))}
    assert "training" not in run.config and run.ground_truth["boxes"] == []
    again = client(who["owner"]).post(
        API, {"dataset": target.slug, "model": model.pk}, format="json"
    )
    assert again.status_code == 409 and "dataset is already" in again.json()["message"]
    # With a campaign, nothing is trained on its boxes: all of them evaluate the model.
    answer = client(who["owner"]).post(
        API, {"campaign": campaign.pk, "model": model.pk, "preset": "tiny"}, format="json"
    )
    assert answer.status_code == 202, answer.content
    assert all(b["held_out"] for b in answer.json()["boxes"]) and len(answer.json()["boxes"]) == 5
    # Training needs a campaign; a private dataset's model is not another user's to use.
    answer = client(who["owner"]).post(API, {"dataset": target.slug}, format="json")
    assert answer.status_code == 400 and "give campaign" in answer.json()["message"]
    answer = client(who["manager"]).post(
        API, {"campaign": campaign.pk, "model": model.pk}, format="json"
    )
    assert answer.status_code == 404


def test_one_current_model_per_dataset_chosen_by_held_out_f1_or_by_the_owner(
    who: dict[str, Any],
) -> None:
    dataset = DatasetFactory(owner=who["owner"], visibility=Visibility.PUBLIC)
    LayerFactory(dataset=dataset)
    v1, v2 = registered(dataset, 1, f1=0.8), registered(dataset, 2, f1=0.6)
    assert publish.current_decision(v2.metrics, None)["current"] is True
    worse = publish.current_decision(v2.metrics, v1)
    assert worse == {"current": False, "f1": 0.6, "previous": 1, "previous_f1": 0.8}
    assert publish.current_decision(v1.metrics, v2)["current"] is True
    assert publish.current_decision({}, v1)["current"] is True  # unmeasured: the newer
    # A run a stage of which produced nothing is never made current, however it scores.
    empty = {**v1.metrics, "warnings": ["segment: no seed formed"]}
    assert publish.current_decision(empty, None) == {
        "current": False, "f1": 0.8, "previous": None, "previous_f1": None,
        "why": "a stage produced nothing (see the warnings)",
    }  # fmt: skip
    assert publish.registry_text(3, publish.current_decision(empty, None)) == (
        "model v3 is not made current: a stage produced nothing (see the warnings)"
    )
    assert publish.registry_text(2, worse) == (
        "model v2 is not made current: its held-out F1 0.600 is below v1's 0.800"
    )
    url = f"/api/v1/models/{v2.pk}/current/"
    assert client(who["outsider"]).post(url).status_code == 403
    for version in (v1, v2):
        answer = client(who["owner"]).post(f"/api/v1/models/{version.pk}/current/")
        assert answer.status_code == 200 and answer.json()["current"] is True
    assert list(ModelVersion.objects.filter(current=True)) == [v2]
    listed = client(who["outsider"]).get("/api/v1/models/", {"dataset": dataset.slug}).json()
    assert [(m["number"], m["current"]) for m in listed["results"]] == [(2, True), (1, False)]


def test_a_proofreading_campaign_opens_on_a_versions_detections_in_one_request(
    who: dict[str, Any],
) -> None:
    dataset = DatasetFactory(owner=who["owner"], visibility=Visibility.PUBLIC)
    LayerFactory(dataset=dataset)
    version = registered(dataset)
    url = f"/api/v1/models/{version.pk}/proofreading/"
    answer = client(who["owner"]).post(url)
    assert answer.status_code == 400 and "no detections table yet" in answer.json()["message"]
    frame = synthetic_frame(40, seed=2)
    table_with(version.layer, frame)
    assert client(who["outsider"]).post(url).status_code == 403
    # The run's fitted filter (publish stores it as the layer's) chooses the detections.
    layer_filter_set(version.layer, who["owner"], FilterValues(sphericity_min=0.6))
    answer = client(who["owner"]).post(url)
    assert answer.status_code == 201, answer.content
    body = answer.json()
    campaign = ProofreadingCampaign.objects.get(pk=body["id"])
    kept = int((frame["sphericity"] >= 0.6).sum())
    assert body["items"] == campaign.n_items == kept and 0 < kept < 40
    assert body["name"] == "Proofread model v1" and body["url"] == f"/proofreading/{campaign.pk}/"
    assert (campaign.layer, campaign.selection, campaign.order) == (
        version.layer, Selection.FILTER, QueueOrder.UNCERTAINTY,
    )  # fmt: skip
    assert client(who["owner"]).get(body["url"]).status_code in (200, 302)
    # The one person who clicked can work both rounds: an uncertain verdict goes to experts.
    assert sorted(campaign.members.filter(user=who["owner"]).values_list("role", flat=True)) == [
        "expert", "manager", "reviewer",
    ]  # fmt: skip
    api = f"/api/v1/proofreading/campaigns/{campaign.pk}/"
    item = client(who["owner"]).post(f"{api}next/", {}, format="json").json()[0]["item"]
    decided = client(who["owner"]).post(
        f"{api}verdicts/", {"item": item["id"], "verdict": "uncertain"}, format="json"
    )
    assert decided.status_code in (200, 201), decided.content
    second = client(who["owner"]).post(f"{api}next/", {"round": 2}, format="json")
    assert second.status_code == 200, second.content
    assert [claim["item"]["id"] for claim in second.json()] == [item["id"]]
    # Asked again: the open campaign, not a look-alike second one; once closed, a new one.
    again = client(who["owner"]).post(url)
    assert again.status_code == 200 and again.json() == {**body, "created": False}
    assert body["created"] is True
    ProofreadingCampaign.objects.filter(pk=campaign.pk).update(state=CampaignState.CLOSED)
    fresh = client(who["owner"]).post(url)
    assert fresh.status_code == 201 and fresh.json()["id"] != campaign.pk
    assert ProofreadingCampaign.objects.filter(layer=version.layer).count() == 2


def test_publish_takes_the_fitted_filter_within_a_layer_filters_bounds() -> None:
    assert publish.fitted_filter({"filter": {"t_volume": 2.5, "t_sphericity": 0.7}}) == (
        FilterValues(volume_min=2.5, sphericity_min=0.7)
    )
    assert publish.fitted_filter({"filter": {"t_volume": -1, "t_sphericity": 1.2}}) == (
        FilterValues(volume_min=0.0, sphericity_min=1.0)
    )
    assert publish.fitted_filter({"filter": {"t_volume": None, "t_sphericity": 0.5}}) is None
    assert (
        publish.fitted_filter({"filter": {"t_volume": float("inf"), "t_sphericity": 0.5}}) is None
    )
    assert publish.fitted_filter({}) is None


def test_suggest_next_boxes_puts_the_most_uncertain_untouched_or_free_boxes_first(
    who: dict[str, Any], campaign: AnnotationCampaign
) -> None:
    """Five of the eight tiles are annotated; one untouched tile is deleted (free again).
    The model is unsure on the free tile, less on one untouched box, sure elsewhere."""
    version = registered(campaign.dataset)
    untouched = annotation_services.untouched_boxes(campaign)
    assert len(untouched) == 3
    free, unsure = untouched[0], untouched[1]
    free_region = (free.z0, free.y0, free.x0, free.depth, free.height, free.width)
    free.delete()
    probability = np.zeros(SHAPE, np.float32)
    for box, value in ((free_region, 0.5), (unsure, 0.2)):
        z, y, x, d, h, w = box if isinstance(box, tuple) else (
            box.z0, box.y0, box.x0, box.depth, box.height, box.width)  # fmt: skip
        probability[z : z + d, y : y + h, x : x + w] = value
    for done in TaskBox.objects.filter(campaign=campaign).exclude(
        pk__in=[b.pk for b in untouched]
    ):  # annotated boxes: never suggested, however unsure the model is there
        probability[done.z0 : done.z0 + done.depth, done.y0 : done.y0 + done.height,
                    done.x0 : done.x0 + done.width] = 0.5  # fmt: skip
    entropy_cells(probability).save(publish.uncertainty_file(version))
    url = f"/api/v1/models/{version.pk}/suggestions/"
    answer = client(who["manager"]).post(url, {"campaign": campaign.pk, "count": 2}, format="json")
    assert answer.status_code == 201, answer.content
    first, second = answer.json()["boxes"]
    assert (first["name"], first["created"], first["uncertainty"]) == ("suggest-1", True, 1.0)
    assert first["start"] == list(free_region[:3]) and first["size"] == list(free_region[3:])
    assert (second["name"], second["created"]) == (unsure.name, False)
    assert second["uncertainty"] == pytest.approx(0.722, abs=1e-3)
    assert first["priority"] > second["priority"] > 0
    row = TaskBox.objects.get(pk=first["id"])
    assert row.source == "suggested" and row.source_ref == "model v1, uncertainty 1.000"
    # The coverage map marks them with the model's uncertainty there; others are unmarked.
    coverage = (
        client(who["manager"]).get(f"/api/v1/annotation/campaigns/{campaign.pk}/coverage/").json()
    )
    marked = {b["name"]: b["suggested"] for b in coverage["boxes"] if b["suggested"] is not None}
    assert marked == pytest.approx({"suggest-1": 1.0, unsure.name: 0.722}, abs=1e-3)
    # The next task handed out is the most uncertain box.
    task = annotation_services.next_task(campaign, who["a1"])
    assert task is not None and task.box.name == "suggest-1"
    for body, status, message in (
        ({"campaign": campaign.pk, "count": 0}, 400, "count"),
        ({"campaign": 10**6}, 404, "No such annotation campaign"),
    ):
        answer = client(who["manager"]).post(url, body, format="json")
        assert answer.status_code == status and message in str(answer.json()), body
    assert client(who["a1"]).post(url, {"campaign": campaign.pk}, format="json").status_code == 403
    elsewhere = DatasetFactory(owner=who["owner"], visibility=Visibility.PUBLIC)
    LayerFactory(dataset=elsewhere)
    other = registered(elsewhere)
    answer = client(who["manager"]).post(
        f"/api/v1/models/{other.pk}/suggestions/", {"campaign": campaign.pk}, format="json"
    )
    assert answer.status_code == 400 and "another dataset" in answer.json()["message"]
    publish.uncertainty_file(version).unlink()
    answer = client(who["manager"]).post(url, {"campaign": campaign.pk}, format="json")
    assert answer.status_code == 409 and "no uncertainty map" in answer.json()["message"]


def test_run_warnings_name_the_stages_that_produced_nothing() -> None:
    """The run's per-step metrics read as the CLI's ``run_empty`` reads its flat ones."""
    healthy = {
        "train": {"val_objects": 12.0},
        "predict": {"distance_max_nm": 2400.0},
        "segment": {"objects": 31, "params": {"seed_threshold_nm": 700.0}},
        "measure": {"objects": 31},
    }
    assert publish.run_warnings(healthy) == []
    collapsed = {
        "train": {"val_objects": 0.0},
        "predict": {"distance_max_nm": 198.0},
        "segment": {"objects": 0, "params": {"seed_threshold_nm": 700.0}},
        "measure": {"objects": 0},
        "evaluation": {"all": {"f1": 0.0}},
    }
    found = publish.run_warnings(collapsed)
    assert [w.split(":")[0] for w in found] == ["train", "predict", "segment"]
    assert "198 nm at most vs 700 nm" in found[1]


def test_a_version_downloads_as_its_model_file_to_whoever_may_see_it(
    who: dict[str, Any],
) -> None:
    dataset = DatasetFactory(owner=who["owner"], visibility=Visibility.PRIVATE)
    LayerFactory(dataset=dataset)
    version = registered(dataset)
    url = f"/api/v1/models/{version.pk}/download/"
    answer = client(who["owner"]).get(url)
    assert answer.status_code == 200, answer.content
    assert answer["Content-Type"] == "application/octet-stream"
    name = f"{dataset.slug}-model-v{version.number}.pt"
    assert name in answer["Content-Disposition"] and "attachment" in answer["Content-Disposition"]
    body = b"".join(answer.streaming_content)  # type: ignore[attr-defined]
    assert body == publish.model_file(version).read_bytes() and len(body) > 1000
    # Loadable as the pipeline loads a model for ``predict --model`` or a fine-tune elsewhere.
    from pipeline.model_io import load_model

    saved = publish.model_file(version).parent / "downloaded.pt"
    saved.write_bytes(body)
    assert load_model(saved, "cpu").config.width == 2
    # A private dataset's model is not there for others; a lost file says so.
    assert client(who["outsider"]).get(url).status_code == 404
    assert client(None).get(url).status_code in (401, 404)
    publish.model_file(version).unlink()
    answer = client(who["owner"]).get(url)
    assert answer.status_code == 404 and "missing" in answer.json()["message"]


def test_the_schema_documents_the_runs_and_models_endpoints() -> None:
    from rest_framework.test import APIClient

    paths = APIClient().get("/api/schema/?format=json").json()["paths"]
    for path, methods in {
        "/api/v1/runs/": {"get", "post"},
        "/api/v1/runs/presets/": {"get"},
        "/api/v1/runs/{id}/": {"get"},
        "/api/v1/runs/{id}/cancel/": {"post"},
        "/api/v1/runs/auto-retrain/{campaign_id}/": {"get"},
        "/api/v1/models/": {"get"},
        "/api/v1/models/{id}/": {"get"},
        "/api/v1/models/{id}/download/": {"get"},
        "/api/v1/models/{id}/current/": {"post"},
        "/api/v1/models/{id}/suggestions/": {"post"},
        "/api/v1/models/{id}/proofreading/": {"post"},
    }.items():
        assert path in paths, (path, sorted(p for p in paths if "runs" in p or "models" in p))
        assert methods <= set(paths[path]), (path, paths[path].keys())
    start = paths["/api/v1/runs/"]["post"]["responses"]
    assert {"202", "400", "404"} <= set(start), start.keys()
