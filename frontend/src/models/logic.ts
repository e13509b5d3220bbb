// What the model comparison page (runs/models.html) computes without the DOM (unit-tested):
// which versions are ticked at first, the held-out scores per box of the ticked versions as
// grouped bars (one group per box, one bar per version; a box a version was not evaluated on
// has no bar there), the overall F1 per version, uPlot's columns for grouped bars, and the
// viewer link that shows the ticked versions' layers together.

export type Variant = "all" | "filtered";
export type Metric = "precision" | "recall" | "f1";

export const METRIC_LABELS: Record<Metric, string> = {
  precision: "Precision",
  recall: "Recall",
  f1: "F1",
};
export const VARIANT_LABELS: Record<Variant, string> = {
  all: "all objects",
  filtered: "after the filter",
};
/** The variants in a sentence ("F1 of ..."). */
export const VARIANT_PHRASES: Record<Variant, string> = {
  all: "all segmented objects",
  filtered: "the objects the filter kept",
};

/** One held-out box's scores (`metrics.evaluation.<variant>.per_box`, as the server trims it). */
export interface BoxScore {
  box: string;
  precision: number | null;
  recall: number | null;
  f1: number | null;
  n_gt: number | null;
  n_pred: number | null;
  tp: number | null;
  fp: number | null;
  fn: number | null;
}

/** One model version as `webapp/runs/comparison.version_row` writes it into the page. */
export interface Version {
  id: number;
  number: number;
  created: string;
  run: number | null;
  runUrl: string | null;
  preset: string;
  epochs: number | null;
  bestValLoss: number | null;
  scores: Record<Variant, Record<Metric, number | null>>;
  evaluated: boolean;
  detections: number | null;
  kept: number | null;
  layer: string | null;
  viewerUrl: string | null;
  downloadUrl: string;
  perBox: Record<Variant, BoxScore[]>;
}

export interface GroupedSeries {
  label: string;
  colour: string;
  values: (number | null)[];
}

/** Bars grouped by category: `series[s].values[c]` is series s's bar in category c. */
export interface Grouped {
  categories: string[];
  series: GroupedSeries[];
}

const PALETTE = [
  "#2f6fdb",
  "#e0692b",
  "#2e9e5b",
  "#9b4dca",
  "#c9a227",
  "#d6456b",
  "#1f9fb0",
  "#6b7280",
];

/** A version's colour: the same wherever it is drawn and whatever else is ticked. */
export function versionColour(number: number): string {
  return PALETTE[(((number - 1) % PALETTE.length) + PALETTE.length) % PALETTE.length]!;
}

/** The versions ticked when the page opens: the latest two, or all when there are fewer. */
export function defaultChosen(versions: readonly Pick<Version, "id" | "number">[]): number[] {
  return [...versions]
    .sort((a, b) => b.number - a.number)
    .slice(0, 2)
    .map((v) => v.id);
}

/** The ticked versions, oldest first (bars read left to right as the model improved). */
export function chosenVersions(versions: readonly Version[], ids: Iterable<number>): Version[] {
  const wanted = new Set(ids);
  return versions.filter((v) => wanted.has(v.id)).sort((a, b) => a.number - b.number);
}

/** Box names in natural order: "b2" before "b10". */
export function compareBoxes(a: string, b: string): number {
  return a.localeCompare(b, "en", { numeric: true, sensitivity: "base" }) || (a < b ? -1 : 1);
}

/** The chosen versions' `metric` per held-out box: a group per box any of them was evaluated
 * on, a bar per version, null (no bar) where that version has no such box or no score. */
export function perBoxGroups(
  versions: readonly Version[],
  metric: Metric,
  variant: Variant,
): Grouped {
  const names = new Set<string>();
  for (const v of versions) for (const row of v.perBox[variant] ?? []) names.add(row.box);
  const categories = [...names].sort(compareBoxes);
  const series = versions.map((v) => {
    const byBox = new Map((v.perBox[variant] ?? []).map((row) => [row.box, row]));
    return {
      label: `v${v.number}`,
      colour: versionColour(v.number),
      values: categories.map((box) => finite(byBox.get(box)?.[metric])),
    };
  });
  return { categories, series };
}

/** The held-out `metric` over all boxes per version: a group per version, one bar for all
 * objects and one after the filter. */
export function overallGroups(versions: readonly Version[], metric: Metric = "f1"): Grouped {
  return {
    categories: versions.map((v) => `v${v.number}`),
    series: (["all", "filtered"] as const).map((variant, i) => ({
      label: VARIANT_LABELS[variant],
      // Greys: the versions' own colours stay theirs.
      colour: i === 0 ? "#334155" : "#94a3b8",
      values: versions.map((v) => finite(v.scores[variant]?.[metric])),
    })),
  };
}

/** uPlot's aligned columns for grouped bars: each bar gets an x slot of its own (category c,
 * series s at c + (s - (k-1)/2) * width/k), and series s holds a value only at its own slots,
 * so uPlot's bar width (from the closest slots) is a slot's and bars sit side by side. */
export function groupedBarData(grouped: Grouped, width = 0.8): (number | null)[][] {
  const k = Math.max(1, grouped.series.length);
  const slot = width / k;
  const x: number[] = [];
  grouped.categories.forEach((_, c) => {
    for (let s = 0; s < k; s++) x.push(c + (s - (k - 1) / 2) * slot);
  });
  const ys = grouped.series.map((series, s) =>
    x.map((_, i) => (i % k === s ? (series.values[Math.floor(i / k)] ?? null) : null)),
  );
  return [x, ...ys];
}

/** Bars actually drawn (non-null values), per series label. */
export function barCounts(grouped: Grouped): Record<string, number> {
  return Object.fromEntries(
    grouped.series.map((s) => [s.label, s.values.filter((v) => v !== null).length]),
  );
}

/** The dataset's viewer showing the given versions' layers together (newest selected), or
 * null when none of them has a layer any more. */
export function compareViewerLink(
  viewerUrl: string,
  versions: readonly Pick<Version, "number" | "layer">[],
): string | null {
  const layers = [...versions]
    .sort((a, b) => b.number - a.number)
    .map((v) => v.layer)
    .filter((name): name is string => !!name);
  if (!layers.length) return null;
  return `${viewerUrl}?show=${layers.map(encodeURIComponent).join(",")}`;
}

/** "v2 and v3", "v1, v2 and v4". */
export function versionList(versions: readonly Pick<Version, "number">[]): string {
  const names = versions.map((v) => `v${v.number}`);
  if (names.length <= 1) return names.join("");
  return `${names.slice(0, -1).join(", ")} and ${names[names.length - 1]}`;
}

function finite(value: unknown): number | null {
  return typeof value === "number" && Number.isFinite(value) ? value : null;
}
