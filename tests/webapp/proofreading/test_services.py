"""Proofreading services: creation (selection, order, verdict sets), the queue, verdicts, second
round, undo, skips, flags, missed objects, members. Run on SQLite and PostgreSQL."""

from __future__ import annotations

import math
from datetime import timedelta
from typing import Any

import numpy as np
import pytest
from django.db.models.deletion import Collector
from django.utils import timezone
from proofreading_testdata import (
    SegmentationLayerFactory,
    UserFactory,
    campaign_with,
    layer_with_detections,
    synthetic_frame,
    table_with,
)

from webapp.core.errors import Conflict, InvalidRequest, NotAllowed
from webapp.datasets.models import LayerKind, Visibility
from webapp.detections.models import Detection
from webapp.proofreading import selectors, services
from webapp.proofreading.models import (
    CampaignItem,
    CampaignMember,
    Claim,
    ItemStatus,
    ProofreadingCampaign,
    ReviewEvent,
    Role,
    Verdict,
)
from webapp.proofreading.selection import Candidates, queue_keys, sample_indices

pytestmark = pytest.mark.django_db


def next_ids(
    campaign: ProofreadingCampaign, user: Any, count: int = 1, round_: int = 1
) -> list[int]:
    return [h.item.id for h in services.items_next(campaign, user, count=count, round_=round_)]


def decide(campaign: ProofreadingCampaign, user: Any, verdict: str, round_: int = 1) -> int:
    """Ask for the next item and give it ``verdict``; returns the item id."""
    (item_id,) = next_ids(campaign, user, round_=round_)
    services.verdict_create(campaign, user, item_id, verdict, round_=round_)
    return item_id


# --- creation -----------------------------------------------------------------------------------


def test_create_all_materialises_every_detection_in_a_seeded_order(
    campaign: ProofreadingCampaign, people: dict[str, Any]
) -> None:
    items = list(CampaignItem.objects.filter(campaign=campaign))
    assert campaign.n_items == len(items) == 40
    assert sorted(i.queue_key for i in items) == list(range(40))
    assert {i.detection.segment_id for i in items} == set(range(1, 41))
    assert all(i.segment_id == i.detection.segment_id for i in items)
    assert services.roles_of(campaign, people["owner"]) == {Role.MANAGER}
    assert services.roles_of(campaign, people["r1"]) == {Role.REVIEWER}
    # The voxel -> um mapping is the detections' own (origin 1, 2, 3 um; 0.4 x 0.2 x 0.2 um).
    assert campaign.geometry["voxel_size_um"] == pytest.approx([0.4, 0.2, 0.2])
    assert campaign.geometry["origin_um"] == pytest.approx([1.0, 2.0, 3.0])
    # The same seed gives the same queue.
    again = campaign_with(campaign.layer, people["owner"], reviewers_per_item=2, seed=7)
    order = lambda c: list(  # noqa: E731
        CampaignItem.objects.filter(campaign=c)
        .order_by("queue_key")
        .values_list("segment_id", flat=True)
    )
    assert order(again) == order(campaign)


def test_filter_selection_keeps_volume_and_sphericity_at_least_the_thresholds(
    people: dict[str, Any],
) -> None:
    layer = layer_with_detections(200, owner=people["owner"])
    frame = synthetic_frame(200)
    t_volume, t_sphericity = float(frame["volume"].median()), 0.6
    campaign = campaign_with(
        layer,
        people["owner"],
        selection="filter",
        volume_min=t_volume,
        sphericity_min=t_sphericity,
        order="uncertainty",
    )
    expected = set(
        frame.loc[
            (frame["volume"] >= t_volume) & (frame["sphericity"] >= t_sphericity), "segment_id"
        ]
    )
    got = set(CampaignItem.objects.filter(campaign=campaign).values_list("segment_id", flat=True))
    assert got == expected
    assert campaign.selection_params == {"volume_min": t_volume, "sphericity_min": t_sphericity}
    # Uncertainty order: the first item lies nearest a threshold.
    first = CampaignItem.objects.filter(campaign=campaign).order_by("queue_key").first()
    assert first is not None
    chosen = frame.set_index("segment_id").loc[sorted(expected)]
    rank = lambda column, v: (chosen[column] <= v).mean()  # noqa: E731
    distance = lambda row: min(  # noqa: E731
        abs(rank("volume", row["volume"]) - rank("volume", t_volume)),
        abs(rank("sphericity", row["sphericity"]) - rank("sphericity", t_sphericity)),
    )
    distances = chosen.apply(distance, axis=1)
    assert distances.loc[first.segment_id] == pytest.approx(distances.min())


