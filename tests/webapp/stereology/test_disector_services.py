"""Disector studies through the services, on a synthetic volume whose truth is known."""

from __future__ import annotations

from typing import Any

import pytest
from stereology_testdata import MISS, Truth, perfect_marks

from webapp.core.errors import Conflict, InvalidRequest, NotAllowed
from webapp.proofreading.models import CampaignState, ProofreadingCampaign
from webapp.stereology import selectors, services
from webapp.stereology.models import DisectorMark, PairCount


def test_a_perfect_reviewer_s_estimate_covers_the_true_miss_rate(
    truth: Truth, campaign: ProofreadingCampaign, people: dict[str, Any]
) -> None:
    """The issue's test: 15 % of the objects dropped from the segmentation; a reviewer marks
    every object of each reference section absent from its look-up section (the full truth);
    every mark matches a detection exactly when its object was kept, and the 95 % intervals of
    the miss rate (from N and from the sampled objects) cover the true miss rate."""
    study = services.study_create(
        people["owner"], campaign, name="Full truth", n_pairs=12, h_um=50, seed=3
    )
    assert study.plan["h_voxels"] == 5 and len(study.pairs) == 12
    marks = perfect_marks(truth, study.plan)
    assert len(marks) > 60
    for pair, obj, (z, y, x) in marks:
        mark = services.mark_add(study, people["r1"], pair, z, y, x)
        assert mark.matched == (obj not in truth.dropped), (pair, obj)
        assert mark.segment_id == (None if obj in truth.dropped else obj)
        assert mark.match == ("none" if obj in truth.dropped else "label")
    for pair in range(12):
        services.pair_counted_set(study, people["r1"], pair, True)

    result = selectors.estimate(study, people["owner"])
    true_miss = len(truth.dropped) / truth.n_objects
    assert true_miss == pytest.approx(MISS, abs=0.01)
    assert result["detections"] == truth.n_objects - len(truth.dropped)
    [reviewer] = result["reviewers"]
    pooled = result["pooled"]
    assert reviewer["reviewer"] == "r1" and pooled["reviewer"] is None
    assert pooled["q_minus"] == len(marks)
    assert pooled["matched"] == sum(obj not in truth.dropped for _, obj, _ in marks)
    assert pooled["n_total_low"] <= truth.n_objects <= pooled["n_total_high"]
    assert pooled["n_total"] == pytest.approx(truth.n_objects, rel=0.2)
    assert pooled["miss_rate_low"] <= true_miss <= pooled["miss_rate_high"]
    assert pooled["miss_rate_sampled_low"] <= true_miss <= pooled["miss_rate_sampled_high"]
    assert pooled["detected_fraction_low"] <= 1 - true_miss <= pooled["detected_fraction_high"]
    # One reviewer: their estimate is the pooled one.
    assert reviewer["n_total"] == pytest.approx(pooled["n_total"])


def test_pooled_over_two_reviewers_and_each_sees_their_own(
    truth: Truth, campaign: ProofreadingCampaign, people: dict[str, Any]
) -> None:
    """r1 counts the first half of the pairs, r2 all of them; the pooled estimate uses every
    counted pair; a reviewer's answer holds only their own row, a manager's both."""
    study = services.study_create(people["owner"], campaign, name="Two", n_pairs=6, seed=1)
    marks = perfect_marks(truth, study.plan)
    for pair, _, (z, y, x) in marks:
        services.mark_add(study, people["r2"], pair, z, y, x)
        if pair < 3:
            services.mark_add(study, people["r1"], pair, z, y, x)
    for pair in range(6):
        services.pair_counted_set(study, people["r2"], pair, True)
    for pair in range(3):
        services.pair_counted_set(study, people["r1"], pair, True)
    managers = selectors.estimate(study, people["owner"])
    assert [r["reviewer"] for r in managers["reviewers"]] == ["r1", "r2"]
    assert [r["n_pairs"] for r in managers["reviewers"]] == [3, 6]
    assert managers["pooled"]["n_pairs"] == 6
    assert managers["pooled"]["q_minus"] == pytest.approx(len(marks))
    r1 = selectors.estimate(study, people["r1"])
    assert [r["reviewer"] for r in r1["reviewers"]] == ["r1"]
    assert r1["pooled"] == managers["pooled"]


