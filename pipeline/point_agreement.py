"""Agreement between annotators' point sets, and their consensus (annotation campaigns, issue 9).

Each annotator of a box gives a set of points, each with a class (``label``) and a position in
full-resolution voxels z y x. Distances are measured in micrometres (positions times the voxel
size, so anisotropic voxels count right); points of different classes never match.

Matching two annotators (per class): the Hungarian algorithm
(:func:`scipy.optimize.linear_sum_assignment`) on the distance matrix, where pairs farther
apart than the tolerance cost more than any set of admissible pairs together, so the assignment
first makes as many pairs within the tolerance as possible, then the shortest in sum; assigned
pairs beyond the tolerance are dropped. Distances equal to the tolerance match.

Pair figures (``reference`` = the first of the pair): ``matched`` pairs, ``recall`` = matched /
the reference's points, ``precision`` = matched / the other's points, ``f1`` = 2 matched /
(both counts). A figure whose denominator is zero is None (two empty sets have no F1).

Per annotator: their points, and pooled over their pairs with every other annotator as the
reference, precision (matched / their points), recall (matched / the others' points) and the
mean of the pairs' F1.

Consensus: every pairwise match is an edge; edges are taken shortest first and join two
clusters of points unless the clusters share an annotator (so a cluster holds at most one point
per annotator, even when matches chain A-B-C-A'). A cluster found by at least ``quorum``
annotators is a consensus point: its position is the mean of its points, its ``support`` the
number of annotators who found it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from itertools import combinations

import numpy as np
import numpy.typing as npt
from scipy.optimize import linear_sum_assignment

from pipeline.errors import InvalidInputError

FloatArray = npt.NDArray[np.float64]
Triple = tuple[float, float, float]

# Distances within a hair of the tolerance match (floating-point products of voxel sizes).
_SLACK = 1e-9


@dataclass(frozen=True)
class Point:
    """One annotated point: its class, position (voxels z y x) and the caller's id for it."""

    label: str
    zyx: Triple
    ref: str = ""


@dataclass(frozen=True)
class Match:
    """Point ``i`` of the reference matched point ``j`` of the other, ``distance_um`` apart
    (indices into each annotator's point list as given)."""

    i: int
    j: int
    distance_um: float


@dataclass(frozen=True)
class PairAgreement:
    reference: str
    other: str
    n_reference: int
    n_other: int
    matched: int
    matches: tuple[Match, ...] = ()
    by_label: Mapping[str, tuple[int, int, int]] = field(default_factory=dict)

    @property
    def recall(self) -> float | None:
        return self.matched / self.n_reference if self.n_reference else None

    @property
    def precision(self) -> float | None:
        return self.matched / self.n_other if self.n_other else None

    @property
    def f1(self) -> float | None:
        total = self.n_reference + self.n_other
        return 2 * self.matched / total if total else None

    @property
    def mean_distance_um(self) -> float | None:
        if not self.matches:
            return None
        return float(np.mean([m.distance_um for m in self.matches]))


@dataclass(frozen=True)
class AnnotatorSummary:
    annotator: str
    n_points: int
    precision: float | None  # their matched points / their points, pooled over pairs
    recall: float | None  # the others' matched points / the others' points, pooled
    mean_f1: float | None  # over the pairs that have an F1


@dataclass(frozen=True)
class ConsensusPoint:
    label: str
    zyx: Triple  # voxels: the mean of the cluster's points
    support: int  # annotators who found it
    members: tuple[tuple[str, int], ...]  # (annotator, index into their points)


@dataclass(frozen=True)
class BoxAgreement:
    annotators: tuple[str, ...]
    pairs: tuple[PairAgreement, ...]
    summaries: tuple[AnnotatorSummary, ...]

    @property
    def mean_f1(self) -> float | None:
        values = [p.f1 for p in self.pairs if p.f1 is not None]
        return float(np.mean(values)) if values else None


def _check_geometry(tolerance_um: float, voxel_size_um: Sequence[float]) -> FloatArray:
    if not (math.isfinite(tolerance_um) and tolerance_um >= 0):
        raise InvalidInputError("the match tolerance must be a distance >= 0 (um)")
    voxel = np.asarray(voxel_size_um, dtype=np.float64)
    if voxel.shape != (3,) or not np.all(np.isfinite(voxel)) or np.any(voxel <= 0):
        raise InvalidInputError("the voxel size must be three positive numbers (z y x, um)")
    return voxel


def positions_um(
    points: Sequence[Point], voxel_size_um: Sequence[float] | FloatArray
) -> FloatArray:
    """Positions in um (relative to the volume's corner; the origin cancels in distances)."""
    if not points:
        return np.zeros((0, 3), dtype=np.float64)
    return np.asarray([p.zyx for p in points], dtype=np.float64) * np.asarray(
        voxel_size_um, dtype=np.float64
    )


def match_positions(a_um: FloatArray, b_um: FloatArray, tolerance_um: float) -> list[Match]:
    """The Hungarian matching of two position sets (um), pairs within the tolerance only."""
    if len(a_um) == 0 or len(b_um) == 0:
        return []
    distance = np.linalg.norm(a_um[:, None, :] - b_um[None, :, :], axis=-1)
    limit = tolerance_um * (1 + _SLACK) + _SLACK
    admissible = distance <= limit
    if not admissible.any():
        return []
    # Any inadmissible pair costs more than every admissible pair together: the assignment
    # maximises the number of matches first, then minimises their total distance.
    big = (min(distance.shape) + 1) * (limit + 1.0)
    cost = np.where(admissible, distance, big)
    rows, cols = linear_sum_assignment(cost)
    return [
        Match(int(i), int(j), float(distance[i, j]))
        for i, j in zip(rows, cols, strict=True)
        if admissible[i, j]
    ]


