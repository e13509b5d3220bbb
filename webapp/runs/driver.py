"""Drive a run through its stages: each call of :func:`advance` (the ``runs.advance`` task) goes
as far as it can and returns.

export -> train -> predict -> segment -> measure -> filter -> evaluate -> publish. The pipeline's
own ``run_pipeline`` does train..evaluate in the run's work directory, one step per call, so its
manifest is the truth about which step is done and a repeated call skips it. Prediction and
segmentation are saved plans run on the Celery workers (``CeleryPlanExecutor``): the call that
queues one returns at once, *releasing* the row (no worker holds it, stage names the step), and
the plan's last callback queues ``runs.advance`` again, which takes the row over (a released row
has no holder, so ``job_start`` takes it at once) and goes on.

Every end removes the work directory: success after publishing (the model file is copied into
the registry first), failure and cancellation through :func:`layout.stop_and_clean`, which
leaves it to the plans' callback while workers still write into it.
"""

from __future__ import annotations

import csv
import logging
import shutil
import threading
import traceback
from pathlib import Path
from typing import Any

from celery import signature
from django.utils import timezone

from pipeline.config import parse_config
from pipeline.errors import PipelineError
from pipeline.label_export import GroundTruthBox, export_training_labels
from pipeline.manifest import Manifest
from pipeline.plan import PlanFailed
from pipeline.run import PREDICTION_DIR, PROBABILITY_NAME, default_steps, run_pipeline
from pipeline.suggest import CELLS_FILE, cells_of_map
from webapp.annotation import selectors as annotation_selectors
from webapp.annotation.models import TaskBox
from webapp.core.errors import DomainError
from webapp.core.jobs.errors import JobCancelled, JobSuperseded
from webapp.core.jobs.lifecycle import Attempt, job_fail, job_log, job_release, job_start
from webapp.core.jobs.models import JobStatus
from webapp.core.jobs.plans import CeleryPlanExecutor
from webapp.core.jobs.progress import JobHeartbeat, JobProgressWriter
from webapp.core.jobs.queues import queue_for
from webapp.core.json_values import finite_json
from webapp.runs import layout, publish, stages
from webapp.runs.models import PipelineRun

logger = logging.getLogger(__name__)

ADVANCE_TASK = "runs.advance"
FAILURE = "The run failed because of an internal error ({kind}); its log has the details."
TRAIN_BOXES = "train_boxes.csv"
HELD_OUT_BOXES = "held_out_boxes.csv"


def advance(run_id: int) -> None:
    """Take the run as far as it goes now (module docstring)."""
    attempt = job_start(PipelineRun, run_id)
    if attempt is None:  # ended: a cancelled run's callback cleans up after its workers
        status = PipelineRun.objects.filter(pk=run_id).values_list("status", flat=True).first()
        if status in (JobStatus.CANCELLED, JobStatus.FAILED, None):
            layout.stop_and_clean(run_id)
        return
    writer = JobProgressWriter(PipelineRun, attempt)
    try:
        with JobHeartbeat(writer):
            _advance(attempt, writer)
    except JobSuperseded:
        logger.warning("run %s: attempt %d was taken over", run_id, attempt.number)
    except JobCancelled:
        logger.info("run %s: cancelled", run_id)
        job_log(PipelineRun, run_id, "cancelled: nothing published")
        _ended(run_id)
    except (PipelineError, DomainError, PlanFailed) as exc:
        # What the data or the request caused: the message says it; the traceback goes to the
        # server's log, not to the run's, which its starter reads.
        logger.info("run %s failed: %s", run_id, exc, exc_info=True)
        job_log(PipelineRun, run_id, f"failed: {exc}")
        job_fail(PipelineRun, attempt, error=str(exc))
        _ended(run_id)
    except Exception as exc:
        logger.exception("run %s failed", run_id)
        job_log(PipelineRun, run_id, f"failed: {type(exc).__name__}: {exc}")
        job_fail(
            PipelineRun,
            attempt,
            error=FAILURE.format(kind=type(exc).__name__),
            log=traceback.format_exc(),
        )
        _ended(run_id)


def _ended(run_id: int) -> None:
    """After a failure or cancellation: keep the training curves seen so far (the manifest
    goes with the work directory), then stop and clean."""
    fields: dict[str, Any] = {"finished": timezone.now()}
    history = layout.training_history(run_id)
    if history:
        fields["history"] = history
    PipelineRun.objects.filter(pk=run_id).update(**fields)
    layout.stop_and_clean(run_id)


