import { describe, expect, it } from "vitest";

import {
  type Stage,
  boxesText,
  curveData,
  etaText,
  evaluationRows,
  isActive,
  overridesFrom,
  presetValue,
  runEtaText,
  stageCaption,
  stagePercent,
  statusText,
  trainingSteps,
  viewerLink,
} from "../src/runs/logic";

const NOW = new Date("2026-12-01T10:00:00Z");

function stage(over: Partial<Stage>): Stage {
  return {
    name: "predict",
    state: "running",
    done: 0,
    total: 0,
    seconds: null,
    started: null,
    eta: null,
    part: null,
    ...over,
  };
}

describe("times", () => {
  it("turns an ETA into the time left, nothing when unknown", () => {
    expect(etaText("2026-12-01T10:02:30Z", NOW)).toBe("about 3 min left");
    expect(etaText("2026-12-01T10:00:00.500Z", NOW)).toBe("finishing");
    expect(etaText("2026-12-01T10:00:59.600Z", NOW)).toBe("about 1 min left");
    expect(etaText("2026-12-01T10:00:59.400Z", NOW)).toBe("about 59 s left");
    expect(etaText("2026-12-01T10:59:45Z", NOW)).toBe("about 1 h 00 min left");
    expect(etaText("2026-12-01T09:59:00Z", NOW)).toBe("finishing");
    expect(etaText(null, NOW)).toBe("");
    expect(etaText("not a time", NOW)).toBe("");
  });
});

describe("stages", () => {
  it("fills a bar by done / total, full when done or skipped, unknown while counting", () => {
    expect(stagePercent(stage({ done: 3, total: 12 }))).toBe(25);
    expect(stagePercent(stage({ done: 30, total: 12 }))).toBe(100);
    expect(stagePercent(stage({ state: "done", done: 0, total: 0 }))).toBe(100);
    expect(stagePercent(stage({ state: "skipped" }))).toBe(100);
    expect(stagePercent(stage({ state: "pending", done: 3, total: 4 }))).toBe(0);
    expect(stagePercent(stage({ total: 0 }))).toBeNull();
    expect(stagePercent(stage({ state: "stopped", done: 1, total: 4 }))).toBe(25);
  });

  it("says where each stage stands", () => {
    const eta = "2026-12-01T10:01:00Z";
    expect(stageCaption(stage({ done: 3, total: 12, eta }), NOW)).toBe("3 / 12 · about 1 min left");
    expect(stageCaption(stage({}), NOW)).toBe("running…");
    // After training, the stage's own parts count from 0 under their names.
    expect(stageCaption(stage({ done: 45, total: 189, part: "fit segmentation" }), NOW)).toBe(
      "fit segmentation: 45 / 189",
    );
    expect(stageCaption(stage({ state: "done", seconds: 65 }), NOW)).toBe("done in 1 min 05 s");
    expect(stageCaption(stage({ state: "done" }), NOW)).toBe("done");
    expect(stageCaption(stage({ state: "stopped", done: 2, total: 9 }), NOW)).toBe(
      "stopped at 2 / 9",
    );
    expect(stageCaption(stage({ state: "pending" }), NOW)).toBe("pending");
    expect(stageCaption(stage({ state: "skipped" }), NOW)).toBe("skipped");
  });

  it("gives the running stage's time left while the run is active", () => {
    const stages = [
      stage({ name: "export", state: "done" }),
      stage({ name: "train", done: 1, total: 4, eta: "2026-12-01T10:00:40Z" }),
    ];
    expect(runEtaText({ status: "running", stages }, NOW)).toBe("train: about 40 s left");
    expect(runEtaText({ status: "failed", stages }, NOW)).toBe("");
    expect(runEtaText({ status: "running", stages: [stages[0]!] }, NOW)).toBe("");
    const steps = stage({ name: "train", part: "training steps", eta: "2026-12-01T10:00:40Z" });
    expect(runEtaText({ status: "running", stages: [stages[0]!, steps] }, NOW)).toBe(
      "train · training steps: about 40 s left",
    );
  });
});

