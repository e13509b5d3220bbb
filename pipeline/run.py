"""A whole pipeline run: train -> predict -> segment -> measure (mesh) -> filter -> evaluate.

Each step writes under the output directory and records in ``manifest.json`` a key: a digest of
its parameters, its input files' fingerprints and the keys of the steps it reads from. A rerun
skips a step whose key is unchanged and whose outputs exist; a step interrupted with the same key
is resumed (training from its last checkpoint, prediction skipping finished blocks); a step whose
key changed is redone from scratch, and so is everything after it (their keys change with it).
``steps`` runs a subset; a chosen step whose inputs come from an unchosen one uses that step's
recorded outputs and fails with a clear message when there are none.

Output layout: ``model/`` (training), ``prediction/{probability,distance}.ome.zarr``,
``segmentation.ome.zarr`` (label image), ``meshes/`` and ``detections.{csv,parquet}``,
``filter/thresholds.json``, ``evaluation/`` (per-box tables and summary, before and after the
filter), ``manifest.json``.
"""

from __future__ import annotations

import json
import math
import shutil
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from pipeline.config import STEPS, PipelineConfig, to_plain
from pipeline.errors import InvalidInputError
from pipeline.manifest import (
    Manifest,
    StepPending,
    StepTimer,
    code_version,
    digest_of,
    environment,
    fingerprint,
)
from pipeline.measure import DETECTIONS_NAME, MESHES_DIR, FilteredLabels, measure_labels
from pipeline.progress import ProgressCallback, no_progress
from pipeline.volumes import Volume, open_volume

if TYPE_CHECKING:
    from pipeline.plan import PlanExecutor
    from pipeline.training import TrainResult

MODEL_DIR = "model"
PREDICTION_DIR = "prediction"
DISTANCE_NAME = "distance.ome.zarr"
PROBABILITY_NAME = "probability.ome.zarr"
SEGMENTATION_NAME = "segmentation.ome.zarr"
SEGMENT_PLAN_DIR = "segment-plan"  # while segmenting: the plan, its markers and scratch labels
FILTER_DIR = "filter"
THRESHOLDS_JSON = "thresholds.json"
EVALUATION_DIR = "evaluation"
SUMMARY_JSON = "summary.json"


@dataclass(frozen=True)
class RunResult:
    """What :func:`run_pipeline` did and where the results are."""

    out_dir: Path
    manifest_path: Path
    ran: list[str]
    skipped: list[str]
    outputs: dict[str, str] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)
    #: the step whose plan runs on other processes (``plans`` executor): call again when it ends
    waiting: str | None = None


def _per_axis(values: tuple[int, ...], ndim: int, name: str) -> tuple[int, ...]:
    if len(values) == 1:
        return values * ndim
    if len(values) != ndim:
        raise InvalidInputError(f"{name} has {len(values)} values for {ndim}D data")
    return values


def _read_boxes(
    path: Path, shape: tuple[int, ...], voxel_size: tuple[float, ...] | None = None
) -> list[Any]:
    from pipeline.box_table import box_table_read

    return box_table_read(path, shape=shape, voxel_size=voxel_size)


def _fingerprint_volume(path: Path) -> dict[str, Any]:
    """:func:`fingerprint` of a volume's file; an HDF5 volume's also names its dataset."""
    from pipeline.volumes import split_hdf5_path

    hdf5 = split_hdf5_path(path)
    if hdf5 is None:
        return fingerprint(path)
    return {**fingerprint(hdf5[0]), "dataset": hdf5[1]}


def _check_ground_truth(
    labels: Volume, shape: tuple[int, ...], boxes: list[Any], what: str
) -> None:
    if tuple(labels.array.shape) != shape:
        raise InvalidInputError(
            f"{what} shape {tuple(labels.array.shape)} differs from the image's {shape}"
        )
    if not any(np.any(np.asarray(labels.array[box.slices()])) for box in boxes):
        raise InvalidInputError(f"empty ground truth: no labelled voxel of {what} in any box")


def _finite_or_none(value: float) -> float | None:
    """JSON has no NaN: an unmeasured figure is null."""
    return float(value) if math.isfinite(value) else None


def _json_row(row: Any) -> dict[str, float | None]:
    return {str(k): _finite_or_none(float(v)) for k, v in row.items()}


