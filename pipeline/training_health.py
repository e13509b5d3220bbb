"""Is a training learning? Figures of how well its heads separate objects from background.

A collapsed run (issue 11: plant nuclei, one training seed in two) looks fine by its loss: it
falls, and the checkpoint is written. But its distance head never exceeded 198 nm, even on the
training volume, against a seed threshold of 705.6 nm: no seed formed and segmentation wrote zero
objects. So after ``health_epochs`` the trainer looks at two figures, on the training boxes (the
epoch's own batches, augmented, at no extra cost) and on the validation boxes (predicted whole):

- ``distance_p99_nm``: the 99th percentile of the predicted distance (nm) over object voxels. A
  seed forms only where the distance exceeds the seed threshold; inside objects of median radius
  ``r`` the true distance reaches ``r``, so a healthy head passes the threshold (0.3 r) early.
- ``probability_gap``: mean predicted probability on object voxels minus that on background
  voxels; near 0 when the head is constant or does not rank objects above background.

The check takes the best value each figure reached in any epoch of the attempt so far (they swing
from epoch to epoch; what must not happen is that they never get there). Too low a figure on
either set makes the attempt unhealthy (:func:`health_problems`); the trainer
restarts from a new seed a bounded number of times, then raises
:class:`~pipeline.errors.TrainingFailedError` with :func:`failure_message`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

DISTANCE_PERCENTILE = 99.0
# The distance head must reach the seed threshold inside objects (else no seed can form) ...
MIN_DISTANCE_FRACTION = 1.0
# ... and the probability head must rank objects above background by at least this much.
MIN_PROBABILITY_GAP = 0.1
MAX_FIGURE_VOXELS = 1 << 18  # percentiles of larger sets are taken on an even subsample


@dataclass(frozen=True)
class HeadFigures:
    """How a set of predictions separates objects from background (NaN: not measured)."""

    distance_p99_nm: float = math.nan
    probability_gap: float = math.nan


def head_figures(
    foreground: np.ndarray,
    distance_nm: np.ndarray | None,
    probability: np.ndarray | None,
    mask: np.ndarray | None = None,
) -> HeadFigures:
    """Figures of one prediction; ``foreground`` (bool) is the truth, ``mask`` where it is known."""
    known = np.ones(foreground.shape, bool) if mask is None else np.asarray(mask) > 0
    inside = foreground & known
    outside = ~foreground & known
    p99 = math.nan
    if distance_nm is not None and inside.any():
        values = distance_nm[inside]
        step = max(1, values.size // MAX_FIGURE_VOXELS)
        p99 = float(np.percentile(values[::step], DISTANCE_PERCENTILE))
    gap = math.nan
    if probability is not None and inside.any() and outside.any():
        gap = float(probability[inside].mean()) - float(probability[outside].mean())
    return HeadFigures(p99, gap)


@dataclass
class FigureMedian:
    """The median over an epoch's batches of each figure (batches without a figure skipped)."""

    distances: list[float] = field(default_factory=list)
    gaps: list[float] = field(default_factory=list)

    def add(self, figures: HeadFigures) -> None:
        if not math.isnan(figures.distance_p99_nm):
            self.distances.append(figures.distance_p99_nm)
        if not math.isnan(figures.probability_gap):
            self.gaps.append(figures.probability_gap)

    def result(self) -> HeadFigures:
        return HeadFigures(
            float(np.median(self.distances)) if self.distances else math.nan,
            float(np.median(self.gaps)) if self.gaps else math.nan,
        )


def health_problems(
    figures: Mapping[str, HeadFigures], seed_threshold_nm: float, object_radius_nm: float
) -> list[str]:
    """What is wrong with the heads, per set of boxes (``{"training": ..., "validation": ...}``);
    empty when they are healthy. NaN figures (a head or a set that is absent) are not judged."""
    problems = []
    for where, f in figures.items():
        floor = MIN_DISTANCE_FRACTION * seed_threshold_nm
        if f.distance_p99_nm < floor:
            problems.append(
                f"on the {where} boxes the distance head's {DISTANCE_PERCENTILE:.0f}th percentile "
                f"inside objects reached only {f.distance_p99_nm:.0f} nm, below the seed threshold "
                f"{seed_threshold_nm:.0f} nm (objects' median radius {object_radius_nm:.0f} nm): "
                "no seed can form"
            )
        if f.probability_gap < MIN_PROBABILITY_GAP:
            problems.append(
                f"on the {where} boxes the probability head barely separates objects from "
                f"background (mean on objects minus mean on background at most "
                f"{f.probability_gap:.3f}, "
                f"need >= {MIN_PROBABILITY_GAP})"
            )
    return problems


@dataclass(frozen=True)
class Restart:
    """One unhealthy attempt: its seed, the epoch it was judged at, and what was seen."""

    attempt: int
    seed: int
    epoch: int
    problems: tuple[str, ...]

    def to_dict(self) -> dict[str, Any]:
        return {
            "attempt": self.attempt,
            "seed": self.seed,
            "epoch": self.epoch,
            "problems": list(self.problems),
        }


def failure_message(restarts: Sequence[Restart], voxel_size: Sequence[float]) -> str:
    """What every attempt showed and what to try, for a person."""
    lines = [
        f"training failed: {len(restarts)} attempt(s) from different seeds did not learn to "
        "separate objects from background"
    ]
    for r in restarts:
        lines.append(f"  attempt {r.attempt + 1} (seed {r.seed}, after epoch {r.epoch}):")
        lines.extend(f"    - {p}" for p in r.problems)
    sizes = " x ".join(f"{v:g}" for v in voxel_size)
    lines.append(
        "Try: more iterations (iterations_per_epoch, health_epochs) or a lower or higher lr "
        "(with warmup_steps); check that every object inside each training box is labelled (an "
        "unlabelled object is taught as background), that the labels lie on the objects of the "
        "image (same shape, same origin, not shifted or transposed) and that the voxel size "
        f"({sizes} nm) is right, since the seed threshold is derived from the objects' size in nm."
    )
    return "\n".join(lines)