def test_sample_selection_is_reproducible_and_sized(people: dict[str, Any]) -> None:
    layer = layer_with_detections(100, owner=people["owner"])
    a = campaign_with(layer, people["owner"], selection="sample", sample_size=10, seed=3)
    b = campaign_with(layer, people["owner"], selection="sample", sample_size=10, seed=3)
    c = campaign_with(layer, people["owner"], selection="sample", sample_size=10, seed=4)
    ids = lambda x: set(  # noqa: E731
        CampaignItem.objects.filter(campaign=x).values_list("segment_id", flat=True)
    )
    assert len(ids(a)) == 10 and ids(a) == ids(b) and ids(a) != ids(c)
    assert a.selection_params == {"sample_size": 10, "population": 100, "seed": 3}
    with pytest.raises(InvalidRequest, match="larger than the 100"):
        campaign_with(layer, people["owner"], selection="sample", sample_size=101)
    # A seed is chosen and stored when none is given.
    d = campaign_with(layer, people["owner"], selection="sample", sample_size=5)
    assert d.selection_params["seed"] == d.order_seed


def test_sample_gives_every_detection_the_same_chance() -> None:
    """Inclusion frequencies over many seeds match K/n (a simple random sample)."""
    n, k, draws = 40, 8, 4000
    counts = np.zeros(n)
    for seed in range(draws):
        counts[sample_indices(n, k, seed)] += 1
    expected = draws * k / n
    sd = math.sqrt(draws * (k / n) * (1 - k / n))
    assert np.abs(counts - expected).max() < 5 * sd
    # Chi-square of the inclusion counts: well within what chance gives (df = 39).
    chi2 = float(((counts - expected) ** 2 / expected).sum())
    assert chi2 < 80


def _candidates(n: int, **columns: Any) -> Candidates:
    rng = np.random.default_rng(0)
    return Candidates(
        ids=np.arange(n, dtype=np.int64),
        segment_ids=np.arange(n, dtype=np.int64) + 1,
        volume=columns.get("volume", rng.uniform(1, 10, n)),
        sphericity=columns.get("sphericity", rng.uniform(0.3, 1, n)),
        mean_probability=columns.get("mean_probability", np.full(n, np.nan)),
        centroids=columns.get("centroids", rng.uniform(0, 500, (n, 3))),
    )


def test_queue_orders() -> None:
    n = 200
    probability = np.random.default_rng(1).uniform(0, 1, n)
    probability[:5] = np.nan
    keys = queue_keys(_candidates(n, mean_probability=probability), "uncertainty", 0)
    order = np.argsort(keys)
    assert (np.diff(probability[order][: n - 5]) >= 0).all()  # lowest probability first
    assert set(order[n - 5 :]) == set(range(5))  # unknown last
    with pytest.raises(InvalidRequest, match="uncertainty order needs"):
        queue_keys(_candidates(n), "uncertainty", 0)
    # Region: consecutive items share a 64-voxel block far more often than a random order.
    candidates = _candidates(n)
    blocks = np.floor(candidates.centroids / 64).astype(int)

    def same_block_share(keys: Any) -> float:
        b = blocks[np.argsort(keys)]
        return float((b[1:] == b[:-1]).all(axis=1).mean())

    region = queue_keys(candidates, "region", 0)
    assert sorted(region) == list(range(n))
    assert same_block_share(region) > 3 * same_block_share(queue_keys(candidates, "random", 0))


