"""A finished run's publication, all or nothing: the model file into the registry, the
segmentation and its meshes into the dataset as a new layer, the model version row, and the run
marked succeeded, in one transaction (a failure before its commit puts the directories back;
after it, nothing does: the rows point at the files). ``layers_changed``
then builds the new layer's detections table and thumbnail, as after an import."""

from __future__ import annotations

import json
import math
import os
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from django.conf import settings
from django.db import transaction
from django.db.models import Max

from pipeline.curate import add_label_name, remove_label_name
from pipeline.empty_results import run_empty
from pipeline.importers import read_ome_zarr_info
from pipeline.layout import IMAGE_STORE
from pipeline.manifest import Manifest
from pipeline.measure import MESHES_DIR
from pipeline.naming import mesh_layer_name
from pipeline.run import (
    EVALUATION_DIR,
    PREDICTION_DIR,
    PROBABILITY_NAME,
    SEGMENTATION_NAME,
    SUMMARY_JSON,
)
from pipeline.segment_fit import FIT_TABLE_NAME
from pipeline.suggest import CELLS_FILE
from webapp.core.errors import Conflict
from webapp.core.jobs.lifecycle import Attempt, job_log, job_succeed
from webapp.core.json_values import finite_json
from webapp.datasets.import_publish import layer_fields, mesh_layer_fields, prefixed
from webapp.datasets.models import Dataset, Layer, LayerKind
from webapp.datasets.signals import layers_changed
from webapp.detections.filters import FilterValues, layer_filter_set
from webapp.runs import layout, selectors, stages
from webapp.runs.models import ModelVersion, PipelineRun

MODEL_FILE = "model.pt"
PREDICTIONS_DIR = "predictions"  # a run's probability map: predictions/<layer>/probability...


def model_file(version: ModelVersion) -> Path:
    return Path(settings.DATA_ROOT) / version.path


def uncertainty_file(version: ModelVersion) -> Path:
    """The model's uncertainty per cell of its dataset's image (``pipeline.suggest``)."""
    return model_file(version).parent / CELLS_FILE


def layer_name(number: int) -> str:
    return f"model-v{number}"


def next_model_number(dataset_id: int) -> int:
    top = ModelVersion.objects.filter(dataset_id=dataset_id).aggregate(n=Max("number"))["n"]
    return int(top or 0) + 1


def fitted_filter(metrics: dict[str, Any]) -> FilterValues | None:
    """The filter step's thresholds as a layer filter (volumes in um^3), in the bounds a
    layer filter takes; None when the step fitted none."""
    fitted = metrics.get("filter") or {}
    volume, spher = fitted.get("t_volume"), fitted.get("t_sphericity")
    if not isinstance(volume, int | float) or not isinstance(spher, int | float):
        return None
    if not (math.isfinite(volume) and math.isfinite(spher)):
        return None
    return FilterValues(
        volume_min=max(0.0, float(volume)), sphericity_min=min(1.0, max(0.0, float(spher)))
    )


def parent_reference(version: ModelVersion | None) -> dict[str, Any] | None:
    """The model a version was fine-tuned from or copied from, as its parameters keep it
    (the row may go with its dataset; the reference stays readable)."""
    if version is None:
        return None
    return {"id": version.pk, "number": version.number, "dataset": version.dataset.slug}


def held_out_f1(metrics: dict[str, Any]) -> float | None:
    """A version's held-out F1: after the filter when measured, else of every object."""
    evaluation = metrics.get("evaluation") if isinstance(metrics, dict) else None
    for variant in ("filtered", "all"):
        section = evaluation.get(variant) if isinstance(evaluation, dict) else None
        value = section.get("f1") if isinstance(section, dict) else None
        if isinstance(value, int | float) and not isinstance(value, bool) and value == value:
            return float(value)
    return None


def run_warnings(metrics: dict[str, Any]) -> list[str]:
    """The pipeline's warnings for stages of the run that produced nothing (no seed above the
    threshold, no object segmented or measured, a kept model segmenting nothing in validation):
    :func:`pipeline.empty_results.run_empty` on the run's per-step metrics."""
    flat = {
        f"{step}.{key}": value
        for step, values in metrics.items()
        if isinstance(values, dict)
        for key, value in values.items()
    }
    params = (metrics.get("segment") or {}).get("params") or {}
    if isinstance(params, dict) and params.get("seed_threshold_nm") is not None:
        flat.setdefault("segment.seed_threshold_nm", params["seed_threshold_nm"])
    return run_empty(flat)


