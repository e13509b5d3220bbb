"""Agreement and consensus of painted label volumes on constructed cases with known answers."""

from __future__ import annotations

import json
import math

import numpy as np
import numpy.typing as npt
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from pipeline.errors import InvalidInputError
from pipeline.label_agreement import (
    LabelComparison,
    box_label_agreement,
    label_consensus,
    pair_label_agreement,
)

Vol = npt.NDArray[np.uint32]
SHAPE = (40, 40, 40)


def empty(shape: tuple[int, int, int] = SHAPE) -> Vol:
    return np.zeros(shape, dtype=np.uint32)


def ball(vol: Vol, centre: tuple[int, int, int], radius: float, label: int) -> Vol:
    z, y, x = np.ogrid[: vol.shape[0], : vol.shape[1], : vol.shape[2]]
    d2 = (z - centre[0]) ** 2 + (y - centre[1]) ** 2 + (x - centre[2]) ** 2
    vol[d2 <= radius**2] = label
    return vol


def cube(vol: Vol, corner: tuple[int, int, int], size: tuple[int, int, int], label: int) -> Vol:
    vol[tuple(slice(c, c + s) for c, s in zip(corner, size, strict=True))] = label
    return vol


def three_objects() -> Vol:
    vol = empty()
    ball(vol, (10, 10, 10), 6, 7)
    ball(vol, (28, 28, 12), 5, 4_000_000_000)  # ids need not be small nor contiguous
    cube(vol, (5, 25, 25), (10, 8, 12), 123_456)
    return vol


def relabel(vol: Vol, mapping: dict[int, int]) -> Vol:
    out = vol.copy()
    for old, new in mapping.items():
        out[vol == old] = new
    return out


def test_identical_volumes_agree_perfectly_whatever_their_ids() -> None:
    a = three_objects()
    b = relabel(a, {7: 1, 4_000_000_000: 2, 123_456: 3})
    pair = pair_label_agreement(a, b)
    assert (pair.precision, pair.recall, pair.f1, pair.dice) == (1.0, 1.0, 1.0, 1.0)
    assert pair.mean_matched_iou == 1.0
    assert [(m.reference_id, m.other_id) for m in pair.matches] == [
        (7, 1),
        (123_456, 3),
        (4_000_000_000, 2),
    ]
    assert pair.unmatched_reference == pair.unmatched_other == ()


def test_a_shifted_cube_has_its_exact_iou_and_dice() -> None:
    a = cube(empty(), (10, 10, 10), (10, 10, 10), 1)
    b = cube(empty(), (10, 10, 12), (10, 10, 10), 1)  # shifted 2 in x: 800 shared of 1200
    pair = pair_label_agreement(a, b)
    assert pair.matched == 1
    assert pair.mean_matched_iou == pytest.approx(800 / 1200)
    assert pair.dice == pytest.approx(2 * 800 / 2000)
    assert pair.foreground_intersection == 800


@pytest.mark.parametrize(("shift", "matched"), [(4, True), (5, False)])
def test_a_shifted_sphere_matches_only_above_iou_one_half(shift: int, matched: bool) -> None:
    r = 10
    a = ball(empty(), (20, 20, 16), r, 5)
    b = ball(empty(), (20, 20, 16 + shift), r, 9)
    # Two balls of radius r whose centres are d apart share pi (4r + d)(2r - d)^2 / 12.
    lens = math.pi * (4 * r + shift) * (2 * r - shift) ** 2 / 12
    analytic = lens / (2 * 4 / 3 * math.pi * r**3 - lens)  # 0.543 (d = 4), 0.463 (d = 5)
    inter = np.count_nonzero((a > 0) & (b > 0))
    iou = inter / np.count_nonzero((a > 0) | (b > 0))
    assert iou == pytest.approx(analytic, abs=0.02)
    pair = pair_label_agreement(a, b)
    assert pair.foreground_intersection == inter
    if matched:
        assert pair.mean_matched_iou == pytest.approx(iou)
        assert pair.f1 == 1.0
    else:
        assert (pair.matched, pair.f1, pair.mean_matched_iou) == (0, 0.0, None)
        assert (pair.unmatched_reference, pair.unmatched_other) == ((5,), (9,))
    assert pair.dice == pytest.approx(2 * inter / (np.count_nonzero(a) + np.count_nonzero(b)))


def test_a_split_and_a_merge() -> None:
    whole = cube(empty(), (10, 10, 10), (10, 10, 20), 1)
    split = cube(empty(), (10, 10, 10), (10, 10, 12), 2)  # IoU 0.6 with the whole: matched
    cube(split, (10, 10, 22), (10, 10, 8), 3)  # IoU 0.4: unmatched
    pair = pair_label_agreement(whole, split)  # the whole is the reference
    assert [(m.reference_id, m.other_id) for m in pair.matches] == [(1, 2)]
    assert (pair.recall, pair.precision) == (1.0, 0.5)
    assert pair.f1 == pytest.approx(2 / 3)
    assert pair.dice == 1.0  # the same voxels, cut differently
    assert pair.unmatched_other == (3,)
    merged = pair_label_agreement(split, whole)  # the split is the reference
    assert (merged.recall, merged.precision) == (0.5, 1.0)
    assert merged.unmatched_reference == (3,)


