"""Agreement and consensus of three annotators' painted volumes of one 256^3 box, seconds.

    .venv/bin/python bench/label_agreement.py [--size 256] [--objects 200] [--annotators 3]
                                              [--repeats 3]

One command, nothing written. Synthetic box: ``--objects`` balls (radius 7-12 voxels) placed at
random; each annotator paints each ball with probability 0.95, its centre moved by up to 1 voxel
and its radius by up to 1, adds 5 objects of their own, and uses random sparse uint32 ids. Measured
(best and median of ``--repeats``): ``pipeline.label_agreement.LabelComparison`` built once, then
``agreement()`` (all pairs and summaries) and ``consensus()`` (majority quorum). Baselines in the
same run on the same volumes, checked to give the same matches: ``pipeline.evaluation``'s
``match_objects`` called per pair on the whole volumes (each volume renumbered per pair, every
voxel counted), and the naive per-object loop (a mask per object of A, ``np.unique`` of B under
it). The goal (issue 10 helper brief): agreement plus consensus in a few seconds.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from collections.abc import Callable
from itertools import combinations
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
from scipy.optimize import linear_sum_assignment

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

from pipeline.evaluation import match_objects  # noqa: E402
from pipeline.label_agreement import LabelComparison  # noqa: E402

Vol = npt.NDArray[np.uint32]


def _ball(vol: Vol, centre: npt.NDArray[np.int64], radius: int, label: int) -> None:
    lo = np.maximum(centre - radius, 0)
    hi = np.minimum(centre + radius + 1, vol.shape)
    z, y, x = np.ogrid[lo[0] : hi[0], lo[1] : hi[1], lo[2] : hi[2]]
    inside = (z - centre[0]) ** 2 + (y - centre[1]) ** 2 + (x - centre[2]) ** 2 <= radius**2
    vol[lo[0] : hi[0], lo[1] : hi[1], lo[2] : hi[2]][inside] = label


def volumes(size: int, n_objects: int, n_annotators: int, seed: int = 0) -> dict[str, Vol]:
    rng = np.random.default_rng(seed)
    centres = rng.integers(12, size - 12, (n_objects, 3))
    radii = rng.integers(7, 13, n_objects)
    out = {}
    for a in range(n_annotators):
        vol = np.zeros((size,) * 3, dtype=np.uint32)
        ids = rng.choice(2**32 - 1, n_objects + 5, replace=False).astype(np.uint32) + 1
        for k in range(n_objects):
            if rng.random() < 0.95:
                centre = centres[k] + rng.integers(-1, 2, 3)
                _ball(vol, centre, int(radii[k] + rng.integers(-1, 2)), int(ids[k]))
        for k in range(n_objects, n_objects + 5):
            _ball(vol, rng.integers(12, size - 12, 3), int(rng.integers(6, 10)), int(ids[k]))
        out[f"annotator{a + 1}"] = vol
    return out


def naive_matches(a: Vol, b: Vol) -> set[tuple[int, int]]:
    """The per-object loop: one full-volume mask per object of ``a``."""
    ids_a = [int(i) for i in np.unique(a) if i]
    ids_b = [int(i) for i in np.unique(b) if i]
    col = {j: n for n, j in enumerate(ids_b)}
    size_b = {int(j): int(c) for j, c in zip(*np.unique(b, return_counts=True), strict=True)}
    iou = np.zeros((len(ids_a), len(ids_b)))
    for r, i in enumerate(ids_a):
        mask = a == i
        size = int(np.count_nonzero(mask))
        under, counts = np.unique(b[mask], return_counts=True)
        for j, n in zip(under.tolist(), counts.tolist(), strict=True):
            if j:
                iou[r, col[j]] = n / (size + size_b[j] - n)
    rows, cols = linear_sum_assignment(np.where(iou >= 0.5, iou, 0), maximize=True)
    return {(ids_a[r], ids_b[c]) for r, c in zip(rows, cols, strict=True) if iou[r, c] >= 0.5}


def _timed(fn: Callable[[], Any], repeats: int) -> tuple[list[float], Any]:
    times, result = [], None
    for _ in range(repeats):
        start = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - start)
    return times, result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--objects", type=int, default=200)
    parser.add_argument("--annotators", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    print(f"load average before: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    start = time.perf_counter()
    vols = volumes(args.size, args.objects, args.annotators)
    print(
        f"{args.annotators} annotators, {args.size}^3 box, objects per annotator "
        f"{[int(np.unique(v).size - 1) for v in vols.values()]}, foreground "
        f"{np.mean([np.count_nonzero(v) / v.size for v in vols.values()]):.1%} "
        f"(made in {time.perf_counter() - start:.1f} s)"
    )

    def ours() -> tuple[float, float, float, Any, Any]:
        t0 = time.perf_counter()
        comparison = LabelComparison(vols)
        t1 = time.perf_counter()
        agreement = comparison.agreement()
        t2 = time.perf_counter()
        consensus = comparison.consensus()
        t3 = time.perf_counter()
        return t1 - t0, t2 - t1, t3 - t2, agreement, consensus

    runs = [ours() for _ in range(args.repeats)]
    totals = [sum(r[:3]) for r in runs]
    _, _, _, agreement, consensus = runs[-1]
    best = min(range(len(runs)), key=lambda k: totals[k])
    prep, agree, cons = runs[best][:3]
    print(
        f"label_agreement: total best {min(totals):.2f} s, median {statistics.median(totals):.2f} s"
        f" (prepare {prep:.2f} + agreement {agree:.2f} + consensus {cons:.2f}, best run)"
    )
    print(
        f"  mean pair F1 {agreement.mean_f1:.3f}, mean Dice {agreement.mean_dice:.3f}; consensus "
        f"{len(consensus.objects)} objects, {len(consensus.unmatched)} unmatched listed"
    )
    names = list(vols)
    pairs = list(combinations(names, 2))
    ours_matches = {
        (p.reference, p.other): {(m.reference_id, m.other_id) for m in p.matches}
        for p in agreement.pairs
    }

    def per_pair() -> dict[tuple[str, str], set[tuple[int, int]]]:
        out = {}
        for a, b in pairs:
            m = match_objects(vols[a], vols[b])
            out[(a, b)] = set(
                zip(m.matched_ids_pred.tolist(), m.matched_ids_gt.tolist(), strict=True)
            )
        return out

    times, result = _timed(per_pair, args.repeats)
    assert result == ours_matches, "evaluation.match_objects per pair disagrees"
    print(
        f"baseline evaluation.match_objects per pair (agreement matches only): best "
        f"{min(times):.2f} s; ratio to label_agreement's prepare + agreement: "
        f"{min(times) / min(r[0] + r[1] for r in runs):.1f}x"
    )
    times, result = _timed(lambda: {(a, b): naive_matches(vols[a], vols[b]) for a, b in pairs}, 1)
    assert result == ours_matches, "the naive loop disagrees"
    print(
        f"baseline naive per-object loop (agreement matches only): {times[0]:.2f} s; "
        f"ratio to label_agreement's prepare + agreement: "
        f"{times[0] / min(r[0] + r[1] for r in runs):.0f}x, to the whole of it: "
        f"{times[0] / min(totals):.0f}x"
    )
    print(f"load average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