def _stage(run: PipelineRun, name: str, **fields: Any) -> None:
    """Record a stage's state in the row (``stages`` JSON), fenced by nothing: only the attempt
    holding the row writes it; its start (or skip) goes to the run's log."""
    before = (run.stages.get(name) or {}).get("state")
    run.stages = stages.with_stage(run.stages, name, **fields)
    PipelineRun.objects.filter(pk=run.pk).update(stages=run.stages)
    # Logged once: each call of the driver (after each plan) records skipped stages again.
    if fields.get("state") in ("running", "skipped") and fields["state"] != before:
        job_log(
            PipelineRun,
            run.pk,
            f"{name}: {'started' if fields['state'] == 'running' else 'skipped'}",
        )


def _stage_done(run: PipelineRun, name: str, **fields: Any) -> None:
    run.stages = stages.done(run.stages, name, **fields)
    PipelineRun.objects.filter(pk=run.pk).update(stages=run.stages)
    entry = run.stages[name]
    seconds = entry.get("seconds")
    took = f" in {seconds:.1f} s" if isinstance(seconds, (int, float)) else ""
    summary = stage_summary(name, entry.get("metrics") or {})
    job_log(PipelineRun, run.pk, f"{name}: {entry['state']}{took}{summary}")


def stage_summary(name: str, metrics: dict[str, Any]) -> str:
    """What the log says of a finished stage besides its time: the figures a user checks first."""
    parts: list[str] = []
    if name == "train":
        if metrics.get("epochs") is not None:
            parts.append(f"{metrics['epochs']} epochs, kept epoch {metrics.get('best_epoch')}")
        if isinstance(metrics.get("best_val_f1"), (int, float)):
            parts.append(f"validation F1 {metrics['best_val_f1']:.3f}")
        for restart in metrics.get("restarts") or []:
            problems = "; ".join(restart.get("problems") or []) or "unhealthy"
            parts.append(f"restarted after attempt {restart.get('attempt')} ({problems})")
    elif name == "predict" and isinstance(metrics.get("distance_max_nm"), (int, float)):
        parts.append(f"largest predicted distance {metrics['distance_max_nm']:.0f} nm")
    elif name in ("segment", "measure") and metrics.get("objects") is not None:
        parts.append(f"{metrics['objects']} objects")
    elif name == "filter" and metrics.get("kept") is not None:
        parts.append(f"kept {metrics['kept']} of {metrics.get('objects')} objects")
        bounds = [
            f"{what} >= {metrics[key]:.3g}{unit}"
            for key, what, unit in (
                ("t_volume", "volume", " \u00b5m\u00b3"),
                ("t_sphericity", "sphericity", ""),
            )
            if isinstance(metrics.get(key), (int, float))
        ]
        if bounds:
            parts.append(" and ".join(bounds))
    return f": {', '.join(parts)}" if parts else ""


def _advance(attempt: Attempt, writer: JobProgressWriter) -> None:
    run = PipelineRun.objects.select_related(
        "dataset", "image_layer", "campaign", "parent__dataset"
    ).get(pk=attempt.job_id)
    if attempt.rescued:
        _restarted(run, attempt)
    work = layout.run_dir(run.pk)
    out = layout.out_dir(run.pk)
    if not run.ground_truth.get("boxes"):  # segments with a registered model, no campaign
        _stage(run, "export", state="skipped")
    elif (run.stages.get("export") or {}).get("state") != "done":
        _stage(run, "export", state="running", started=timezone.now().isoformat())
        writer("export", 0, 1)
        export_ground_truth(run, work)
        _stage_done(run, "export", done=1, total=1)
    config = pipeline_config(run, work)
    steps = run_steps(run, config)
    gpu = queue_for(run.config)
    routing = {"queue": gpu} if gpu else {}
    advance = signature(ADVANCE_TASK, args=(run.pk,), immutable=True, **routing)
    for step in steps:
        if (run.stages.get(step) or {}).get("state") in ("done", "skipped"):
            continue
        if (run.stages.get(step) or {}).get("state") != "running":
            _stage(run, step, state="running", started=timezone.now().isoformat())

        writer(step, 0, 0)
        report = StageReport(writer, step, run)
        # Prediction's items want the GPU; segmentation's are CPU work for any worker.
        plans = CeleryPlanExecutor(on_done=advance, queue=gpu if step == "predict" else None)
        result = run_pipeline(config, out, steps=[step], progress=report, plans=plans)
        record = Manifest.load_or_new(out).step(step)
        if result.waiting is not None:
            job_release(PipelineRun, attempt, stage=step)
            return
        state = "skipped" if step in result.skipped else "done"
        _stage_done(run, step, state=state, metrics=_plain(record.metrics, skip=("history",)))
        if step == "train":
            PipelineRun.objects.filter(pk=run.pk).update(
                history=finite_json(record.metrics.get("history") or [])
            )
    for step in ("filter", "evaluate"):
        if step not in steps:
            _stage(run, step, state="skipped")
    writer.check_cancelled()
    _stage(run, "publish", state="running", started=timezone.now().isoformat())
    writer("publish", 0, 0)  # reading the probability map: no count yet
    uncertainty_cells(out, StageReport(writer, "publish"))
    # The part above ended; the publication follows, a part with no count (a bar that went
    # back from "uncertainty: 4 / 4" to the stage's "0 / 1" looked like a restart).
    writer(stages.part_stage("publish", "layers"), 0, 0)
    publish.publish_run(run, out, attempt)
    shutil.rmtree(work, ignore_errors=True)


