// The review page's painted objects (a painted campaign): the reviewed assignment's objects as
// measured by labels/objects/ (the pipeline's own morphometrics), as table rows and as points
// of a volume-sphericity scatter coloured by where each object came from. Pure: the page draws.

import type { Schemas } from "../lib/api";
import { sliceRanges } from "../lib/format";
import { figure } from "./layers";

export type LabelObject = Schemas["LabelObject"];
export type Provenance = "manual" | "click" | "proposal" | "unknown";

/** One colour per provenance: painted by hand, accepted from a click, from a proposal. */
export const PROVENANCE_COLOURS: Record<Provenance, string> = {
  manual: "#1f6feb",
  click: "#e66100",
  proposal: "#2ca02c",
  unknown: "#8a8f98",
};

/** Where an object came from, as its save said (objects saved before provenance: unknown). */
export function provenanceOf(o: LabelObject): Provenance {
  return o.provenance?.source ?? "unknown";
}

/** The provenance as the table writes it: "proposal (model v3)" names what proposed it;
 * "manual, interpolated xy 14–16" the slices interpolation filled (numbered from 1). */
export function provenanceText(o: LabelObject): string {
  const p = o.provenance;
  if (!p) return "–";
  const by = p.model ?? p.proposal_source;
  const filled = Object.entries(p.interpolated ?? {})
    .filter(([, slices]) => slices.length)
    .map(([plane, slices]) => `${plane} ${sliceRanges(slices)}`);
  return (
    (by ? `${p.source} (${by})` : p.source) + filled.map((f) => `, interpolated ${f}`).join("")
  );
}

/** A table row: id, volume (um^3), surface (um^2), sphericity, provenance; an object of a 2D
 * image: id, area (um^2), provenance. */
export function objectCells(o: LabelObject): string[] {
  if (o.area_um2 !== null && o.area_um2 !== undefined)
    return [String(o.segment_id), figure(o.area_um2), provenanceText(o)];
  return [
    String(o.segment_id),
    figure(o.volume_um3),
    figure(o.surface_area_um2),
    figure(o.sphericity),
    provenanceText(o),
  ];
}

/** The image voxel (z, y, x) at an object's centroid, where "show" moves Neuroglancer. */
export function centroidVoxel(o: LabelObject): [number, number, number] {
  return [o.centroid_z, o.centroid_y, o.centroid_x];
}

export interface ScatterPoint {
  x: number;
  y: number;
  colour: string;
  id: number;
}

/** The scatter's points: volume (x, a log axis: positive only) against sphericity, for the
 * objects that have both (a one-voxel object has no surface, hence no sphericity). */
export function scatterPoints(objects: readonly LabelObject[]): ScatterPoint[] {
  const points: ScatterPoint[] = [];
  for (const o of objects) {
    const v = o.volume_um3;
    const s = o.sphericity;
    if (v === null || s === null || !(v > 0) || !Number.isFinite(s)) continue;
    points.push({ x: v, y: s, colour: PROVENANCE_COLOURS[provenanceOf(o)], id: o.segment_id });
  }
  return points;
}

/** How many objects of each provenance (the legend), in a fixed order, only those present. */
export function provenanceCounts(objects: readonly LabelObject[]): [Provenance, number][] {
  const counts = new Map<Provenance, number>();
  for (const o of objects) counts.set(provenanceOf(o), (counts.get(provenanceOf(o)) ?? 0) + 1);
  const order: Provenance[] = ["manual", "click", "proposal", "unknown"];
  return order.filter((p) => counts.has(p)).map((p) => [p, counts.get(p)!]);
}

/** The median of the finite values, or null. */
export function median(values: readonly (number | null)[]): number | null {
  const v = values
    .filter((x): x is number => x !== null && Number.isFinite(x))
    .sort((a, b) => a - b);
  if (!v.length) return null;
  const mid = v.length >> 1;
  return v.length % 2 ? v[mid]! : (v[mid - 1]! + v[mid]!) / 2;
}

/** The section's one-line summary: count, median volume and sphericity (a 2D image's objects:
 * their median area). */
export function objectsSummary(objects: readonly LabelObject[], version: number): string {
  if (!objects.length) return `version ${version}: no painted objects`;
  if (objects.some((o) => o.area_um2 !== null && o.area_um2 !== undefined))
    return (
      `version ${version}: ${objects.length} object(s), median area ` +
      `${figure(median(objects.map((o) => o.area_um2 ?? null)))} µm²`
    );
  return (
    `version ${version}: ${objects.length} object(s), median ` +
    `${figure(median(objects.map((o) => o.volume_um3)))} µm³, sphericity ` +
    `${figure(median(objects.map((o) => o.sphericity)))}`
  );
}
