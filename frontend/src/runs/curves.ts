// The run page's training curves on uPlot: training and validation loss per epoch (left axis)
// and, when measured, the validation F1 (right axis, 0-1). `update` replaces the data; the
// element's data-points says how many epochs are drawn (the browser test reads it).

import uPlot from "uplot";
import type { Curves } from "./logic";

export interface CurvesChart {
  update(curves: Curves): void;
  /** Epochs drawn last, and uPlot's draws so far. */
  points(): number;
  draws(): number;
}

const TRAIN = "#2f6fdb";
const VAL = "#e0692b";
const F1 = "#2e9e5b";

export function curvesChart(root: HTMLElement, height = 260): CurvesChart {
  let draws = 0;
  let shown = 0;
  const width = (): number => Math.max(320, root.clientWidth || 640);
  const plot = new uPlot(
    {
      width: width(),
      height,
      scales: {
        x: { time: false },
        loss: { range: (_u, min, max) => [0, Math.max(max ?? 1, min ?? 0) * 1.1 || 1] },
        f1: { range: [0, 1] },
      },
      axes: [
        {
          label: "epoch",
          stroke: "#1d2330",
          grid: { stroke: "#e4e7ec" },
          size: 40,
          // Whole epochs only.
          incrs: [1, 2, 5, 10, 20, 50, 100, 200, 500, 1000],
        },
        {
          scale: "loss",
          label: "loss",
          stroke: "#1d2330",
          grid: { stroke: "#e4e7ec" },
          size: 50,
        },
        { scale: "f1", label: "validation F1", side: 1, stroke: F1, grid: { show: false } },
      ],
      series: [
        { label: "epoch" },
        { label: "training loss", scale: "loss", stroke: TRAIN, width: 2, spanGaps: true },
        { label: "validation loss", scale: "loss", stroke: VAL, width: 2, spanGaps: true },
        {
          label: "validation F1",
          scale: "f1",
          stroke: F1,
          width: 1.5,
          dash: [6, 4],
          spanGaps: true,
        },
      ],
      cursor: { drag: { x: false, y: false } },
      hooks: { draw: [() => void draws++] },
    },
    [[], [], [], []],
    root,
  );

  window.addEventListener("resize", () => plot.setSize({ width: width(), height }));

  return {
    update(curves) {
      plot.setData([curves.epochs, curves.train, curves.val, curves.f1] as uPlot.AlignedData);
      plot.setSeries(3, { show: curves.hasF1 });
      shown = curves.train.filter((v) => v !== null).length;
      root.dataset["points"] = String(shown);
    },
    points: () => shown,
    draws: () => draws,
  };
}