def test_creation_refuses_bad_settings(layer: Any, people: dict[str, Any]) -> None:
    owner = people["owner"]
    with pytest.raises(NotAllowed, match="change the dataset"):
        campaign_with(layer, people["outsider"])
    image = SegmentationLayerFactory(dataset=layer.dataset, name="img", kind=LayerKind.IMAGE)
    with pytest.raises(InvalidRequest, match="segmentation"):
        campaign_with(image, owner)
    empty = SegmentationLayerFactory(dataset=layer.dataset, name="empty")
    with pytest.raises(InvalidRequest, match="no detections table"):
        campaign_with(empty, owner)
    with pytest.raises(InvalidRequest, match="selects no detection"):
        campaign_with(layer, owner, selection="filter", volume_min=1e9)
    with pytest.raises(InvalidRequest, match="needs volume_min"):
        campaign_with(layer, owner, selection="filter")
    with pytest.raises(InvalidRequest, match="reviewers_per_item"):
        campaign_with(layer, owner, reviewers_per_item=0)
    bad_sets: list[tuple[Any, str]] = [
        ([{"name": "tp", "label": "A", "colour": "#000000", "key": "1"}], "2 to 12"),
        (
            [
                {"name": "tp", "label": "A", "colour": "#000000", "key": "1"},
                {"name": "tp", "label": "B", "colour": "#000000", "key": "2"},
            ],
            "repeated: tp",
        ),
        (
            [
                {"name": "tp", "label": "A", "colour": "#000000", "key": "1"},
                {"name": "fp", "label": "B", "colour": "#000000", "key": "1"},
            ],
            "repeated: 1",
        ),
        (
            [
                {"name": "tp", "label": "A", "colour": "#000000", "key": "s"},
                {"name": "fp", "label": "B", "colour": "#000000", "key": "1"},
            ],
            "not allowed",
        ),
        (
            [
                {"name": "Tp!", "label": "A", "colour": "#000000", "key": "1"},
                {"name": "fp", "label": "B", "colour": "#000000", "key": "2"},
            ],
            "lowercase",
        ),
        (
            [
                {"name": "tp", "label": "A", "colour": "red", "key": "1"},
                {"name": "fp", "label": "B", "colour": "#000000", "key": "2"},
            ],
            "rrggbb",
        ),
    ]
    for verdict_set, message in bad_sets:
        with pytest.raises(InvalidRequest, match=message):
            campaign_with(layer, owner, verdict_set=verdict_set)
    assert not ProofreadingCampaign.objects.exists()  # nothing half-made


# --- the queue and verdicts ---------------------------------------------------------------------


def test_next_hands_out_in_order_and_returns_held_items_first(
    campaign: ProofreadingCampaign, people: dict[str, Any]
) -> None:
    r1 = people["r1"]
    order = list(
        CampaignItem.objects.filter(campaign=campaign)
        .order_by("queue_key")
        .values_list("id", flat=True)
    )
    first = next_ids(campaign, r1, count=3)
    assert first == order[:3]
    assert next_ids(campaign, r1, count=3) == first  # asking again: the same, not more
    services.verdict_create(campaign, r1, first[0], "tp")
    assert next_ids(campaign, r1, count=3) == [*first[1:], order[3]]
    assert next_ids(campaign, r1, count=1) == [first[1]]
    assert Claim.objects.filter(reviewer=r1).count() == 3


def test_an_item_goes_to_at_most_n_reviewers_and_claims_expire(
    campaign: ProofreadingCampaign, people: dict[str, Any]
) -> None:
    r1, r2, r3 = people["r1"], people["r2"], people["r3"]
    (a,) = next_ids(campaign, r1)
    assert next_ids(campaign, r2) == [a]  # N = 2: a second reviewer gets it too
    (b,) = next_ids(campaign, r3)
    assert b != a  # a has its two places taken
    # r1 walks away: once the claim expires, a's place returns.
    Claim.objects.filter(reviewer=r1, item_id=a).update(expires_at=timezone.now())
    services.item_skip(campaign, r3, b)
    assert next_ids(campaign, r3) == [a]
    # r1's verdict now finds no place left: 409, nothing recorded.
    with pytest.raises(Conflict, match="already with 2 other reviewer"):
        services.verdict_create(campaign, r1, a, "tp")
    services.verdict_create(campaign, r2, a, "tp")
    services.verdict_create(campaign, r3, a, "tp")
    item = CampaignItem.objects.get(id=a)
    assert (item.status, item.verdict, item.verdict_source) == (
        ItemStatus.DECIDED,
        "tp",
        "first_round",
    )
    assert a not in next_ids(campaign, r1, count=20)


