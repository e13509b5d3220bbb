"""Point agreement and consensus on constructed cases with known answers."""

from __future__ import annotations

import pytest

from pipeline.errors import InvalidInputError
from pipeline.point_agreement import (
    Point,
    box_agreement,
    consensus,
    default_quorum,
    match_points,
    pair_agreement,
)

ISO = (1.0, 1.0, 1.0)


def pts(*zyx: tuple[float, float, float], label: str = "nucleus") -> list[Point]:
    return [Point(label, z) for z in zyx]


def test_identical_sets_match_completely() -> None:
    a = pts((0, 0, 0), (10, 10, 10), (20, 0, 5))
    pair = pair_agreement("a", a, "b", list(reversed(a)), 1.0, ISO)
    assert pair.matched == 3
    assert (pair.precision, pair.recall, pair.f1) == (1.0, 1.0, 1.0)
    assert pair.mean_distance_um == 0.0
    assert {(m.i, m.j) for m in pair.matches} == {(0, 2), (1, 1), (2, 0)}


def test_a_point_just_inside_the_tolerance_matches_and_just_outside_does_not() -> None:
    a = pts((0, 0, 0))
    assert len(match_points(a, pts((0, 0, 2.99)), 3.0, ISO)) == 1
    assert len(match_points(a, pts((0, 0, 3.0)), 3.0, ISO)) == 1  # equal to it: matches
    assert match_points(a, pts((0, 0, 3.01)), 3.0, ISO) == []
    # 15 voxels of 0.2 um is 3 um (floating point: 3.0000000000000004) and matches.
    assert len(match_points(a, pts((0, 0, 15)), 3.0, (1.0, 0.2, 0.2))) == 1


def test_a_missed_point_and_an_extra_point() -> None:
    reference = pts((0, 0, 0), (10, 0, 0), (20, 0, 0), (30, 0, 0))
    other = pts((0, 0, 1), (10, 0, 1), (20, 0, 1), (50, 50, 50), (60, 60, 60))  # misses 30
    pair = pair_agreement("ref", reference, "other", other, 2.0, ISO)
    assert pair.matched == 3
    assert pair.recall == pytest.approx(3 / 4)
    assert pair.precision == pytest.approx(3 / 5)
    assert pair.f1 == pytest.approx(6 / 9)


def test_hungarian_matching_beats_greedy_nearest_neighbour() -> None:
    # Greedy would pair a0-b0 (0.9 apart) and leave a1 (1.5 from b0, 2.5 from b1) unmatched
    # with a tolerance of 2; the optimal assignment matches both.
    a = pts((0, 0, 0), (0, 0, 1.5))
    b = pts((0, 0, 0.9), (0, 0, -1.0))
    matches = match_points(a, b, 2.0, ISO)
    assert {(m.i, m.j) for m in matches} == {(0, 1), (1, 0)}


def test_classes_never_match() -> None:
    a = pts((0, 0, 0)) + pts((5, 5, 5), label="glomerulus")
    b = pts((0, 0, 0), label="glomerulus") + pts((5, 5, 5), label="glomerulus")
    pair = pair_agreement("a", a, "b", b, 1.0, ISO)
    assert pair.matched == 1
    assert pair.by_label == {"glomerulus": (1, 2, 1), "nucleus": (1, 0, 0)}


def test_anisotropic_voxels_are_measured_in_micrometres() -> None:
    voxel = (2.0, 0.5, 0.5)  # z is four times coarser
    a = pts((10, 10, 10))
    assert len(match_points(a, pts((11, 10, 10)), 1.5, voxel)) == 0  # 2 um apart in z
    assert len(match_points(a, pts((10, 10, 12)), 1.5, voxel)) == 1  # 1 um apart in x
    assert len(match_points(a, pts((10, 12, 12)), 1.5, voxel)) == 1  # 1.41 um
    assert len(match_points(a, pts((10, 13, 12)), 1.5, voxel)) == 0  # 1.80 um


def test_empty_sets_have_no_figures() -> None:
    pair = pair_agreement("a", [], "b", [], 1.0, ISO)
    assert (pair.precision, pair.recall, pair.f1) == (None, None, None)
    one_sided = pair_agreement("a", pts((0, 0, 0)), "b", [], 1.0, ISO)
    assert (one_sided.precision, one_sided.recall, one_sided.f1) == (None, 0.0, 0.0)


def test_per_annotator_summary_pools_their_pairs() -> None:
    points = {
        "a": pts((0, 0, 0), (10, 0, 0)),
        "b": pts((0, 0, 0), (10, 0, 0)),
        "c": pts((0, 0, 0), (10, 0, 0), (20, 0, 0), (30, 0, 0)),
    }
    result = box_agreement(points, 1.0, ISO)
    assert [(p.reference, p.other) for p in result.pairs] == [("a", "b"), ("a", "c"), ("b", "c")]
    summary = {s.annotator: s for s in result.summaries}
    assert summary["a"].n_points == 2
    assert summary["a"].precision == 1.0  # 4 matched of its 2 + 2 points
    assert summary["a"].recall == pytest.approx(4 / 6)  # of b's 2 and c's 4
    assert summary["c"].precision == pytest.approx(4 / 8)
    assert summary["c"].recall == 1.0
    assert summary["c"].mean_f1 == pytest.approx(4 / 6)
    assert result.mean_f1 == pytest.approx((1 + 4 / 6 + 4 / 6) / 3)


def test_consensus_two_of_three() -> None:
    points = {
        "a": pts((0, 0, 0), (10, 0, 0), (20, 0, 0)),
        "b": pts((0, 0, 1), (10, 0, 1)),  # misses 20
        "c": pts((0, 0, 2), (40, 0, 0)),  # misses 10 and 20, an extra one at 40
    }
    result = consensus(points, 2.5, ISO, quorum=2)
    assert [(c.zyx, c.support) for c in result] == [((0, 0, 1), 3), ((10, 0, 0.5), 2)]
    assert result[0].members == (("a", 0), ("b", 0), ("c", 0))
    everything = consensus(points, 2.5, ISO, quorum=1)
    assert sorted(c.support for c in everything) == [1, 1, 2, 3]
    assert [c.zyx for c in consensus(points, 2.5, ISO, quorum=3)] == [(0, 0, 1)]


def test_a_cluster_holds_at_most_one_point_per_annotator() -> None:
    # a0 - b0 - c0 - a1 chain within the tolerance: a's two points never share a cluster.
    points = {
        "a": pts((0, 0, 0), (0, 0, 3)),
        "b": pts((0, 0, 1)),
        "c": pts((0, 0, 2)),
    }
    result = consensus(points, 1.1, ISO, quorum=1)
    for c in result:
        owners = [name for name, _ in c.members]
        assert len(owners) == len(set(owners))
    assert sum(c.support for c in result) == 4


def test_consensus_keeps_classes_apart_and_checks_its_quorum() -> None:
    points = {
        "a": pts((0, 0, 0)) + pts((0, 0, 0), label="glomerulus"),
        "b": pts((0, 0, 0)),
    }
    result = consensus(points, 1.0, ISO, quorum=2)
    assert [(c.label, c.support) for c in result] == [("nucleus", 2)]
    with pytest.raises(InvalidInputError, match="quorum"):
        consensus(points, 1.0, ISO, quorum=3)
    with pytest.raises(InvalidInputError, match="voxel size"):
        consensus(points, 1.0, (1.0, 0.0, 1.0), quorum=1)
    assert [default_quorum(n) for n in (1, 2, 3, 4, 5)] == [1, 2, 2, 3, 3]
