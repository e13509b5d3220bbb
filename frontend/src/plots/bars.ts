// Bar charts on uPlot for the dashboard: categories along x (one bar each), one colour per
// category. Each category is its own series holding only its own value, so bars keep their
// colours without per-bar styling; `update` swaps the values in place (polling) and rebuilds
// only when the categories change.

import uPlot from "uplot";

const INTEGER_STEPS = [
  1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10_000, 20_000, 50_000,
];
INTEGER_STEPS.push(100_000, 200_000, 500_000, 1_000_000);

export interface Bar {
  label: string;
  value: number | null;
  colour: string;
}

export interface BarChart {
  update(bars: readonly Bar[]): void;
  /** The values drawn last, by label (tests read them). */
  values(): Record<string, number | null>;
}

/** uPlot's aligned data for `bars`: x = 0..n-1, series i holds only bar i's value. */
export function barData(bars: readonly Bar[]): (number | null)[][] {
  const x = bars.map((_, i) => i);
  return [x, ...bars.map((bar, i) => x.map((j) => (j === i ? bar.value : null)))];
}

/** The y range: from 0 to a little above the largest value (at least `minTop`). */
export function barRange(bars: readonly Bar[], minTop: number): [number, number] {
  let top = minTop;
  for (const bar of bars) if (bar.value !== null && bar.value > top) top = bar.value;
  return [0, top * 1.1];
}

/** Characters' width in the axis font (12 px sans-serif), generous so labels never touch. */
const CHAR_PX = 7.5;

/** Every how many bars a label is written so that labels of this length do not overlap on a
 * plot `widthPx` wide (1: all of them; the others keep their bars, unlabelled). */
export function labelStep(labels: readonly string[], widthPx: number): number {
  if (labels.length === 0 || widthPx <= 0) return 1;
  const longest = Math.max(...labels.map((l) => l.length));
  const needed = longest * CHAR_PX + 10;
  return Math.max(1, Math.ceil((needed * labels.length) / widthPx));
}

/** How the category labels are written: all on one line when they fit; else with each word on
 * a line of its own ("in progress" over two lines) when that fits; else every `step`-th. */
export function labelLayout(
  labels: readonly string[],
  widthPx: number,
): { step: number; wrap: boolean } {
  if (labelStep(labels, widthPx) === 1) return { step: 1, wrap: false };
  const longestWords = labels.map((l) =>
    l.split(" ").reduce((a, w) => (w.length > a.length ? w : a), ""),
  );
  if (labelStep(longestWords, widthPx) === 1) return { step: 1, wrap: true };
  return { step: labelStep(labels, widthPx), wrap: false };
}

const Y_AXIS_PX = 56;

/** A value written above a bar: its text, the bar's x and top in the plot's scales. */
export interface ValueLabel {
  text: string;
  x: number;
  top: number;
}

/** Writes each label just above its bar (in the plot's own canvas); returns how many. */
export function writeValues(u: uPlot, labels: Iterable<ValueLabel>, fontPx = 11): number {
  const ctx = u.ctx;
  ctx.save();
  ctx.font = `${Math.round(fontPx * uPlot.pxRatio)}px sans-serif`;
  ctx.fillStyle = "#344054";
  ctx.textAlign = "center";
  ctx.textBaseline = "bottom";
  let written = 0;
  for (const label of labels) {
    const x = u.valToPos(label.x, "x", true);
    const y = u.valToPos(label.top, "y", true);
    ctx.fillText(label.text, x, y - 2 * uPlot.pxRatio);
    written++;
  }
  ctx.restore();
  return written;
}

/** Each bar's value just above it. */
function drawValues(u: uPlot, bars: readonly Bar[], fmt: (v: number) => string): void {
  const labels: ValueLabel[] = [];
  bars.forEach((bar, i) => {
    if (bar.value !== null) labels.push({ text: fmt(bar.value), x: i, top: bar.value });
  });
  writeValues(u, labels);
}

export function barChart(
  root: HTMLElement,
  options: {
    height?: number;
    minTop?: number;
    format?: (v: number) => string;
    /** Counts: ticks at whole numbers only. */
    integer?: boolean;
  } = {},
): BarChart {
  let plot: uPlot | undefined;
  let labels: string[] = [];
  let current: readonly Bar[] = [];
  const height = options.height ?? 200;
  const minTop = options.minTop ?? 1;

  function build(bars: readonly Bar[]): void {
    plot?.destroy();
    labels = bars.map((b) => b.label);
    const n = Math.max(1, bars.length);
    const fmt = options.format ?? ((v: number) => String(Math.round(v * 100) / 100));
    const width = Math.max(260, root.clientWidth);
    // When not every bar can be labelled under it, a legend names them all by colour.
    const crowded = labelLayout(labels, width - Y_AXIS_PX).step > 1;
    const opts: uPlot.Options = {
      width,
      height,
      scales: {
        x: { time: false, range: () => [-0.5, n - 0.5] },
        y: { range: () => barRange(current, minTop) },
      },
      axes: [
        {
          splits: (u) => {
            const { step } = labelLayout(labels, u.bbox.width / uPlot.pxRatio);
            if (crowded) return []; // the legend names the bars
            return labels.map((_, i) => i).filter((i) => i % step === 0);
          },
          values: (u, splits) => {
            const { wrap } = labelLayout(labels, u.bbox.width / uPlot.pxRatio);
            return splits.map((i) => {
              const label = labels[i] ?? "";
              return wrap ? label.split(" ").join("\n") : label;
            });
          },
          grid: { show: false },
          size: 48,
        },
        {
          values: (_u, splits) => splits.map(fmt),
          grid: { stroke: "#e4e7ec" },
          size: Y_AXIS_PX,
          ...(options.integer ? { incrs: INTEGER_STEPS } : {}),
        },
      ],
      legend: { show: crowded, live: false },
      cursor: { show: false },
      // Each bar's value above it: a bar of 1 on a scale of 300 is thinner than a pixel.
      hooks: { draw: [(u) => drawValues(u, current, fmt)] },
      series: [
        {},
        ...bars.map((bar) => ({
          label: bar.label,
          fill: bar.colour,
          stroke: bar.colour,
          paths: uPlot.paths.bars!({ size: [0.7, 80] }),
          points: { show: false },
        })),
      ],
    };
    plot = new uPlot(opts, barData(bars) as uPlot.AlignedData, root);
  }

  return {
    update(bars) {
      current = bars;
      const same = bars.length === labels.length && bars.every((b, i) => b.label === labels[i]);
      if (!plot || !same) build(bars);
      else plot.setData(barData(bars) as uPlot.AlignedData);
      root.dataset["values"] = JSON.stringify(bars.map((b) => b.value));
    },
    values() {
      return Object.fromEntries(current.map((b) => [b.label, b.value]));
    },
  };
}
