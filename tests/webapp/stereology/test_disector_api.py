"""The stereology API: studies, marks, counted pairs and the estimate; roles and bad input."""

from __future__ import annotations

from typing import Any

import pytest
from rest_framework.test import APIClient
from stereology_testdata import Truth, perfect_marks

from webapp.proofreading.models import ProofreadingCampaign

STUDIES = "/api/v1/stereology/studies/"


def _as(api: APIClient, who: Any) -> APIClient:
    api.force_authenticate(who)
    return api


def _create(api: APIClient, campaign: ProofreadingCampaign, **body: Any) -> Any:
    body = {"campaign": campaign.id, "name": "Study", "n_pairs": 10, "seed": 5, **body}
    return api.post(STUDIES, body, format="json")


def test_full_truth_through_the_api_covers_the_true_miss_rate(
    api: APIClient, truth: Truth, campaign: ProofreadingCampaign, people: dict[str, Any]
) -> None:
    """A manager places 10 pairs; a reviewer marks the full truth pair by pair, each answer
    saying whether the mark matched; the pooled interval covers the true miss rate."""
    made = _create(_as(api, people["owner"]), campaign, h_um=50)
    assert made.status_code == 201, made.json()
    study = made.json()
    assert study["h_um"] == 50 and study["h_voxels"] == 5 and study["axis"] == "z"
    assert study["shape"] == [100, 100, 100] and len(study["pairs"]) == 10
    refs = [p["reference"] for p in study["pairs"]]
    assert refs == sorted(refs) and refs[1] - refs[0] in (9, 10, 11)
    url = f"{STUDIES}{study['id']}/"
    reviewer = _as(APIClient(), people["r1"])
    for pair, obj, (z, y, x) in perfect_marks(truth, study):
        answer = reviewer.post(
            f"{url}marks/", {"pair": pair, "z": z, "y": y, "x": x}, format="json"
        )
        assert answer.status_code == 201, answer.json()
        assert answer.json()["matched"] == (obj not in truth.dropped)
    for pair in range(10):
        done = reviewer.post(f"{url}pairs/{pair}/counted/")
        assert done.status_code == 200 and done.json()["counted"] is True
    assert done.json()["counted_pairs"] == list(range(10))
    estimate = reviewer.get(f"{url}estimate/").json()
    pooled = estimate["pooled"]
    true_miss = len(truth.dropped) / truth.n_objects
    assert pooled["miss_rate_low"] <= true_miss <= pooled["miss_rate_high"]
    assert pooled["miss_rate_sampled_low"] <= true_miss <= pooled["miss_rate_sampled_high"]
    assert pooled["n_total_low"] <= truth.n_objects <= pooled["n_total_high"]
    assert pooled["n_based_shown"] is True and pooled["n_based_withheld"] is None
    assert pooled["q_minus"] >= pooled["min_counted_objects"] == 10
    for key in ("detected_fraction", "miss_rate"):
        assert 0 <= pooled[f"{key}_low"] <= pooled[key] <= pooled[f"{key}_high"] <= 1
    listed = reviewer.get(f"{url}marks/?pair=0").json()
    assert listed and all(m["pair"] == 0 and m["reviewer"] == "r1" for m in listed)


def test_members_see_studies_and_others_get_404(
    api: APIClient, campaign: ProofreadingCampaign, people: dict[str, Any]
) -> None:
    study = _create(_as(api, people["owner"]), campaign).json()
    url = f"{STUDIES}{study['id']}/"
    for who in ("r1", "expert", "owner"):
        client = _as(APIClient(), people[who])
        assert client.get(url).status_code == 200
        assert client.get(f"{STUDIES}?campaign={campaign.id}").json()["count"] == 1
    outsider = _as(APIClient(), people["outsider"])
    for path in ("", "marks/", "estimate/"):
        assert outsider.get(f"{url}{path}").status_code == 404
    assert (
        outsider.post(
            f"{url}marks/", {"pair": 0, "z": 0, "y": 0, "x": 0}, format="json"
        ).status_code
        == 404
    )
    assert outsider.post(f"{url}pairs/0/counted/").status_code == 404
    assert outsider.delete(url).status_code == 404
    assert outsider.get(STUDIES).json()["count"] == 0
    refused = _create(outsider, campaign)
    assert refused.status_code == 400 and "not one of its members" in refused.json()["message"]
    anonymous = APIClient()
    assert anonymous.get(url).status_code in (401, 403)
    assert anonymous.post(f"{url}marks/", {}, format="json").status_code in (401, 403)