def current_decision(metrics: dict[str, Any], current: ModelVersion | None) -> dict[str, Any]:
    """Whether a new version replaces the dataset's current one: when there is none, or when
    its held-out F1 is at least the current one's (an automatic retraining must not replace a
    better model with a worse one); with either unmeasured, the newer wins. A run with warnings
    that a stage produced nothing (``metrics["warnings"]``) never does: the painting editor's
    assistance would offer nothing. The answer, with the figures it was decided on, is kept in
    the run's metrics."""
    new, old = held_out_f1(metrics), held_out_f1(current.metrics) if current else None
    empty = bool(metrics.get("warnings"))
    decision: dict[str, Any] = {
        "current": not empty and (current is None or new is None or old is None or new >= old),
        "f1": new,
        "previous": current.number if current else None,
        "previous_f1": old,
    }
    if empty:
        decision["why"] = "a stage produced nothing (see the warnings)"
    return decision


def registry_text(number: int, decision: dict[str, Any]) -> str:
    """The log's words for :func:`current_decision`'s answer."""
    if decision["current"]:
        return f"model v{number} is the dataset's current model"
    if decision.get("why"):
        return f"model v{number} is not made current: {decision['why']}"
    return (
        f"model v{number} is not made current: its held-out F1 {decision['f1']:.3f} is below "
        f"v{decision['previous']}'s {decision['previous_f1']:.3f}"
    )


def run_metrics(out: Path, manifest: Manifest) -> dict[str, Any]:
    """What the run page and the model comparison show: per step the manifest's metrics
    (training history left out: the row keeps it), and the held-out evaluation's summary."""
    metrics: dict[str, Any] = {
        name: {k: v for k, v in record.metrics.items() if k != "history"}
        for name, record in manifest.steps.items()
    }
    summary = out / EVALUATION_DIR / SUMMARY_JSON
    if summary.is_file():
        metrics["evaluation"] = json.loads(summary.read_text())
        # Per held-out box (the comparison of model versions plots them), both variants.
        for variant in ("all", "filtered"):
            table = out / EVALUATION_DIR / f"per_box_{variant}.csv"
            if table.is_file() and variant in metrics["evaluation"]:
                rows = pd.read_csv(table).replace({np.nan: None}).to_dict("records")
                metrics["evaluation"][variant]["per_box"] = rows
    clean: dict[str, Any] = finite_json(metrics)
    return clean