def test_second_round_routing_and_the_experts_final_verdict(
    campaign: ProofreadingCampaign, people: dict[str, Any]
) -> None:
    r1, r2, expert = people["r1"], people["r2"], people["expert"]
    # Three items: agreement, disagreement, uncertain.
    items = next_ids(campaign, r1, count=3)
    assert next_ids(campaign, r2, count=3) == items
    for item_id, (v1, v2) in zip(
        items, [("tp", "tp"), ("tp", "fp"), ("uncertain", "tp")], strict=True
    ):
        services.verdict_create(campaign, r1, item_id, v1)
        services.verdict_create(campaign, r2, item_id, v2)
    status = {i.id: i for i in CampaignItem.objects.filter(id__in=items)}
    assert status[items[0]].status == ItemStatus.DECIDED and status[items[0]].verdict == "tp"
    assert (status[items[1]].status, status[items[1]].reason) == (
        ItemStatus.SECOND_ROUND,
        "disagreement",
    )
    assert (status[items[2]].status, status[items[2]].reason) == (
        ItemStatus.SECOND_ROUND,
        "uncertain",
    )
    # Only experts work in round 2, and only on routed items.
    with pytest.raises(NotAllowed, match="experts"):
        services.items_next(campaign, r1, round_=2)
    with pytest.raises(Conflict, match="not in the second round"):
        services.verdict_create(campaign, expert, items[0], "fp", round_=2)
    handouts = services.items_next(campaign, expert, count=5, round_=2)
    assert sorted(h.item.id for h in handouts) == sorted(items[1:])
    services.verdict_create(campaign, expert, items[1], "fp", round_=2)
    services.verdict_create(campaign, expert, items[2], "uncertain", round_=2)
    decided = {i.id: i for i in CampaignItem.objects.filter(id__in=items)}
    assert (decided[items[1]].verdict, decided[items[1]].verdict_source) == ("fp", "expert")
    assert decided[items[2]].status == ItemStatus.DECIDED  # final, even if uncertain
    with pytest.raises(Conflict, match="already gave verdict 'fp'"):
        services.verdict_create(campaign, expert, items[1], "tp", round_=2)
    second_expert = UserFactory(username="expert2")
    services.member_add(campaign, people["owner"], "expert2", Role.EXPERT)
    with pytest.raises(Conflict, match="already settled by an expert"):
        services.verdict_create(campaign, second_expert, items[1], "tp", round_=2)
    assert services.items_next(campaign, expert, round_=2) == []


def test_majority_rule(people: dict[str, Any]) -> None:
    layer = layer_with_detections(5, owner=people["owner"])
    reviewers = (people["r1"], people["r2"], people["r3"])
    campaign = campaign_with(
        layer, people["owner"], reviewers=reviewers, reviewers_per_item=3, consensus_rule="majority"
    )
    item_id = decide(campaign, people["r1"], "tp")
    for user, verdict in ((people["r2"], "fp"), (people["r3"], "tp")):
        assert next_ids(campaign, user) == [item_id]
        services.verdict_create(campaign, user, item_id, verdict)
    item = CampaignItem.objects.get(id=item_id)
    assert (item.status, item.verdict, item.reason) == (ItemStatus.DECIDED, "tp", "majority")


def test_verdicts_refused_with_reasons(
    campaign: ProofreadingCampaign, people: dict[str, Any], layer: Any
) -> None:
    r1, r2, r3 = people["r1"], people["r2"], people["r3"]
    item_id = decide(campaign, r1, "tp")
    with pytest.raises(Conflict, match="already gave verdict 'tp'"):
        services.verdict_create(campaign, r1, item_id, "fp")
    with pytest.raises(InvalidRequest, match="Unknown verdict 'maybe'"):
        services.verdict_create(campaign, r2, item_id, "maybe")
    other = campaign_with(layer, people["owner"], reviewers=(r1,))
    foreign = CampaignItem.objects.filter(campaign=other).first()
    assert foreign is not None
    with pytest.raises(InvalidRequest, match="not part of campaign"):
        services.verdict_create(campaign, r1, foreign.id, "tp")
    with pytest.raises(NotAllowed, match="not a reviewer"):
        services.verdict_create(campaign, people["expert"], item_id, "tp")
    services.verdict_create(campaign, r2, item_id, "tp")
    with pytest.raises(Conflict, match="first-round verdict"):
        services.verdict_create(campaign, r3, item_id, "tp")
    services.campaign_update(campaign, people["owner"], state="closed")
    with pytest.raises(Conflict, match="closed"):
        services.items_next(campaign, r3)
    assert Claim.objects.filter(campaign=campaign).count() == 0