def _restarted(run: PipelineRun, attempt: Attempt) -> None:
    """A run whose worker was lost mid-stage (or fell silent past its lease) is taken over by
    a new attempt. A stage the driver runs itself (export, train ...) is done again: the log
    says so, and its time and ETA count from now (the last attempt's pace and the time its
    worker lay dead are no part of this one's). A stage whose plan the workers already run
    goes on where it stands (finished items are kept): the log says only who took over."""
    for name, entry in run.stages.items():
        if (entry or {}).get("state") != "running":
            continue
        lost = "the worker running it was lost"
        if layout.saved_plan(run.pk, name) is not None:
            job_log(PipelineRun, run.pk, f"{name}: taken over by attempt {attempt.number} ({lost})")
            continue
        fresh = {k: v for k, v in entry.items() if k != "pace"}
        fresh["started"] = timezone.now().isoformat()
        stages_now = {**run.stages, name: fresh}
        if PipelineRun.objects.filter(
            pk=run.pk, attempts=attempt.number, status=JobStatus.RUNNING
        ).update(stages=stages_now):
            run.stages = stages_now
            job_log(
                PipelineRun, run.pk, f"{name}: started again by attempt {attempt.number} ({lost})"
            )


def uncertainty_cells(out: Path, progress: Any) -> None:
    """The model's uncertainty over the image, summed per cell (``pipeline.suggest``), kept
    with the model so that "Suggest next boxes" answers at once whatever the image's size."""
    probability = out / PREDICTION_DIR / PROBABILITY_NAME
    target = out / CELLS_FILE
    if probability.is_dir() and not target.is_file():
        cells_of_map(probability, progress=progress).save(target)


class StageReport:
    """The pipeline's progress of a step, under the run's stage name. A step's parts with
    counts of their own (in train: the training steps, then predicting the validation boxes,
    fitting the segmentation settings; in measure: the objects' statistics, then their meshes)
    are named ("train · training steps", "measure · meshing") so the bar starts over under that name
    instead of showing a total that jumps, and each start is a log line ("measure: meshing
    (120)"), so a minute spent in a part says what it is doing.

    With ``run``, the first count of each part (or of the step) is recorded in the stage's
    entry (``pace``: when, and how many were done): the ETA is reckoned from there, not from
    the stage's start, whose set-up (reading the image, building patches, a first step that
    allocates) made the first ETA of a training several times too long."""

    def __init__(
        self, writer: JobProgressWriter, step: str, run: PipelineRun | None = None
    ) -> None:
        self.writer, self.step, self.run = writer, step, run
        self.part: str | None = None
        self.paced: str | None = None  # the part (or "") whose pace is recorded
        self.last_done = 0
        self.thread = threading.get_ident()

    def __call__(self, stage: str, done: int, total: int) -> None:
        named = stage not in (self.step, "")
        if named and stage != self.part:
            job_log(PipelineRun, self.writer.job_id, f"{self.step}: {stage} ({total})")
        self.part = stage
        self.writer(stages.part_stage(self.step, stage) if named else self.step, done, total)
        part = stage if named else ""
        if done < self.last_done:  # counting again (a training restarted from a new seed)
            self.paced = None
        self.last_done = done
        # Only from the thread that runs the step (the writer shares its own connection with
        # pool threads; this write does not need to come from them).
        on_step_thread = threading.get_ident() == self.thread
        if self.run is not None and done > 0 and self.paced != part and on_step_thread:
            self.paced = part
            self._record_pace({"part": part, "at": timezone.now().isoformat(), "done": done})

    def _record_pace(self, pace: dict[str, Any]) -> None:
        """Into the stage's entry, fenced to this attempt: a stale attempt (cancelled, taken
        over) must not write its copy of the stages over the row."""
        run = self.run
        assert run is not None
        run.stages = stages.with_stage(run.stages, self.step, pace=pace)
        PipelineRun.objects.filter(
            pk=run.pk, attempts=self.writer.attempt.number, status=JobStatus.RUNNING
        ).update(stages=run.stages)