def test_a_pair_without_marks_counts_zero_once_done(
    truth: Truth, campaign: ProofreadingCampaign, people: dict[str, Any]
) -> None:
    study = services.study_create(people["owner"], campaign, name="Zero", n_pairs=4, seed=2)
    assert selectors.estimate(study, people["r1"])["pooled"] is None
    services.pair_counted_set(study, people["r1"], 0, True)
    services.pair_counted_set(study, people["r1"], 0, True)  # idempotent
    pooled = selectors.estimate(study, people["r1"])["pooled"]
    assert pooled["n_pairs"] == 1 and pooled["q_minus"] == 0 and pooled["n_total"] == 0
    assert pooled["n_total_high"] > 0  # the Poisson upper bound
    services.pair_counted_set(study, people["r1"], 0, False)
    assert not PairCount.objects.filter(study=study).exists()


def test_a_mark_counts_its_pair_and_blocks_uncounting(
    truth: Truth, campaign: ProofreadingCampaign, people: dict[str, Any]
) -> None:
    study = services.study_create(people["owner"], campaign, name="M", n_pairs=4, seed=2)
    pair, _, (z, y, x) = perfect_marks(truth, study.plan)[0]
    mark = services.mark_add(study, people["expert"], pair, z, y, x)
    assert PairCount.objects.filter(study=study, pair=pair, reviewer=people["expert"]).exists()
    with pytest.raises(Conflict):
        services.pair_counted_set(study, people["expert"], pair, False)
    with pytest.raises(NotAllowed):
        services.mark_delete(mark, people["r1"])
    services.mark_delete(mark, people["owner"])  # a manager may
    assert not DisectorMark.objects.exists()


def test_a_filtered_out_segment_is_not_detected(truth: Truth, people: dict[str, Any]) -> None:
    """A campaign over the detections passing a volume filter: a mark on a segment the filter
    drops names the segment but does not match."""
    from webapp.detections.models import Detection
    from webapp.proofreading import services as proofreading_services
    from webapp.proofreading.services import CampaignSettings

    campaign = proofreading_services.campaign_create(
        people["owner"],
        truth.layer,
        CampaignSettings(name="Big only", selection="filter", volume_min=5e5),
        members=[("r1", "reviewer")],
    )
    study = services.study_create(people["owner"], campaign, name="F", n_pairs=4, seed=2)
    small = set(
        Detection.objects.filter(layer=truth.layer, volume__lt=5e5).values_list(
            "segment_id", flat=True
        )
    )
    pair, obj, (z, y, x) = next(m for m in perfect_marks(truth, study.plan) if m[1] in small)
    mark = services.mark_add(study, people["r1"], pair, z, y, x)
    assert mark.segment_id == obj and mark.match == "filtered" and not mark.matched
    expected = Detection.objects.filter(layer=truth.layer, volume__gte=5e5).count()
    assert 0 < expected < truth.n_objects - len(truth.dropped)
    assert selectors.estimate(study, people["r1"])["detections"] == expected


def test_a_segment_above_the_volume_maximum_is_not_detected(
    truth: Truth, people: dict[str, Any]
) -> None:
    """The campaign's volume maximum bounds the population as it bounded its items: a mark on
    a larger segment does not match and the larger ones are not counted in D."""
    from webapp.detections.models import Detection
    from webapp.proofreading import services as proofreading_services
    from webapp.proofreading.services import CampaignSettings

    volumes = sorted(Detection.objects.filter(layer=truth.layer).values_list("volume", flat=True))
    cap = volumes[len(volumes) // 2]
    campaign = proofreading_services.campaign_create(
        people["owner"],
        truth.layer,
        CampaignSettings(name="Small only", selection="filter", volume_max=cap),
        members=[("r1", "reviewer")],
    )
    study = services.study_create(people["owner"], campaign, name="M", n_pairs=4, seed=2)
    large = set(
        Detection.objects.filter(layer=truth.layer, volume__gt=cap).values_list(
            "segment_id", flat=True
        )
    )
    pair, obj, (z, y, x) = next(m for m in perfect_marks(truth, study.plan) if m[1] in large)
    mark = services.mark_add(study, people["r1"], pair, z, y, x)
    assert mark.segment_id == obj and mark.match == "filtered" and not mark.matched
    expected = Detection.objects.filter(layer=truth.layer, volume__lte=cap).count()
    assert expected == campaign.n_items < Detection.objects.filter(layer=truth.layer).count()
    assert selectors.estimate(study, people["r1"])["detections"] == expected


def test_matching_by_bounding_box_without_a_label_image(
    truth: Truth, campaign: ProofreadingCampaign, people: dict[str, Any], tmp_path: Any
) -> None:
    """When the store cannot be read, the detection whose box holds the point matches."""
    study = services.study_create(people["owner"], campaign, name="B", n_pairs=4, seed=2)
    marks = perfect_marks(truth, study.plan)
    (tmp_path / "image.ome.zarr").rename(tmp_path / "moved.ome.zarr")
    kept = next(m for m in marks if m[1] not in truth.dropped)
    mark = services.mark_add(study, people["r1"], kept[0], *kept[2])
    assert mark.match == "bbox" and mark.segment_id == kept[1] and mark.matched


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"n_pairs": 4, "h_um": 1000}, "does not fit the volume, 1000 um deep (100 sections)"),
        ({"n_pairs": 10, "h_um": 950}, "the largest h that fits 10 pairs is 900 um"),
        ({"n_pairs": 4, "h_um": 2}, "less than one section"),
        ({"n_pairs": 4, "h_um": -5}, "must be positive"),
        ({"n_pairs": 0}, "n_pairs (K) must be"),
        ({"n_pairs": 501}, "must be a whole number from 1 to 500"),
        ({"n_pairs": 4, "tolerance_um": -1}, "tolerance_um"),
        ({"n_pairs": 4, "name": " "}, "name must have"),
    ],
)
def test_bad_studies_are_refused(
    campaign: ProofreadingCampaign, people: dict[str, Any], kwargs: dict[str, Any], message: str
) -> None:
    kwargs.setdefault("name", "Bad")
    with pytest.raises(InvalidRequest, match=message.replace("(", r"\(").replace(")", r"\)")):
        services.study_create(people["owner"], campaign, **kwargs)


