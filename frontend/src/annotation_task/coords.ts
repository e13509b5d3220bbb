// Coordinates between Neuroglancer and the annotation API. The viewer's global dimensions are
// the image layer's voxels in the order of the state's `dimensions` (x, y, z from
// webapp/viewer/services.py); the API stores voxel positions z, y, x (webapp/annotation/
// models.py). Both put voxel i's centre at i (lib/voxel_grid.ts): only the order changes. An
// ellipsoid is [centre, radii] in both.

export type Kind = "point" | "line" | "axis_aligned_bounding_box" | "ellipsoid" | "polyline";

/** Neuroglancer 2.41's AnnotationType numbers. */
export const NG_TYPE: Readonly<Record<Kind, number>> = {
  point: 0,
  line: 1,
  axis_aligned_bounding_box: 2,
  ellipsoid: 3,
  polyline: 4,
};
const KIND_OF_TYPE: readonly Kind[] = [
  "point",
  "line",
  "axis_aligned_bounding_box",
  "ellipsoid",
  "polyline",
];

export function kindOfType(type: number): Kind | undefined {
  return KIND_OF_TYPE[type];
}

/** An annotation object as Neuroglancer holds it in a local annotation source. */
export interface NgAnnotation {
  type: number;
  id: string;
  point?: Float32Array;
  pointA?: Float32Array;
  pointB?: Float32Array;
  center?: Float32Array;
  radii?: Float32Array;
  points?: Float32Array[];
  description?: string;
  properties: number[];
  relatedSegments?: unknown;
}

/** Where the API's z, y, x are in the viewer's coordinate vector. */
export interface Axes {
  rank: number;
  z: number;
  y: number;
  x: number;
}

/** The axes of a state's `dimensions` (names in order); throws when x, y or z is missing. */
export function axesOf(dimensionNames: readonly string[]): Axes {
  const index = (name: string): number => {
    const i = dimensionNames.indexOf(name);
    if (i < 0)
      throw new Error(`The viewer has no ${name} dimension (${dimensionNames.join(", ")}).`);
    return i;
  };
  const z = dimensionNames.indexOf("z");
  // A 2D image has no z: it is then always 0 in the API and absent in the viewer.
  return { rank: dimensionNames.length, z, y: index("y"), x: index("x") };
}

/** Coordinates kept to a thousandth of a voxel (float32 noise never reads as a change). */
export function round3(value: number): number {
  return Math.round(value * 1000) / 1000 + 0;
}

function take(p: ArrayLike<number>, i: number): number {
  return i < 0 ? 0 : Number(p[i] ?? 0);
}

/** A viewer position as the API's voxel [z, y, x]. */
export function toVoxel(p: ArrayLike<number>, axes: Axes): number[] {
  return [axes.z, axes.y, axes.x].map((i) => (i < 0 ? 0 : round3(take(p, i))));
}

/** A length vector (ellipsoid radii) as [z, y, x]. */
export function toVoxelLength(p: ArrayLike<number>, axes: Axes): number[] {
  return [axes.z, axes.y, axes.x].map((i) => (i < 0 ? 1 : round3(take(p, i))));
}

/** The API's voxel [z, y, x] as a viewer position (or a length vector: the same numbers). */
export function toViewer(v: readonly number[], axes: Axes): Float32Array {
  const out = new Float32Array(axes.rank);
  const [z = 0, y = 0, x = 0] = v;
  if (axes.z >= 0) out[axes.z] = z;
  out[axes.y] = y;
  out[axes.x] = x;
  return out;
}

/** The API's kind and coordinates of a Neuroglancer annotation; undefined for unknown types. */
export function geometryOf(
  a: NgAnnotation,
  axes: Axes,
): { kind: Kind; coords: number[][] } | undefined {
  const kind = kindOfType(a.type);
  if (!kind) return undefined;
  switch (kind) {
    case "point":
      return a.point ? { kind, coords: [toVoxel(a.point, axes)] } : undefined;
    case "line":
    case "axis_aligned_bounding_box":
      return a.pointA && a.pointB
        ? { kind, coords: [toVoxel(a.pointA, axes), toVoxel(a.pointB, axes)] }
        : undefined;
    case "ellipsoid":
      return a.center && a.radii
        ? { kind, coords: [toVoxel(a.center, axes), toVoxelLength(a.radii, axes)] }
        : undefined;
    case "polyline":
      return a.points ? { kind, coords: a.points.map((p) => toVoxel(p, axes)) } : undefined;
  }
}

/** Neuroglancer's JSON fields for an annotation of the API (as `restoreState` reads them). */
export function ngGeometryJson(
  kind: Kind,
  coords: readonly (readonly number[])[],
  axes: Axes,
): Record<string, unknown> {
  const at = (i: number): number[] => Array.from(toViewer(coords[i] ?? [0, 0, 0], axes));
  switch (kind) {
    case "point":
      return { type: "point", point: at(0) };
    case "line":
    case "axis_aligned_bounding_box":
      return { type: kind, pointA: at(0), pointB: at(1) };
    case "ellipsoid":
      return {
        type: "ellipsoid",
        center: at(0),
        radii: Array.from(toViewer(coords[1] ?? [1, 1, 1], axes)),
      };
    case "polyline":
      return { type: "polyline", points: coords.map((_, i) => at(i)) };
  }
}

/** "#rrggbb" packed as Neuroglancer packs an rgb property (r | g << 8 | b << 16). */
export function packRgb(colour: string): number {
  const m = /^#?([0-9a-f]{2})([0-9a-f]{2})([0-9a-f]{2})$/i.exec(colour);
  if (!m) return 0xffffff;
  const [r, g, b] = [m[1], m[2], m[3]].map((h) => parseInt(h ?? "ff", 16)) as [
    number,
    number,
    number,
  ];
  return r | (g << 8) | (b << 16);
}
