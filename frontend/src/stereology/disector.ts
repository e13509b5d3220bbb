// The disector page's pure logic (no DOM, no viewer): keys, where each section is, the marks as
// Neuroglancer point annotations, and the estimate as rows of text. Neuroglancer's global
// dimensions are the layer's voxels (webapp/viewer/services.py): positions are x, y, z with
// voxel i's centre at i, as the API has them (lib/voxel_grid.ts).

import { middleVoxel, voxelAt, voxelCentre } from "../lib/voxel_grid";

export type DisectorAction =
  { kind: "mark" } | { kind: "flip" } | { kind: "next" } | { kind: "previous" } | { kind: "undo" };

export interface KeyPress {
  key: string;
  ctrlKey?: boolean;
  metaKey?: boolean;
  altKey?: boolean;
  shiftKey?: boolean;
}

/** M marks, Tab flips, N / P (or ] / [) next / previous, U (or Ctrl+Z) removes the last mark. */
export function disectorAction(press: KeyPress): DisectorAction | null {
  const key = press.key.length === 1 ? press.key.toLowerCase() : press.key;
  if (press.altKey) return null;
  if (press.ctrlKey || press.metaKey) return key === "z" ? { kind: "undo" } : null;
  switch (key) {
    case "m":
      return { kind: "mark" };
    case "Tab":
      return press.shiftKey ? null : { kind: "flip" };
    case "n":
    case "]":
      return { kind: "next" };
    case "p":
    case "[":
      return { kind: "previous" };
    case "u":
      return { kind: "undo" };
    default:
      return null;
  }
}

export interface PairSpec {
  index: number;
  reference: number;
  lookup: number;
  reference_um: number;
  lookup_um: number;
  lookup_in_volume: boolean;
}

export type Side = "reference" | "lookup";

/** The z of the section shown (voxel index) for a pair and side. */
export function sectionZ(pair: PairSpec, side: Side): number {
  return side === "reference" ? pair.reference : pair.lookup;
}

/**
 * The viewer position for `side` of `pair`, keeping x and y of `current` (the reviewer flips
 * in place) or starting at the middle of the volume (`shape` z y x).
 */
export function positionFor(
  pair: PairSpec,
  side: Side,
  shape: readonly number[],
  current?: readonly number[],
): [number, number, number] {
  const x = current?.[0] ?? voxelCentre(middleVoxel(0, shape[2] ?? 0));
  const y = current?.[1] ?? voxelCentre(middleVoxel(0, shape[1] ?? 0));
  return [x, y, voxelCentre(sectionZ(pair, side))];
}

/** Voxels per screen pixel that fit a whole section (`shape` z y x) into `pixels`. */
export function sectionFitScale(shape: readonly number[], pixels = 650): number {
  const side = Math.max(1, shape[1] ?? 1, shape[2] ?? 1);
  return (side * 1.05) / Math.max(1, pixels);
}

/** A viewer position (x, y, z) as the voxel (z, y, x) the API stores. */
export function voxelOf(position: readonly number[]): { z: number; y: number; x: number } {
  const [x = 0, y = 0, z = 0] = position;
  return { z: voxelAt(z), y, x };
}

/** A whole-section z: the section the viewer shows at position z (voxel i spans
 * [i - 0.5, i + 0.5)). */
export function shownSection(position: readonly number[] | undefined): number | undefined {
  const z = position?.[2];
  return z === undefined || !Number.isFinite(z) ? undefined : voxelAt(z);
}

export interface MarkLike {
  id: number;
  pair: number;
  z: number;
  y: number;
  x: number;
  matched: boolean;
  segment_id?: number | null;
}

export const MATCHED_LAYER = "disector: detected";
export const UNMATCHED_LAYER = "disector: missed";
export const MATCHED_COLOUR = "#2ecc40";
export const UNMATCHED_COLOUR = "#ff4136";

/** A Neuroglancer point annotation (JSON form) for a mark. */
export function markAnnotation(mark: MarkLike): {
  type: "point";
  id: string;
  point: [number, number, number];
  description: string;
} {
  return {
    type: "point",
    id: `mark-${mark.id}`,
    point: [mark.x, mark.y, mark.z],
    description: markLabel(mark),
  };
}

export function markLabel(mark: MarkLike): string {
  return mark.matched
    ? `matched: segment ${mark.segment_id ?? "?"}`
    : mark.segment_id
      ? `unmatched (segment ${mark.segment_id} is filtered out)`
      : "unmatched: no detection";
}

