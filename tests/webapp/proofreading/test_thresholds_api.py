"""Layer detection filter and the thresholds page's API: storing and reading the filter (with
history, 4xx on nonsense, permissions per role), the compact data, the fit on constructed
verdicts, saving the fitted pair, and the filter as the default of a campaign's selection."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from django.test import Client
from proofreading_testdata import (
    DatasetFactory,
    SegmentationLayerFactory,
    UserFactory,
    campaign_with,
    synthetic_frame,
    table_with,
)
from rest_framework.test import APIClient

from pipeline.thresholds import fit_thresholds_from_verdicts
from webapp.datasets.models import Layer
from webapp.detections.models import DetectionFilter
from webapp.proofreading import services
from webapp.proofreading.models import CampaignItem, ItemStatus, ProofreadingCampaign
from webapp.proofreading.services import CampaignSettings
from webapp.proofreading.thresholds import verdict_table
from webapp.proofreading.verdict_sets import threshold_classes

pytestmark = pytest.mark.django_db

LIST = "/api/v1/proofreading/campaigns/"


def as_user(user: Any) -> APIClient:
    client = APIClient()
    if user is not None:
        client.force_authenticate(user)
    return client


def layer_url(layer: Layer) -> str:
    return f"/api/v1/datasets/{layer.dataset.slug}/layers/{layer.name}/detections/filter/"


def url(campaign: ProofreadingCampaign, tail: str) -> str:
    return f"{LIST}{campaign.id}/{tail}"


def decide(campaign: ProofreadingCampaign, verdicts: dict[int, str]) -> None:
    """Give items (by segment id) a final verdict, as the services leave a decided item."""
    for segment_id, verdict in verdicts.items():
        CampaignItem.objects.filter(campaign=campaign, segment_id=segment_id).update(
            status=ItemStatus.DECIDED, verdict=verdict, verdict_source="first_round"
        )


# --- the layer's filter -------------------------------------------------------------------------


def test_layer_filter_set_read_history_and_nonsense(layer: Layer, people: dict[str, Any]) -> None:
    owner = as_user(people["owner"])
    empty = owner.get(layer_url(layer))
    assert empty.status_code == 200, empty.content
    assert empty.json() == {"filter": None, "history": []}
    first = owner.post(layer_url(layer), {"volume_min": 1.5, "sphericity_min": 0.6}, format="json")
    assert first.status_code == 201, first.content
    assert first.json()["filter"]["volume_min"] == 1.5
    assert first.json()["filter"]["volume_max"] is None
    assert first.json()["filter"]["created_by"] == "owner"
    second = owner.post(
        layer_url(layer),
        {"volume_min": 2, "volume_max": 50, "sphericity_min": 0.7, "source": "by hand"},
        format="json",
    )
    data = second.json()
    assert data["filter"]["volume_max"] == 50 and data["filter"]["source"] == "by hand"
    # History kept, newest first.
    assert [h["volume_min"] for h in data["history"]] == [2.0, 1.5]
    assert DetectionFilter.objects.filter(layer=layer).count() == 2
    for bad in (
        {"volume_min": 10, "volume_max": 5},
        {"sphericity_min": 1.5},
        {"volume_min": -1},
        {"volume_min": "big"},
        {"sphericity_min": -0.1},
    ):
        answer = owner.post(layer_url(layer), bad, format="json")
        assert answer.status_code == 400, (bad, answer.content)
        assert answer.json()["message"]
    assert DetectionFilter.objects.filter(layer=layer).count() == 2
    # Non-JSON and a NaN are refused too.
    assert owner.post(layer_url(layer), "volume_min=1", content_type="text/plain").status_code in (
        400,
        415,
    )


def test_layer_filter_permissions(layer: Layer, people: dict[str, Any]) -> None:
    # The dataset is public: anyone may read the filter, only its owner set it.
    assert as_user(people["r1"]).get(layer_url(layer)).status_code == 200
    assert APIClient().get(layer_url(layer)).status_code == 200
    refused = as_user(people["r1"]).post(layer_url(layer), {"volume_min": 1}, format="json")
    assert refused.status_code == 403, refused.content
    assert APIClient().post(layer_url(layer), {"volume_min": 1}, format="json").status_code == 401
    private = SegmentationLayerFactory(
        dataset=DatasetFactory(owner=people["owner"], visibility="private")
    )
    assert as_user(people["outsider"]).get(layer_url(private)).status_code == 404
    assert (
        as_user(people["outsider"]).post(layer_url(private), {"volume_min": 1}, format="json")
    ).status_code == 404
    assert not DetectionFilter.objects.exists()


def test_stored_filter_is_the_default_of_the_filter_selection(
    layer: Layer, people: dict[str, Any]
) -> None:
    owner = as_user(people["owner"])
    create = {"dataset": layer.dataset.slug, "layer": layer.name, "name": "filtered"}
    refused = owner.post(LIST, {**create, "selection": "filter"}, format="json")
    assert refused.status_code == 400 and "stored detection filter" in refused.json()["message"]
    owner.post(
        layer_url(layer),
        {"volume_min": 5.0, "volume_max": 40.0, "sphericity_min": 0.5},
        format="json",
    )
    created = owner.post(LIST, {**create, "selection": "filter"}, format="json")
    assert created.status_code == 201, created.content
    campaign = ProofreadingCampaign.objects.get(id=created.json()["id"])
    frame = synthetic_frame(40)
    keep = frame[
        (frame.volume >= 5.0) & (frame.volume <= 40.0) & (frame.sphericity >= 0.5)
    ].segment_id
    assert 0 < len(keep) < 40
    assert sorted(
        CampaignItem.objects.filter(campaign=campaign).values_list("segment_id", flat=True)
    ) == sorted(keep.tolist())
    assert campaign.selection_params == {
        "volume_min": 5.0,
        "sphericity_min": 0.5,
        "volume_max": 40.0,
    }
    # Explicit bounds still win over the stored filter.
    explicit = owner.post(LIST, {**create, "selection": "filter", "volume_min": 0.0}, format="json")
    assert explicit.json()["n_items"] == 40


# --- the thresholds API -------------------------------------------------------------------------


def constructed_layer(owner: Any) -> Layer:
    """Nine objects with a known best filter: five TPs (volume 10-14, sphericity 0.9), small
    round FPs (volumes 2 and 3), large flat FPs (sphericity 0.4 and 0.5), one uncertain."""
    frame = synthetic_frame(9)
    frame["volume"] = [10.0, 11.0, 12.0, 13.0, 14.0, 2.0, 3.0, 12.0, 12.0]
    frame["sphericity"] = [0.9, 0.9, 0.9, 0.9, 0.9, 0.9, 0.9, 0.4, 0.5]
    layer = SegmentationLayerFactory(dataset=DatasetFactory(owner=owner))
    table_with(layer, frame)
    return layer


VERDICTS = {
    1: "tp",
    2: "tp_distortion",
    3: "tp",
    4: "tp",
    5: "tp_distortion",
    6: "fp",
    7: "fp",
    8: "fp",
    9: "uncertain",
}


@pytest.fixture
def fitted(people: dict[str, Any]) -> ProofreadingCampaign:
    layer = constructed_layer(people["owner"])
    campaign = campaign_with(
        layer, people["owner"], reviewers=(people["r1"],), experts=(people["expert"],), seed=1
    )
    decide(campaign, VERDICTS)
    return campaign


def test_threshold_data_is_compact_arrays(fitted: ProofreadingCampaign, people: Any) -> None:
    answer = as_user(people["owner"]).get(url(fitted, "thresholds/"))
    assert answer.status_code == 200, answer.content
    data = answer.json()
    names = [c["name"] for c in data["classes"]]
    assert names == ["tp", "tp_distortion", "fp", "uncertain"]
    assert len(data["volume"]) == len(data["sphericity"]) == len(data["verdict"]) == 9
    by_segment = dict(zip(data["segment_id"], data["verdict"], strict=True))
    assert {s: names[v] for s, v in by_segment.items()} == VERDICTS
    assert data["decided"] == 9 and data["left_out"] == 0 and data["items"] == 9
    assert data["second_round"] == 0
    assert data["filter"] == {"volume_min": None, "volume_max": None, "sphericity_min": None}
    assert data["min_recall_default"] == 0.8
    # Undecided items are not sent.
    CampaignItem.objects.filter(campaign=fitted, segment_id=9).update(
        status=ItemStatus.PENDING, verdict=""
    )
    assert len(as_user(people["owner"]).get(url(fitted, "thresholds/")).json()["volume"]) == 8
    # An item waiting for an expert is counted apart (the page says so beside "decided").
    CampaignItem.objects.filter(campaign=fitted, segment_id=9).update(
        status=ItemStatus.SECOND_ROUND
    )
    data = as_user(people["owner"]).get(url(fitted, "thresholds/")).json()
    assert (data["decided"], data["second_round"]) == (8, 1)


def test_fit_on_constructed_verdicts(fitted: ProofreadingCampaign, people: Any) -> None:
    owner = as_user(people["owner"])
    answer = owner.post(url(fitted, "thresholds/fit/"), {"n_folds": 1}, format="json")
    assert answer.status_code == 200, answer.content
    fit = answer.json()
    # Candidates are the FPs' values (the cut placed on an object to reject) and the smallest
    # value: volume >= 3 keeps every TP and rejects the FP of volume 2 (volume >= 12 keeps
    # only 3 of 5: recall 0.6 < 0.8); sphericity >= 0.9 (the round FPs' value) keeps every TP
    # and rejects both flat FPs. Only the FP of volume 3 stays.
    assert (fit["volume_min"], fit["sphericity_min"]) == (3.0, 0.9)
    assert (fit["tp_kept"], fit["fp_kept"], fit["tp_total"]) == (5, 1, 5)
    assert fit["precision"] == pytest.approx(5 / 6) and fit["recall"] == 1.0
    assert fit["n_labelled"] == 8 and fit["n_folds"] == 1
    # The default (k-fold by box over the centroids' grid) is the pipeline's own answer.
    default = owner.post(url(fitted, "thresholds/fit/"), {}, format="json").json()
    expected = fit_thresholds_from_verdicts(
        verdict_table(fitted), classes=threshold_classes(fitted.verdict_set)
    )
    assert (default["volume_min"], default["sphericity_min"]) == (
        expected.t_volume,
        expected.t_sphericity,
    )
    assert default["min_recall"] == 0.8
    # A recall floor above 1 and no folds are refused.
    assert (
        owner.post(url(fitted, "thresholds/fit/"), {"min_recall": 1.5}, format="json").status_code
        == 400
    )
    assert (
        owner.post(url(fitted, "thresholds/fit/"), {"n_folds": 0}, format="json").status_code == 400
    )


def test_fit_without_positives_is_a_400(people: Any) -> None:
    layer = constructed_layer(people["owner"])
    campaign = campaign_with(layer, people["owner"], seed=1)
    owner = as_user(people["owner"])
    nothing = owner.post(url(campaign, "thresholds/fit/"), {}, format="json")
    assert nothing.status_code == 400 and "No decided detection" in nothing.json()["message"]
    decide(campaign, {6: "fp", 7: "fp", 9: "uncertain"})
    no_tp = owner.post(url(campaign, "thresholds/fit/"), {}, format="json")
    assert no_tp.status_code == 400 and "positive" in no_tp.json()["message"]


def test_threshold_permissions(fitted: ProofreadingCampaign, people: Any) -> None:
    data, fit, filt = (
        url(fitted, t) for t in ("thresholds/", "thresholds/fit/", "thresholds/filter/")
    )
    outsider = as_user(people["outsider"])
    assert outsider.get(data).status_code == 404
    assert outsider.post(fit, {}, format="json").status_code == 404
    assert outsider.get(filt).status_code == 404
    assert outsider.post(filt, {"volume_min": 1}, format="json").status_code == 404
    assert APIClient().get(data).status_code in (401, 403)
    reviewer = as_user(people["r1"])
    assert reviewer.get(data).status_code == 403
    assert reviewer.post(fit, {}, format="json").status_code == 403
    assert reviewer.get(filt).status_code == 200
    refused = reviewer.post(filt, {"volume_min": 3, "sphericity_min": 0.5}, format="json")
    assert refused.status_code == 403, refused.content
    expert = as_user(people["expert"])
    assert expert.get(data).status_code == 200
    assert expert.post(filt, {"volume_min": 3}, format="json").status_code == 403
    assert not DetectionFilter.objects.exists()


def test_manager_saves_the_fit_as_the_layers_filter(
    fitted: ProofreadingCampaign, people: Any
) -> None:
    # A second manager who does not own the dataset may save it too.
    manager = UserFactory(username="manager2")
    services.member_add(fitted, people["owner"], "manager2", "manager")
    client = as_user(manager)
    bad = client.post(
        url(fitted, "thresholds/filter/"), {"volume_min": 5, "volume_max": 1}, format="json"
    )
    assert bad.status_code == 400
    saved = client.post(
        url(fitted, "thresholds/filter/"), {"volume_min": 3.0, "sphericity_min": 0.5}, format="json"
    )
    assert saved.status_code == 201, saved.content
    row = DetectionFilter.objects.get(layer=fitted.layer)
    assert (row.volume_min, row.volume_max, row.sphericity_min) == (3.0, None, 0.5)
    assert row.created_by == manager and f"campaign {fitted.id}" in row.source
    layer_view = as_user(people["owner"]).get(layer_url(fitted.layer)).json()
    assert layer_view["filter"]["volume_min"] == 3.0
    data = client.get(url(fitted, "thresholds/")).json()
    assert data["filter"] == {"volume_min": 3.0, "volume_max": None, "sphericity_min": 0.5}
    # And a campaign over the same layer can now take it as its filter.
    filtered = services.campaign_create(
        people["owner"], fitted.layer, CampaignSettings(name="kept", selection="filter")
    )
    assert filtered.n_items == 7  # the five TPs, the FP of volume 3 and the flat FP of 0.5


def test_threshold_data_answers_every_decided_detection_as_arrays(people: Any) -> None:
    """20,000 decided detections come back as parallel arrays, one entry each, with the verdict
    of each. How fast (100,000 in under a second) is measured by ``bench/thresholds.py``."""
    n = 20_000
    frame = synthetic_frame(n, seed=3)
    layer = SegmentationLayerFactory(dataset=DatasetFactory(owner=people["owner"]))
    table_with(layer, frame)
    campaign = campaign_with(layer, people["owner"], seed=2)
    rng = np.random.default_rng(0)
    names = np.array(["tp", "tp_distortion", "fp", "uncertain"])
    chosen = names[rng.integers(0, 4, n)]
    for name in names:
        CampaignItem.objects.filter(
            campaign=campaign, segment_id__in=(frame.segment_id[chosen == name]).tolist()
        ).update(status=ItemStatus.DECIDED, verdict=str(name))
    answer = as_user(people["owner"]).get(url(campaign, "thresholds/"))
    assert answer.status_code == 200
    data = answer.json()
    assert len(data["volume"]) == n
    assert len(data["sphericity"]) == n
    assert data["decided"] == n and data["left_out"] == 0
    classes = [c["name"] for c in data["classes"]]
    got = dict(zip(*np.unique(np.array(classes)[data["verdict"]], return_counts=True), strict=True))
    assert got == dict(zip(*np.unique(chosen, return_counts=True), strict=True))
    by_id = dict(zip(data["segment_id"], data["volume"], strict=True))
    assert by_id[int(frame.segment_id[7])] == pytest.approx(float(frame.volume[7]))


# --- the pages ----------------------------------------------------------------------------------


def test_report_pages_by_role(fitted: ProofreadingCampaign, people: Any, client: Any) -> None:
    pages = [f"/proofreading/{fitted.id}/{tail}" for tail in ("thresholds/", "dashboard/")]
    client.force_login(people["owner"])
    for page in pages:
        answer = client.get(page)
        assert answer.status_code == 200, page
    thresholds = client.get(pages[0]).content.decode()
    assert "proofreading_thresholds.js" in thresholds and 'id="save-button"' in thresholds
    assert "dashboard.csv" in client.get(pages[1]).content.decode()
    listing = client.get("/proofreading/").content.decode()
    assert pages[0] in listing and pages[1] in listing
    assert pages[1] in client.get(f"/proofreading/{fitted.id}/").content.decode()
    client.force_login(people["expert"])
    # Experts read the reports but may not save the layer's filter.
    assert 'id="save-button"' not in client.get(pages[0]).content.decode()
    client.force_login(people["r1"])
    assert [client.get(p).status_code for p in pages] == [403, 403]
    assert pages[1] not in client.get("/proofreading/").content.decode()
    assert pages[1] not in client.get(f"/proofreading/{fitted.id}/").content.decode()
    client.force_login(people["outsider"])
    assert [client.get(p).status_code for p in pages] == [404, 404]
    client.logout()
    assert client.get(pages[0]).status_code == 302


def test_the_thresholds_page_speaks_of_areas_on_a_2d_layer(
    fitted: ProofreadingCampaign, people: Any
) -> None:
    """The page of a volume's layer: volumes in um^3; of a 2D image's layer: areas in um^2, and
    a note that only the area thresholds apply (no sphericity in 2D)."""
    client = Client()
    client.force_login(people["owner"])
    page = client.get(f"/proofreading/{fitted.id}/thresholds/").content.decode()
    assert "Volume \u2265" in page and 'id="thresholds-planar"' not in page
    Layer.objects.filter(pk=fitted.layer_id).update(axes=["y", "x"])
    page = client.get(f"/proofreading/{fitted.id}/thresholds/").content.decode()
    assert "Area \u2265" in page and "\u00b5m\u00b2" in page and "Volume \u2265" not in page
    assert 'id="thresholds-planar"' in page and '"planar": true' in page
