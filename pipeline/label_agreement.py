"""Agreement between annotators' painted label volumes of one box, and their consensus (issue 10).

Each annotator of a box paints a label volume of the box (uint32 ids, 0 background; the ids are
the annotator's own and need not be contiguous). All volumes of a box have the same shape.

Matching two volumes: :mod:`pipeline.evaluation`'s, objects matched one to one at IoU >=
``iou_threshold`` (0.5) with the Hungarian algorithm, overlaps counted in one pass over the voxels
(one contingency table per pair; each volume is renumbered once for all its pairs).

Pair figures (``reference`` = the first of the pair, "A"): ``recall`` = matched / the reference's
objects, ``precision`` = matched / the other's objects, ``f1`` = 2 matched / (both counts),
``dice`` = the voxel Dice of the two foregrounds (label != 0), ``mean_matched_iou`` over the
matched pairs. As in :mod:`pipeline.point_agreement`, a figure whose denominator is zero is None:
two empty volumes have no F1 and no Dice, rather than a perfect one the site would average in.

Per annotator, pooled over their pairs with every other annotator: precision (matched / their
objects), recall (matched / the others' objects), F1 of the pooled counts, the mean of the pairs'
F1, Dice of the pooled voxel counts and the mean IoU of all their matches.

Consensus: every pairwise match is an edge; edges are taken by IoU, highest first, and join two
clusters unless the clusters share an annotator, so a cluster holds at most one object per
annotator even when matches chain (A-B-C-A'). A cluster of at least ``quorum`` annotators'
objects (default: a strict majority) is a consensus object; it keeps the voxels covered by at
least ``quorum`` of its objects. A voxel is given to one object only: when a lower quorum lets two
clusters claim it, the one covering it with more objects wins. Consensus ids are 1..K in raster
order of each object's first voxel (z, then y, then x), not taken from any annotator, so
renumbering an annotator's ids changes nothing; exact ties (equal IoUs, equal votes) go by
annotator order, then by their ids. Every object not in a consensus object is listed for the
reviewer with its size, centroid and ``support`` (the number of annotators in its cluster; a
cluster that reached the quorum but kept no voxel, possible when its objects overlap only
pairwise, is listed too, with its support).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from itertools import combinations
from typing import Any

import numpy as np
import numpy.typing as npt

from pipeline.errors import InvalidInputError
from pipeline.evaluation import (
    IntArray,
    Matching,
    RenumberedArray,
    match_overlaps,
    overlaps_renumbered,
    renumber_labels,
)
from pipeline.point_agreement import default_quorum

LabelArray = npt.NDArray[np.uint32]
Centroid = tuple[float, ...]


def _ratio(numerator: float, denominator: float) -> float | None:
    return numerator / denominator if denominator else None


@dataclass(frozen=True)
class LabelObject:
    """An object of one annotator: its id, voxel count and centroid (voxel index coordinates)."""

    annotator: str
    id: int
    voxels: int
    centroid: Centroid
    support: int = 1  # annotators whose objects were matched into its cluster (itself included)

    def to_json(self) -> dict[str, Any]:
        return {
            "annotator": self.annotator,
            "id": self.id,
            "voxels": self.voxels,
            "centroid": list(self.centroid),
            "support": self.support,
        }


@dataclass(frozen=True)
class ObjectMatch:
    reference_id: int
    other_id: int
    iou: float


@dataclass(frozen=True)
class LabelPairAgreement:
    """Two annotators' volumes compared; the reference is "A" (recall is of its objects)."""

    reference: str
    other: str
    n_reference: int
    n_other: int
    matches: tuple[ObjectMatch, ...]
    unmatched_reference: tuple[int, ...]  # ids of the reference's objects left unmatched
    unmatched_other: tuple[int, ...]
    foreground_reference: int  # voxels != 0
    foreground_other: int
    foreground_intersection: int

    @property
    def matched(self) -> int:
        return len(self.matches)

    @property
    def recall(self) -> float | None:
        return _ratio(self.matched, self.n_reference)

    @property
    def precision(self) -> float | None:
        return _ratio(self.matched, self.n_other)

    @property
    def f1(self) -> float | None:
        return _ratio(2 * self.matched, self.n_reference + self.n_other)

    @property
    def dice(self) -> float | None:
        return _ratio(
            2 * self.foreground_intersection, self.foreground_reference + self.foreground_other
        )

    @property
    def mean_matched_iou(self) -> float | None:
        return float(np.mean([m.iou for m in self.matches])) if self.matches else None

    def to_json(self) -> dict[str, Any]:
        return {
            "reference": self.reference,
            "other": self.other,
            "n_reference": self.n_reference,
            "n_other": self.n_other,
            "matched": self.matched,
            "precision": self.precision,
            "recall": self.recall,
            "f1": self.f1,
            "dice": self.dice,
            "mean_matched_iou": self.mean_matched_iou,
            "matches": [[m.reference_id, m.other_id, m.iou] for m in self.matches],
            "unmatched_reference": list(self.unmatched_reference),
            "unmatched_other": list(self.unmatched_other),
            "foreground_reference": self.foreground_reference,
            "foreground_other": self.foreground_other,
            "foreground_intersection": self.foreground_intersection,
        }