def test_roles_decide_who_creates_marks_and_deletes(
    api: APIClient, campaign: ProofreadingCampaign, people: dict[str, Any]
) -> None:
    reviewer = _as(APIClient(), people["r1"])
    refused = _create(reviewer, campaign)
    assert refused.status_code == 403 and "managers" in refused.json()["message"]
    study = _create(_as(api, people["owner"]), campaign).json()
    url = f"{STUDIES}{study['id']}/"
    ref = study["pairs"][0]["reference"]
    manager_mark = api.post(f"{url}marks/", {"pair": 0, "z": ref, "y": 5, "x": 5}, format="json")
    assert manager_mark.status_code == 403
    mark = reviewer.post(f"{url}marks/", {"pair": 0, "z": ref, "y": 5, "x": 5}, format="json")
    assert mark.status_code == 201 and mark.json()["match"] in ("label", "none")
    other = _as(APIClient(), people["r2"])
    assert other.get(f"{url}marks/").json() == []  # reviewers see their own marks
    assert other.delete(f"{url}marks/{mark.json()['id']}/").status_code == 404
    assert len(api.get(f"{url}marks/").json()) == 1  # managers see everyone's
    assert reviewer.delete(f"{url}pairs/0/counted/").status_code == 409
    assert reviewer.delete(f"{url}marks/{mark.json()['id']}/").status_code == 204
    assert reviewer.delete(f"{url}pairs/0/counted/").json()["counted_pairs"] == []
    assert reviewer.delete(url).status_code == 403
    assert api.delete(url).status_code == 204


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        ({"h_um": 5000}, "does not fit the volume"),
        ({"h_um": 1}, "less than one section"),
        ({"n_pairs": 200}, "200 pairs do not fit"),
        ({"n_pairs": 0}, "n_pairs"),
        ({"h_um": "tall"}, "h_um"),
        ({"mask_layer": "nope"}, "no layer 'nope'"),
        ({"name": ""}, "name"),
    ],
)
def test_bad_studies_get_400(
    api: APIClient,
    campaign: ProofreadingCampaign,
    people: dict[str, Any],
    body: dict[str, Any],
    fragment: str,
) -> None:
    answer = _create(_as(api, people["owner"]), campaign, **body)
    assert answer.status_code == 400
    assert fragment in answer.json()["message"]


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        ({"pair": 99}, "pair must be"),
        ({"dz": 3}, "reference section"),
        ({"y": -4}, "outside the layer"),
        ({"x": "left"}, "x"),
        ({"pair": None}, "pair"),
    ],
)
def test_bad_marks_get_400(
    api: APIClient,
    campaign: ProofreadingCampaign,
    people: dict[str, Any],
    body: dict[str, Any],
    fragment: str,
) -> None:
    study = _create(_as(api, people["owner"]), campaign).json()
    ref = study["pairs"][0]["reference"]
    mark: dict[str, Any] = {"pair": 0, "z": ref + body.pop("dz", 0), "y": 5, "x": 5, **body}
    reviewer = _as(APIClient(), people["r1"])
    answer = reviewer.post(f"{STUDIES}{study['id']}/marks/", mark, format="json")
    assert answer.status_code == 400
    assert fragment in answer.json()["message"]
    assert reviewer.post(f"{STUDIES}{study['id']}/pairs/99/counted/").status_code == 400


