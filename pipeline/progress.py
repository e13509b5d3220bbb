"""Progress reporting shared by the CLI (tqdm bars) and the site (job rows)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Protocol

#: What training reports its steps as: a part of the run's train step, named, since the step
#: goes on after its last step (predicting the validation boxes, fitting the segmentation
#: settings): the site's ETA for these counts must not read as the whole step's.
TRAINING_STEPS = "training steps"

#: Units of the stages of a whole pipeline run (``pipeline.run``) that do not count blocks.
PIPELINE_STAGE_UNITS: dict[str, str] = {
    TRAINING_STEPS: "step",
    "predict": "batch",
    "meshing": "object",
    "evaluate": "box",
    "fit segmentation": "setting",
    "predict validation boxes": "box",
}


class ProgressCallback(Protocol):
    def __call__(self, stage: str, done: int, total: int) -> None: ...


def no_progress(stage: str, done: int, total: int) -> None:
    """A progress callback that ignores every report."""


def tqdm_progress(unit: str, stage_units: Mapping[str, str] | None = None) -> ProgressCallback:
    """A callback drawing one tqdm bar per stage on stderr.

    ``unit`` says what a stage's ``done`` and ``total`` count ("step", "block", "object",
    "box"), which the bar shows in its rate (``3.2block/s``); ``stage_units`` names the unit of
    stages that count something else (``{TRAINING_STEPS: "step", "meshing": "object"}``).
    There is no default: a caller that counted blocks and showed "it/s" or "chunk/s" told the
    user nothing.
    """
    from tqdm import tqdm

    units = dict(stage_units or {})
    bars: dict[str, tqdm] = {}

    def report(stage: str, done: int, total: int) -> None:
        bar = bars.get(stage)
        if bar is None:
            for other in bars.values():
                other.close()
            bar = bars[stage] = tqdm(
                total=total, desc=stage, unit=units.get(stage, unit), leave=True
            )
        bar.total = total
        bar.n = done
        bar.refresh()
        if done >= total:
            bar.close()

    return report
