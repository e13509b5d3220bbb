"""Physical disector: the plan, the estimator on hand-computed and synthetic truth, matching."""

from __future__ import annotations

import json
import math
from functools import cache

import numpy as np
import numpy.typing as npt
import pandas as pd
import pytest

from pipeline.errors import InvalidInputError
from pipeline.stereology import (
    DetectionBoxes,
    DisectorPlan,
    counts_from_marks,
    detections_in_region,
    disector_estimates,
    estimate_from_pairs,
    mask_section_counts,
    match_marked_point,
    plan_disector,
    ratio_ce,
)
from pipeline.synthetic import make_sphere_labels

VOXEL_NM = (10_000.0, 10_000.0, 10_000.0)  # 10 um: h = 50 um is 5 sections
MISS = 0.15


# --- the plan ---------------------------------------------------------------------------------


def test_plan_is_systematic_uniform_random_and_seedable() -> None:
    plan = plan_disector((100, 20, 30), VOXEL_NM, n_pairs=8, h_um=50, seed=3)
    assert plan.h_voxels == 5 and plan.h_um == pytest.approx(50)
    assert plan.period_voxels == pytest.approx(100 / 8)
    refs = np.array([p.reference for p in plan.pairs])
    assert 0 <= refs[0] < plan.period_voxels
    assert set(np.diff(refs)) <= {12, 13}  # floor of equidistant positions T = 12.5 apart
    assert all(p.lookup == p.reference + 5 for p in plan.pairs)
    assert [p.lookup_in_volume for p in plan.pairs] == [p.lookup < 100 for p in plan.pairs]
    assert all(p.reference_area_um2 == pytest.approx(20 * 30 * 100) for p in plan.pairs)
    assert plan.region_volume_um3 == pytest.approx(100 * 20 * 30 * 1000)
    assert plan_disector((100, 20, 30), VOXEL_NM, n_pairs=8, seed=3) == plan
    assert plan_disector((100, 20, 30), VOXEL_NM, n_pairs=8, seed=4) != plan


def test_every_section_is_a_reference_with_probability_one_over_t() -> None:
    hits = np.zeros(50)
    runs = 4000
    for seed in range(runs):
        for p in plan_disector((50, 4, 4), VOXEL_NM, n_pairs=4, seed=seed).pairs:
            hits[p.reference] += 1
    # T = 12.5 sections: each section is drawn in 1 / 12.5 of the plans (binomial sd ~ 0.0043).
    assert np.abs(hits / runs - 1 / 12.5).max() < 0.02


def test_plan_inside_a_mask_along_another_axis() -> None:
    mask = np.zeros((10, 60, 12), dtype=bool)
    mask[2:8, 10:50, 3:9] = True
    plan = plan_disector(mask.shape, (1000.0, 2000.0, 500.0), n_pairs=5, h_um=4, axis="y",
                         seed=0, mask=mask)  # fmt: skip
    assert plan.axis == 1 and plan.masked
    assert plan.h_voxels == 2 and plan.sampled_range == (10, 50)
    assert all(10 <= p.reference < 50 for p in plan.pairs)
    assert all(p.reference_area_um2 == pytest.approx(6 * 6 * 1.0 * 0.5) for p in plan.pairs)
    assert plan.region_volume_um3 == pytest.approx(mask.sum() * 1.0 * 2.0 * 0.5)
    assert mask_section_counts(mask, "y").tolist() == [0] * 10 + [36] * 40 + [0] * 10
    same = plan_disector(mask.shape, (1000.0, 2000.0, 500.0), n_pairs=5, h_um=4, axis=1, seed=0,
                         section_counts=mask_section_counts(mask, 1))  # fmt: skip
    assert same == plan