def test_k_larger_than_the_sections_is_refused(
    campaign: ProofreadingCampaign, people: dict[str, Any]
) -> None:
    with pytest.raises(InvalidRequest, match="101 pairs do not fit the volume's 100 sections"):
        services.study_create(people["owner"], campaign, name="K", n_pairs=101)


def test_roles(campaign: ProofreadingCampaign, people: dict[str, Any]) -> None:
    with pytest.raises(NotAllowed):
        services.study_create(people["r1"], campaign, name="No", n_pairs=4)
    study = services.study_create(people["owner"], campaign, name="Yes", n_pairs=4, seed=0)
    ref = study.pairs[0]["reference"]
    with pytest.raises(NotAllowed):  # the manager is not a reviewer
        services.mark_add(study, people["owner"], 0, ref, 50, 50)
    with pytest.raises(NotAllowed):
        services.mark_add(study, people["outsider"], 0, ref, 50, 50)
    with pytest.raises(NotAllowed):
        services.study_delete(study, people["r1"])
    ProofreadingCampaign.objects.filter(id=campaign.id).update(state=CampaignState.CLOSED)
    study.refresh_from_db()
    with pytest.raises(Conflict):
        services.mark_add(study, people["r1"], 0, ref, 50, 50)


@pytest.mark.parametrize(
    ("pair", "dz", "y", "message"),
    [
        (7, 0, 50, "pair must be a whole number from 0 to 3"),
        (0, 1, 50, "Marks go on the pair's reference section"),
        (0, 0, 100, "y = 100 lies outside the layer"),
        (0, 0, float("nan"), "y must be a finite number"),
    ],
)
def test_bad_marks_are_refused(
    campaign: ProofreadingCampaign,
    people: dict[str, Any],
    pair: int,
    dz: int,
    y: float,
    message: str,
) -> None:
    study = services.study_create(people["owner"], campaign, name="S", n_pairs=4, seed=0)
    ref = study.pairs[0]["reference"]
    with pytest.raises(InvalidRequest, match=message):
        services.mark_add(study, people["r1"], pair, ref + dz, y, 50)


def test_look_up_sections_must_lie_inside_the_volume(
    campaign: ProofreadingCampaign, people: dict[str, Any]
) -> None:
    """The demo's trap (K = 10 with h about the depth): refused with the depth and the largest
    h for that K; at that h every look-up section lies inside, as at any accepted h."""
    with pytest.raises(InvalidRequest) as refused:
        services.study_create(people["owner"], campaign, name="Deep", n_pairs=10, h_um=990)
    message = str(refused.value)
    assert "1000 um deep" in message and "largest h that fits 10 pairs is 900 um" in message
    for h_um, seed in ((900, 0), (500, 3), (50, 7), (10, 11)):
        study = services.study_create(
            people["owner"], campaign, name=f"h {h_um}", n_pairs=10, h_um=h_um, seed=seed
        )
        pairs = study.plan["pairs"]
        assert len(pairs) == 10
        assert all(p["lookup_in_volume"] and p["lookup"] < 100 for p in pairs), pairs
        assert all(p["lookup"] - p["reference"] == h_um // 10 for p in pairs)
    with pytest.raises(InvalidRequest, match="no h fits 100 pairs"):
        services.study_create(people["owner"], campaign, name="All", n_pairs=100, h_um=10)