def test_an_extra_object() -> None:
    a = three_objects()
    b = ball(a.copy(), (30, 10, 30), 4, 99)
    pair = pair_label_agreement(a, b, names=("first", "second"))
    assert (pair.reference, pair.other) == ("first", "second")
    assert (pair.recall, pair.precision) == (1.0, 3 / 4)
    assert pair.unmatched_other == (99,)
    assert pair.unmatched_reference == ()


def test_empty_volumes_have_no_figures_and_an_empty_consensus() -> None:
    pair = pair_label_agreement(empty(), empty())
    assert (pair.precision, pair.recall, pair.f1, pair.dice, pair.mean_matched_iou) == (
        None,
        None,
        None,
        None,
        None,
    )
    one_sided = pair_label_agreement(empty(), three_objects())
    assert (one_sided.recall, one_sided.precision, one_sided.f1, one_sided.dice) == (
        None,
        0.0,
        0.0,
        0.0,
    )
    consensus = label_consensus({"a": empty(), "b": empty(), "c": empty()})
    assert not consensus.labels.any() and consensus.labels.shape == SHAPE
    assert consensus.objects == ()
    assert consensus.unmatched == ()


def test_shapes_that_differ_are_refused_clearly() -> None:
    with pytest.raises(
        InvalidInputError, match=r"differ in shape: a \(40, 40, 40\), b \(40, 40, 39\)"
    ):
        box_label_agreement({"a": empty(), "b": empty((40, 40, 39))})


@pytest.mark.parametrize(
    ("volumes", "message"),
    [
        ({"a": empty()}, "at least two annotators"),
        ({"a": empty(), "b": empty().astype(np.float32)}, "b: label volumes hold integer ids"),
        ({"a": empty(), "b": -three_objects().astype(np.int64)}, "negative ids"),
    ],
)
def test_bad_volumes_are_refused(volumes: dict[str, Vol], message: str) -> None:
    with pytest.raises(InvalidInputError, match=message):
        LabelComparison(volumes)


def test_a_quorum_outside_one_to_n_is_refused() -> None:
    with pytest.raises(InvalidInputError, match="quorum must be 1-2"):
        label_consensus({"a": empty(), "b": empty()}, quorum=3)


def perturbed(shift: tuple[int, int, int], ids: tuple[int, int, int]) -> Vol:
    """Three well-separated objects, each painted a little off by this annotator."""
    vol = empty((48, 48, 48))
    for (centre, radius), label in zip(
        [((12, 12, 12), 7), ((34, 14, 30), 6), ((14, 34, 34), 8)], ids, strict=True
    ):
        z, y, x = (c + s for c, s in zip(centre, shift, strict=True))
        ball(vol, (z, y, x), radius, label)
    return vol


def test_three_annotators_consensus_is_the_voxelwise_majority() -> None:
    volumes = {
        "ann": perturbed((0, 0, 0), (1, 2, 3)),
        "bob": perturbed((1, 0, -1), (30, 10, 20)),
        "cy": perturbed((0, -1, 1), (500, 600, 700)),
    }
    only_cy = ball(empty((48, 48, 48)), (40, 40, 8), 4, 9)
    volumes["cy"][only_cy > 0] = 9  # found by one annotator of three: left out and listed
    consensus = label_consensus(volumes)
    assert consensus.quorum == 2
    votes = sum((v > 0).astype(int) for v in volumes.values()) - (only_cy > 0)
    assert np.array_equal(consensus.labels > 0, votes >= 2)
    # Each consensus object is the majority of its three members, ids 1..K in raster order.
    assert [o.id for o in consensus.objects] == [1, 2, 3]
    first = [int(np.flatnonzero(consensus.labels.ravel() == o.id)[0]) for o in consensus.objects]
    assert first == sorted(first)
    for obj in consensus.objects:
        assert obj.support == 3
        members = dict(obj.members)
        masks = [volumes[name] == label for name, label in members.items()]
        assert np.array_equal(consensus.labels == obj.id, sum(m.astype(int) for m in masks) >= 2)
        assert obj.voxels == np.count_nonzero(consensus.labels == obj.id)
    assert [o.members[0] for o in consensus.objects] == [("ann", 1), ("ann", 3), ("ann", 2)]
    [left] = consensus.unmatched
    assert (left.annotator, left.id, left.support) == ("cy", 9, 1)
    assert left.voxels == np.count_nonzero(only_cy)
    assert left.centroid == pytest.approx((40.0, 40.0, 8.0))
    json.dumps(consensus.to_json())  # what the site stores beside the volume