def test_time_per_decision_is_measured_on_the_server(
    campaign: ProofreadingCampaign, people: dict[str, Any]
) -> None:
    r1 = people["r1"]
    a, b = next_ids(campaign, r1, count=2)
    Claim.objects.filter(reviewer=r1).update(handed_out=timezone.now() - timedelta(seconds=5))
    first = services.verdict_create(campaign, r1, a, "tp")
    assert 5 <= (first.seconds or 0) < 60
    # b was handed out with a, but is timed from the verdict on a (its preloading is not work).
    second = services.verdict_create(campaign, r1, b, "fp")
    assert second.seconds is not None and second.seconds < 5
    # A verdict without a hand-out has no time.
    c = CampaignItem.objects.filter(campaign=campaign).exclude(id__in=[a, b]).first()
    assert c is not None
    assert services.verdict_create(campaign, r1, c.id, "tp").seconds is None


def test_change_and_undo_keep_the_history(
    campaign: ProofreadingCampaign, people: dict[str, Any]
) -> None:
    r1, r2 = people["r1"], people["r2"]
    a = decide(campaign, r1, "tp")
    b = decide(campaign, r1, "fp")
    va = Verdict.objects.get(item_id=a, reviewer=r1)
    vb = Verdict.objects.get(item_id=b, reviewer=r1)
    with pytest.raises(Conflict, match=f"Stale undo: verdict {va.id} is not your last"):
        services.verdict_undo(campaign, r1, va.id)
    with pytest.raises(NotAllowed, match="only your own"):
        services.verdict_undo(campaign, r2, vb.id)
    result = services.verdict_undo(campaign, r1, vb.id)
    assert result.verdict.undone_at is not None
    assert result.handout is not None and result.handout.item.id == b  # handed back
    assert next_ids(campaign, r1) == [b]
    with pytest.raises(Conflict, match="already undone"):
        services.verdict_undo(campaign, r1, vb.id)
    # Ctrl+Z again: now a is the last.
    services.verdict_undo(campaign, r1, va.id)
    # Decide b again, then change it.
    vb2 = services.verdict_create(campaign, r1, b, "tp")
    services.verdict_change(vb2, r1, "tp_distortion")
    with pytest.raises(NotAllowed):
        services.verdict_change(vb2, r2, "fp")
    with pytest.raises(Conflict, match="was undone"):
        services.verdict_change(vb, r1, "tp")
    history = list(
        ReviewEvent.objects.filter(campaign=campaign, actor=r1).values_list(
            "action", "item_id", "before", "after"
        )
    )
    assert history == [
        ("create", a, "", "tp"),
        ("create", b, "", "fp"),
        ("undo", b, "fp", ""),
        ("undo", a, "tp", ""),
        ("create", b, "", "tp"),
        ("change", b, "tp", "tp_distortion"),
    ]
    assert Verdict.objects.filter(campaign=campaign).count() == 3  # undone rows are kept


def test_skip_sends_the_item_to_the_end_and_flags_need_a_reason(
    people: dict[str, Any],
) -> None:
    layer = layer_with_detections(3, owner=people["owner"])
    r1, r2 = people["r1"], people["r2"]
    campaign = campaign_with(layer, people["owner"], reviewers=(r1, r2), seed=1)
    a, b, c = CampaignItem.objects.filter(campaign=campaign).order_by("queue_key")
    assert next_ids(campaign, r1) == [a.id]
    services.item_skip(campaign, r1, a.id)
    assert next_ids(campaign, r2) == [a.id]  # the place is free for others
    services.item_skip(campaign, r2, a.id)
    assert next_ids(campaign, r1) == [b.id]
    services.verdict_create(campaign, r1, b.id, "tp")
    services.item_skip(campaign, r1, next_ids(campaign, r1)[0])  # c
    assert next_ids(campaign, r1) == [a.id]  # nothing else left: skipped ones, in order
    services.verdict_create(campaign, r1, a.id, "tp")
    with pytest.raises(Conflict, match="undo it to skip"):
        services.item_skip(campaign, r1, a.id)
    with pytest.raises(InvalidRequest, match="needs a reason"):
        services.item_flag(campaign, r1, c.id, "  ")
    flag = services.item_flag(campaign, r1, c.id, "two nuclei merged")
    assert (flag.action, flag.reason) == ("flag", "two nuclei merged")


