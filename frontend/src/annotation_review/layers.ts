// The review page's Neuroglancer layers and keys, as pure functions (unit-tested without a DOM).
// Neuroglancer's global dimensions are the image layer's voxels (webapp/viewer/services.py):
// an annotation's voxel position z y x (voxel i's centre at i, as the API stores it) is the
// same global coordinates (lib/voxel_grid.ts), written in the order of the state's dimensions
// (x, y, z).

import { middleVoxel, voxelCentre, voxelEdge } from "../lib/voxel_grid";

/** One annotation as the API gives it (webapp/annotation/api/serializers.py). */
export interface StoredAnnotation {
  uid: string;
  kind: string;
  label: string;
  object_id: number;
  coords: number[][];
  description?: string;
}

/** Neuroglancer's JSON of one local annotation. */
export type NgAnnotation =
  | { type: "point"; id: string; point: number[]; description?: string }
  | { type: "line"; id: string; pointA: number[]; pointB: number[]; description?: string }
  | {
      type: "axis_aligned_bounding_box";
      id: string;
      pointA: number[];
      pointB: number[];
      description?: string;
    }
  | { type: "ellipsoid"; id: string; center: number[]; radii: number[]; description?: string };

/** A local annotation source in the viewer's dimensions (without them a layer made after the
 * viewer started has rank 0 and refuses every annotation). */
export type AnnotationSourceJson =
  string | { url: string; transform: { outputDimensions: Record<string, unknown> } };

export function localSource(dimensions?: Record<string, unknown>): AnnotationSourceJson {
  const url = "local://annotations";
  return dimensions ? { url, transform: { outputDimensions: dimensions } } : url;
}

export interface AnnotationLayerJson {
  type: "annotation";
  name: string;
  source: AnnotationSourceJson;
  annotationColor: string;
  annotations: NgAnnotation[];
  [key: string]: unknown;
}

/** The dimension names of a state (its `dimensions` keys), x y z when it names none. */
export function dimensionNames(state: { [key: string]: unknown }): string[] {
  // The state's `dimensions`: {x: [scale, unit], y: ..., z: ...} in the viewer's order.
  const dims = state["dimensions"];
  if (dims && typeof dims === "object") {
    const names = Object.keys(dims);
    if (names.length) return names;
  }
  return ["x", "y", "z"];
}

/** A voxel position z y x as global coordinates in the dimensions' order. */
export function toGlobal(zyx: readonly number[], dims: readonly string[]): number[] {
  const voxel: Record<string, number> = { z: zyx[0] ?? 0, y: zyx[1] ?? 0, x: zyx[2] ?? 0 };
  return dims.map((name) => voxelCentre(voxel[name] ?? 0));
}

/** Lengths z y x (an ellipsoid's radii) in the dimensions' order. */
export function toGlobalLengths(zyx: readonly number[], dims: readonly string[]): number[] {
  const voxel: Record<string, number> = { z: zyx[0] ?? 0, y: zyx[1] ?? 0, x: zyx[2] ?? 0 };
  return dims.map((name) => voxel[name] ?? 1);
}

/** Neuroglancer annotations of one stored annotation (a polyline: one line per segment). */
export function ngAnnotations(a: StoredAnnotation, dims: readonly string[]): NgAnnotation[] {
  const description = `${a.label}${a.object_id ? ` #${a.object_id}` : ""}`;
  const at = (k: number): number[] => toGlobal(a.coords[k] ?? [0, 0, 0], dims);
  switch (a.kind) {
    case "point":
      return [{ type: "point", id: a.uid, point: at(0), description }];
    case "line":
      return [{ type: "line", id: a.uid, pointA: at(0), pointB: at(1), description }];
    case "axis_aligned_bounding_box":
      return [
        { type: "axis_aligned_bounding_box", id: a.uid, pointA: at(0), pointB: at(1), description },
      ];
    case "ellipsoid":
      return [
        {
          type: "ellipsoid",
          id: a.uid,
          center: at(0),
          radii: toGlobalLengths(a.coords[1] ?? [1, 1, 1], dims),
          description,
        },
      ];
    case "polyline":
      return a.coords.slice(1).map((_, k) => ({
        type: "line" as const,
        id: `${a.uid}-${k}`,
        pointA: at(k),
        pointB: at(k + 1),
        description,
      }));
    default:
      return [];
  }
}

/** A local annotation layer holding `annotations` (its edits are saved nowhere: read-only). */
export function annotationLayer(
  name: string,
  colour: string,
  annotations: readonly StoredAnnotation[],
  dims: readonly string[],
  dimensions?: Record<string, unknown>,
): AnnotationLayerJson {
  return {
    type: "annotation",
    name,
    source: localSource(dimensions),
    annotationColor: colour,
    annotations: annotations.flatMap((a) => ngAnnotations(a, dims)),
  };
}

/** The task box drawn as one bounding box (its voxels' outer faces). */
export function boxLayer(
  name: string,
  start: readonly number[],
  size: readonly number[],
  dims: readonly string[],
  dimensions?: Record<string, unknown>,
): AnnotationLayerJson {
  const end = start.map((s, k) => s + (size[k] ?? 1));
  return {
    type: "annotation",
    name,
    source: localSource(dimensions),
    annotationColor: "#00d0ff",
    annotations: [
      {
        type: "axis_aligned_bounding_box",
        id: "task-box",
        pointA: toGlobal(start.map(voxelEdge), dims),
        pointB: toGlobal(end.map(voxelEdge), dims),
      },
    ],
  };
}

