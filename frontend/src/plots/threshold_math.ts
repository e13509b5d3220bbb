// Precision and recall of a volume/sphericity filter against proofreading verdicts, computed
// in the browser while a threshold line is dragged (one pass over the points, no allocation,
// so 100,000 detections cost about a millisecond per mouse move).
//
// Same rule as pipeline/thresholds.py: a detection is kept when volume >= volumeMin,
// volume <= volumeMax and sphericity >= sphericityMin (a null bound does not filter);
// precision = kept positives / kept labelled, recall = kept positives / all positives.
// Positives are verdicts of kind "positive" (true positive, with or without shape
// distortion), negatives of kind "negative" (false positive); "uncertain" is left out.

export type VerdictKind = "positive" | "negative" | "uncertain";

export interface Bounds {
  volumeMin: number | null;
  volumeMax: number | null;
  sphericityMin: number | null;
}

export interface Scores {
  positives: number;
  negatives: number;
  leftOut: number;
  keptPositives: number;
  keptNegatives: number;
  /** null when nothing labelled is kept (undefined, not 0). */
  precision: number | null;
  /** null when there is no positive at all. */
  recall: number | null;
  f1: number | null;
}

/** Per point: 1 positive, 0 negative, -1 left out, from each point's index into `kinds`. */
export function labelsOf(
  verdicts: ArrayLike<number>,
  kinds: readonly VerdictKind[],
): Int8Array<ArrayBuffer> {
  const byClass = kinds.map((k) => (k === "positive" ? 1 : k === "negative" ? 0 : -1));
  const labels = new Int8Array(verdicts.length);
  for (let i = 0; i < verdicts.length; i++) labels[i] = byClass[verdicts[i] ?? -1] ?? -1;
  return labels;
}

/** Whether the filter keeps a detection with this volume and sphericity. */
export function keeps(volume: number, sphericity: number, bounds: Bounds): boolean {
  return (
    (bounds.volumeMin === null || volume >= bounds.volumeMin) &&
    (bounds.volumeMax === null || volume <= bounds.volumeMax) &&
    (bounds.sphericityMin === null || sphericity >= bounds.sphericityMin)
  );
}

/** Precision, recall and F1 of `bounds` on labelled points (see the module comment). */
export function filterScores(
  volume: ArrayLike<number>,
  sphericity: ArrayLike<number>,
  labels: ArrayLike<number>,
  bounds: Bounds,
): Scores {
  let positives = 0;
  let negatives = 0;
  let leftOut = 0;
  let keptPositives = 0;
  let keptNegatives = 0;
  const vMin = bounds.volumeMin ?? -Infinity;
  const vMax = bounds.volumeMax ?? Infinity;
  const sMin = bounds.sphericityMin ?? -Infinity;
  for (let i = 0; i < labels.length; i++) {
    const label = labels[i];
    if (label !== 0 && label !== 1) {
      leftOut++;
      continue;
    }
    const v = volume[i] as number;
    const kept = v >= vMin && v <= vMax && (sphericity[i] as number) >= sMin;
    if (label === 1) {
      positives++;
      if (kept) keptPositives++;
    } else {
      negatives++;
      if (kept) keptNegatives++;
    }
  }
  const kept = keptPositives + keptNegatives;
  const precision = kept > 0 ? keptPositives / kept : null;
  const recall = positives > 0 ? keptPositives / positives : null;
  // F1 = 2 TP / (2 TP + FP + FN), as the pipeline's search: defined whenever there are positives.
  const f1 =
    positives > 0 ? (2 * keptPositives) / (keptPositives + keptNegatives + positives) : null;
  return { positives, negatives, leftOut, keptPositives, keptNegatives, precision, recall, f1 };
}

/** A score as the page shows it: three decimals, or an en dash when undefined. */
export function formatScore(value: number | null): string {
  return value === null ? "–" : value.toFixed(3);
}

/** The [min, max] of the finite, positive values (for a log axis), padded by `pad` decades. */
export function logRange(values: ArrayLike<number>, pad = 0.05): [number, number] {
  let lo = Infinity;
  let hi = -Infinity;
  for (let i = 0; i < values.length; i++) {
    const v = values[i] as number;
    if (v > 0 && Number.isFinite(v)) {
      if (v < lo) lo = v;
      if (v > hi) hi = v;
    }
  }
  if (!Number.isFinite(lo)) return [0.1, 10];
  if (lo === hi) return [lo / 2, hi * 2];
  const factor = 10 ** ((Math.log10(hi) - Math.log10(lo)) * pad);
  return [lo / factor, hi * factor];
}