def test_missed_objects_inside_the_layer_and_their_csv(
    campaign: ProofreadingCampaign, people: dict[str, Any]
) -> None:
    r1 = people["r1"]
    point = services.missed_object_add(campaign, r1, 10, 20.5, 30, "faint nucleus")
    with pytest.raises(InvalidRequest, match="outside the layer"):
        services.missed_object_add(campaign, r1, 100, 0, 0)
    with pytest.raises(InvalidRequest, match="finite"):
        services.missed_object_add(campaign, r1, float("nan"), 0, 0)
    with pytest.raises(NotAllowed):
        services.missed_object_add(campaign, people["owner"], 1, 1, 1)
    lines = selectors.missed_objects_csv(campaign).splitlines()
    assert lines[0] == "id,z,y,x,z_um,y_um,x_um,note,created_by,created"
    fields = lines[1].split(",")
    assert fields[:7] == [str(point.id), "10.0", "20.5", "30.0", "5.0", "6.1", "9.0"]
    assert fields[7:9] == ["faint nucleus", "r1"]
    with pytest.raises(NotAllowed):
        services.missed_object_delete(point, people["r2"])
    services.missed_object_delete(point, people["owner"])  # a manager may


def test_a_rebuild_that_drops_a_segment_keeps_its_verdicts(
    campaign: ProofreadingCampaign, people: dict[str, Any]
) -> None:
    r1 = people["r1"]
    item_id = decide(campaign, r1, "fp")
    segment = CampaignItem.objects.get(id=item_id).segment_id
    frame = synthetic_frame(40)
    table_with(campaign.layer, frame.loc[frame["segment_id"] != segment])
    item = CampaignItem.objects.select_related("detection").get(id=item_id)
    assert item.detection is None and item.segment_id == segment
    assert Verdict.objects.filter(item=item).count() == 1
    assert not Detection.objects.filter(layer=campaign.layer, segment_id=segment).exists()
    handed = next_ids(campaign, people["r2"], count=20)
    assert item_id not in handed
    with pytest.raises(Conflict, match="no longer in the layer"):
        services.verdict_create(campaign, people["r2"], item_id, "tp")


def test_detections_stay_fast_to_delete() -> None:
    """Items refer to detections without a constraint: deleting detections (a rebuild, a
    dataset) stays one DELETE statement instead of loading every row to null the items."""
    assert Collector(using="default").can_fast_delete(Detection.objects.all())


def test_members_are_managed_by_managers(
    campaign: ProofreadingCampaign, people: dict[str, Any]
) -> None:
    owner, r1 = people["owner"], people["r1"]
    with pytest.raises(NotAllowed, match="managers"):
        services.member_add(campaign, r1, "outsider", Role.REVIEWER)
    with pytest.raises(InvalidRequest, match="No user named 'nobody'"):
        services.member_add(campaign, owner, "nobody", Role.REVIEWER)
    with pytest.raises(Conflict, match="already a reviewer"):
        services.member_add(campaign, owner, "r1", Role.REVIEWER)
    campaign.layer.dataset.visibility = Visibility.PRIVATE
    campaign.layer.dataset.save()
    with pytest.raises(InvalidRequest, match="cannot see dataset"):
        services.member_add(campaign, owner, "outsider", Role.REVIEWER)
    manager = CampaignMember.objects.get(campaign=campaign, user=owner, role=Role.MANAGER)
    with pytest.raises(Conflict, match="at least one manager"):
        services.member_remove(manager, owner)
    next_ids(campaign, r1, count=2)
    services.member_remove(CampaignMember.objects.get(campaign=campaign, user=r1), owner)
    assert not Claim.objects.filter(reviewer=r1).exists()
    # A campaign with verdicts is kept.
    decide(campaign, people["r2"], "tp")
    with pytest.raises(Conflict, match="close it instead"):
        services.campaign_delete(campaign, owner)


def test_verdict_set_labels_change_but_names_stay(
    campaign: ProofreadingCampaign, people: dict[str, Any]
) -> None:
    renamed = [dict(c, label=c["label"].upper()) for c in campaign.verdict_set]
    services.campaign_update(campaign, people["owner"], verdict_set=renamed)
    assert campaign.verdict_set[0]["label"] == "TRUE POSITIVE"
    changed = [dict(c) for c in campaign.verdict_set]
    changed[0]["name"] = "yes"
    with pytest.raises(Conflict, match="fixed"):
        services.campaign_update(campaign, people["owner"], verdict_set=changed)
    with pytest.raises(NotAllowed):
        services.campaign_update(campaign, people["r1"], name="mine")


def test_superuser_may_do_everything(layer: Any, people: dict[str, Any]) -> None:
    root = UserFactory(username="root", is_superuser=True, is_staff=True)
    campaign = campaign_with(layer, root)
    assert decide(campaign, root, "tp")
