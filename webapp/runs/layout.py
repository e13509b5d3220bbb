"""Where a run keeps its files: a work directory in temporary space (removed when the run ends,
whatever the end), and the model registry's files."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from django.conf import settings

from pipeline.manifest import Manifest
from pipeline.plan import PLAN_FILE, cancel_plan, plan_state
from pipeline.run import PREDICTION_DIR, SEGMENT_PLAN_DIR

OUT = "out"  # the pipeline run's output directory (pipeline.run layout)
GROUND_TRUTH = "ground-truth"  # the exported labels and box tables
#: The stages whose work is a saved plan run by the workers, and the plan's folder in ``out``.
PLAN_OF_STAGE = {"predict": PREDICTION_DIR, "segment": SEGMENT_PLAN_DIR}


def run_dir(run_id: int) -> Path:
    return Path(settings.DATA_ROOT) / "tmp" / f"run-{run_id}"


def out_dir(run_id: int) -> Path:
    return run_dir(run_id) / OUT


def saved_plan(run_id: int, stage: str) -> Path | None:
    """The folder of the plan ``stage`` handed to the workers, once saved; else None."""
    if stage not in PLAN_OF_STAGE:
        return None
    folder = out_dir(run_id) / PLAN_OF_STAGE[stage]
    return folder if (folder / PLAN_FILE).is_file() else None


def plan_dirs(run_id: int) -> list[Path]:
    """The saved plans a run hands to the workers: prediction, then segmentation."""
    return [out_dir(run_id) / folder for folder in PLAN_OF_STAGE.values()]


def training_history(run_id: int) -> list[dict[str, Any]]:
    """The epochs the run's training wrote so far (its manifest, while the work directory
    lives)."""
    record = Manifest.load_or_new(out_dir(run_id)).steps.get("train")
    return list(record.metrics.get("history") or []) if record is not None else []


def running_plans(run_id: int) -> list[Path]:
    """The run's plans that workers are running now (their chord's callback will come)."""
    running = []
    for folder in plan_dirs(run_id):
        if (folder / PLAN_FILE).is_file():
            try:
                if plan_state(folder).state == "running":
                    running.append(folder)
            except Exception:
                continue
    return running


def stop_and_clean(run_id: int) -> None:
    """After a run was cancelled or failed: stop its running plans, whose callback then removes
    the work directory (their items may still write into it); with none, remove it now."""
    running = running_plans(run_id)
    for folder in running:
        cancel_plan(folder)
    if not running:
        shutil.rmtree(run_dir(run_id), ignore_errors=True)


def models_root() -> Path:
    return Path(settings.DATA_ROOT) / "models"


def model_dir(dataset_id: int, number: int) -> Path:
    return models_root() / f"dataset-{dataset_id}" / f"v{number}"