export interface BoxCamera {
  position: number[];
  crossSectionScale: number;
  projectionScale: number;
}

/** The camera at the box's middle voxel (a whole section, where the task page opens too),
 * zoomed so its largest side fills 1 / margin of a panel. */
export function cameraForTaskBox(
  start: readonly number[],
  size: readonly number[],
  dims: readonly string[],
  panelPixels: number,
  margin = 1.3,
): BoxCamera {
  const centre = start.map((s, k) => middleVoxel(s, size[k] ?? 1));
  const largest = Math.max(1, ...size);
  return {
    position: toGlobal(centre, dims),
    crossSectionScale: (largest * margin) / Math.max(1, panelPixels),
    projectionScale: Math.hypot(...size.map((s) => Math.max(1, s))) * margin,
  };
}

/** Colours of the layers: the task under review first, then the other annotators'. */
export const REVIEWED_COLOUR = "#ffcc00";
export const OTHER_COLOURS = ["#ff4fd8", "#4fff7a", "#ff8c3a", "#7aa8ff", "#c78bff"];

export type ReviewAction = "approve" | "reject" | "next";

/** The parts of a KeyboardEvent that matter (so tests need no DOM). */
export interface KeyPress {
  key: string;
  ctrlKey?: boolean;
  metaKey?: boolean;
  altKey?: boolean;
}

/** A approves, R rejects, N asks for the next task; other keys and shortcuts are left alone. */
export function reviewActionForKey(press: KeyPress): ReviewAction | null {
  if (press.ctrlKey || press.metaKey || press.altKey) return null;
  switch (press.key.toLowerCase()) {
    case "a":
      return "approve";
    case "r":
      return "reject";
    case "n":
      return "next";
    default:
      return null;
  }
}

/** "0.667" for a figure, "–" for none. */
export function figure(value: number | null | undefined): string {
  if (value === null || value === undefined || !Number.isFinite(value)) return "–";
  return Number(value.toPrecision(3)).toString();
}

interface AnnotationSource {
  restoreState(json: unknown): void;
  toJSON(): unknown[];
}

/** Replaces an annotation layer's annotations; false until the layer's source exists. */
export function setAnnotations(
  viewer: { layerManager: { getLayerByName(name: string): { layer: unknown } | undefined } },
  layerName: string,
  annotations: readonly NgAnnotation[],
): boolean {
  const layer = viewer.layerManager.getLayerByName(layerName)?.layer as
    { localAnnotations?: AnnotationSource } | null | undefined;
  const source = layer?.localAnnotations;
  if (!source) return false;
  source.restoreState(annotations);
  return true;
}

// --- painted campaigns ---------------------------------------------------------------------

/** Neuroglancer's JSON of a read-only segmentation layer (a box's consensus volume). */
export interface SegmentationLayerJson {
  type: "segmentation";
  name: string;
  source: string;
  segments: string[];
  selectedAlpha: number;
  [key: string]: unknown;
}

/** The consensus volume as a segmentation layer: `source` is the API's neuroglancer_source
 * (zarr3://…/label-consensus/q<n>-<versions>/, an immutable URL), every object selected. */
export function consensusLayer(
  source: string,
  objectIds: readonly number[],
  name = "consensus",
): SegmentationLayerJson {
  return {
    type: "segmentation",
    name,
    source,
    segments: objectIds.map(String),
    selectedAlpha: 0.45,
  };
}

/** A pair of annotators' painted agreement, as the panel's row (pure: unit-tested). */
export interface LabelPairFigures {
  reference: string;
  other: string;
  matched: number;
  n_reference: number;
  n_other: number;
  precision: number | null;
  recall: number | null;
  f1: number | null;
  dice: number | null;
  mean_matched_iou: number | null;
}

export function labelPairCells(p: LabelPairFigures): string[] {
  return [
    `${p.reference} / ${p.other}`,
    `${p.matched} of ${p.n_reference} / ${p.n_other}`,
    figure(p.precision),
    figure(p.recall),
    figure(p.f1),
    figure(p.dice),
    figure(p.mean_matched_iou),
  ];
}

/** One object left out of the consensus, as the reviewer's list says it. */
export function unmatchedText(o: {
  annotator: string;
  id: number;
  voxels: number;
  centroid: number[];
  support: number;
}): string {
  const at = o.centroid.map((c) => Math.round(c)).join(" ");
  const found = o.support > 1 ? `matched by ${o.support} annotators, below the quorum` : "alone";
  return `${o.annotator} #${o.id}: ${o.voxels} voxels at ${at} (box z y x), ${found}`;
}

/** A box-local position z y x (an object's centroid) as global coordinates of the viewer. */
export function boxPointGlobal(
  start: readonly number[],
  local: readonly number[],
  dims: readonly string[],
): number[] {
  return toGlobal(
    start.map((s, k) => s + (local[k] ?? 0)),
    dims,
  );
}
