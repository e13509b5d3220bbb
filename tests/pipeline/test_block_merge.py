"""Face IoU matching and union-find."""

from __future__ import annotations

import numpy as np

from pipeline.block_merge import UnionFind, consecutive_ids, face_matches


def test_face_matches_keeps_pairs_at_or_above_the_threshold() -> None:
    first = np.zeros((2, 10, 10), dtype=np.uint32)
    second = np.zeros_like(first)
    first[:, :, 0:5] = 1  # 100 voxels
    second[:, :, 0:4] = 7  # inside 1: IoU 80 / 100 = 0.8
    first[:, 0:5, 5:10] = 2  # 50 voxels
    second[:, 0:5, 6:10] = 8  # overlap 40, union 50: IoU 0.8
    first[:, 5:10, 5:10] = 3  # 50 voxels
    second[:, 5:10, 8:10] = 9  # overlap 20, union 50: IoU 0.4
    pairs = face_matches(first, second, 0.75)
    assert sorted(map(tuple, pairs.tolist())) == [(1, 7), (2, 8)]
    assert sorted(map(tuple, face_matches(first, second, 0.4).tolist())) == [(1, 7), (2, 8), (3, 9)]
    assert face_matches(first, second, 0.81).shape == (0, 2)
    assert face_matches(first, np.zeros_like(first), 0.1).shape == (0, 2)


def test_one_segment_overlapping_two_is_matched_to_neither_below_threshold() -> None:
    first = np.zeros((1, 8, 8), dtype=np.uint32)
    first[0] = 5
    second = np.zeros_like(first)
    second[0, :4] = 1
    second[0, 4:] = 2  # each half of segment 5: IoU 0.5
    assert face_matches(first, second, 0.75).shape == (0, 2)


def test_union_find_roots_are_smallest_ids_and_ids_become_consecutive() -> None:
    sets = UnionFind(8)
    assert sets.union_pairs(np.array([[5, 2], [7, 5], [3, 4], [2, 7]])) == 3
    assert sets.find(7) == 2 and sets.find(4) == 3
    roots = sets.roots()
    assert roots.tolist() == [0, 1, 2, 3, 3, 2, 6, 2, 8]
    final, n = consecutive_ids(roots)
    assert n == 5
    assert final.tolist() == [0, 1, 2, 3, 3, 2, 4, 2, 5]
    assert final.dtype == np.uint32
