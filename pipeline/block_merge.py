"""Merging segments across block faces: footprint IoU on the face and union-find over the volume.

Each block reports its labels on the two one-voxel slabs around each face it shares with a
neighbour: its own last core plane and, from its halo, the first plane of the neighbour. Both
blocks therefore describe the same two planes, each from its own watershed; a segment of one block
and a segment of the other are the same object when their footprints on that two-plane slab have an
intersection over union of at least the threshold. Comparing the same voxels (rather than one
block's last plane against the other's first) keeps an object whose cross-section changes fast at
the face, such as a pole cut by the face, in one piece.
"""

from __future__ import annotations

import numpy as np

DEFAULT_IOU_THRESHOLD = 0.75


def face_matches(first: np.ndarray, second: np.ndarray, iou_threshold: float) -> np.ndarray:
    """Pairs ``(a, b)`` of non-zero labels whose footprints in ``first`` and ``second`` overlap.

    ``first`` and ``second`` label the same voxels (one block's view and its neighbour's); a pair is
    kept when ``|A & B| / |A | B| >= iou_threshold``. Returns an ``(n, 2)`` int64 array.
    """
    if first.shape != second.shape:
        raise ValueError(f"face shapes differ: {first.shape} vs {second.shape}")
    a = np.asarray(first, dtype=np.int64).ravel()
    b = np.asarray(second, dtype=np.int64).ravel()
    both = (a > 0) & (b > 0)
    if not both.any():
        return np.zeros((0, 2), dtype=np.int64)
    area_a = np.bincount(a)
    area_b = np.bincount(b)
    stride = int(b.max()) + 1
    keys, intersection = np.unique(a[both] * stride + b[both], return_counts=True)
    pair_a, pair_b = keys // stride, keys % stride
    union = area_a[pair_a] + area_b[pair_b] - intersection
    keep = intersection >= iou_threshold * union
    return np.stack([pair_a[keep], pair_b[keep]], axis=1)


class UnionFind:
    """Disjoint sets over ids ``0..n``; the root of a set is its smallest id (deterministic)."""

    def __init__(self, n: int) -> None:
        self.parent = np.arange(n + 1, dtype=np.int64)

    def find(self, x: int) -> int:
        parent = self.parent
        root = x
        while parent[root] != root:
            root = int(parent[root])
        while parent[x] != root:  # path compression
            parent[x], x = root, int(parent[x])
        return root

    def union(self, a: int, b: int) -> bool:
        """Join the sets of ``a`` and ``b``; True when they were separate."""
        ra, rb = self.find(a), self.find(b)
        if ra == rb:
            return False
        if rb < ra:
            ra, rb = rb, ra
        self.parent[rb] = ra
        return True

    def union_pairs(self, pairs: np.ndarray) -> int:
        """Join every pair of an ``(n, 2)`` array; returns how many joins merged two sets."""
        return sum(self.union(int(a), int(b)) for a, b in pairs)

    def roots(self) -> np.ndarray:
        """The root of every id, by pointer jumping (vectorised)."""
        roots = self.parent.copy()
        while True:
            nxt = roots[roots]
            if np.array_equal(nxt, roots):
                return roots
            roots = nxt


def consecutive_ids(roots: np.ndarray) -> tuple[np.ndarray, int]:
    """Map each id to a consecutive final id (0 stays 0), numbered in order of the roots.

    Returns the mapping (uint32 array indexed by id) and the number of objects.
    """
    is_root = roots == np.arange(roots.size)
    is_root[0] = False
    final_of_root = np.zeros(roots.size, dtype=np.int64)
    final_of_root[is_root] = np.arange(1, int(is_root.sum()) + 1)
    n_objects = int(is_root.sum())
    if n_objects >= 2**32:
        raise ValueError("more than 2^32 - 1 objects do not fit a uint32 label image")
    return final_of_root[roots].astype(np.uint32), n_objects