def _plain(metrics: dict[str, Any], skip: tuple[str, ...]) -> dict[str, Any]:
    plain: dict[str, Any] = finite_json({k: v for k, v in metrics.items() if k not in skip})
    return plain


def export_ground_truth(run: PipelineRun, work: Path) -> None:
    """Write the snapshot's labels over the image grid and the training and held-out box
    tables into ``work/ground-truth`` (redone from scratch when an attempt died in it)."""
    target = work / layout.GROUND_TRUTH
    shutil.rmtree(target, ignore_errors=True)
    work.mkdir(parents=True, exist_ok=True)
    campaign = run.campaign
    if campaign is None:
        raise DomainError("The campaign of this run was deleted.")
    entries = run.ground_truth["boxes"]
    boxes = {b.pk: b for b in TaskBox.objects.filter(pk__in=[e["box"] for e in entries])}
    blobs = annotation_selectors.label_blobs(campaign.pk)
    chosen = []
    for entry in entries:
        box = boxes.get(entry["box"])
        if box is None:
            raise DomainError(f"Box {entry['name']} was deleted since the run started.")
        box.campaign = campaign
        chunks = {_chunk_index(k): v for k, v in entry["chunks"].items()}
        geometry = annotation_selectors.label_geometry(box)
        chosen.append(GroundTruthBox(entry["name"], geometry, chunks, blobs))
    export = export_training_labels(
        target, campaign.geometry["shape"], chosen, dims=run.image_layer.spatial_dims
    )
    held = {e["name"] for e in entries if e["held_out"]}
    with open(export.boxes) as handle:
        rows = list(csv.reader(handle))
    header, body = rows[0], rows[1:]
    name_at = header.index("name")
    for file_name, keep in ((TRAIN_BOXES, False), (HELD_OUT_BOXES, True)):
        with open(target / file_name, "w", newline="") as handle:
            writer = csv.writer(handle, lineterminator="\n")
            writer.writerow(header)
            writer.writerows(r for r in body if (r[name_at] in held) == keep)


def _chunk_index(key: str) -> tuple[int, int, int]:
    z, y, x = (int(n) for n in key.split("."))
    return z, y, x


def pipeline_config(run: PipelineRun, work: Path) -> Any:
    """The run's pipeline configuration: the preset and overrides (``run.config``) on the
    dataset's image and the exported ground truth (training boxes unless it only predicts);
    evaluation on the held-out boxes."""
    truth = work / layout.GROUND_TRUTH
    has_held_out = any(e["held_out"] for e in run.ground_truth["boxes"])
    data: dict[str, Any] = {"image": str(run.dataset.root / run.image_layer.path)}
    if run.mode != "predict":
        data |= {"labels": str(truth / "labels.ome.zarr"), "boxes": str(truth / TRAIN_BOXES)}
    document: dict[str, Any] = {**run.config, "data": data}
    channels = run.image_layer.channels
    if channels > 1 and run.mode == "train":
        # A multichannel image (immunofluorescence): the new U-Net reads every channel (a
        # fine-tune or a registered model keeps its own network's).
        document["model"] = {**(run.config.get("model") or {}), "in_channels": channels}
    if has_held_out:
        document["evaluate"] = {
            **(run.config.get("evaluate") or {}),
            "labels": str(truth / "labels.ome.zarr"),
            "boxes": str(truth / HELD_OUT_BOXES),
        }
    return parse_config(document, base=work, source=f"run {run.pk}")


def run_steps(run: PipelineRun, config: Any) -> list[str]:
    """The pipeline steps of the run: evaluation only on held-out boxes (on the training boxes
    it would flatter the model)."""
    steps = default_steps(config)
    if not any(e["held_out"] for e in run.ground_truth["boxes"]):
        steps = [s for s in steps if s != "evaluate"]
    return steps
