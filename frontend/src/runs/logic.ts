// What the run page and the Retrain panel say about a run, without the DOM (unit-tested):
// status and stage captions, times left, the training curves as uPlot's columns, the held-out
// evaluation's rows, the overrides read from the form.

import type { Schemas } from "../lib/api";
import { formatDuration } from "../lib/format";

export type Run = Schemas["Run"];
export type Stage = Schemas["RunStage"];
export type Override = Schemas["RunOverride"];

const ACTIVE = new Set(["queued", "running", "retrying"]);

/** The run still changes: poll it. */
export function isActive(run: Pick<Run, "status">): boolean {
  return ACTIVE.has(run.status);
}

/** "about 2 min left" from a stage's ETA (an ISO time), "" when unknown. */
export function etaText(eta: string | null | undefined, now: Date): string {
  if (!eta) return "";
  const end = Date.parse(eta);
  if (Number.isNaN(end)) return "";
  const left = (end - now.getTime()) / 1000;
  if (left <= 1) return "finishing";
  // An estimate: whole minutes from one minute on (a clock's "2 min 07 s" would claim more);
  // 59.6 s is "1 min", not "60 s".
  const seconds = Math.round(left);
  const minutes = Math.round(left / 60);
  const text =
    seconds < 60
      ? `${seconds} s`
      : minutes < 60
        ? `${minutes} min`
        : formatDuration(Math.max(left, 3600));
  return `about ${text} left`;
}

/** How full a stage's bar is, 0-100; null while a running stage's total is unknown. */
export function stagePercent(stage: Pick<Stage, "state" | "done" | "total">): number | null {
  if (stage.state === "done" || stage.state === "skipped") return 100;
  if (stage.state === "pending") return 0;
  if (stage.total > 0) return Math.min(100, (100 * stage.done) / stage.total);
  return stage.state === "running" ? null : 0;
}

/** The words beside a stage's bar. */
export function stageCaption(stage: Stage, now: Date): string {
  const counts = stage.total > 0 ? `${stage.done} / ${stage.total}` : "";
  switch (stage.state) {
    case "pending":
      return "pending";
    case "skipped":
      return "skipped";
    case "done":
      return stage.seconds === null ? "done" : `done in ${formatDuration(stage.seconds)}`;
    case "stopped":
      return counts ? `stopped at ${counts}` : "stopped";
    default: {
      const eta = etaText(stage.eta, now);
      const part = stage.part ? `${stage.part}: ` : "";
      return [part + (counts || "running…"), eta].filter(Boolean).join(" · ");
    }
  }
}

/** The run is training (setting up, or counting its steps): epochs are still to come. The
 * train stage's later parts (predicting the validation boxes, the fit) add none. The part's
 * name is the pipeline's (pipeline/progress.py TRAINING_STEPS), after the site's separator
 * (webapp/runs/stages.py SUBSTEP). */
export function trainingSteps(run: Pick<Run, "stage">): boolean {
  return run.stage === "train" || run.stage === "train · training steps";
}

/** The run's status in words (the header badge). */
export function statusText(run: Pick<Run, "state" | "stage">): string {
  switch (run.state) {
    case "queued":
      return "Queued: waiting for a worker";
    case "running":
      return run.stage ? `Running: ${run.stage}` : "Running";
    case "retrying":
      return `Retrying${run.stage ? `: ${run.stage}` : ""} (its worker was lost)`;
    case "succeeded":
      return "Succeeded";
    case "cancelled":
      return "Cancelled";
    default:
      return "Failed";
  }
}

/** The running stage's time left, for the Progress heading ("" when none is known). */
export function runEtaText(run: Pick<Run, "stages" | "status">, now: Date): string {
  if (!isActive(run)) return "";
  const running = run.stages.find((s) => s.state === "running");
  const eta = running ? etaText(running.eta, now) : "";
  // The part it counts, when named: "train · training steps: about 40 s left" must not read
  // as the whole stage's time left (predicting and fitting follow the steps).
  const what = running?.part ? `${running.name} · ${running.part}` : running?.name;
  return running && eta ? `${what}: ${eta}` : "";
}

/** The ground truth in words: "5 boxes: 4 to train on, 1 held out for evaluation (b3)". */
export function boxesText(boxes: readonly Record<string, unknown>[]): string {
  if (!boxes.length) return "–";
  const held = boxes.filter((b) => b["held_out"] === true);
  const names = held.map((b) => String(b["name"] ?? b["box"])).join(", ");
  const n = boxes.length;
  return (
    `${n} box${n === 1 ? "" : "es"}: ${n - held.length} to train on, ` +
    (held.length ? `${held.length} held out for evaluation (${names})` : "none held out")
  );
}

