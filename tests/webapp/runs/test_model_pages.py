"""The model comparison page (``/datasets/<slug>/models/``): whoever sees the dataset (404 for
anyone else, as the run page), one row per model version with its figures and links, the rows
for the page's script; linked from the run page and, once a version exists, from the viewer."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
from django.test import Client

from tests.model_factories import DatasetFactory, LayerFactory, UserFactory
from tests.models_testdata import add_model_version
from tests.runs_testdata import people, retrain_campaign
from tests.webapp.proofreading.proofreading_testdata import synthetic_frame, table_with
from webapp.annotation import services as annotation_services
from webapp.datasets import services as dataset_services
from webapp.datasets.models import Dataset, Visibility
from webapp.detections.filters import FilterValues, layer_filter_set
from webapp.runs.models import ModelVersion
from webapp.runs.selectors import fitted_source

pytestmark = pytest.mark.django_db


@pytest.fixture
def who() -> dict[str, Any]:
    return {name: UserFactory(username=name) for name in ("owner", "outsider")}


@pytest.fixture
def dataset(who: dict[str, Any]) -> Dataset:
    dataset = DatasetFactory(owner=who["owner"], visibility=Visibility.PUBLIC, slug="cells")
    LayerFactory(dataset=dataset)
    return dataset


@pytest.fixture
def versions(dataset: Dataset) -> list[ModelVersion]:
    v1 = add_model_version(
        dataset,
        1,
        per_box_all={"b1": (2, 2, 2), "b3": (1, 0, 3)},
        per_box_filtered={"b1": (2, 0, 2), "b3": (1, 0, 3)},
        epochs=4,
        best_val_loss=0.61234,
        objects=40,
        kept=31,
    )
    v2 = add_model_version(
        dataset,
        2,
        per_box_all={"b1": (4, 1, 0), "b2": (3, 0, 1)},
        per_box_filtered={"b1": (4, 0, 0), "b2": (3, 0, 1)},
        epochs=6,
        best_val_loss=0.42,
        objects=36,
        kept=33,
        preset="standard",
    )
    return [v1, v2]


def as_user(user: Any = None) -> Client:
    client = Client()
    if user is not None:
        client.force_login(user)
    return client


def json_script(html: str, element_id: str) -> Any:
    found = re.search(rf'<script id="{element_id}" type="application/json">(.*?)</script>', html)
    assert found, f"no #{element_id} in the page"
    return json.loads(found.group(1))


def row_cells(html: str, number: int) -> dict[str, str]:
    """The figures of version ``number``'s row, by data-field."""
    row = re.search(rf'<tr data-model="\d+" data-number="{number}">(.*?)</tr>', html, re.S)
    assert row, f"no row for v{number}"
    return dict(re.findall(r'data-field="(\w+)">([^<]*)<', row.group(1)))


def test_a_row_per_version_newest_first_with_its_figures_and_links(
    who: dict[str, Any], dataset: Dataset, versions: list[ModelVersion]
) -> None:
    answer = as_user(who["outsider"]).get("/datasets/cells/models/")
    assert answer.status_code == 200
    html = answer.content.decode()
    assert html.index('data-number="2"') < html.index('data-number="1"')
    assert html.count('class="model-choose"') == 2
    v2 = versions[1]
    assert row_cells(html, 1) == {
        "epochs": "4",
        "best_val_loss": "0.6123",
        "all_precision": "0.600",  # pooled: tp 3, fp 2, fn 5
        "all_recall": "0.375",
        "all_f1": "0.462",
        "filtered_precision": "1.000",
        "filtered_recall": "0.375",
        "filtered_f1": "0.545",
        "detections": "40",
        "kept": "31",
    }
    assert row_cells(html, 2)["all_f1"] == "0.875" and row_cells(html, 2)["kept"] == "33"
    for version in versions:
        assert version.run is not None
        assert f'href="/runs/{version.run.pk}/"' in html
        assert f'href="/datasets/cells/?show=model-v{version.number}"' in html
        assert f'href="/api/v1/models/{version.pk}/download/"' in html
    assert ">standard<" in html and ">tiny<" in html
    assert 'id="models-compare-viewer"' in html and "models.js" in html

    config = json_script(html, "models-config")
    assert config["dataset"] == "cells" and config["viewerUrl"] == "/datasets/cells/"
    assert [v["number"] for v in config["versions"]] == [2, 1]
    latest = config["versions"][0]
    assert (latest["id"], latest["layer"], latest["run"]) == (v2.pk, "model-v2", v2.run_id)
    assert [b["box"] for b in latest["perBox"]["all"]] == ["b1", "b2"]
    assert latest["perBox"]["all"][1] == {
        "box": "b2", "precision": 1.0, "recall": 0.75, "f1": 6 / 7,
        "n_gt": 4.0, "n_pred": 3.0, "tp": 3.0, "fp": 0.0, "fn": 1.0,
    }  # fmt: skip
    assert latest["scores"]["filtered"]["precision"] == 1.0


