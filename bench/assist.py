"""Model-assisted objects on the demo volume: actions and seconds per object with Dice >= 0.9,
fully manual painting versus click-to-object versus propose-and-correct.

    .venv/bin/python bench/assist.py [--shape 256 256 256] [--nuclei 300] [--seed 0]
                                     [--box 64 128 128] [--boxes 4]

One command, nothing written. The volume is the demo's (``manage.py load_demo``: the same
``pipeline.synthetic.make_nuclei_volume``, 200 nm voxels), whose true labels are known. Task boxes
of ``--box`` voxels are laid at ``--boxes`` seeded random places; in each, every true object with
at least the voxels of a 1 um ball inside the box is a target (its part inside the box: what the
annotator paints there).

Measured, server side (``pipeline.assist``, the code behind ``assist/click/`` and
``assist/proposals/``): per target, the time from a click at its deepest voxel (the distance
transform's maximum: where a person clicks, the middle) to its proposed mask, and that mask's Dice
with the truth; per box, the time to propose every object, and which targets a proposal matches
(best Dice per target, each proposal used once).

Actions are counted from a model of what a person does (no browser here):
- manual: one brush stroke per xy slice the object covers, plus a key (F/D) per slice change;
- click: 1 click + 1 Enter, plus, when Dice < 0.9, one eraser/brush stroke on every slice whose
  mask differs from the truth by more than 10% of the slice's true area (and its slice key);
- propose-and-correct: 1 key (Enter) per proposal matched at Dice >= 0.9; a proposal matched
  below that is accepted and corrected as for a click; a target no proposal matches is done by a
  click; each proposal matching no target costs 1 key (Esc). Seconds add the measured compute
  (the click's, the box's propose-all shared among its targets).
Seconds of a person use the keystroke-level model (Card, Moran, Newell): key 0.28 s, point and
click 1.1 s + 0.2 s, mental preparation 1.35 s before each decision, a stroke 1.1 s pointing +
1.5 s drawing. The baseline (manual) is computed in the same run on the same targets. The goal
(issue 10): 3 or fewer actions per object with assistance.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import numpy.typing as npt
from scipy import ndimage

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

from pipeline.assist import (  # noqa: E402
    DEFAULT_MIN_DIAMETER_NM,
    AssistObject,
    object_from_click,
    propose_all,
)
from pipeline.synthetic import make_nuclei_volume  # noqa: E402

VOXEL_NM = 200.0  # the demo's (webapp/datasets/management/commands/load_demo.py)
GOOD_DICE = 0.9
SLICE_TOLERANCE = 0.1
KEY_S = 0.28
CLICK_S = 1.1 + 0.2
THINK_S = 1.35
STROKE_S = 1.1 + 1.5

Mask = npt.NDArray[np.bool_]


@dataclass
class Tally:
    """Actions and modelled seconds over the targets of one way of working."""

    actions: list[int] = field(default_factory=list)
    seconds: list[float] = field(default_factory=list)
    compute: list[float] = field(default_factory=list)
    cut: list[bool] = field(default_factory=list)  # the object reaches a face of the box

    def add(self, actions: int, human_s: float, compute_s: float = 0.0, cut: bool = False) -> None:
        self.actions.append(actions)
        self.seconds.append(human_s + compute_s)
        self.compute.append(compute_s)
        self.cut.append(cut)

    def whole_mean(self) -> float:
        """Mean actions over the objects wholly inside the box."""
        kept = [a for a, c in zip(self.actions, self.cut, strict=True) if not c]
        return statistics.mean(kept) if kept else float("nan")


def touches_faces(mask: Mask) -> bool:
    return any(mask[(slice(None),) * axis + (end,)].any() for axis in range(3) for end in (0, -1))


def dice(a: Mask, b: Mask) -> float:
    total = int(a.sum()) + int(b.sum())
    return 2.0 * int((a & b).sum()) / total if total else 1.0


def slices(mask: Mask) -> int:
    return int(np.count_nonzero(mask.any(axis=(1, 2))))


def correction_strokes(found: Mask, truth: Mask) -> int:
    """Slices whose mask differs from the truth by more than SLICE_TOLERANCE of its area."""
    wrong = (found ^ truth).sum(axis=(1, 2))
    area = np.maximum(truth.sum(axis=(1, 2)), 1)
    return int(np.count_nonzero(wrong > SLICE_TOLERANCE * area))


def manual_cost(truth: Mask) -> tuple[int, float]:
    n = slices(truth)
    return 2 * n - 1, n * STROKE_S + (n - 1) * KEY_S + THINK_S


def click_cost(found: Mask | None, truth: Mask) -> tuple[int, float]:
    """1 click + 1 Enter, plus corrections when Dice < 0.9; manual when nothing was found."""
    if found is None:
        actions, seconds = manual_cost(truth)
        return actions + 1, seconds + CLICK_S
    actions, seconds = 2, THINK_S + CLICK_S + THINK_S + KEY_S
    if dice(found, truth) < GOOD_DICE:
        strokes = correction_strokes(found, truth)
        actions += 2 * strokes
        seconds += strokes * (STROKE_S + KEY_S)
    return actions, seconds


def deepest_voxel(truth: Mask) -> tuple[int, int, int]:
    depth = ndimage.distance_transform_edt(np.pad(truth, 1))[1:-1, 1:-1, 1:-1]
    z, y, x = np.unravel_index(int(np.argmax(depth)), truth.shape)
    return int(z), int(y), int(x)


def match(
    found: list[AssistObject], targets: dict[int, Mask], shape: tuple[int, ...]
) -> dict[int, tuple[int, float]]:
    """Greedy best-Dice matching, each proposal used once: target id -> (proposal index, Dice)."""
    pasted = [f.paste(shape) for f in found]
    pairs = []
    for tid, truth in targets.items():
        for k, mask in enumerate(pasted):
            if (mask & truth).any():
                pairs.append((dice(mask, truth), tid, k))
    result: dict[int, tuple[int, float]] = {}
    used: set[int] = set()
    for d, tid, k in sorted(pairs, reverse=True):
        if tid in result or k in used or d < 0.5:
            continue
        result[tid] = (k, d)
        used.add(k)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--shape", nargs=3, type=int, default=[256, 256, 256])
    parser.add_argument("--nuclei", type=int, default=300)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--box", nargs=3, type=int, default=[64, 128, 128])
    parser.add_argument("--boxes", type=int, default=4)
    args = parser.parse_args()
    voxel = (VOXEL_NM,) * 3
    started = time.perf_counter()
    image, labels = make_nuclei_volume(
        tuple(args.shape), n_nuclei=args.nuclei, seed=args.seed, voxel_size_nm=VOXEL_NM
    )
    print(
        f"demo volume {tuple(args.shape)}, {int(labels.max())} nuclei, "
        f"made in {time.perf_counter() - started:.1f} s"
    )
    rng = np.random.default_rng(args.seed)
    box = np.array(args.box)
    min_voxels = int(np.pi / 6 * (DEFAULT_MIN_DIAMETER_NM / VOXEL_NM) ** 3)
    manual, click, propose = Tally(), Tally(), Tally()
    click_times: list[float] = []
    click_dice: list[float] = []
    propose_times: list[float] = []
    matched_good = matched_any = n_targets = false_proposals = 0
    for b in range(args.boxes):
        origin = rng.integers(0, np.array(args.shape) - box + 1)
        region = tuple(slice(int(o), int(o + n)) for o, n in zip(origin, box, strict=True))
        block, truth_box = image[region], labels[region]
        ids, counts = np.unique(truth_box[truth_box > 0], return_counts=True)
        targets = {
            int(i): truth_box == i for i, c in zip(ids, counts, strict=True) if c >= min_voxels
        }
        n_targets += len(targets)
        # Click-to-object, per target.
        by_click: dict[int, tuple[Mask | None, float]] = {}
        for tid, truth in targets.items():
            t0 = time.perf_counter()
            found = object_from_click(block, deepest_voxel(truth), voxel)
            elapsed = time.perf_counter() - t0
            click_times.append(elapsed)
            mask = None if found is None else found.paste(truth.shape)
            by_click[tid] = (mask, elapsed)
            click_dice.append(0.0 if mask is None else dice(mask, truth))
            cut = touches_faces(truth)
            actions, seconds = click_cost(mask, truth)
            click.add(actions, seconds, elapsed, cut)
            m_actions, m_seconds = manual_cost(truth)
            manual.add(m_actions, m_seconds, cut=cut)
        # Propose all, per box.
        t0 = time.perf_counter()
        proposals = propose_all(block, voxel)
        elapsed = time.perf_counter() - t0
        propose_times.append(elapsed)
        pairs = match(proposals, targets, truth_box.shape)
        unmatched = len(proposals) - len(pairs)
        false_proposals += unmatched
        share = elapsed / max(len(targets), 1)
        reject_each = unmatched / max(len(targets), 1)  # Esc keys, shared among the targets
        for tid, truth in targets.items():
            if tid in pairs:
                k, d = pairs[tid]
                matched_any += 1
                matched_good += d >= GOOD_DICE
                actions, seconds = 1, THINK_S + KEY_S
                if d < GOOD_DICE:
                    mask = proposals[k].paste(truth.shape)
                    strokes = correction_strokes(mask, truth)
                    actions += 2 * strokes
                    seconds += strokes * (STROKE_S + KEY_S)
                propose.add(
                    actions, seconds + reject_each * (THINK_S + KEY_S), share, touches_faces(truth)
                )
            else:  # no proposal for it: the annotator clicks it
                mask, click_s = by_click[tid]
                actions, seconds = click_cost(mask, truth)
                propose.add(
                    actions,
                    seconds + reject_each * (THINK_S + KEY_S),
                    share + click_s,
                    touches_faces(truth),
                )
        print(
            f"box {b + 1}: origin {tuple(int(v) for v in origin)}, {len(targets)} targets, "
            f"{len(proposals)} proposals ({len(pairs)} matched), propose-all {elapsed:.2f} s"
        )
    if not n_targets:
        print("no targets in the boxes")
        return
    rejects_per_object = false_proposals / n_targets
    dice_arr = np.array(click_dice)
    print()
    print(f"targets: {n_targets} objects in {args.boxes} boxes of {tuple(args.box)} voxels")
    print(
        f"click-to-object: {statistics.median(click_times) * 1000:.0f} ms median, "
        f"{max(click_times) * 1000:.0f} ms max; Dice median {np.median(dice_arr):.3f}, "
        f"Dice >= 0.9 for {np.mean(dice_arr >= GOOD_DICE):.0%}"
    )
    print(
        f"propose-all: {statistics.mean(propose_times):.2f} s per box (mean), "
        f"matched at Dice >= 0.9: {matched_good / n_targets:.0%}, at Dice >= 0.5: "
        f"{matched_any / n_targets:.0%}; {false_proposals} proposals matching no target"
    )
    print()
    print("per accepted object with Dice >= 0.9 (mean over targets):")
    print(
        f"{'':24}{'actions':>9}{'median':>8}{'<= 3':>7}{'seconds':>9}{'compute s':>11}"
        f"{'vs manual':>11}"
    )
    base_s = statistics.mean(manual.seconds)
    rows = [
        ("manual (baseline)", manual, 0.0),
        ("click-to-object", click, 0.0),
        ("propose-and-correct", propose, rejects_per_object),
    ]
    for name, tally, extra in rows:
        a = statistics.mean(tally.actions) + extra
        s = statistics.mean(tally.seconds)
        c = statistics.mean(tally.compute)
        median = statistics.median(tally.actions)
        few = float(np.mean(np.array(tally.actions) <= 3))
        print(
            f"{name:24}{a:9.2f}{median:8.0f}{few:7.0%}{s:9.1f}{c:11.2f}{f'{base_s / s:.1f}x':>11}"
        )
    whole = manual.cut.count(False)
    print(
        f"objects wholly inside the box ({whole} of {n_targets}), mean actions: manual "
        f"{manual.whole_mean():.2f}, click {click.whole_mean():.2f}, propose-and-correct "
        f"{propose.whole_mean():.2f}"
    )
    print(
        f"(propose-and-correct includes {rejects_per_object:.2f} Esc per object for proposals "
        "matching no target; '<= 3': share of objects done in 3 actions or fewer; goal: <= 3 "
        "actions per object with assistance)"
    )


if __name__ == "__main__":
    main()