/** The viewer's URL showing the run's published layer alone among the segmentations. */
export function viewerLink(viewerUrl: string, layer: string): string {
  return `${viewerUrl}?show=${encodeURIComponent(layer)}`;
}

export interface Curves {
  epochs: number[];
  train: (number | null)[];
  val: (number | null)[];
  f1: (number | null)[];
  /** Whether any epoch has a validation F1 (a second axis, 0-1). */
  hasF1: boolean;
  /** Training restarts before the attempt shown (its health check failed). */
  restarts: number;
}

function finite(value: unknown): number | null {
  return typeof value === "number" && Number.isFinite(value) ? value : null;
}

/** uPlot's columns of the training history: the latest attempt's epochs (a restarted
 * training starts its curves again), in epoch order. */
export function curveData(history: readonly Record<string, unknown>[]): Curves {
  const attemptOf = (row: Record<string, unknown>): number => finite(row["attempt"]) ?? 0;
  const last = history.reduce((a, row) => Math.max(a, attemptOf(row)), 0);
  const rows = history
    .map((row, i) => ({ row, x: finite(row["epoch"]) ?? i }))
    .filter(({ row }) => attemptOf(row) === last)
    .sort((a, b) => a.x - b.x);
  const f1 = rows.map(({ row }) => finite(row["val_f1"]));
  return {
    epochs: rows.map(({ x }) => x),
    train: rows.map(({ row }) => finite(row["train_loss"])),
    val: rows.map(({ row }) => finite(row["val_loss"])),
    f1,
    hasF1: f1.some((v) => v !== null),
    restarts: last,
  };
}

export interface EvaluationRow {
  name: string;
  label: string;
  cells: string[];
}

/** 0.8125 -> "0.812"; null -> "–". */
export function formatScore(value: unknown, digits = 3): string {
  const v = finite(value);
  return v === null ? "–" : v.toFixed(digits);
}

function formatCount(value: unknown): string {
  const v = finite(value);
  return v === null ? "–" : String(Math.round(v));
}

const VARIANTS: [string, string][] = [
  ["all", "All segmented"],
  ["filtered", "Kept by the filter"],
];

/** The held-out evaluation's table (`metrics.evaluation`): boxes, precision, recall, F1, true
 * and false positives, missed, voxel Dice; [] before the run evaluated. */
export function evaluationRows(metrics: unknown): EvaluationRow[] {
  const evaluation = (metrics as { evaluation?: Record<string, unknown> } | null)?.evaluation;
  if (!evaluation || typeof evaluation !== "object") return [];
  const rows: EvaluationRow[] = [];
  for (const [name, label] of VARIANTS) {
    const s = evaluation[name] as Record<string, unknown> | undefined;
    if (!s || typeof s !== "object") continue;
    rows.push({
      name,
      label,
      cells: [
        formatCount(s["boxes"]),
        formatScore(s["precision"]),
        formatScore(s["recall"]),
        formatScore(s["f1"]),
        formatCount(s["tp"]),
        formatCount(s["fp"]),
        formatCount(s["fn"]),
        formatScore(s["dice_pixel"]),
      ],
    });
  }
  return rows;
}

/** The Retrain form's overrides: blank fields are the preset's; anything else must be a
 * number in the parameter's range (whole for integers). Throws a message naming the field. */
export function overridesFrom(
  values: readonly { name: string; value: string }[],
  specs: readonly Override[],
): Record<string, number> {
  const out: Record<string, number> = {};
  for (const { name, value } of values) {
    const text = value.trim();
    if (!text) continue;
    const spec = specs.find((s) => s.name === name);
    const n = Number(text);
    if (!Number.isFinite(n)) throw new Error(`${name} must be a number.`);
    if (spec) {
      if (spec.type === "int" && !Number.isInteger(n)) {
        throw new Error(`${name} (${spec.help}) must be a whole number.`);
      }
      if (n < spec.low || n > spec.high) {
        throw new Error(`${name} (${spec.help}) must be between ${spec.low} and ${spec.high}.`);
      }
    }
    out[name] = n;
  }
  return out;
}

/** A preset's value of "section.key" (its config is nested by section), or undefined. */
export function presetValue(config: Record<string, unknown>, name: string): unknown {
  let node: unknown = config;
  for (const part of name.split(".")) {
    if (!node || typeof node !== "object") return undefined;
    node = (node as Record<string, unknown>)[part];
  }
  return node;
}