def _train_metrics(result: TrainResult) -> dict[str, Any]:
    """The train step's manifest metrics: the kept epoch, its scores, restarts, the history."""
    return {
        "best_val_loss": float(result.best_val_loss),
        "epochs": int(result.epochs),
        "best_epoch": int(result.best_epoch),
        "best_val_f1": _finite_or_none(result.best_val_f1),
        "val_objects": _finite_or_none(result.val_objects),
        "seed_threshold_nm": _finite_or_none(result.seed_threshold_nm),
        "attempts": int(result.attempts),
        "restarts": [r.to_dict() for r in result.restarts],
        "history": [_json_row(row) for row in result.history],
    }


class _Run:
    """State shared by the steps of one run."""

    def __init__(
        self,
        config: PipelineConfig,
        out_dir: Path,
        steps: Sequence[str],
        progress: ProgressCallback,
        plans: PlanExecutor | None = None,
    ) -> None:
        self.config = config
        self.plans = plans
        self.out = out_dir
        self.steps = list(steps)
        self.progress = progress
        self.manifest = Manifest.load_or_new(out_dir)
        self.ran: list[str] = []
        self.skipped: list[str] = []
        self.keys: dict[str, str] = {}
        channels = config.model.unet.in_channels
        self.image = open_volume(
            config.data.image, config.data.level, config.data.voxel_size, channels=channels
        )
        if self.image.voxel_size is None:
            raise InvalidInputError(
                f"image {config.data.image.name} records no voxel size: give data.voxel_size"
            )
        self.voxel_size: tuple[float, ...] = self.image.voxel_size
        # Channels come first in an image for a model with in_channels > 1.
        self.shape = tuple(int(n) for n in self.image.array.shape)[1 if channels > 1 else 0 :]
        self.ndim = len(self.shape)
        self.gt: Volume | None = None
        self.gt_boxes: list[Any] = []
        if config.gt_labels is not None and config.gt_boxes is not None:
            self.gt = open_volume(config.gt_labels, config.data.level, None, "ground-truth labels")
            self.gt_boxes = _read_boxes(config.gt_boxes, self.shape, self.voxel_size)
        self.inputs_fp: dict[str, Any] = {
            name: _fingerprint_volume(p)
            for name, p in (
                ("image", config.data.image),
                ("labels", config.data.labels),
                ("boxes", config.data.boxes),
                ("model", config.model.path),
                ("mask", config.predict.mask),
                ("filter_tp", config.filter.tp),
                ("filter_fp", config.filter.fp),
                ("gt_labels", config.gt_labels),
                ("gt_boxes", config.gt_boxes),
            )
            if p is not None
        }
        if config.data.semantic:
            self.inputs_fp["semantic"] = {
                k: _fingerprint_volume(p) for k, p in sorted(config.data.semantic.items())
            }
        if config.data.images:
            self.inputs_fp["training_images"] = [
                {
                    "image": _fingerprint_volume(entry.image),
                    "labels": _fingerprint_volume(entry.labels),
                    "boxes": fingerprint(entry.boxes),
                    "semantic": {
                        k: _fingerprint_volume(p) for k, p in sorted((entry.semantic or {}).items())
                    },
                    "voxel_size": entry.voxel_size,
                    "level": entry.level,
                }
                for entry in config.data.images
            ]

    # -- bookkeeping ---------------------------------------------------------------------------

    def execute(
        self,
        name: str,
        key_parts: dict[str, Any],
        outputs: list[Path],
        body: Callable[[Any, bool], None],
    ) -> None:
        """Run ``body(record, resume)`` unless the step is up to date; record its key."""
        key = digest_of(key_parts)
        self.keys[name] = key
        record = self.manifest.step(name)
        up_to_date = record.key == key and all(p.exists() for p in outputs)
        if name not in self.steps:
            if not (record.status in ("done", "skipped") and up_to_date):
                raise InvalidInputError(
                    f"step {name!r} is not selected and has no up-to-date outputs in {self.out}: "
                    f"include it in the steps"
                )
            return
        if record.status in ("done", "skipped") and up_to_date:
            record.status = "skipped"
            self.skipped.append(name)
            self.manifest.save()
            return
        resume = record.key == key and record.status in ("running", "failed")
        if not resume:
            for path in outputs:
                if path.is_dir():
                    shutil.rmtree(path)
                elif path.exists():
                    path.unlink()
        with StepTimer(self.manifest, name, key) as rec:
            body(rec, resume)
            rec.outputs.update({p.name: str(p) for p in outputs if p.exists()})
        self.ran.append(name)

    def executor(self, workers: int) -> ProcessPoolExecutor | None:
        return ProcessPoolExecutor(max_workers=workers) if workers > 1 else None

    # -- steps ---------------------------------------------------------------------------------

    def model_path(self) -> Path:
        if self.config.model.path is not None:
            return self.config.model.path
        return Path(self.manifest.step("train").outputs.get("best_checkpoint", ""))

    def train(self) -> None:
        config = self.config
        if config.model.path is not None:
            self.keys["train"] = digest_of({"model": self.inputs_fp["model"]})
            if "train" in self.steps:
                record = self.manifest.step("train")
                record.status, record.key = "skipped", self.keys["train"]
                record.outputs = {"best_checkpoint": str(config.model.path)}
                self.skipped.append("train")
            return
        from pipeline.training_set import training_boxes as read_training_set

        images = config.training_images()
        if not images:
            raise InvalidInputError(
                "training needs data.labels and data.boxes, or data.images (or give model.path)"
            )
        training_boxes, _ = read_training_set(images, channels=config.model.unet.in_channels)
        train_config = config.train_config(self.voxel_size, training_boxes)
        training = to_plain(train_config)
        if not training.get("ema_decay"):  # off: older keys stay valid
            training.pop("ema_decay", None)
        parts: dict[str, Any] = {
            "training": training,
            **{k: self.inputs_fp.get(k) for k in ("image", "labels", "boxes")},
        }
        for key in ("semantic", "training_images"):  # only when used: older keys stay valid
            if key in self.inputs_fp:
                parts[key] = self.inputs_fp[key]
        model_dir = self.out / MODEL_DIR

        def body(record: Any, resume: bool) -> None:
            from pipeline.training import train

            history: list[dict[str, float | None]] = []

            def on_epoch(row: Any) -> None:
                # Each epoch's row as it comes (the site plots them live).
                history.append(_json_row(row))
                record.metrics["history"] = history
                self.manifest.save()

            result = train(
                training_boxes,
                train_config,
                model_dir,
                resume=resume,
                progress=self.progress,
                metrics=on_epoch,
            )
            record.outputs["best_checkpoint"] = str(result.best_checkpoint)
            record.metrics.update(_train_metrics(result))
            record.metrics.update(
                fit_and_record(
                    result.best_checkpoint,
                    training_boxes,
                    train_config,
                    self.progress,
                    flips=config.predict.flips,
                )
            )

        self.execute("train", parts, [model_dir], body)
        if "best_checkpoint" not in self.manifest.step("train").outputs:
            raise InvalidInputError("training recorded no checkpoint: rerun the train step")

    def predict(self) -> None:
        config = self.config
        out = self.out / PREDICTION_DIR
        parts = {
            "train": self.keys["train"],
            "image": self.inputs_fp["image"],
            "mask": self.inputs_fp.get("mask"),
            "predict": to_plain(config.predict),
            "level": config.data.level,
        }

        def body(record: Any, resume: bool) -> None:
            from pipeline.predict import predict_volume

            mask = None
            if config.predict.mask is not None:
                mask = open_volume(config.predict.mask, 0, None, "mask").array
            if self.plans is not None:
                self._predict_planned(self.plans, out, mask, record)
                return
            executor = self.executor(config.predict.workers)
            try:
                result = predict_volume(
                    self.model_path(),
                    self.image.array,
                    out,
                    executor=executor,
                    progress=self.progress,
                    **self._predict_options(mask),
                )
            finally:
                if executor is not None:
                    executor.shutdown()
            record.metrics.update(
                {
                    "blocks_done": result.blocks_done,
                    "blocks_skipped": result.blocks_skipped,
                    "blocks_resumed": result.blocks_resumed,
                    "block_shape": list(result.block_shape),
                    "distance_max_nm": _finite_or_none(result.distance_max_nm),
                }
            )

        self.execute("predict", parts, [out], body)

    def _predict_options(self, mask: Any) -> dict[str, Any]:
        """The prediction settings that ``predict_volume`` and ``plan_predict`` share."""
        predict = self.config.predict
        block = predict.block
        return {
            "block_shape": None if block is None else _per_axis(block, self.ndim, "predict.block"),
            "mask": mask,
            "voxel_size": self.voxel_size,
            "batch_size": predict.batch_size,
            "compile": predict.compile,
            "num_threads": predict.num_threads,
            "device": predict.device,
            "flips": predict.flips,
        }

    def _predict_planned(self, plans: PlanExecutor, out: Path, mask: Any, record: Any) -> None:
        """Prediction as a saved plan run by ``plans`` (the site's workers), which may return
        before it ends: :class:`pipeline.plan.PlanPending` then leaves the step running."""
        from pipeline.plan import execute_plan
        from pipeline.predict import plan_predict, recorded_distance_max

        config = self.config
        plan = plan_predict(
            self.model_path(),
            config.data.image,
            out,
            level=config.data.level,
            for_workers=True,
            **self._predict_options(mask),
        )
        execute_plan(plans, plan, self.progress)
        record.metrics.update(
            {
                "blocks_done": sum(len(g) for g in plan.groups),
                "block_shape": list(plan.grid.block_shape),
                "distance_max_nm": _finite_or_none(recorded_distance_max(plan.done_dir)),
            }
        )

    def segment_params(self) -> Any:
        """The seeded-watershed settings: see :class:`pipeline.config.SegmentConfig`."""
        from pipeline.model_io import model_segment_params
        from pipeline.segment_params import choose_segment_params, derive_segment_params

        config = self.config.segment
        model = self.model_path()
        gt, boxes = self.gt, self.gt_boxes

        def derive() -> Any:
            assert gt is not None
            labels = [np.asarray(gt.array[box.slices()]) for box in boxes]
            return derive_segment_params(labels, self.voxel_size)

        return choose_segment_params(
            config.preset,
            model=model_segment_params(model) if model.is_file() else None,
            model_name=f"model {model.name}",
            derive=derive if gt is not None else None,
            seed_threshold_nm=config.seed_threshold,
            smooth_nm=config.smooth_nm,
            min_seed_voxels=config.min_seed_voxels,
            seed_dynamic_nm=config.seed_dynamic_nm,
        )

    def segment(self) -> None:
        config = self.config
        out = self.out / SEGMENTATION_NAME
        chosen = self.segment_params()
        params = chosen.params
        parts = {
            "predict": self.keys["predict"],
            "segment": to_plain(config.segment),
            "params": params.to_dict(),
        }

        def body(record: Any, resume: bool) -> None:
            from pipeline.plan import (
                ArrayRef,
                LocalExecutor,
                execute_plan,
                load_plan,
                mark_finished,
                restart_plan,
                save_plan,
            )
            from pipeline.segment import SegmentPlan, plan_segment

            work = self.out / SEGMENT_PLAN_DIR
            planned = resume and out.exists() and (work / "plan.json").is_file()
            if planned and self.plans is not None:
                plan = load_plan(work)  # running on workers, or finished there
                assert isinstance(plan, SegmentPlan)
            elif planned:
                plan = load_plan(work)  # an interrupted segmentation: finished blocks stay
                assert isinstance(plan, SegmentPlan)
            else:
                for path in (out, work):
                    if path.exists():
                        shutil.rmtree(path)
                halo = config.segment.halo
                plan = plan_segment(
                    ArrayRef(str(self.out / PREDICTION_DIR / DISTANCE_NAME)),
                    out,
                    work,
                    block_shape=_per_axis(config.segment.block, self.ndim, "segment.block"),
                    halo=None if halo is None else _per_axis(halo, self.ndim, "segment.halo"),
                    voxel_size=self.voxel_size,
                    seed_threshold=params.seed_threshold_nm,
                    min_seed_voxels=params.min_seed_voxels,
                    smooth_nm=params.smooth_nm,
                    seed_dynamic_nm=params.seed_dynamic_nm,
                    iou_threshold=config.segment.iou_threshold,
                )
                save_plan(plan)
            if self.plans is not None:
                execute_plan(self.plans, plan, self.progress)
            else:
                restart_plan(work)
                executor = self.executor(config.segment.workers)
                try:
                    LocalExecutor(executor).execute(plan, self.progress)
                finally:
                    if executor is not None:
                        executor.shutdown()
                mark_finished(work)
            summary = plan.summary()
            shutil.rmtree(work)  # its scratch labels are as large as the output
            record.metrics.update(
                {
                    "objects": summary["objects"],
                    "block_segments": summary["segments"],
                    "merged": summary["merged"],
                    "params": chosen.to_dict(),
                }
            )

        self.execute("segment", parts, [out], body)

    def _not_for_2d(self, name: str, upstream: str) -> bool:
        """Meshes, sphericity and their filter are 3D: a 2D run passes over them."""
        if self.ndim == 3:
            return False
        self.keys[name] = digest_of({upstream: self.keys[upstream], "2d": True})
        if name in self.steps:
            record = self.manifest.step(name)
            record.status, record.key = "skipped", self.keys[name]
            record.metrics = {"reason": "2D image: no meshes or volume/sphericity filter"}
            self.skipped.append(name)
        return True

    def measure(self) -> None:
        if self._not_for_2d("measure", "segment"):
            return
        parts = {"segment": self.keys["segment"], "mesh": to_plain(self.config.mesh)}
        outputs = [self.out / MESHES_DIR, self._detections("csv"), self._detections("parquet")]

        def body(record: Any, resume: bool) -> None:
            probability = self.out / PREDICTION_DIR / PROBABILITY_NAME
            result = measure_labels(
                self.out / SEGMENTATION_NAME,
                self.out,
                simplify_ratio=self.config.mesh.simplify_ratio,
                # The map segmented: each object's mean probability in its segment properties.
                probability_path=probability if probability.is_dir() else None,
                progress=self.progress,
            )
            record.metrics["objects"] = result.n_objects

        self.execute("measure", parts, outputs, body)

    def _detections(self, suffix: str) -> Path:
        return self.out / f"{DETECTIONS_NAME}.{suffix}"

    def filter(self) -> None:
        if self._not_for_2d("filter", "measure"):
            return
        config = self.config.filter
        parts: dict[str, Any] = {"measure": self.keys["measure"], "filter": to_plain(config)}
        if config.method == "tables":
            parts["tables"] = [self.inputs_fp.get("filter_tp"), self.inputs_fp.get("filter_fp")]
        if config.method == "ground_truth":
            parts["gt"] = [self.inputs_fp.get("gt_labels"), self.inputs_fp.get("gt_boxes")]
        out = self.out / FILTER_DIR

        def body(record: Any, resume: bool) -> None:
            from pipeline.measure import write_detections

            table = pd.read_parquet(self._detections("parquet"))
            t_volume, t_sphericity, details = self._thresholds(table)
            out.mkdir(parents=True, exist_ok=True)
            write_detections(table.drop(columns="kept"), self.out, t_volume, t_sphericity)
            kept = pd.read_parquet(self._detections("parquet"))["kept"]
            summary = {
                "method": config.method,
                "t_volume": t_volume,
                "t_sphericity": t_sphericity,
                "objects": len(kept),
                "kept": int(kept.sum()),
                **details,
            }
            (out / THRESHOLDS_JSON).write_text(json.dumps(summary, indent=2) + "\n")
            record.metrics.update(summary)

        self.execute("filter", parts, [out], body)

    def _thresholds(self, table: pd.DataFrame) -> tuple[float | None, float | None, dict[str, Any]]:
        config = self.config.filter
        if config.method == "none":
            return None, None, {}
        if config.method == "fixed":
            return config.t_volume, config.t_sphericity, {}
        from pipeline.thresholds import fit_thresholds, labelled_table

        if config.method == "tables":
            from pipeline.commands.fit_thresholds import read_table

            assert config.tp is not None and config.fp is not None
            labelled = labelled_table(read_table(config.tp, "TP"), read_table(config.fp, "FP"))
        else:
            labelled = self._labelled_detections(table)
        n_boxes = labelled["box"].nunique()
        fit = fit_thresholds(
            labelled, n_folds=min(config.folds, n_boxes), min_recall=config.min_recall
        )
        details = {
            "labelled_tp": int(labelled["is_tp"].sum()),
            "labelled_fp": int((~labelled["is_tp"]).sum()),
        }
        return fit.t_volume, fit.t_sphericity, details

    def _labelled_detections(self, table: pd.DataFrame) -> pd.DataFrame:
        """The run's detections in the ground-truth boxes, as TP (matched) or FP (centred in it)."""
        from pipeline.evaluation import match_objects

        if self.gt is None:
            raise InvalidInputError(
                "filter method 'ground_truth' needs ground-truth labels and boxes"
            )
        pred = open_volume(self.out / SEGMENTATION_NAME, 0, self.voxel_size, "segmentation")
        rows = []
        by_id = table.set_index("id")
        centroids = by_id[["centroid_z", "centroid_y", "centroid_x"]].to_numpy()
        for box in self.gt_boxes:
            region = box.slices()
            matching = match_objects(
                np.asarray(pred.array[region]), np.asarray(self.gt.array[region])
            )
            tp = set(matching.matched_ids_pred.tolist())
            lo = np.asarray(box.start, dtype=np.float64) - 0.5
            hi = lo + np.asarray(box.size)
            inside = np.all((centroids >= lo) & (centroids < hi), axis=1)
            for object_id in by_id.index[inside].tolist() + sorted(tp):
                rows.append((int(object_id), box.name, object_id in tp))
        if not rows:
            raise InvalidInputError("no detection lies in any ground-truth box: nothing to fit")
        labelled = pd.DataFrame(rows, columns=["id", "box", "is_tp"]).drop_duplicates("id")
        labelled = labelled.join(by_id[["volume", "sphericity"]], on="id")
        labelled = labelled[np.isfinite(labelled["sphericity"])]
        if not labelled["is_tp"].any():
            raise InvalidInputError("no detection matches the ground truth: nothing to fit")
        return labelled.reset_index(drop=True)

    def _head_scores(self, instances: dict[str, Any]) -> dict[str, dict[str, Any]]:
        """Per head: object- and pixel-level Dice of the instances and of each semantic head that
        has a ground-truth mask (``data.semantic``; its objects are connected components)."""
        from pipeline.evaluation import semantic_dice

        scores: dict[str, dict[str, Any]] = {
            "instances": {
                "dice_object": instances.get("dice_object_mean_over_boxes"),
                "dice_pixel": instances.get("dice_pixel"),
            }
        }
        for head, gt_path in sorted(_semantic_gt(self.config).items()):
            predicted = self.out / PREDICTION_DIR / f"{head}.ome.zarr"
            if not predicted.exists():
                continue
            pred = open_volume(predicted, 0, self.voxel_size, f"{head} prediction")
            gt = open_volume(gt_path, self.config.data.level, None, f"{head} mask")
            _, head_scores = semantic_dice(pred.array, gt.array, self.gt_boxes)
            scores[head] = {
                "dice_pixel": head_scores["dice_pixel"],
                "dice_object": head_scores["dice_object_mean_over_boxes"],
            }
        return scores

    def evaluate(self) -> None:
        config = self.config.evaluate
        out = self.out / EVALUATION_DIR
        parts = {
            "filter": self.keys["filter"],
            "evaluate": to_plain(config),
            "gt": [self.inputs_fp.get("gt_labels"), self.inputs_fp.get("gt_boxes")],
        }
        if "semantic" in self.inputs_fp:
            parts["semantic"] = self.inputs_fp["semantic"]

        def body(record: Any, resume: bool) -> None:
            from pipeline.evaluation import evaluate_boxes

            assert self.gt is not None
            pred = open_volume(self.out / SEGMENTATION_NAME, 0, self.voxel_size, "segmentation")
            out.mkdir(parents=True, exist_ok=True)
            summary: dict[str, Any] = {}
            variants: list[tuple[str, Any]] = [("all", pred.array)]
            if self.ndim == 3:
                kept_ids = pd.read_parquet(self._detections("parquet")).query("kept")["id"]
                variants.append(("filtered", FilteredLabels(pred.array, kept_ids.to_numpy())))
            for name, labels in variants:
                table, scores = evaluate_boxes(
                    labels,
                    self.gt.array,
                    self.gt_boxes,
                    voxel_size_nm=self.voxel_size,
                    margin_um=config.margin_um,
                    iou_threshold=config.iou_threshold,
                    progress=self.progress,
                )
                table.to_csv(out / f"per_box_{name}.csv", index=False)
                summary[name] = {k: None if math.isnan(v) else v for k, v in scores.items()}
            summary["heads"] = self._head_scores(summary["all"])
            (out / SUMMARY_JSON).write_text(json.dumps(summary, indent=2) + "\n")
            record.metrics.update(
                {
                    f"{name}_{k}": summary[name][k]
                    for name in ("all", "filtered")
                    if name in summary
                    for k in ("precision", "recall", "f1")
                }
            )
            for head, scores in summary["heads"].items():
                for k, v in scores.items():
                    record.metrics[f"{head}_{k}"] = v

        self.execute("evaluate", parts, [out], body)