@dataclass(frozen=True)
class LabelAnnotatorSummary:
    """One annotator against all the others, pooled over their pairs (module docstring)."""

    annotator: str
    n_objects: int
    foreground_voxels: int
    precision: float | None
    recall: float | None
    f1: float | None
    mean_f1: float | None
    dice: float | None
    mean_matched_iou: float | None

    def to_json(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass(frozen=True)
class LabelBoxAgreement:
    annotators: tuple[str, ...]
    iou_threshold: float
    pairs: tuple[LabelPairAgreement, ...]
    summaries: tuple[LabelAnnotatorSummary, ...]

    @property
    def mean_f1(self) -> float | None:
        values = [p.f1 for p in self.pairs if p.f1 is not None]
        return float(np.mean(values)) if values else None

    @property
    def mean_dice(self) -> float | None:
        values = [p.dice for p in self.pairs if p.dice is not None]
        return float(np.mean(values)) if values else None

    def pair(self, reference: str, other: str) -> LabelPairAgreement:
        """The pair of two annotators, in either order (swapped so ``reference`` is first)."""
        for p in self.pairs:
            if (p.reference, p.other) == (reference, other):
                return p
            if (p.reference, p.other) == (other, reference):
                return _swap(p)
        raise KeyError((reference, other))

    def to_json(self) -> dict[str, Any]:
        return {
            "annotators": list(self.annotators),
            "iou_threshold": self.iou_threshold,
            "mean_f1": self.mean_f1,
            "mean_dice": self.mean_dice,
            "pairs": [p.to_json() for p in self.pairs],
            "summaries": [s.to_json() for s in self.summaries],
        }


@dataclass(frozen=True)
class ConsensusObject:
    id: int  # in the consensus volume, 1..K
    voxels: int
    centroid: Centroid
    support: int  # annotators whose objects make it
    members: tuple[tuple[str, int], ...]  # (annotator, their id), in annotator order

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "voxels": self.voxels,
            "centroid": list(self.centroid),
            "support": self.support,
            "members": [list(m) for m in self.members],
        }


@dataclass(frozen=True)
class LabelConsensus:
    """The consensus volume of a box, its objects and what was left out for the reviewer."""

    labels: LabelArray = field(repr=False, compare=False)
    annotators: tuple[str, ...]
    quorum: int
    iou_threshold: float
    objects: tuple[ConsensusObject, ...]
    unmatched: tuple[LabelObject, ...]

    def to_json(self) -> dict[str, Any]:
        """Everything but the volume itself (which goes to the label store)."""
        return {
            "annotators": list(self.annotators),
            "quorum": self.quorum,
            "iou_threshold": self.iou_threshold,
            "shape": list(self.labels.shape),
            "objects": [o.to_json() for o in self.objects],
            "unmatched": [o.to_json() for o in self.unmatched],
        }


def _swap(p: LabelPairAgreement) -> LabelPairAgreement:
    return LabelPairAgreement(
        reference=p.other,
        other=p.reference,
        n_reference=p.n_other,
        n_other=p.n_reference,
        matches=tuple(
            sorted(
                (ObjectMatch(m.other_id, m.reference_id, m.iou) for m in p.matches),
                key=lambda m: m.reference_id,
            )
        ),
        unmatched_reference=p.unmatched_other,
        unmatched_other=p.unmatched_reference,
        foreground_reference=p.foreground_other,
        foreground_other=p.foreground_reference,
        foreground_intersection=p.foreground_intersection,
    )