def test_versions_without_figures_show_blanks(dataset: Dataset, who: dict[str, Any]) -> None:
    version = add_model_version(dataset, 1, per_box_all=None)
    version.metrics = {"train": {"epochs": None}, "evaluation": {"all": {"f1": "x"}}}
    version.run = None
    version.layer = None
    version.save()
    html = as_user(who["owner"]).get("/datasets/cells/models/").content.decode()
    assert set(row_cells(html, 1).values()) == {"\u2013"}  # an en dash
    config = json_script(html, "models-config")["versions"][0]
    assert config["perBox"] == {"all": [], "filtered": []}
    assert (config["runUrl"], config["viewerUrl"], config["preset"]) == (None, None, "tiny")
    assert "Open in viewer" not in html


def test_a_dataset_without_versions_says_so(dataset: Dataset, who: dict[str, Any]) -> None:
    html = as_user(who["owner"]).get("/datasets/cells/models/").content.decode()
    assert 'id="models-empty"' in html and "models.js" not in html


def test_whoever_may_see_the_dataset_sees_its_models_others_get_404(
    who: dict[str, Any], dataset: Dataset, versions: list[ModelVersion]
) -> None:
    assert as_user().get("/datasets/cells/models/").status_code == 200  # public
    dataset.visibility = Visibility.PRIVATE
    dataset.save()
    assert as_user().get("/datasets/cells/models/").status_code == 404
    assert as_user(who["outsider"]).get("/datasets/cells/models/").status_code == 404
    answer = as_user(who["owner"]).get("/datasets/cells/models/")
    assert answer.status_code == 200 and answer.content.decode().count("model-choose") == 2
    assert as_user(who["owner"]).get("/datasets/nothing/models/").status_code == 404
    assert as_user(who["owner"]).post("/datasets/cells/models/").status_code == 405


def test_the_run_page_and_the_viewer_link_to_the_comparison(
    who: dict[str, Any], dataset: Dataset
) -> None:
    owner = as_user(who["owner"])
    link = 'id="models-link" class="button" href="/datasets/cells/models/"'
    # No version yet: the owner has the link (where a model is trained from), others not.
    assert link in owner.get("/datasets/cells/").content.decode()
    assert 'id="models-link"' not in as_user().get("/datasets/cells/").content.decode()
    version = add_model_version(dataset, 1, per_box_all={"b1": (1, 0, 0)})
    assert link in as_user().get("/datasets/cells/").content.decode()
    assert version.run is not None
    run_page = owner.get(f"/runs/{version.run.pk}/").content.decode()
    assert 'id="run-models" href="/datasets/cells/models/"' in run_page


def test_the_owner_manages_versions_others_only_compare_them(
    who: dict[str, Any], dataset: Dataset, versions: list[ModelVersion]
) -> None:
    ModelVersion.objects.filter(pk=versions[1].pk).update(current=True)
    owner = as_user(who["owner"]).get("/datasets/cells/models/").content.decode()
    rows = json_script(owner, "models-config")["versions"]
    assert [(r["number"], r["current"], r["origin"]) for r in rows] == [
        (2, True, "trained"), (1, False, "trained"),
    ]  # fmt: skip
    assert owner.count('class="model-proofread"') == 2
    assert owner.count('class="model-make-current"') == 1  # not on the current one
    assert 'id="apply-form"' in owner and f'<option value="{versions[0].pk}">' in owner
    public = as_user(who["outsider"]).get("/datasets/cells/models/").content.decode()
    assert "model-proofread" not in public and 'id="apply-form"' not in public
    assert public.count('class="model-current"') == 1


def test_the_models_page_points_managers_to_the_campaigns_that_train_a_model() -> None:
    who = people()
    campaign, _ = retrain_campaign(who, approved=5)
    url = f"/datasets/{campaign.dataset.slug}/models/"
    page = as_user(who["manager"]).get(url).content.decode()
    assert 'id="train-campaigns"' in page
    assert f'href="/annotation/{campaign.pk}/#retrain">{campaign.name}</a> · 5 approved' in page
    # An annotator of the campaign (not a manager) and visitors get no such list.
    assert 'id="train-campaigns"' not in as_user(who["a1"]).get(url).content.decode()
    assert 'id="train-campaigns"' not in as_user().get(url).content.decode()


