"""Objects of a model's published segmentation as proposals: sparse ids, clipping to the box,
slivers left out, the mean probability as score, a click on an object or on the background."""

from __future__ import annotations

import numpy as np
import pytest

from pipeline.assist_segmentation import segmentation_click, segmentation_objects
from pipeline.errors import InvalidInputError


def labels() -> np.ndarray:
    out = np.zeros((6, 10, 12), np.uint64)
    out[1:4, 2:6, 2:6] = 2**40  # an id beyond uint32: renumbered, not indexed
    out[2:5, 5:9, 7:11] = 7
    out[0, 0, 11] = 99  # a one-voxel sliver of a neighbour reaching into the box
    return out


def test_every_object_most_probable_first_slivers_out() -> None:
    seg = labels()
    probability = np.where(seg == 7, 0.9, np.where(seg > 0, 0.5, 0.0)).astype(np.float32)
    found = segmentation_objects(seg, probability, min_voxels=2)
    assert [round(o.score, 3) for o in found] == [0.9, 0.5]
    assert [o.source for o in found] == ["model", "model"]
    assert found[0].bbox == (2, 5, 7, 5, 9, 11) and found[0].voxels == 3 * 4 * 4
    assert np.array_equal(found[1].paste(seg.shape), seg == 2**40)
    # Every voxel of the sliver counts without min_voxels; without a map every score is 1.
    everything = segmentation_objects(seg)
    assert len(everything) == 3 and {o.score for o in everything} == {1.0}
    assert segmentation_objects(np.zeros((2, 3, 4), np.uint32)) == []


def test_a_click_picks_the_object_under_it() -> None:
    seg = labels()
    picked = segmentation_click(seg, (3, 6, 8))
    assert picked is not None and np.array_equal(picked.paste(seg.shape), seg == 7)
    assert segmentation_click(seg, (5, 0, 0)) is None  # background
    with pytest.raises(InvalidInputError, match="outside"):
        segmentation_click(seg, (6, 0, 0))
    with pytest.raises(InvalidInputError, match="shape differs"):
        segmentation_objects(seg, np.zeros((1, 1, 1)))
    with pytest.raises(InvalidInputError, match="3D"):
        segmentation_objects(np.zeros((3, 3), np.uint32))


def test_holes_inside_an_object_are_filled_but_not_other_objects() -> None:
    seg = np.zeros((7, 9, 9), np.uint32)
    seg[1:6, 1:8, 1:8] = 5
    seg[3, 4, 4] = 0  # a hole the model left
    seg[2:4, 2:4, 5:7] = 9  # an object inside, whose voxels stay its own
    found = {o.bbox: o for o in segmentation_objects(seg)}
    big = found[(1, 1, 1, 6, 8, 8)].paste(seg.shape)
    assert big[3, 4, 4] and not big[2:4, 2:4, 5:7].any()
    assert big.sum() == 5 * 7 * 7 - 2 * 2 * 2
    small = found[(2, 2, 5, 4, 4, 7)].paste(seg.shape)
    assert small.sum() == 8