def test_plan_round_trips_through_json() -> None:
    plan = plan_disector((40, 8, 8), VOXEL_NM, n_pairs=3, seed=1)
    assert DisectorPlan.from_dict(json.loads(json.dumps(plan.to_dict()))) == plan
    with pytest.raises(InvalidInputError, match="not a disector plan"):
        DisectorPlan.from_dict({"pairs": []})


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"n_pairs": 0}, "at least one"),
        ({"n_pairs": 41}, "do not fit"),
        ({"n_pairs": 2, "h_um": 2}, "less than one section"),
        ({"n_pairs": 2, "h_um": -1}, "positive"),
        ({"n_pairs": 2, "axis": "t"}, "unknown axis"),
        ({"n_pairs": 2, "mask": np.zeros((40, 8, 8), bool)}, "empty"),
        ({"n_pairs": 2, "mask": np.ones((4, 8, 8), bool)}, "shape"),
        ({"n_pairs": 2, "section_counts": [1, 2]}, "section counts"),
    ],
)
def test_bad_plans_are_refused(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(InvalidInputError, match=message):
        plan_disector((40, 8, 8), VOXEL_NM, **kwargs)  # type: ignore[arg-type]


# --- the estimator on hand-computed cases ------------------------------------------------------


def test_estimate_by_hand() -> None:
    # Nv = 10 / (10 um * 300 um^2) = 1/300 per um^3; N = Nv * 1e5 um^3 = 333.3.
    est = estimate_from_pairs([2, 3, 5], [100, 100, 100], 10.0, 1e5, detections=300,
                              matched=[2, 2, 5])  # fmt: skip
    assert est.nv_per_mm3 == pytest.approx(1e9 / 300)
    assert est.n_total == pytest.approx(1e5 / 300)
    assert est.detected_fraction == pytest.approx(0.9)
    assert est.miss_rate == pytest.approx(0.1)
    assert est.miss_rate_low < 0.1 < est.miss_rate_high
    assert est.n_total_low < est.n_total < est.n_total_high
    assert est.miss_rate_sampled == pytest.approx(0.1)
    assert 0 <= est.miss_rate_sampled_low < 0.1 < est.miss_rate_sampled_high


def test_ce_of_flat_poisson_counts_is_about_one_over_root_sum() -> None:
    q = np.random.default_rng(0).poisson(50, 20)
    ce = ratio_ce(q, np.ones(20))
    assert ce == pytest.approx(1 / math.sqrt(q.sum()), rel=0.3)
    # Disectors that cover the whole length count every object: no counting noise left.
    assert ratio_ce(np.full(20, 50), np.ones(20), sampling_fraction=1.0) < 0.01
    assert math.isnan(ratio_ce([0, 0], [1, 1]))


def test_zero_counts_give_a_poisson_upper_bound() -> None:
    est = estimate_from_pairs([0, 0, 0], [100, 100, 100], 10.0, 1e5, detections=5)
    assert est.n_total == 0 and est.n_total_low == 0
    # Garwood: 95 % upper bound of a Poisson count of 0 is 3.689 objects, scaled by V / (h A).
    assert est.n_total_high == pytest.approx(3.689 * 1e5 / 3000, rel=1e-3)
    assert est.miss_rate is None


def test_per_reviewer_and_pooled() -> None:
    plan = plan_disector((100, 10, 10), VOXEL_NM, n_pairs=4, seed=0)
    counts = pd.DataFrame(
        {
            "pair": [0, 1, 2, 3, 0, 1],
            "reviewer": ["ann", "ann", "ann", "ann", "bob", "bob"],
            "q_minus": [4, 6, 5, 5, 2, 4],
            "matched": [4, 5, 4, 4, 2, 3],
        }
    )
    ann, bob, pooled = disector_estimates(plan, counts, detections=100)
    assert (ann.reviewer, bob.reviewer, pooled.reviewer) == ("ann", "bob", None)
    assert (ann.n_pairs, bob.n_pairs, pooled.n_pairs) == (4, 2, 4)
    assert ann.q_minus == 20 and bob.q_minus == 6
    # Pooled: pairs 0 and 1 averaged over both reviewers, 2 and 3 from ann alone.
    assert pooled.q_minus == pytest.approx(3 + 5 + 5 + 5)
    assert pooled.matched == pytest.approx(3 + 4 + 4 + 4)
    area = 10 * 10 * 100.0
    assert ann.n_total == pytest.approx(20 / (50 * 4 * area) * plan.region_volume_um3)
    boot = disector_estimates(plan, counts, detections=100, method="bootstrap")[-1]
    assert boot.n_total == pooled.n_total
    assert boot.n_total_low <= boot.n_total <= boot.n_total_high


@pytest.mark.parametrize(
    ("rows", "message"),
    [
        ([], "empty"),
        ([{"pair": 0}], "no q_minus column"),
        ([{"pair": 9, "q_minus": 1}], "not in the plan"),
        ([{"pair": 0, "q_minus": -1}], "whole number"),
        ([{"pair": 0, "q_minus": 1.5}], "whole number"),
        ([{"pair": 0, "q_minus": 1, "matched": 2}], "more matched"),
        ([{"pair": 0, "q_minus": 1}, {"pair": 0, "q_minus": 2}], "two counts"),
    ],
)
def test_bad_counts_are_refused(rows: list[dict[str, object]], message: str) -> None:
    plan = plan_disector((100, 10, 10), VOXEL_NM, n_pairs=4, seed=0)
    with pytest.raises(InvalidInputError, match=message):
        disector_estimates(plan, rows)


def test_counts_from_marks_keeps_finished_pairs_without_marks() -> None:
    marks = [
        {"pair": 0, "reviewer": "ann", "matched": True},
        {"pair": 0, "reviewer": "ann", "matched": False},
        {"pair": 1, "reviewer": "ann", "matched": True},
        {"pair": 3, "reviewer": "ann", "matched": True},  # pair 3 not finished: left out
    ]
    counts = counts_from_marks(marks, [(0, "ann"), (1, "ann"), (2, "ann")])
    assert counts.to_dict("records") == [
        {"pair": 0, "reviewer": "ann", "q_minus": 2, "matched": 1},
        {"pair": 1, "reviewer": "ann", "q_minus": 1, "matched": 1},
        {"pair": 2, "reviewer": "ann", "q_minus": 0, "matched": 0},
    ]
    assert counts_from_marks([], [(0, "ann")])["q_minus"].tolist() == [0]


# --- matching a marked object ------------------------------------------------------------------


def _two_boxes() -> npt.NDArray[np.uint32]:
    labels = np.zeros((10, 10, 10), dtype=np.uint32)
    labels[2:5, 2:5, 2:5] = 7
    labels[6:9, 6:9, 6:9] = 9
    return labels


def test_match_by_label_under_the_point_or_near_it() -> None:
    labels = _two_boxes()
    assert match_marked_point((3, 3, 3), VOXEL_NM, labels=labels).detection_id == 7
    off = match_marked_point((5.2, 3, 3), VOXEL_NM, labels=labels, tolerance_um=15)
    assert (off.detection_id, off.how) == (7, "label_near")
    assert off.distance_um == pytest.approx(12.0)  # voxel 4 is centred 1.2 sections away
    assert match_marked_point((5.2, 3, 3), VOXEL_NM, labels=labels).how == "none"
    assert match_marked_point((3, 3, 3), VOXEL_NM, labels=labels, tolerance_um=5).how == "label"
    # A label that is not among the detections (filtered out) does not match.
    boxes = DetectionBoxes.from_frame(
        pd.DataFrame({"id": [9], "centroid_z": [7], "centroid_y": [7], "centroid_x": [7],
                      "bbox_z0": [6], "bbox_y0": [6], "bbox_x0": [6],
                      "bbox_z1": [9], "bbox_y1": [9], "bbox_x1": [9]})
    )  # fmt: skip
    assert match_marked_point((3, 3, 3), VOXEL_NM, labels=labels, detections=boxes).how == "none"
    with pytest.raises(InvalidInputError, match="outside the volume"):
        match_marked_point((30, 3, 3), VOXEL_NM, labels=labels)


def test_match_by_box_or_centroid_without_labels() -> None:
    boxes = DetectionBoxes(
        ids=np.array([7, 9]),
        centroids=np.array([[3.0, 3.0, 3.0], [7.0, 7.0, 7.0]]),
        lo=np.array([[2.0, 2.0, 2.0], [6.0, 6.0, 6.0]]),
        hi=np.array([[5.0, 5.0, 5.0], [9.0, 9.0, 9.0]]),
    )
    inside = match_marked_point((4, 2, 3), VOXEL_NM, detections=boxes)
    assert (inside.detection_id, inside.how) == (7, "bbox")
    # The grown boxes of both hold it: the nearer centroid wins.
    near = match_marked_point((5, 5, 4.8), VOXEL_NM, detections=boxes, tolerance_um=40)
    assert (near.detection_id, near.how) == (7, "bbox")
    assert near.distance_um == pytest.approx(math.sqrt(4 + 4 + 1.8**2) * 10)
    by_centroid = DetectionBoxes(boxes.ids, boxes.centroids, boxes.centroids, boxes.centroids)
    close = match_marked_point((3, 3, 5), VOXEL_NM, detections=by_centroid, tolerance_um=25)
    assert (close.detection_id, close.how) == (7, "centroid")
    far = match_marked_point((0, 9, 0), VOXEL_NM, detections=boxes, tolerance_um=10)
    assert far.how == "none"
    assert match_marked_point((0, 9, 0), VOXEL_NM).how == "none"
    with pytest.raises(InvalidInputError, match=r"no centroid_z, .*bbox_x1 column"):
        DetectionBoxes.from_frame(pd.DataFrame({"id": [1]}))


def test_detections_in_region() -> None:
    mask = np.zeros((10, 10, 10), dtype=bool)
    mask[:5] = True
    centroids = [[1.0, 1, 1], [4.4, 2, 2], [4.6, 2, 2], [20, 1, 1]]
    assert detections_in_region(centroids, mask.shape) == 3
    assert detections_in_region(centroids, mask.shape, mask) == 2
    # Across several slabs of sections: the same answer as point by point.
    rng = np.random.default_rng(0)
    big = rng.random((80, 12, 12)) < 0.5
    points = rng.uniform(-1, 80, size=(300, 3)) * [1, 0.15, 0.15]
    index = np.floor(points + 0.5).astype(int)
    ok = np.all((index >= 0) & (index < big.shape), axis=1)
    expected = sum(bool(big[tuple(p)]) for p in index[ok])
    assert detections_in_region(points, big.shape, big) == expected > 0


# --- synthetic truth ---------------------------------------------------------------------------


@cache
def _synthetic(
    seed: int, organ: bool
) -> tuple[npt.NDArray[np.uint32], npt.NDArray[np.bool_] | None, frozenset[int], list[set[int]]]:
    """Balls 80-120 um across (radius 4-6 voxels of 10 um), 15 % of them dropped from the
    segmentation; with ``organ`` inside an ellipsoidal region with background around it."""
    shape = (100, 150, 150)
    mask = None
    if organ:
        zz, yy, xx = np.ogrid[: shape[0], : shape[1], : shape[2]]
        mask = ((zz - 50) / 42.5) ** 2 + ((yy - 75) / 67.5) ** 2 + ((xx - 75) / 67.5) ** 2 <= 1
    # As many balls as fit the organ (about 320), 700 in the whole volume (15 % of it).
    wanted = 400 if organ else 700
    labels, _, radii = make_sphere_labels(shape, wanted, radius_voxels=(4.0, 6.0), seed=seed,
                                          mask=mask)  # fmt: skip
    rng = np.random.default_rng(1000 + seed)
    n = len(radii)
    dropped = frozenset((rng.permutation(n)[: round(MISS * n)] + 1).tolist())
    sections = [set(np.unique(labels[z]).tolist()) - {0} for z in range(shape[0])]
    return labels, mask, dropped, sections


def _perfect_reviewer(
    plan: DisectorPlan, sections: list[set[int]], dropped: frozenset[int]
) -> pd.DataFrame:
    rows = []
    for p in plan.pairs:
        q = sections[p.reference] - (sections[p.lookup] if p.lookup_in_volume else set())
        rows.append({"pair": p.index, "q_minus": len(q), "matched": len(q - dropped)})
    return pd.DataFrame(rows)


def test_perfect_reviewer_marks_match_through_the_segmentation() -> None:
    """The counts a reviewer's marks give, matched by label, equal the known truth."""
    labels, _, dropped, sections = _synthetic(0, organ=False)
    segmentation = np.where(np.isin(labels, list(dropped)), 0, labels)
    plan = plan_disector(labels.shape, VOXEL_NM, n_pairs=6, seed=0)
    marks = []
    for p in plan.pairs:
        look = sections[p.lookup] if p.lookup_in_volume else set()
        for obj in sorted(sections[p.reference] - look):
            yx = np.argwhere(labels[p.reference] == obj)
            point = (p.reference, *yx[len(yx) // 2])
            match = match_marked_point(point, VOXEL_NM, labels=segmentation, tolerance_um=5)
            marks.append({"pair": p.index, "reviewer": "r", "matched": match.detection_id == obj})
    counts = counts_from_marks(marks, [(p.index, "r") for p in plan.pairs])
    truth = _perfect_reviewer(plan, sections, dropped)
    assert counts["q_minus"].tolist() == truth["q_minus"].tolist()
    assert counts["matched"].tolist() == truth["matched"].tolist()


def test_whole_volume_estimate_is_close_and_covers_the_miss_rate() -> None:
    """Five volumes, one plan each (12 pairs): N within 15 %, the interval covers the truth."""
    covered_n, covered_miss, covered_sampled = 0, 0, 0
    for seed in range(5):
        labels, _, dropped, sections = _synthetic(seed, organ=False)
        n = len(sections and set().union(*sections))
        plan = plan_disector(labels.shape, VOXEL_NM, n_pairs=12, h_um=50, seed=seed)
        est = disector_estimates(plan, _perfect_reviewer(plan, sections, dropped),
                                 detections=n - len(dropped))[-1]  # fmt: skip
        true_miss = len(dropped) / n
        assert est.n_total == pytest.approx(n, rel=0.15)
        assert est.miss_rate is not None and est.miss_rate_sampled is not None
        assert est.miss_rate_low is not None and est.miss_rate_high is not None
        assert est.miss_rate_sampled_low is not None and est.miss_rate_sampled_high is not None
        covered_n += est.n_total_low <= n <= est.n_total_high
        covered_miss += est.miss_rate_low <= true_miss <= est.miss_rate_high
        covered_sampled += est.miss_rate_sampled_low <= true_miss <= est.miss_rate_sampled_high
    assert covered_n >= 4 and covered_miss >= 4 and covered_sampled >= 4


@pytest.mark.slow
def test_organ_interval_coverage_over_many_plans() -> None:
    """A kidney-like region: 4 volumes x 25 plans of 10 pairs; the 95 % intervals must cover
    the true N and miss rate in at least 85 % of them (measured: about 94 % and 100 %)."""
    n_cover = sampled_cover = runs = 0
    errors = []
    for seed in range(4):
        labels, mask, dropped, sections = _synthetic(seed, organ=True)
        assert mask is not None
        n = len(set().union(*sections))
        profile = mask_section_counts(mask)
        for plan_seed in range(25):
            plan = plan_disector(labels.shape, VOXEL_NM, n_pairs=10, seed=plan_seed,
                                 section_counts=profile)  # fmt: skip
            est = disector_estimates(plan, _perfect_reviewer(plan, sections, dropped),
                                     detections=n - len(dropped))[-1]  # fmt: skip
            true_miss = len(dropped) / n
            assert est.miss_rate_sampled_low is not None and est.miss_rate_sampled_high is not None
            runs += 1
            n_cover += est.n_total_low <= n <= est.n_total_high
            sampled_cover += est.miss_rate_sampled_low <= true_miss <= est.miss_rate_sampled_high
            errors.append(est.n_total / n - 1)
    assert abs(float(np.mean(errors))) < 0.03  # unbiased
    assert n_cover / runs >= 0.85
    assert sampled_cover / runs >= 0.85


def test_lookup_inside_keeps_every_look_up_section_in_the_region() -> None:
    """``lookup_inside``: references in the first L - h sections, so no look-up section lies
    beyond the region; too large an h for K is refused. N stays unbiased (measured on 4 volumes
    x 10 plans of 12 pairs, whole volume and organ: mean error +1.6 % and +0.8 %, sd 2.8 %,
    interval coverage 40/40 and 39/40); here 2 volumes x 4 plans."""
    plan = plan_disector((100, 20, 30), VOXEL_NM, n_pairs=8, h_um=50, seed=3, lookup_inside=True)
    assert plan.sampled_range == (0, 95) and plan.period_voxels == pytest.approx(95 / 8)
    assert plan.region_volume_um3 == pytest.approx(100 * 20 * 30 * 1000)
    for seed in range(20):
        tall = plan_disector((100, 20, 30), VOXEL_NM, n_pairs=10, h_um=900, seed=seed,
                             lookup_inside=True)  # fmt: skip
        assert all(p.lookup_in_volume and p.lookup <= 99 for p in tall.pairs)
        assert len({p.reference for p in tall.pairs}) == 10
    with pytest.raises(InvalidInputError, match="the largest h is 90 sections"):
        plan_disector((100, 20, 30), VOXEL_NM, n_pairs=10, h_um=910, lookup_inside=True)
    errors = []
    for seed in range(2):
        labels, _, dropped, sections = _synthetic(seed, organ=False)
        n = len(set().union(*sections))
        for k in range(4):
            plan = plan_disector(labels.shape, VOXEL_NM, n_pairs=12, h_um=50, seed=10 * seed + k,
                                 lookup_inside=True)  # fmt: skip
            assert all(p.lookup_in_volume for p in plan.pairs)
            est = disector_estimates(plan, _perfect_reviewer(plan, sections, dropped),
                                     detections=n - len(dropped))[-1]  # fmt: skip
            assert est.n_total_low <= n <= est.n_total_high
            errors.append(est.n_total / n - 1)
    assert abs(float(np.mean(errors))) < 0.05