def retrain_link(html: str) -> tuple[str, str] | None:
    found = re.search(r'<a id="retrain-link" class="button" href="([^"]+)" title="([^"]+)">', html)
    return (found.group(1), found.group(2)) if found else None


def test_the_viewer_offers_retrain_to_the_managers_of_a_painted_campaign() -> None:
    who = people()
    campaign, _ = retrain_campaign(who, approved=5)
    viewer = f"/datasets/{campaign.dataset.slug}/"
    # One painted campaign: straight to its Retrain panel, saying what it trains on.
    for name in ("owner", "manager"):
        assert retrain_link(as_user(who[name]).get(viewer).content.decode()) == (
            f"/annotation/{campaign.pk}/#retrain",
            "Train a model on Nuclei: 5 approved painted boxes",
        )
    # An annotator, a visitor and a share link's viewer of the (public) dataset get none.
    for user in (who["a1"], who["rv"], who["outsider"], None):
        assert retrain_link(as_user(user).get(viewer).content.decode()) is None
    link = dataset_services.share_link_create(campaign.dataset, who["owner"])
    shared = as_user(who["owner"]).get(f"/s/{link.token}{viewer}")
    assert shared.status_code == 200 and retrain_link(shared.content.decode()) is None
    # A second painted campaign on the dataset: the models page, which lists both.
    spec = annotation_services.CampaignSpec(
        name="Nuclei again", instructions="", label_schema=None, box_size_um=[6.4, 9.6, 9.6],
        redundancy=1, painted=True,
    )  # fmt: skip
    annotation_services.campaign_create(who["owner"], campaign.dataset, campaign.image_layer, spec)
    assert retrain_link(as_user(who["owner"]).get(viewer).content.decode()) == (
        f"/datasets/{campaign.dataset.slug}/models/#train-title",
        "Train a model on one of 2 painted campaigns",
    )
    models = as_user(who["owner"]).get(f"/datasets/{campaign.dataset.slug}/models/")
    assert models.content.decode().count('#retrain">') == 2


def test_kept_now_follows_the_layer_filter_saved_after_publication(
    who: dict[str, Any], dataset: Dataset, versions: list[ModelVersion]
) -> None:
    v1, v2 = versions
    frame = synthetic_frame(40, seed=5)
    for version in versions:
        assert version.layer is not None
        table_with(version.layer, frame)
    # v1 keeps its run's fitted filter; v2's is replaced from the thresholds page.
    assert v1.layer is not None and v2.layer is not None
    layer_filter_set(v1.layer, who["owner"], FilterValues(sphericity_min=0.9),
                     source=fitted_source(v1.run_id), check_permission=False)  # fmt: skip
    layer_filter_set(v2.layer, who["owner"], FilterValues(sphericity_min=0.6),
                     source="campaign 4: fit", check_permission=False)  # fmt: skip
    html = as_user(who["outsider"]).get("/datasets/cells/models/").content.decode()
    expected = int((frame["sphericity"] >= 0.6).sum())
    assert 0 < expected < 40
    row_2 = re.search(r'data-number="2">(.*?)</tr>', html, re.S)
    row_1 = re.search(r'data-number="1">(.*?)</tr>', html, re.S)
    assert row_1 and row_2
    assert row_cells(html, 2)["kept"] == "33"  # the run's figure stays
    assert f">{expected} now<" in row_2.group(1) and "campaign 4: fit" in row_2.group(1)
    assert "kept-now" not in row_1.group(1)
    # v1's run deleted: its fitted filter is still the one it published with.
    assert v1.run is not None
    v1.run.delete()
    # v2's filter cleared: it keeps every detection now.
    layer_filter_set(v2.layer, who["owner"], FilterValues(), source="API",
                     check_permission=False)  # fmt: skip
    html = as_user(who["outsider"]).get("/datasets/cells/models/").content.decode()
    row_2 = re.search(r'data-number="2">(.*?)</tr>', html, re.S)
    row_1 = re.search(r'data-number="1">(.*?)</tr>', html, re.S)
    assert row_1 and row_2
    assert ">40 now<" in row_2.group(1) and "cleared: API" in row_2.group(1)
    assert "kept-now" not in row_1.group(1)