def test_two_of_three_find_an_object_and_it_is_kept_with_its_support() -> None:
    a, b, c = (perturbed((0, 0, 0), (1, 2, 3)) for _ in range(3))
    c[c == 2] = 0  # the third annotator missed object 2
    consensus = label_consensus({"a": a, "b": b, "c": c})
    supports = sorted(o.support for o in consensus.objects)
    assert supports == [2, 3, 3]
    assert consensus.unmatched == ()
    assert np.array_equal(consensus.labels > 0, a > 0)
    unanimous = label_consensus({"a": a, "b": b, "c": c}, quorum=3)
    assert len(unanimous.objects) == 2
    assert sorted((o.annotator, o.id, o.support) for o in unanimous.unmatched) == [
        ("a", 2, 2),
        ("b", 2, 2),
    ]


def test_the_consensus_does_not_depend_on_the_annotators_ids() -> None:
    volumes = {"a": perturbed((0, 0, 0), (1, 2, 3)), "b": perturbed((1, 1, 0), (4, 5, 6))}
    again = {"a": relabel(volumes["a"], {1: 70, 2: 10, 3: 40}), "b": volumes["b"]}
    assert np.array_equal(label_consensus(volumes).labels, label_consensus(again).labels)


def test_a_cluster_holds_at_most_one_object_per_annotator_when_matches_chain() -> None:
    # a1-b1 (IoU 0.875), b1-c1 (0.5), c1-a2 (0.5): a1 and a2 cannot both join c1's cluster.
    a, b, c = empty(), empty(), empty()
    cube(a, (0, 0, 0), (4, 4, 5), 1)  # a2: x 0-5
    cube(a, (0, 0, 5), (4, 4, 7), 2)  # a1: x 5-12
    cube(b, (0, 0, 4), (4, 4, 8), 1)  # b1: x 4-12
    cube(c, (0, 0, 0), (4, 4, 10), 1)  # c1: x 0-10
    comparison = LabelComparison({"a": a, "b": b, "c": c})
    agreement = comparison.agreement()
    assert agreement.pair("a", "b").matches[0].other_id == 1
    assert agreement.pair("c", "a").matches[0].other_id == 1  # c1 - a2
    consensus = comparison.consensus(quorum=1)
    for obj in consensus.objects:
        names = [name for name, _ in obj.members]
        assert len(names) == len(set(names))
    members = [m for o in consensus.objects for m in o.members]
    assert sorted(members) == [("a", 1), ("a", 2), ("b", 1), ("c", 1)]
    # quorum 1 keeps every painted voxel, one id each
    assert np.array_equal(consensus.labels > 0, (a > 0) | (b > 0) | (c > 0))


def test_box_agreement_pools_each_annotator_against_the_others() -> None:
    a = three_objects()
    b = ball(a.copy(), (30, 10, 30), 4, 99)  # one extra
    c = a.copy()
    c[c == 7] = 0  # one missed
    box = box_label_agreement({"a": a, "b": b, "c": c})
    assert [(p.reference, p.other) for p in box.pairs] == [("a", "b"), ("a", "c"), ("b", "c")]
    summary = {s.annotator: s for s in box.summaries}
    # a: 3 + 3 own objects, 4 + 2 theirs, 3 + 2 matched
    assert summary["a"].precision == pytest.approx(5 / 6)
    assert summary["a"].recall == pytest.approx(5 / 6)
    assert summary["b"].precision == pytest.approx(5 / 8)  # 3 of 4 with a, 2 of 4 with c
    assert summary["c"].precision == 1.0
    assert summary["c"].n_objects == 2
    assert box.pair("c", "b").recall == 1.0 and box.pair("b", "c").recall == 0.5
    json.dumps(box.to_json())


label_volumes = arrays(np.uint32, (4, 5, 6), elements=st.integers(0, 6))


@settings(max_examples=60, deadline=None)
@given(a=label_volumes, b=label_volumes)
def test_agreement_with_itself_is_perfect_and_f1_is_symmetric(a: Vol, b: Vol) -> None:
    same = pair_label_agreement(a, a.copy())
    painted = bool(a.any())
    expected = 1.0 if painted else None
    assert (same.f1, same.dice, same.precision, same.recall) == (expected,) * 4
    assert same.mean_matched_iou == expected
    ab, ba = pair_label_agreement(a, b), pair_label_agreement(b, a)
    assert ab.f1 == ba.f1 and ab.dice == ba.dice
    assert (ab.precision, ab.recall) == (ba.recall, ba.precision)
    assert ab.matched == ba.matched
    # The consensus of a volume with itself is that volume, up to its ids.
    consensus = label_consensus({"x": a, "y": a.copy()})
    assert np.array_equal(consensus.labels > 0, a > 0)
    pairs = set(zip(a.ravel().tolist(), consensus.labels.ravel().tolist(), strict=True))
    assert len(pairs) == len({p[0] for p in pairs}) == len({p[1] for p in pairs})