def _by_label(points: Sequence[Point]) -> dict[str, list[int]]:
    out: dict[str, list[int]] = {}
    for k, p in enumerate(points):
        out.setdefault(p.label, []).append(k)
    return out


def match_points(
    reference: Sequence[Point],
    other: Sequence[Point],
    tolerance_um: float,
    voxel_size_um: Sequence[float],
) -> list[Match]:
    """Matches between two annotators' points, class by class (indices into the lists)."""
    voxel = _check_geometry(tolerance_um, voxel_size_um)
    ref_um, other_um = positions_um(reference, voxel), positions_um(other, voxel)
    ref_labels, other_labels = _by_label(reference), _by_label(other)
    out: list[Match] = []
    for label, ref_idx in ref_labels.items():
        other_idx = other_labels.get(label)
        if not other_idx:
            continue
        for m in match_positions(ref_um[ref_idx], other_um[other_idx], tolerance_um):
            out.append(Match(ref_idx[m.i], other_idx[m.j], m.distance_um))
    return sorted(out, key=lambda m: (m.i, m.j))


def pair_agreement(
    reference_name: str,
    reference: Sequence[Point],
    other_name: str,
    other: Sequence[Point],
    tolerance_um: float,
    voxel_size_um: Sequence[float],
) -> PairAgreement:
    matches = match_points(reference, other, tolerance_um, voxel_size_um)
    ref_labels, other_labels = _by_label(reference), _by_label(other)
    by_label: dict[str, tuple[int, int, int]] = {}
    for label in sorted(set(ref_labels) | set(other_labels)):
        matched = sum(1 for m in matches if reference[m.i].label == label)
        by_label[label] = (
            len(ref_labels.get(label, [])),
            len(other_labels.get(label, [])),
            matched,
        )
    return PairAgreement(
        reference=reference_name,
        other=other_name,
        n_reference=len(reference),
        n_other=len(other),
        matched=len(matches),
        matches=tuple(matches),
        by_label=by_label,
    )


def box_agreement(
    points: Mapping[str, Sequence[Point]],
    tolerance_um: float,
    voxel_size_um: Sequence[float],
) -> BoxAgreement:
    """Every pair of annotators (in the order given; the first of a pair is its reference) and
    each annotator's summary."""
    names = tuple(points)
    pairs = tuple(
        pair_agreement(a, points[a], b, points[b], tolerance_um, voxel_size_um)
        for a, b in combinations(names, 2)
    )
    summaries = []
    for name in names:
        own = theirs = matched = 0
        f1s: list[float] = []
        for pair in pairs:
            if name not in (pair.reference, pair.other):
                continue
            mine_n, other_n = (
                (pair.n_reference, pair.n_other)
                if pair.reference == name
                else (pair.n_other, pair.n_reference)
            )
            own += mine_n
            theirs += other_n
            matched += pair.matched
            if pair.f1 is not None:
                f1s.append(pair.f1)
        summaries.append(
            AnnotatorSummary(
                annotator=name,
                n_points=len(points[name]),
                precision=matched / own if own else None,
                recall=matched / theirs if theirs else None,
                mean_f1=float(np.mean(f1s)) if f1s else None,
            )
        )
    return BoxAgreement(annotators=names, pairs=pairs, summaries=tuple(summaries))


def default_quorum(n_annotators: int) -> int:
    """A strict majority of the annotators (2 of 2, 2 of 3, 3 of 4)."""
    return n_annotators // 2 + 1


def consensus(
    points: Mapping[str, Sequence[Point]],
    tolerance_um: float,
    voxel_size_um: Sequence[float],
    quorum: int,
) -> list[ConsensusPoint]:
    """The points found by at least ``quorum`` annotators (module docstring), sorted by class
    then position."""
    _check_geometry(tolerance_um, voxel_size_um)
    names = list(points)
    if not 1 <= quorum <= max(len(names), 1):
        raise InvalidInputError(f"the quorum must be 1-{max(len(names), 1)} annotators")
    nodes = [(name, k) for name in names for k in range(len(points[name]))]
    index = {node: n for n, node in enumerate(nodes)}
    parent = list(range(len(nodes)))
    owners: list[set[str]] = [{name} for name, _ in nodes]

    def find(n: int) -> int:
        while parent[n] != n:
            parent[n] = parent[parent[n]]
            n = parent[n]
        return n

    edges: list[tuple[float, int, int]] = []
    for a, b in combinations(names, 2):
        for m in match_points(points[a], points[b], tolerance_um, voxel_size_um):
            edges.append((m.distance_um, index[(a, m.i)], index[(b, m.j)]))
    for _distance, u, v in sorted(edges):
        ru, rv = find(u), find(v)
        if ru == rv or owners[ru] & owners[rv]:
            continue
        parent[rv] = ru
        owners[ru] |= owners[rv]
    clusters: dict[int, list[int]] = {}
    for n in range(len(nodes)):
        clusters.setdefault(find(n), []).append(n)
    out = []
    for members in clusters.values():
        if len(members) < quorum:
            continue
        found = [points[nodes[n][0]][nodes[n][1]] for n in members]
        mean = np.mean(np.asarray([p.zyx for p in found], dtype=np.float64), axis=0)
        out.append(
            ConsensusPoint(
                label=found[0].label,
                zyx=(float(mean[0]), float(mean[1]), float(mean[2])),
                support=len(members),
                members=tuple(sorted(nodes[n] for n in members)),
            )
        )
    return sorted(out, key=lambda c: (c.label, c.zyx))