/** Two local annotation layers (detected, missed) holding `marks`, for the initial state. */
export function annotationLayers(marks: readonly MarkLike[]): Record<string, unknown>[] {
  const layer = (name: string, colour: string, matched: boolean): Record<string, unknown> => ({
    type: "annotation",
    name,
    source: "local://annotations",
    annotationColor: colour,
    annotations: marks.filter((m) => m.matched === matched).map(markAnnotation),
  });
  return [
    layer(MATCHED_LAYER, MATCHED_COLOUR, true),
    layer(UNMATCHED_LAYER, UNMATCHED_COLOUR, false),
  ];
}

export interface EstimateRow {
  reviewer: string | null;
  n_pairs: number;
  q_minus: number;
  matched: number | null;
  n_total: number;
  n_total_low: number | null;
  n_total_high: number | null;
  detections: number | null;
  detected_fraction: number | null;
  detected_fraction_low: number | null;
  detected_fraction_high: number | null;
  miss_rate: number | null;
  miss_rate_low: number | null;
  miss_rate_high: number | null;
  miss_rate_sampled: number | null;
  miss_rate_sampled_low: number | null;
  miss_rate_sampled_high: number | null;
  confidence: number;
  min_counted_objects?: number;
  n_based_shown?: boolean;
  n_based_withheld?: "few_objects" | "exceeds_one" | null;
}

function fmt(value: number | null | undefined, digits = 3): string {
  if (value === null || value === undefined || !Number.isFinite(value)) return "–";
  return Number(value.toPrecision(digits)).toLocaleString("en");
}

function percent(value: number | null | undefined): string {
  if (value === null || value === undefined || !Number.isFinite(value)) return "–";
  return `${(value * 100).toFixed(1)} %`;
}

const clipUnit = (v: number | null | undefined): number | null | undefined =>
  v === null || v === undefined || !Number.isFinite(v) ? v : Math.min(Math.max(v, 0), 1);

const known = (v: number | null | undefined): v is number =>
  v !== null && v !== undefined && Number.isFinite(v);

/**
 * "12.3 % (8.1 % – 17.0 %)"; an open bound reads "(up to 17.0 %)" or "(at least 8.1 %)", none
 * at all drops the interval. Percentages are fractions of objects: values and bounds are
 * clipped to [0, 100 %].
 */
export function withInterval(
  value: number | null | undefined,
  low: number | null | undefined,
  high: number | null | undefined,
  asPercent = true,
): string {
  const f = asPercent ? percent : (v: number | null | undefined) => fmt(v);
  const [v, lo, hi] = asPercent
    ? [clipUnit(value), clipUnit(low), clipUnit(high)]
    : [value, low, high];
  if (known(lo) && known(hi)) return `${f(v)} (${f(lo)} – ${f(hi)})`;
  if (known(hi)) return `${f(v)} (up to ${f(hi)})`;
  if (known(lo)) return `${f(v)} (at least ${f(lo)})`;
  return f(v);
}

/** Why D / N and 1 − D / N are not shown for `row`, or null when they are. */
export function withheldReason(row: EstimateRow): string | null {
  const needed = row.min_counted_objects ?? 10;
  const counted = fmt(row.q_minus);
  if (
    row.n_based_withheld === "few_objects" ||
    (row.n_based_withheld === undefined && row.q_minus < needed)
  ) {
    return `not enough counted objects yet (${counted} counted; at least ${needed} needed)`;
  }
  if (
    row.n_based_withheld === "exceeds_one" ||
    (row.detected_fraction !== null && row.detected_fraction > 1)
  ) {
    return `not enough counted objects yet: D exceeds the estimate of N (${counted} counted); count more pairs`;
  }
  return null;
}

/** The results table's rows for one estimate: [label, value]. The miss rate of the counted
 * objects (bounded, from the marks) comes first: it is the headline. */
export function estimateRows(row: EstimateRow): [string, string][] {
  const withheld = withheldReason(row);
  return [
    [
      "Miss rate of the counted objects",
      withInterval(row.miss_rate_sampled, row.miss_rate_sampled_low, row.miss_rate_sampled_high),
    ],
    ["Pairs counted", String(row.n_pairs)],
    ["Objects counted (Q⁻)", `${fmt(row.q_minus)} (${fmt(row.matched)} detected)`],
    [
      "Objects in the region (N)",
      withInterval(row.n_total, row.n_total_low, row.n_total_high, false),
    ],
    ["Detections (D)", fmt(row.detections)],
    ...((withheld === null
      ? [
          [
            "Detected fraction D / N",
            withInterval(
              row.detected_fraction,
              row.detected_fraction_low,
              row.detected_fraction_high,
            ),
          ],
          [
            "Miss rate 1 − D / N",
            withInterval(row.miss_rate, row.miss_rate_low, row.miss_rate_high),
          ],
        ]
      : [["D / N and miss rate 1 − D / N", withheld]]) as [string, string][]),
  ];
}
