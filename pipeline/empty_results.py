"""Stages that produce nothing: one warning format and one exit code for every command.

A model whose distance map never reaches the seed threshold, a segmentation without objects and
an empty detections table are valid results (an image may hold no nuclei), so library functions
return them with their counts; but far more often they mean that something upstream went wrong
(the collapsed training of issue 11 wrote zero objects and every command exited 0). The CLI
therefore warns on stderr and exits with :data:`EXIT_EMPTY` unless ``--allow-empty`` says that
empty is expected.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Mapping, Sequence
from typing import Any, TextIO

EXIT_EMPTY = 3  # exit status of a command whose stage produced nothing (0 ok, 2 bad input)
ALLOW_HINT = "pass --allow-empty if an empty result is expected"


def predict_empty(distance_max_nm: float, seed_threshold_nm: float) -> str | None:
    """A warning when the predicted distance never exceeds the seed threshold (no seed can form)."""
    if math.isnan(distance_max_nm) or distance_max_nm > seed_threshold_nm:
        return None
    return (
        f"predict: the distance map never exceeds the seed threshold ({distance_max_nm:.4g} nm "
        f"at most vs {seed_threshold_nm:.4g} nm): segmentation will find no objects; the model "
        "may not have learnt (check its training history) or the image differs from its "
        "training data (voxel size, intensities)"
    )


def segment_empty(n_objects: int) -> str | None:
    """A warning when a segmentation found no object."""
    if n_objects > 0:
        return None
    return (
        "segment: no seed formed, the segmentation holds zero objects; check the distance map's "
        "range against the seed threshold, and the model's training history"
    )


def table_empty(stage: str, n_rows: int) -> str | None:
    """A warning when a measurement table has no row."""
    if n_rows > 0:
        return None
    return f"{stage}: zero objects measured, the table is empty (is the label image empty?)"


def validation_empty(val_objects: float | None) -> str | None:
    """A warning when the kept model segments nothing in the validation boxes."""
    if val_objects is None or math.isnan(val_objects) or val_objects > 0:
        return None
    return (
        "train: the kept model forms no seed in the validation boxes (zero objects): it will "
        "segment nothing; try more iterations, another lr, and check that the labels lie on "
        "the objects and the voxel size is right"
    )


def run_empty(metrics: Mapping[str, Any]) -> list[str]:
    """Warnings for the steps of a pipeline run (``RunResult.metrics``) that produced nothing."""
    found: list[str | None] = []
    if "train.val_objects" in metrics:
        found.append(validation_empty(metrics["train.val_objects"]))
    if "predict.distance_max_nm" in metrics and "segment.seed_threshold_nm" in metrics:
        maximum = metrics["predict.distance_max_nm"]
        if maximum is not None:
            found.append(predict_empty(float(maximum), float(metrics["segment.seed_threshold_nm"])))
    if "segment.objects" in metrics:
        found.append(segment_empty(int(metrics["segment.objects"])))
    if "measure.objects" in metrics and int(metrics.get("segment.objects", 1)) > 0:
        found.append(table_empty("measure", int(metrics["measure.objects"])))
    return [m for m in found if m is not None]


def report_empty(
    warnings: Sequence[str | None], allow_empty: bool, stream: TextIO | None = None
) -> int:
    """Print each warning; the exit status: :data:`EXIT_EMPTY` for any unless allowed, else 0."""
    out = sys.stderr if stream is None else stream
    found = [w for w in warnings if w]
    for warning in found:
        print(f"warning: {warning}", file=out)
    if found and not allow_empty:
        print(f"exiting with status {EXIT_EMPTY}: {ALLOW_HINT}", file=out)
        return EXIT_EMPTY
    return 0


def add_allow_empty_argument(parser: Any) -> None:
    """The ``--allow-empty`` flag shared by the commands that can produce nothing."""
    parser.add_argument(
        "--allow-empty",
        action="store_true",
        help=f"exit 0 when the result is empty (default: warn and exit {EXIT_EMPTY})",
    )
