// Grouped bar charts on uPlot for the model comparison: categories along x (held-out boxes, or
// versions), one coloured bar per series in each category (`logic.groupedBarData` lays the
// bars out), each bar's value written above it when the bars are wide enough for it. `update`
// rebuilds the plot (series come and go as versions are ticked); the root's data-series,
// data-bars and data-labelled say what is drawn (the browser test reads them).

import uPlot from "uplot";
import { type ValueLabel, labelLayout, writeValues } from "../plots/bars";
import { type Grouped, barCounts, groupedBarData } from "./logic";

/** The most horizontal pixels a bar's slot takes (its bar 90 % of it). */
const GROUP_PX = 48;
/** The narrowest slot (CSS pixels) that gets its value written above the bar ("0.86"). */
const VALUE_LABEL_PX = 24;

/** Writes each bar's value above it when a bar's slot is at least VALUE_LABEL_PX wide;
 * returns how many it wrote. */
function drawValues(u: uPlot, slot: number): number {
  const slotPx = Math.abs(u.valToPos(slot, "x") - u.valToPos(0, "x"));
  if (slotPx < VALUE_LABEL_PX) return 0;
  const xs = u.data[0];
  const labels: ValueLabel[] = [];
  u.data.slice(1).forEach((series, s) => {
    if (u.series[s + 1]?.show === false) return; // hidden from the legend
    series.forEach((value, i) => {
      if (value !== null && value !== undefined)
        labels.push({ text: value.toFixed(2), x: xs[i]!, top: value });
    });
  });
  return writeValues(u, labels, 10);
}

export interface GroupedChart {
  update(grouped: Grouped): void;
  /** The y axis's title, used from the next update. */
  setYLabel(label: string): void;
  /** What was drawn last: categories, series labels, values, and uPlot's own columns. */
  drawn(): Grouped;
  plotData(): (number | null)[][];
  seriesLabels(): string[];
}

export function groupedBarChart(
  root: HTMLElement,
  options: { height?: number; yLabel?: string } = {},
): GroupedChart {
  const height = options.height ?? 240;
  let plot: uPlot | undefined;
  let current: Grouped = { categories: [], series: [] };
  let yLabel = options.yLabel ?? "";

  function build(grouped: Grouped): void {
    plot?.destroy();
    const labels = grouped.categories;
    const n = Math.max(1, labels.length);
    const plotWidth = Math.max(320, root.clientWidth || 640);
    // A group spans at most GROUP_PX per bar, so a few categories on a wide plot keep their
    // bars side by side instead of spread across the category.
    const perCategoryPx = Math.max(1, (plotWidth - 60) / n);
    const k = Math.max(1, grouped.series.length);
    const width = Math.min(0.8, (k * GROUP_PX) / perCategoryPx);
    const slot = width / k;
    const opts: uPlot.Options = {
      width: plotWidth,
      height,
      scales: {
        x: { time: false, range: () => [-0.5, n - 0.5] },
        y: { range: () => [0, 1.12] }, // room for a value above a bar of 1
      },
      axes: [
        {
          splits: (u) => {
            const { step } = labelLayout(labels, u.bbox.width / uPlot.pxRatio);
            return labels.map((_, i) => i).filter((i) => i % step === 0);
          },
          values: (_u, splits) => splits.map((i) => labels[i] ?? ""),
          grid: { show: false },
          size: 40,
        },
        {
          label: yLabel,
          values: (_u, splits) => splits.map((v) => v.toFixed(1)),
          splits: () => [0, 0.2, 0.4, 0.6, 0.8, 1],
          grid: { stroke: "#e4e7ec" },
          size: 50,
        },
      ],
      legend: { show: true, live: false },
      cursor: { show: false },
      hooks: {
        draw: [
          (u) => {
            root.dataset["labelled"] = String(drawValues(u, slot));
          },
        ],
      },
      series: [
        {},
        ...grouped.series.map((s) => ({
          label: s.label,
          fill: s.colour,
          stroke: s.colour,
          paths: uPlot.paths.bars!({ size: [0.9, GROUP_PX], align: 0 }),
          points: { show: false },
        })),
      ],
    };
    plot = new uPlot(opts, groupedBarData(grouped, width) as uPlot.AlignedData, root);
  }

  const win = root.ownerDocument.defaultView ?? window;
  win.addEventListener("resize", () =>
    plot?.setSize({ width: Math.max(320, root.clientWidth || 640), height }),
  );

  return {
    update(grouped) {
      current = grouped;
      build(grouped);
      root.dataset["series"] = JSON.stringify(grouped.series.map((s) => s.label));
      root.dataset["categories"] = JSON.stringify(grouped.categories);
      root.dataset["bars"] = JSON.stringify(barCounts(grouped));
    },
    setYLabel(label) {
      yLabel = label;
    },
    drawn: () => current,
    plotData: () => (plot ? (plot.data as unknown as (number | null)[][]) : []),
    seriesLabels: () => (plot ? plot.series.slice(1).map((s) => String(s.label ?? "")) : []),
  };
}
