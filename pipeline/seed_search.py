"""Scoring many seedings of the same distance maps against ground truth, cheaply.

Both the validation during training (:mod:`pipeline.training_validation`) and the fit after it
(:mod:`pipeline.segment_fit`) segment a few boxes' predicted distance maps at several seed
settings and count object matches. The expensive parts are shared here and done once: the peak
caps of each map per dynamic (a morphological reconstruction), and the flooding and matching of a
seeding identical to one already scored (a minimum seed size that drops nothing, a threshold that
changes no seed).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from pipeline.box_table import Box
from pipeline.evaluation import detection_scores, evaluate_box
from pipeline.progress import ProgressCallback, no_progress
from pipeline.watershed import flood_seeds, peak_caps, seed_labels


@dataclass(frozen=True)
class Seeding:
    """How seeds are taken from an already smoothed distance map (nm, voxels)."""

    seed_threshold_nm: float
    seed_dynamic_nm: float = 0.0
    min_seed_voxels: int = 0


@dataclass(frozen=True)
class JudgedMap:
    """One box's smoothed distance map, its ground truth in the map's frame, and how to judge it:
    ``box`` locates the annotated box in the map; a predicted object is a false positive only if
    its centroid lies within ``margin`` voxels of the box (see :func:`evaluate_box`)."""

    distance: np.ndarray
    truth: np.ndarray
    box: Box
    margin: tuple[int, ...]


@dataclass(frozen=True)
class SeedingScore:
    """Object matches of one seeding over all maps (micro-averaged, IoU >= ``iou_threshold``)."""

    seeding: Seeding
    tp: int
    fp: int
    fn: int
    objects: int
    gt_objects: int

    @property
    def f1(self) -> float:
        return detection_scores(self.tp, self.fp, self.fn)[2]

    def scores(self) -> dict[str, float]:
        precision, recall, f1 = detection_scores(self.tp, self.fp, self.fn)
        return {"precision": precision, "recall": recall, "f1": f1}


def score_seedings(
    maps: Sequence[JudgedMap],
    seedings: Sequence[Seeding],
    *,
    iou_threshold: float = 0.5,
    progress: ProgressCallback = no_progress,
    stage: str = "score seedings",
) -> list[SeedingScore]:
    """Every seeding's counts over all ``maps``, in the order given."""
    masks = [m.distance > 0 for m in maps]
    caps: dict[tuple[int, float], np.ndarray] = {}
    scored: dict[tuple[int, bytes], tuple[int, int, int, int, int]] = {}
    out: list[SeedingScore] = []
    for done, seeding in enumerate(seedings, start=1):
        counts = np.zeros(5, dtype=np.int64)
        for i, (judged, mask) in enumerate(zip(maps, masks, strict=True)):
            cap = None
            if seeding.seed_dynamic_nm > 0:
                key = (i, round(seeding.seed_dynamic_nm, 6))
                if key not in caps:
                    caps[key] = peak_caps(judged.distance, seeding.seed_dynamic_nm)
                cap = caps[key]
            found = seed_labels(
                judged.distance,
                mask,
                seeding.seed_threshold_nm,
                seeding.min_seed_voxels,
                seeding.seed_dynamic_nm,
                caps=cap,
            )
            digest = hashlib.blake2b(found.tobytes(), digest_size=16).digest()
            if (i, digest) not in scored:
                labels = flood_seeds(judged.distance, found, mask)
                row = evaluate_box(
                    labels, judged.truth, judged.box, margin=judged.margin,
                    iou_threshold=iou_threshold,
                )  # fmt: skip
                scored[(i, digest)] = (row["tp"], row["fp"], row["fn"], row["n_pred"], row["n_gt"])
            counts += scored[(i, digest)]
        tp, fp, fn, objects, gt_objects = (int(c) for c in counts)
        out.append(SeedingScore(seeding, tp, fp, fn, objects, gt_objects))
        progress(stage, done, len(seedings))
    return out
