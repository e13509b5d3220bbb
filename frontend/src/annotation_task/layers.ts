// The task page's layers and camera: the task box (one read-only bounding box), the dimming of
// the volume outside it (up to six filled boxes: in a 2D panel Neuroglancer fills a box's cut
// with `setBoundingBoxFillColor`, so the volume around the box is darkened and the box left as
// it is), the annotators' "annotations" layer (class colour and object id as annotation
// properties) and an empty "earlier version" layer that "show" fills.

import { middleVoxel, voxelEdge } from "../lib/voxel_grid";
import { type Axes, type Kind, ngGeometryJson, toViewer } from "./coords";
import type { ApiAnnotation } from "./sync";

export interface LabelClass {
  name: string;
  label: string;
  colour: string;
  key: string;
}

export interface TaskBox {
  start: number[]; // z y x voxels
  size: number[];
}

export const ANNOTATIONS = "annotations";
export const TASK_BOX = "task box";
export const DIMMING = "outside the box";
export const EARLIER = "earlier version";
export const DIM_ALPHA = 0.6;

/** The drawing tools' Shift+key (the help's list). The page handles these keys itself: a
 * layer's Neuroglancer `toolBindings` only take new-style tools, and the annotation tools are
 * Neuroglancer's "legacy" layer tools, so such a binding is silently dropped (and a bound tool
 * would only be held while the key is down). */
export const TOOL_KEYS: Readonly<Record<string, string>> = {
  P: "annotatePoint",
  L: "annotateLine",
  B: "annotateBoundingBox",
  E: "annotateSphere",
  Y: "annotatePolyline",
};

/** The tool a key press chooses: Shift+letter of TOOL_KEYS, no other modifier. */
export function toolForKey(
  event: Pick<KeyboardEvent, "key" | "shiftKey" | "ctrlKey" | "altKey" | "metaKey">,
): string | undefined {
  if (!event.shiftKey || event.ctrlKey || event.altKey || event.metaKey) return undefined;
  const key = event.key.length === 1 ? event.key.toUpperCase() : "";
  return Object.hasOwn(TOOL_KEYS, key) ? TOOL_KEYS[key] : undefined;
}

/** A tool's id from Neuroglancer's tool JSON (a string, or an object with a type). */
export function toolId(json: unknown): string | undefined {
  if (typeof json === "string") return json;
  if (json && typeof json === "object" && typeof (json as { type?: unknown }).type === "string") {
    return (json as { type: string }).type;
  }
  return undefined;
}

/** [lo, hi) voxel ranges z y x of the slabs around `box` within `outer` (start, end). */
export function outsideSlabs(box: TaskBox, outer: { lo: number[]; hi: number[] }): number[][][] {
  const b0 = box.start;
  const b1 = box.start.map((s, i) => s + (box.size[i] ?? 0));
  const slabs: number[][][] = [];
  const push = (lo: number[], hi: number[]): void => {
    if (lo.every((v, i) => v < (hi[i] ?? v))) slabs.push([lo, hi]);
  };
  const [oz0 = 0, oy0 = 0, ox0 = 0] = outer.lo;
  const [oz1 = 0, oy1 = 0, ox1 = 0] = outer.hi;
  const [z0 = 0, y0 = 0, x0 = 0] = b0;
  const [z1 = 0, y1 = 0, x1 = 0] = b1;
  push([oz0, oy0, ox0], [z0, oy1, ox1]);
  push([z1, oy0, ox0], [oz1, oy1, ox1]);
  push([z0, oy0, ox0], [z1, y0, ox1]);
  push([z0, y1, ox0], [z1, oy1, ox1]);
  push([z0, y0, ox0], [z1, y1, x0]);
  push([z0, y0, x1], [z1, y1, ox1]);
  return slabs;
}

/** A box of voxels [lo, hi) as Neuroglancer corners: the edges of voxels lo and hi. */
function boxJson(id: string, lo: number[], hi: number[], axes: Axes): Record<string, unknown> {
  return {
    type: "axis_aligned_bounding_box",
    id,
    pointA: Array.from(toViewer(lo.map(voxelEdge), axes)),
    pointB: Array.from(toViewer(hi.map(voxelEdge), axes)),
  };
}