def publish_run(run: PipelineRun, out: Path, attempt: Attempt) -> Layer:
    """Publish the run whose pipeline output is ``out`` (module docstring)."""
    dataset = run.dataset
    manifest = Manifest.load_or_new(out)
    checkpoint = Path(manifest.step("train").outputs["best_checkpoint"])
    metrics = run_metrics(out, manifest)
    metrics["warnings"] = run_warnings(metrics)
    labels_info, _ = read_ome_zarr_info(out / SEGMENTATION_NAME)
    number = next_model_number(dataset.pk)
    name = layer_name(number)
    labels_rel = f"{IMAGE_STORE}/labels/{name}"
    meshes_rel = f"{MESHES_DIR}/{name}"
    probability_rel = f"{PREDICTIONS_DIR}/{name}/{PROBABILITY_NAME}"
    moved: list[tuple[Path, Path]] = []
    listed = False
    image_store = dataset.root / IMAGE_STORE
    folder = layout.model_dir(dataset.pk, number)
    try:
        with transaction.atomic():
            if Layer.objects.filter(dataset=dataset, name__in=[name, mesh_layer_name(name)]):
                raise Conflict(f"A layer named {name!r} exists already.")
            shutil.rmtree(folder, ignore_errors=True)
            folder.mkdir(parents=True)
            shutil.copy2(checkpoint, folder / MODEL_FILE)
            fit_table = checkpoint.parent / FIT_TABLE_NAME
            if fit_table.is_file():
                shutil.copy2(fit_table, folder / fit_table.name)
            if (out / CELLS_FILE).is_file():  # what "Suggest next boxes" ranks boxes by
                shutil.copy2(out / CELLS_FILE, folder / CELLS_FILE)
            # A label image has no contrast window.
            fields = {**layer_fields(prefixed(labels_info, labels_rel)), "contrast_min": None,
                      "contrast_max": None}  # fmt: skip
            segmentation = Layer.objects.create(
                dataset=dataset, name=name, kind=LayerKind.SEGMENTATION, **fields
            )
            has_meshes = (out / MESHES_DIR / "info").is_file()
            if has_meshes:
                Layer.objects.create(
                    dataset=dataset,
                    name=mesh_layer_name(name),
                    kind=LayerKind.MESH,
                    source_layer=segmentation,
                    **mesh_layer_fields(segmentation, meshes_rel),
                )
            probability = out / PREDICTION_DIR / PROBABILITY_NAME
            if probability.is_dir():  # the map it segmented: mean probability per detection
                info, _ = read_ome_zarr_info(probability)
                fields = {**layer_fields(prefixed(info, probability_rel)), "contrast_min": 0.0}
                Layer.objects.create(
                    dataset=dataset,
                    name=f"{name}-probability",
                    kind=LayerKind.IMAGE,
                    source_layer=segmentation,
                    **{**fields, "contrast_max": 1.0},
                )
            for source, rel in (
                (out / SEGMENTATION_NAME, labels_rel),
                (out / MESHES_DIR, meshes_rel),
                (probability, probability_rel),
            ):
                if source.exists():
                    target = dataset.root / rel
                    target.parent.mkdir(parents=True, exist_ok=True)
                    os.rename(source, target)
                    moved.append((target, source))
            add_label_name(image_store, name)
            listed = True
            fitted = fitted_filter(metrics)
            if fitted is not None:
                # The fitted filter becomes the layer's: the detections table's filter flag
                # and a proofreading campaign's filter selection start from it.
                layer_filter_set(
                    segmentation,
                    run.owner,  # type: ignore[arg-type]  # None once the user was deleted
                    fitted,
                    source=selectors.fitted_source(run.pk),
                    check_permission=False,
                )
            current = (
                ModelVersion.objects.select_for_update()
                .filter(dataset=dataset, current=True)
                .first()
            )
            metrics["registry"] = current_decision(metrics, current)
            if current is not None and metrics["registry"]["current"]:
                ModelVersion.objects.filter(pk=current.pk).update(current=False)
            ModelVersion.objects.create(
                dataset=dataset,
                number=number,
                run=run,
                path=str(folder.relative_to(Path(settings.DATA_ROOT)) / MODEL_FILE),
                params={
                    "mode": run.mode,
                    "parent": parent_reference(run.parent),
                    "preset": run.preset,
                    "overrides": run.params,
                    "config": run.config,
                    "segment": metrics.get("train", {}).get("segment_params"),
                },
                metrics=metrics,
                layer=segmentation,
                current=metrics["registry"]["current"],
            )
            # In the transaction: whoever sees the run succeeded sees its last lines too.
            for warning in metrics["warnings"]:
                job_log(PipelineRun, run.pk, f"warning: {warning}")
            job_log(
                PipelineRun,
                run.pk,
                f"publish: {name}, {registry_text(number, metrics['registry'])}",
            )
            job_succeed(
                PipelineRun,
                attempt,
                result_layer=segmentation,
                metrics=metrics,
                stages=stages.done(run.stages, "publish"),
            )
    except BaseException:
        for target, back in reversed(moved):
            if os.path.lexists(target) and not os.path.lexists(back):
                os.rename(target, back)
        if listed:
            remove_label_name(image_store, name)
        shutil.rmtree(folder, ignore_errors=True)
        raise
    # Committed: the version row points at these files now, so nothing after this line may put
    # them back (a worker stopped after the commit once left a published layer with no files).
    transaction.on_commit(
        lambda: layers_changed.send(sender=Dataset, dataset=dataset, layers=[segmentation])
    )
    return segmentation