def fit_and_record(
    model_path: Path,
    boxes: Sequence[Any],
    train_config: Any,
    progress: ProgressCallback,
    flips: bool | None = None,
) -> dict[str, Any]:
    """Fit the segmentation settings on the validation boxes, record them in the model file and
    write the table of tried values next to it; returns what the manifest keeps. ``flips``: as
    the prediction the settings will serve (None: the default for the model's dimensions)."""
    from pipeline.segment_fit import FIT_TABLE_NAME, fit_model_segment_params, write_fit_table

    fit = fit_model_segment_params(model_path, boxes, train_config, progress=progress, flips=flips)
    write_fit_table(fit, model_path.parent / FIT_TABLE_NAME)
    return {"segment_params": fit.params.to_dict(), "segment_fit": fit.to_dict()}


def _semantic_gt(config: PipelineConfig) -> dict[str, Path]:
    """Ground-truth masks of the semantic heads for the image segmented: ``data.semantic``."""
    return dict(config.data.semantic or {})


def default_steps(config: PipelineConfig) -> list[str]:
    """Every step, but evaluation only when there is ground truth to evaluate against."""
    has_gt = config.gt_labels is not None and config.gt_boxes is not None
    return [s for s in STEPS if s != "evaluate" or has_gt]


def run_pipeline(
    config: PipelineConfig,
    out_dir: Path | None = None,
    *,
    steps: Sequence[str] | None = None,
    progress: ProgressCallback = no_progress,
    plans: PlanExecutor | None = None,
) -> RunResult:
    """Run (or resume) the pipeline described by ``config`` into ``out_dir``.

    ``plans``: run prediction and segmentation as saved plans on this executor (the site's
    Celery workers) instead of in this process. When it returns before a plan ends, so does
    this, with ``waiting`` naming the step: calling again once the plan finished goes on.
    """
    out = Path(out_dir) if out_dir is not None else config.out
    if out is None:
        raise InvalidInputError("no output directory: give one (--out) or set 'out' in the config")
    chosen = list(default_steps(config) if steps is None else steps)
    unknown = [s for s in chosen if s not in STEPS]
    if unknown:
        raise InvalidInputError(f"unknown step(s) {', '.join(unknown)}; steps: {', '.join(STEPS)}")
    if "evaluate" in chosen and (config.gt_labels is None or config.gt_boxes is None):
        raise InvalidInputError(
            "evaluation needs ground-truth labels and boxes (evaluate.labels/"
            "boxes or data.labels/boxes)"
        )
    has_gt = config.gt_labels is not None and config.gt_boxes is not None
    if config.filter.method == "ground_truth" and "filter" in chosen and not has_gt:
        raise InvalidInputError("filter method 'ground_truth' needs ground-truth labels and boxes")
    out.mkdir(parents=True, exist_ok=True)
    run = _Run(config, out, chosen, progress, plans)
    if run.gt is not None:
        _check_ground_truth(run.gt, run.shape, run.gt_boxes, "ground-truth labels")
    manifest = run.manifest
    manifest.parameters = config.parameters()
    manifest.inputs = dict(run.inputs_fp)
    if config.source is not None:
        manifest.inputs["config"] = fingerprint(config.source)
    manifest.code = code_version()
    manifest.environment = environment()
    manifest.save()
    last = max(STEPS.index(s) for s in chosen) if chosen else -1
    for name in STEPS[: last + 1]:
        try:
            getattr(run, name)()
        except StepPending:
            manifest.save()
            return RunResult(out, manifest.path, run.ran, run.skipped, waiting=name)
    manifest.save()
    outputs: dict[str, str] = {}
    metrics: dict[str, Any] = {}
    for name in STEPS[: last + 1]:
        record = manifest.step(name)
        outputs.update({f"{name}.{k}": str(v) for k, v in record.outputs.items()})
        metrics.update({f"{name}.{k}": v for k, v in record.metrics.items()})
    return RunResult(out, manifest.path, run.ran, run.skipped, outputs, metrics)