export function taskBoxLayer(box: TaskBox, axes: Axes): Record<string, unknown> {
  const hi = box.start.map((s, i) => s + (box.size[i] ?? 0));
  return {
    type: "annotation",
    name: TASK_BOX,
    source: "local://annotations",
    pick: false,
    annotationColor: "#00e5ff",
    annotations: [boxJson("task-box", box.start, hi, axes)],
  };
}

/** The dimming layer: slabs from the volume's edges (voxels [0, shape)) to the box. Nothing
 * beyond the volume: there the fill would darken Neuroglancer's grey background into a slab. */
export function dimmingLayer(box: TaskBox, shape: number[], axes: Axes): Record<string, unknown> {
  const lo = shape.map(() => 0);
  const hi = shape.map((n, i) => Math.max(n, (box.start[i] ?? 0) + (box.size[i] ?? 0)));
  return {
    type: "annotation",
    name: DIMMING,
    source: "local://annotations",
    pick: false,
    shader:
      "void main() {\n  setBoundingBoxBorderWidth(0.0);\n" +
      `  setBoundingBoxFillColor(vec4(0.0, 0.0, 0.0, ${DIM_ALPHA.toFixed(2)}));\n}\n`,
    annotations: outsideSlabs(box, { lo, hi }).map(([a, b], i) =>
      boxJson(`outside-${i}`, a ?? [], b ?? [], axes),
    ),
  };
}

export const ANNOTATION_SHADER = "void main() {\n  setColor(prop_color());\n}\n";

/** Neuroglancer's JSON of one API annotation in the annotations layer. */
export function annotationJson(
  a: ApiAnnotation,
  axes: Axes,
  colourOf: (label: string) => string,
): Record<string, unknown> {
  const json: Record<string, unknown> = {
    ...ngGeometryJson(a.kind as Kind, a.coords, axes),
    id: a.uid,
    props: [colourOf(a.label), Math.min(a.object_id, 0xffffffff)],
  };
  if (a.description) json["description"] = a.description;
  return json;
}

export function annotationsLayer(
  annotations: readonly ApiAnnotation[],
  axes: Axes,
  schema: readonly LabelClass[],
  pointTool: boolean,
): Record<string, unknown> {
  const colours = new Map(schema.map((c) => [c.name, c.colour]));
  const colourOf = (label: string): string => colours.get(label) ?? "#ffffff";
  return {
    type: "annotation",
    name: ANNOTATIONS,
    source: "local://annotations",
    tab: "annotations",
    annotationProperties: [
      { id: "color", type: "rgb", default: schema[0]?.colour ?? "#ffff00" },
      { id: "object", type: "uint32", default: 0 },
    ],
    shader: ANNOTATION_SHADER,
    ...(pointTool ? { tool: "annotatePoint" } : {}),
    annotations: annotations.map((a) => annotationJson(a, axes, colourOf)),
  };
}

export function earlierLayer(): Record<string, unknown> {
  return {
    type: "annotation",
    name: EARLIER,
    source: "local://annotations",
    pick: false,
    visible: false,
    annotationColor: "#bbbbbb",
    annotations: [],
  };
}

export interface Camera {
  position: number[];
  crossSectionScale: number;
  projectionScale: number;
}

/** Centred on the box (on a voxel's centre, so a 2D panel shows one whole section and what is
 * drawn there lands on it), zoomed so its largest side fills `1 / margin` of a panel. */
export function cameraForTask(
  box: TaskBox,
  axes: Axes,
  panelPixels: number,
  margin = 1.25,
): Camera {
  const centre = box.start.map((s, i) => middleVoxel(s, box.size[i] ?? 0));
  const largest = Math.max(1, ...box.size);
  return {
    position: Array.from(toViewer(centre, axes)),
    crossSectionScale: (largest * margin) / Math.max(1, panelPixels),
    projectionScale: Math.hypot(...box.size.map((n) => Math.max(1, n))) * margin,
  };
}