def test_mask_layer_restricts_the_region(
    api: APIClient,
    truth: Truth,
    campaign: ProofreadingCampaign,
    people: dict[str, Any],
    tmp_path: Any,
) -> None:
    """A mask layer (non-zero inside): the pairs lie in its z range and the region volume is its
    voxels; a mask too thin for h is refused."""
    import numpy as np

    from pipeline.ome_zarr_io import create_single_level_image
    from webapp.datasets.models import Layer, LayerKind

    mask = create_single_level_image(
        tmp_path / "mask.ome.zarr", (100, 100, 100), dtype="uint8", chunks=(50, 50, 50),
        voxel_size=(10_000.0,) * 3, name="organ", label=True,
    )  # fmt: skip
    region = np.zeros((100, 100, 100), dtype=np.uint8)
    region[20:60, 10:90, 10:90] = 1
    mask[...] = region
    Layer.objects.create(
        dataset=truth.layer.dataset, name="organ", kind=LayerKind.SEGMENTATION,
        path="mask.ome.zarr", shape=[100, 100, 100], axes=["z", "y", "x"], dtype="uint8",
        voxel_size=[10_000.0] * 3, unit="nanometer",
    )  # fmt: skip
    made = _create(_as(api, people["owner"]), campaign, mask_layer="organ", n_pairs=8)
    assert made.status_code == 201, made.json()
    study = made.json()
    assert study["mask_layer"] == "organ"
    assert all(20 <= p["reference"] < 60 for p in study["pairs"])
    assert study["region_volume_um3"] == pytest.approx(40 * 80 * 80 * 1000.0)
    thin = _create(api, campaign, mask_layer="organ", h_um=450)
    assert thin.status_code == 400
    assert "mask's region, 400 um deep (40 sections)" in thin.json()["message"]
    # A look-up section must lie inside the mask's z extent too (20..59): 8 pairs leave 320 um.
    deep = _create(api, campaign, mask_layer="organ", n_pairs=8, h_um=330)
    assert deep.status_code == 400, deep.json()
    assert "the largest h that fits 8 pairs is 320 um" in deep.json()["message"]
    fits = _create(api, campaign, mask_layer="organ", n_pairs=8, h_um=320).json()
    assert all(20 <= p["reference"] < p["lookup"] < 60 for p in fits["pairs"])
    estimate = api.get(f"{STUDIES}{study['id']}/estimate/").json()
    assert 0 < estimate["detections"] < truth.n_objects - len(truth.dropped)


def test_an_image_layer_is_no_mask(
    api: APIClient, truth: Truth, campaign: ProofreadingCampaign, people: dict[str, Any]
) -> None:
    """Only segmentation (label) layers are regions: a raw image layer as mask gets 400."""
    from webapp.datasets.models import Layer, LayerKind

    Layer.objects.create(
        dataset=truth.layer.dataset, name="image", kind=LayerKind.IMAGE,
        path="image.ome.zarr", shape=[100, 100, 100], axes=["z", "y", "x"], dtype="uint8",
        voxel_size=[10_000.0] * 3, unit="nanometer",
    )  # fmt: skip
    answer = _create(_as(api, people["owner"]), campaign, mask_layer="image")
    assert answer.status_code == 400
    assert "must be a segmentation (label) layer" in answer.json()["message"]
    assert "'image' is of kind 'image'" in answer.json()["message"]


def test_estimate_withholds_d_over_n_with_few_counted_objects(
    api: APIClient, truth: Truth, campaign: ProofreadingCampaign, people: dict[str, Any]
) -> None:
    """One counted pair with one mark and a thin h (the demo's 1171.9 %): the N-based detected
    fraction and miss rate are null and flagged; the counted objects' miss rate stays."""
    study = _create(_as(api, people["owner"]), campaign, h_um=10).json()
    url = f"{STUDIES}{study['id']}/"
    reviewer = _as(APIClient(), people["r1"])
    pair, _, (z, y, x) = perfect_marks(truth, study)[0]
    mark = reviewer.post(f"{url}marks/", {"pair": pair, "z": z, "y": y, "x": x}, format="json")
    assert mark.status_code == 201, mark.json()
    estimate = reviewer.get(f"{url}estimate/").json()
    for row in (estimate["pooled"], *estimate["reviewers"]):
        assert row["q_minus"] == 1 and row["n_pairs"] == 1
        assert row["n_based_shown"] is False and row["n_based_withheld"] == "few_objects"
        assert row["min_counted_objects"] == 10
        for key in ("detected_fraction", "miss_rate"):
            assert row[key] is row[f"{key}_low"] is row[f"{key}_high"] is None
        assert row["miss_rate_sampled"] in (0.0, 1.0)
        assert 0 <= row["miss_rate_sampled_low"] <= row["miss_rate_sampled_high"] <= 1