class LabelComparison:
    """N annotators' volumes of one box, prepared once so agreement and consensus share the
    renumbering and the pairwise matchings.

    Every pass after the first works on the voxels that some annotator painted only (the union
    of the foregrounds, a tenth of a typical box), held as flat arrays beside their positions:
    background voxels change no overlap, vote or centroid.
    """

    def __init__(self, volumes: Mapping[str, npt.NDArray[Any]], iou_threshold: float = 0.5) -> None:
        if not 0 < iou_threshold <= 1:
            raise InvalidInputError("the IoU threshold must be in (0, 1]")
        if len(volumes) < 2:
            raise InvalidInputError("agreement needs the volumes of at least two annotators")
        self.names: tuple[str, ...] = tuple(volumes)
        arrays = [np.asarray(volumes[name]) for name in self.names]
        shapes = {a.shape for a in arrays}
        if len(shapes) != 1:
            described = ", ".join(f"{n} {a.shape}" for n, a in zip(self.names, arrays, strict=True))
            raise InvalidInputError(f"the label volumes of one box differ in shape: {described}")
        for name, a in zip(self.names, arrays, strict=True):
            if a.dtype.kind not in "iu":
                raise InvalidInputError(f"{name}: label volumes hold integer ids, not {a.dtype}")
        self.shape: tuple[int, ...] = arrays[0].shape
        self.iou_threshold = iou_threshold
        flat = [a.ravel() for a in arrays]
        self._positions: IntArray = np.flatnonzero(np.logical_or.reduce([f != 0 for f in flat]))
        renumbered = [renumber_labels(f[self._positions]) for f in flat]
        self._labels: list[RenumberedArray] = [r for r, _ in renumbered]
        self._ids: list[IntArray] = [ids[1:] for _, ids in renumbered]
        self._matchings: dict[tuple[int, int], Matching] = {}
        self._sums: dict[int, tuple[IntArray, npt.NDArray[np.float64]]] = {}
        self._coords: list[IntArray] | None = None

    def _matching(self, i: int, j: int) -> Matching:
        if (i, j) not in self._matchings:
            ov = overlaps_renumbered(
                self._labels[i],
                np.concatenate([[0], self._ids[i]]),
                self._labels[j],
                np.concatenate([[0], self._ids[j]]),
            )
            self._matchings[(i, j)] = match_overlaps(ov, self.iou_threshold)
        return self._matchings[(i, j)]

    def _stats(self, labels: RenumberedArray, n: int) -> tuple[IntArray, npt.NDArray[np.float64]]:
        """Voxel counts and centroids of labels 1..n given at ``self._positions`` (row k-1 for
        label k)."""
        if self._coords is None:
            self._coords = [np.asarray(c) for c in np.unravel_index(self._positions, self.shape)]
        labels = labels.astype(np.intp, copy=False)  # bincount refuses uint64
        sizes = np.bincount(labels, minlength=n + 1)[1:].astype(np.int64)
        centroids = np.empty((n, len(self.shape)))
        for axis, c in enumerate(self._coords):
            sums = np.bincount(labels, weights=c, minlength=n + 1)[1:]
            centroids[:, axis] = sums / np.maximum(sizes, 1)
        return sizes, centroids

    def _object(self, i: int, k: int, support: int) -> LabelObject:
        """Object k (renumbered id k + 1) of annotator i, for the reviewer's list."""
        if i not in self._sums:
            self._sums[i] = self._stats(self._labels[i], int(self._ids[i].size))
        sizes, centroids = self._sums[i]
        return LabelObject(
            annotator=self.names[i],
            id=int(self._ids[i][k]),
            voxels=int(sizes[k]),
            centroid=tuple(float(c) for c in centroids[k]),
            support=support,
        )

    def pair(self, i: int, j: int) -> LabelPairAgreement:
        """Annotator ``i`` (reference) against ``j``, by their index in ``names``."""
        m = self._matching(i, j)
        ov = m.overlaps
        matched_a = np.zeros(ov.ids_a.size, dtype=bool)
        matched_a[m.matched_a] = True
        matched_b = np.zeros(ov.ids_b.size, dtype=bool)
        matched_b[m.matched_b] = True
        matches = [
            ObjectMatch(int(a), int(b), float(iou))
            for a, b, iou in zip(m.matched_ids_pred, m.matched_ids_gt, m.iou, strict=True)
        ]
        return LabelPairAgreement(
            reference=self.names[i],
            other=self.names[j],
            n_reference=int(ov.ids_a.size),
            n_other=int(ov.ids_b.size),
            matches=tuple(sorted(matches, key=lambda x: x.reference_id)),
            unmatched_reference=tuple(int(x) for x in ov.ids_a[~matched_a]),
            unmatched_other=tuple(int(x) for x in ov.ids_b[~matched_b]),
            foreground_reference=int(ov.sizes_a.sum()),
            foreground_other=int(ov.sizes_b.sum()),
            foreground_intersection=int(ov.pair_count.sum()),
        )

    def agreement(self) -> LabelBoxAgreement:
        """Every pair (in the order given; the first of a pair is its reference) and each
        annotator's pooled summary."""
        n = len(self.names)
        pairs = tuple(self.pair(i, j) for i, j in combinations(range(n), 2))
        summaries = []
        for name in self.names:
            own = theirs = matched = fg_own = fg_theirs = inter = 0
            f1s: list[float] = []
            ious: list[float] = []
            for p in pairs:
                if name not in (p.reference, p.other):
                    continue
                q = p if p.reference == name else _swap(p)
                own += q.n_reference
                theirs += q.n_other
                matched += q.matched
                fg_own += q.foreground_reference
                fg_theirs += q.foreground_other
                inter += q.foreground_intersection
                ious.extend(m.iou for m in q.matches)
                if q.f1 is not None:
                    f1s.append(q.f1)
            i = self.names.index(name)
            summaries.append(
                LabelAnnotatorSummary(
                    annotator=name,
                    n_objects=int(self._ids[i].size),
                    foreground_voxels=int(np.count_nonzero(self._labels[i])),
                    precision=_ratio(matched, own),
                    recall=_ratio(matched, theirs),
                    f1=_ratio(2 * matched, own + theirs),
                    mean_f1=float(np.mean(f1s)) if f1s else None,
                    dice=_ratio(2 * inter, fg_own + fg_theirs),
                    mean_matched_iou=float(np.mean(ious)) if ious else None,
                )
            )
        return LabelBoxAgreement(self.names, self.iou_threshold, pairs, tuple(summaries))

    def _clusters(self) -> list[list[tuple[int, int]]]:
        """Clusters of matched objects as (annotator index, object index), at most one object
        per annotator, sorted; every object is in exactly one cluster."""
        n = len(self.names)
        offsets = np.concatenate([[0], np.cumsum([ids.size for ids in self._ids])]).tolist()
        nodes = [(i, k) for i in range(n) for k in range(self._ids[i].size)]
        parent = list(range(len(nodes)))
        owners = [1 << i for i, _ in nodes]

        def find(u: int) -> int:
            while parent[u] != u:
                parent[u] = parent[parent[u]]
                u = parent[u]
            return u

        edges: list[tuple[float, int, int]] = []
        for i, j in combinations(range(n), 2):
            m = self._matching(i, j)
            for a, b, iou in zip(m.matched_a, m.matched_b, m.iou, strict=True):
                edges.append((-float(iou), offsets[i] + int(a), offsets[j] + int(b)))
        for _iou, u, v in sorted(edges):
            ru, rv = find(u), find(v)
            if ru == rv or owners[ru] & owners[rv]:
                continue
            ru, rv = min(ru, rv), max(ru, rv)
            parent[rv] = ru
            owners[ru] |= owners[rv]
        clusters: dict[int, list[tuple[int, int]]] = {}
        for u, node in enumerate(nodes):
            clusters.setdefault(find(u), []).append(node)
        return sorted(clusters.values())

    def consensus(self, quorum: int | None = None) -> LabelConsensus:
        """The consensus volume (module docstring); ``quorum`` defaults to a strict majority."""
        n = len(self.names)
        quorum = default_quorum(n) if quorum is None else quorum
        if not 1 <= quorum <= n:
            raise InvalidInputError(f"the quorum must be 1-{n} annotators, not {quorum}")
        clusters = self._clusters()
        candidates = [c for c in clusters if len(c) >= quorum]
        # Each annotator's objects -> the candidate cluster they belong to (1..M, 0 none).
        luts = [np.zeros(ids.size + 1, dtype=np.uint32) for ids in self._ids]
        for t, members in enumerate(candidates, start=1):
            for i, k in members:
                luts[i][k + 1] = t
        cv = np.stack([lut[labels] for lut, labels in zip(luts, self._labels, strict=True)])
        # How many annotators vote for each annotator's cluster at each voxel painted by any.
        count = np.zeros(cv.shape, dtype=np.int32)
        for i in range(n):
            for j in range(n):
                count[i] += cv[j] == cv[i]
        count[cv == 0] = 0
        best = count.max(axis=0)
        none = np.iinfo(np.uint32).max
        winner = np.where(count == best, cv, none).min(axis=0)
        winner[best < quorum] = 0
        positions = self._positions[winner != 0]
        nonzero = winner[winner != 0]
        # Consensus ids in raster order of each object's first voxel (runs of equal ids first).
        never = np.iinfo(np.int64).max
        first = np.full(len(candidates) + 1, never, dtype=np.int64)
        if nonzero.size:
            starts = np.flatnonzero(np.concatenate([[True], nonzero[1:] != nonzero[:-1]]))
            np.minimum.at(first, nonzero[starts], positions[starts])
        kept = np.flatnonzero(first[1:] != never) + 1
        kept = kept[np.argsort(first[kept], kind="stable")]
        final = np.zeros(len(candidates) + 1, dtype=np.uint32)
        final[kept] = np.arange(1, kept.size + 1, dtype=np.uint32)
        consensus_ids = final[winner]
        out = np.zeros(int(np.prod(self.shape)), dtype=np.uint32)
        out[self._positions] = consensus_ids
        labels: LabelArray = out.reshape(self.shape)
        sizes, centroids = self._stats(consensus_ids, int(kept.size))
        objects = []
        for new_id, t in enumerate(kept.tolist(), start=1):
            members = candidates[t - 1]
            objects.append(
                ConsensusObject(
                    id=new_id,
                    voxels=int(sizes[new_id - 1]),
                    centroid=tuple(float(c) for c in centroids[new_id - 1]),
                    support=len(members),
                    members=tuple((self.names[i], int(self._ids[i][k])) for i, k in members),
                )
            )
        in_consensus = {node for t in kept.tolist() for node in candidates[t - 1]}
        left_out = sorted(
            (node, len(c)) for c in clusters for node in c if node not in in_consensus
        )
        unmatched = tuple(self._object(i, k, support) for (i, k), support in left_out)
        return LabelConsensus(
            labels=labels,
            annotators=self.names,
            quorum=quorum,
            iou_threshold=self.iou_threshold,
            objects=tuple(objects),
            unmatched=unmatched,
        )


def pair_label_agreement(
    reference: npt.NDArray[Any],
    other: npt.NDArray[Any],
    *,
    names: Sequence[str] = ("A", "B"),
    iou_threshold: float = 0.5,
) -> LabelPairAgreement:
    """Two volumes of one box; ``reference`` is "A" (recall is of its objects)."""
    if len(names) != 2 or names[0] == names[1]:
        raise InvalidInputError("give two different names for the two volumes")
    comparison = LabelComparison({names[0]: reference, names[1]: other}, iou_threshold)
    return comparison.pair(0, 1)


def box_label_agreement(
    volumes: Mapping[str, npt.NDArray[Any]], iou_threshold: float = 0.5
) -> LabelBoxAgreement:
    """All pairs of N >= 2 annotators' volumes of one box, and each annotator's summary."""
    return LabelComparison(volumes, iou_threshold).agreement()


def label_consensus(
    volumes: Mapping[str, npt.NDArray[Any]],
    quorum: int | None = None,
    iou_threshold: float = 0.5,
) -> LabelConsensus:
    """The consensus volume of N >= 2 annotators' volumes of one box (module docstring)."""
    return LabelComparison(volumes, iou_threshold).consensus(quorum)