describe("status", () => {
  it("polls queued and running runs only (a retrying run's status is running)", () => {
    for (const s of ["queued", "running"] as const) expect(isActive({ status: s })).toBe(true);
    for (const s of ["succeeded", "failed", "cancelled"] as const)
      expect(isActive({ status: s })).toBe(false);
  });

  it("knows when epochs are still to come", () => {
    expect(trainingSteps({ stage: "train" })).toBe(true);
    expect(trainingSteps({ stage: "train · training steps" })).toBe(true);
    expect(trainingSteps({ stage: "train · fit segmentation" })).toBe(false);
    expect(trainingSteps({ stage: "predict" })).toBe(false);
  });

  it("words the state with the stage", () => {
    expect(statusText({ state: "queued", stage: "" })).toBe("Queued: waiting for a worker");
    expect(statusText({ state: "running", stage: "train" })).toBe("Running: train");
    expect(statusText({ state: "retrying", stage: "predict" })).toBe(
      "Retrying: predict (its worker was lost)",
    );
    expect(statusText({ state: "succeeded", stage: "publish" })).toBe("Succeeded");
    expect(statusText({ state: "failed", stage: "train" })).toBe("Failed");
  });

  it("counts the boxes and names the held-out ones", () => {
    const boxes = [
      { box: 1, name: "b1", held_out: false },
      { box: 2, name: "b2", held_out: true },
      { box: 3, name: "b3", held_out: false },
    ];
    expect(boxesText(boxes)).toBe("3 boxes: 2 to train on, 1 held out for evaluation (b2)");
    expect(boxesText([{ box: 1, name: "b1", held_out: false }])).toBe(
      "1 box: 1 to train on, none held out",
    );
    expect(boxesText([])).toBe("–");
  });

  it("links the viewer with the layer shown", () => {
    expect(viewerLink("/datasets/d/", "nuclei run 3")).toBe("/datasets/d/?show=nuclei%20run%203");
  });
});

describe("curves", () => {
  it("shapes the history into uPlot columns, in epoch order, NaN and missing as gaps", () => {
    const curves = curveData([
      { epoch: 2, train_loss: 0.5, val_loss: null, val_f1: 0.4 },
      { epoch: 1, train_loss: 0.9, val_loss: 1.1 },
      { epoch: 3, train_loss: Number.NaN, val_loss: 0.6, val_f1: null },
    ]);
    expect(curves.epochs).toEqual([1, 2, 3]);
    expect(curves.train).toEqual([0.9, 0.5, null]);
    expect(curves.val).toEqual([1.1, null, 0.6]);
    expect(curves.f1).toEqual([null, 0.4, null]);
    expect(curves.hasF1).toBe(true);
    expect(curves.restarts).toBe(0);
  });

  it("keeps the latest training attempt only", () => {
    const curves = curveData([
      { epoch: 0, attempt: 0, train_loss: 5 },
      { epoch: 1, attempt: 0, train_loss: 6 },
      { epoch: 0, attempt: 1, train_loss: 0.8 },
    ]);
    expect(curves.epochs).toEqual([0]);
    expect(curves.train).toEqual([0.8]);
    expect(curves.restarts).toBe(1);
    expect(curves.hasF1).toBe(false);
  });

  it("numbers rows without an epoch by their place", () => {
    expect(curveData([{ train_loss: 1 }, { train_loss: 0.5 }]).epochs).toEqual([0, 1]);
    expect(curveData([]).epochs).toEqual([]);
  });
});

describe("evaluation", () => {
  it("lists all and filtered objects' scores, nothing before the evaluation", () => {
    const rows = evaluationRows({
      train: { epochs: 3 },
      evaluation: {
        all: {
          boxes: 1,
          tp: 4,
          fp: 1,
          fn: 2,
          precision: 0.8,
          recall: 0.6667,
          f1: 0.72727,
          dice_pixel: 0.9,
        },
        filtered: { boxes: 1, tp: 4, fp: 0, fn: 2, precision: 1, recall: 0.6667, f1: null },
        heads: {},
      },
    });
    expect(rows.map((r) => r.name)).toEqual(["all", "filtered"]);
    expect(rows[0]!.cells).toEqual(["1", "0.800", "0.667", "0.727", "4", "1", "2", "0.900"]);
    expect(rows[1]!.cells[3]).toBe("–");
    expect(rows[1]!.cells[7]).toBe("–");
    expect(evaluationRows({ train: {} })).toEqual([]);
    expect(evaluationRows(null)).toEqual([]);
  });
});

describe("overrides", () => {
  const specs = [
    { name: "training.max_epochs", type: "int", low: 1, high: 1000, help: "epochs of training" },
    { name: "training.lr", type: "float", low: 1e-6, high: 1, help: "learning rate" },
  ];

  it("takes the filled fields as numbers and leaves blanks to the preset", () => {
    expect(
      overridesFrom(
        [
          { name: "training.max_epochs", value: " 2 " },
          { name: "training.lr", value: "" },
        ],
        specs,
      ),
    ).toEqual({ "training.max_epochs": 2 });
  });

  it("refuses what the server would, naming the field", () => {
    expect(() => overridesFrom([{ name: "training.max_epochs", value: "1.5" }], specs)).toThrow(
      "whole number",
    );
    expect(() => overridesFrom([{ name: "training.max_epochs", value: "0" }], specs)).toThrow(
      "between 1 and 1000",
    );
    expect(() => overridesFrom([{ name: "training.lr", value: "abc" }], specs)).toThrow(
      "training.lr must be a number",
    );
  });

  it("reads a preset's nested value of a section.key name", () => {
    const config = { training: { max_epochs: 6 }, model: { width: 4 } };
    expect(presetValue(config, "training.max_epochs")).toBe(6);
    expect(presetValue(config, "training.lr")).toBeUndefined();
    expect(presetValue({}, "model.width")).toBeUndefined();
  });
});
