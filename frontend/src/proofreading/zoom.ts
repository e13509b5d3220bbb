// Where the queue page puts the camera for one detection: centred on its centroid, zoomed so that
// its bounding box fills most of a panel. Neuroglancer's global dimensions are the layer's voxels
// (webapp/viewer/services.py), so positions are voxel coordinates x, y, z with voxel i's centre
// at i as in the API (lib/voxel_grid.ts), `crossSectionScale` is voxels per screen pixel and
// `projectionScale` is the 3D view's height in voxels.

/** The detection columns the camera needs (voxels of the layer's full resolution, z y x). */
export interface DetectionBox {
  centroid_z: number;
  centroid_y: number;
  centroid_x: number;
  bbox_z0: number;
  bbox_y0: number;
  bbox_x0: number;
  bbox_z1: number;
  bbox_y1: number;
  bbox_x1: number;
}

export interface Camera {
  /** x, y, z in voxels (Neuroglancer's order). */
  position: [number, number, number];
  crossSectionScale: number;
  projectionScale: number;
}

/** The box fills `1 / margin` of the panel's smaller side. */
export const DEFAULT_MARGIN = 1.6;
/** Never zoom in further than this many voxels per pixel (a 1-voxel object stays visible). */
export const MIN_CROSS_SECTION_SCALE = 0.02;

/**
 * The camera for `box` on panels of `panelPixels` (the smaller side of one 2D panel).
 * The cross-section scale fits the box's largest side (each 2D panel shows two of its three
 * sides, so the largest side fits all three panels); the 3D view is `margin` times the box's
 * diagonal high, so the mesh fits whatever the orientation.
 */
export function cameraForBox(
  box: DetectionBox,
  panelPixels: number,
  margin: number = DEFAULT_MARGIN,
): Camera {
  const sides = [box.bbox_x1 - box.bbox_x0, box.bbox_y1 - box.bbox_y0, box.bbox_z1 - box.bbox_z0];
  const largest = Math.max(1, ...sides.map((side) => (Number.isFinite(side) ? side : 1)));
  const pixels = Math.max(1, panelPixels);
  const diagonal = Math.hypot(...sides.map((side) => Math.max(1, side)));
  return {
    position: [box.centroid_x, box.centroid_y, box.centroid_z],
    crossSectionScale: Math.max((largest * margin) / pixels, MIN_CROSS_SECTION_SCALE),
    projectionScale: diagonal * margin,
  };
}

/** True when `position` (x, y, z) is within `tolerance` voxels of the camera's position. */
export function isCentredOn(
  position: readonly number[] | undefined,
  camera: Camera,
  tolerance = 0.01,
): boolean {
  if (!position || position.length < 3) return false;
  return camera.position.every((value, i) => Math.abs((position[i] ?? NaN) - value) <= tolerance);
}

/** A viewer position (x, y, z) as the voxel position z, y, x the API wants (the same numbers). */
export function voxelZyx(position: readonly number[]): { z: number; y: number; x: number } {
  const [x = 0, y = 0, z = 0] = position;
  return { z, y, x };
}