/** Tick values for a log axis over [lo, hi]: 1-2-5 steps per decade, or every integer
 * multiple when the range spans less than a decade (so that even a narrow range of volumes
 * gets several labelled ticks). */
export function logTicks(lo: number, hi: number): number[] {
  if (!(lo > 0) || !(hi > lo)) return [];
  const first = Math.floor(Math.log10(lo));
  const last = Math.ceil(Math.log10(hi));
  const pick = (steps: number[]): number[] => {
    const ticks: number[] = [];
    for (let d = first; d <= last; d++) {
      for (const s of steps) {
        const v = s * 10 ** d;
        if (v >= lo * (1 - 1e-9) && v <= hi * (1 + 1e-9)) ticks.push(Number(v.toPrecision(12)));
      }
    }
    return ticks;
  };
  const coarse = pick([1, 2, 5]);
  return coarse.length >= 3 ? coarse : pick([1, 2, 3, 4, 5, 6, 7, 8, 9]);
}

/** The labels of log-axis ticks at `positions` (px), blank where a label would overlap one
 * already placed: labels of 1 x 10^k first, then 2 and 5, then the rest, each kept only where
 * it has room (about `charPx` per character and `gapPx` between labels). Every integer
 * multiple of a narrow range is a tick; near the top of a decade they crowd ("0.70.80.91"). */
export function thinLogLabels(
  ticks: readonly number[],
  positions: readonly number[],
  charPx = 7,
  gapPx = 8,
): string[] {
  const rank = (v: number): number => {
    const mantissa = Number((v / 10 ** Math.floor(Math.log10(v))).toPrecision(6));
    return mantissa === 1 ? 0 : mantissa === 2 || mantissa === 5 ? 1 : 2;
  };
  const labels = ticks.map((t) => (Number.isFinite(t) ? formatTick(t) : ""));
  const order = ticks.map((_, i) => i).sort((a, b) => rank(ticks[a]!) - rank(ticks[b]!) || a - b);
  const placed: [number, number][] = [];
  const out = labels.map(() => "");
  for (const i of order) {
    const at = positions[i]!;
    if (!Number.isFinite(at)) continue;
    const half = (labels[i]!.length * charPx + gapPx) / 2;
    if (placed.every(([lo, hi]) => at + half <= lo || at - half >= hi)) {
      placed.push([at - half, at + half]);
      out[i] = labels[i]!;
    }
  }
  return out;
}

/** uPlot's `values` for a log x axis: its ticks (null where uPlot leaves one unlabelled)
 * labelled by {@link thinLogLabels} at their positions (`toPx`). */
export function logAxisLabels(
  ticks: readonly (number | null)[],
  toPx: (v: number) => number,
): string[] {
  const shown = ticks.map((t) => (t === null ? Number.NaN : t));
  return thinLogLabels(
    shown,
    shown.map((t) => (Number.isNaN(t) ? Number.NaN : toPx(t))),
  );
}

/** A tick label a person reads at once: 0.05, 2, 300, 4,000, 2e5. */
export function formatTick(value: number): string {
  if (value >= 1e5) return value.toExponential(0).replace("e+", "e");
  if (value >= 1) return Math.round(value).toLocaleString("en-US");
  return String(Number(value.toPrecision(2)));
}

/** The sphericity axis: the data's range with a margin, within [0, max(1, data)], so that
 * points are not squeezed into the top of a fixed 0-1 axis. */
export function sphericityRange(values: ArrayLike<number>): [number, number] {
  let lo = Infinity;
  let hi = -Infinity;
  for (let i = 0; i < values.length; i++) {
    const v = values[i] as number;
    if (Number.isFinite(v)) {
      if (v < lo) lo = v;
      if (v > hi) hi = v;
    }
  }
  if (!Number.isFinite(lo)) return [0, 1];
  const low = Math.max(0, Math.floor((lo - 0.05) * 10) / 10);
  const high = Math.max(1, Math.ceil(hi * 50) / 50);
  return [low, high];
}
