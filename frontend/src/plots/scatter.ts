// A small scatter plot on uPlot: x on a log axis (volumes), y linear (sphericity), one coloured
// square per point drawn in uPlot's draw hook (as the thresholds page draws its points), for a
// side panel. `update` replaces the points and the axes' ranges.

import uPlot from "uplot";
import { logAxisLabels, logRange, logTicks, sphericityRange } from "./threshold_math";

export interface Point {
  x: number;
  y: number;
  colour: string;
}

export interface Scatter {
  update(points: readonly Point[]): void;
  /** The points drawn last (tests read them), and the draws so far. */
  points(): readonly Point[];
  draws(): number;
}

const POINT_PX = 6;

export function scatterChart(
  root: HTMLElement,
  options: { xLabel: string; yLabel: string; height?: number },
): Scatter {
  let current: readonly Point[] = [];
  let xRange: [number, number] = [0.1, 10];
  let yRange: [number, number] = [0, 1];
  let draws = 0;

  function drawPoints(u: uPlot): void {
    const ctx = u.ctx;
    const { left, top, width, height } = u.bbox;
    const size = POINT_PX * uPlot.pxRatio;
    ctx.save();
    ctx.beginPath();
    ctx.rect(left, top, width, height);
    ctx.clip();
    ctx.globalAlpha = 0.8;
    for (const p of current) {
      ctx.fillStyle = p.colour;
      const x = u.valToPos(p.x, "x", true);
      const y = u.valToPos(p.y, "y", true);
      ctx.fillRect(x - size / 2, y - size / 2, size, size);
    }
    ctx.restore();
    draws++;
  }

  const plot = new uPlot(
    {
      width: Math.max(240, root.clientWidth),
      height: options.height ?? 200,
      scales: {
        x: { time: false, distr: 3, range: () => xRange },
        y: { range: () => yRange },
      },
      axes: [
        {
          label: options.xLabel,
          stroke: "#1d2330",
          grid: { stroke: "#e4e7ec" },
          splits: () => logTicks(xRange[0], xRange[1]),
          filter: (_u: uPlot, splits: number[]) => splits,
          values: (u: uPlot, ticks: (number | null)[]) =>
            logAxisLabels(ticks, (v) => u.valToPos(v, "x")),
          size: 40,
        },
        { label: options.yLabel, stroke: "#1d2330", grid: { stroke: "#e4e7ec" }, size: 40 },
      ],
      series: [{}, { stroke: "transparent", points: { show: false } }],
      legend: { show: false },
      cursor: { show: false },
      hooks: { draw: [drawPoints] },
    },
    [xRange.slice(), [null, null]] as uPlot.AlignedData,
    root,
  );

  return {
    update(points) {
      current = points;
      // A wider margin than the thresholds page's: a few points, none on the frame.
      xRange = logRange(
        points.map((p) => p.x),
        0.15,
      );
      yRange = sphericityRange(points.map((p) => p.y));
      // New data with the new ranges: uPlot recomputes the scales and redraws.
      plot.setData([xRange.slice(), [null, null]] as uPlot.AlignedData);
      root.dataset["points"] = String(points.length);
    },
    points: () => current,
    draws: () => draws,
  };
}
