// The painting tools: a disc brush and eraser in the current plane (stamped along a stroke),
// a 3D sphere brush, and a 2D flood fill of the clicked value's connected region in a slice.

import type { Edit } from "./history";
import { type LabelVolume, PLANES, type Plane } from "./volume";

/** Paints a disc of radius ``r`` voxels centred on plane pixel (u, v) of ``slice``. */
export function paintDisc(
  edit: Edit,
  plane: Plane,
  slice: number,
  u: number,
  v: number,
  r: number,
  value: number,
): void {
  const vol = edit.volume;
  const { width, height, depth } = vol.planeSize(plane);
  if (slice < 0 || slice >= depth) return;
  const a = PLANES[plane];
  const su = vol.strides[a.u];
  const sv = vol.strides[a.v];
  const base = slice * vol.strides[a.normal];
  const rr = r * r;
  const ri = Math.ceil(r);
  const cu = Math.round(u);
  const cv = Math.round(v);
  for (let dv = -ri; dv <= ri; dv++) {
    const pv = cv + dv;
    if (pv < 0 || pv >= height) continue;
    for (let du = -ri; du <= ri; du++) {
      const pu = cu + du;
      if (pu < 0 || pu >= width || du * du + dv * dv > rr) continue;
      edit.set(base + pu * su + pv * sv, value);
    }
  }
}

/** Stamps discs along the segment from (u0, v0) to (u1, v1): a fast drag leaves no gaps. */
export function paintStroke(
  edit: Edit,
  plane: Plane,
  slice: number,
  from: readonly [number, number],
  to: readonly [number, number],
  r: number,
  value: number,
): void {
  const du = to[0] - from[0];
  const dv = to[1] - from[1];
  const length = Math.hypot(du, dv);
  const steps = Math.max(1, Math.ceil(length / Math.max(0.5, r / 2)));
  for (let i = 0; i <= steps; i++) {
    const t = i / steps;
    paintDisc(edit, plane, slice, from[0] + du * t, from[1] + dv * t, r, value);
  }
}

/** Paints a ball of radius ``r`` voxels centred on voxel (z, y, x). */
export function paintSphere(
  edit: Edit,
  z: number,
  y: number,
  x: number,
  r: number,
  value: number,
): void {
  const vol = edit.volume;
  const [d, h, w] = vol.shape;
  const ri = Math.ceil(r);
  const rr = r * r;
  for (let dz = -ri; dz <= ri; dz++) {
    const pz = z + dz;
    if (pz < 0 || pz >= d) continue;
    for (let dy = -ri; dy <= ri; dy++) {
      const py = y + dy;
      if (py < 0 || py >= h) continue;
      for (let dx = -ri; dx <= ri; dx++) {
        const px = x + dx;
        if (px < 0 || px >= w || dz * dz + dy * dy + dx * dx > rr) continue;
        edit.set(vol.index(pz, py, px), value);
      }
    }
  }
}

/** Fills the 4-connected region of plane pixels holding the clicked pixel's value with
 * ``value``; a scanline fill with one typed-array stack. Answers the pixels filled. */
export function floodFill2d(
  edit: Edit,
  plane: Plane,
  slice: number,
  u: number,
  v: number,
  value: number,
): number {
  const vol = edit.volume;
  const { width, height, depth } = vol.planeSize(plane);
  if (slice < 0 || slice >= depth || u < 0 || v < 0 || u >= width || v >= height) return 0;
  const a = PLANES[plane];
  const su = vol.strides[a.u];
  const sv = vol.strides[a.v];
  const base = slice * vol.strides[a.normal];
  const data = vol.data;
  const target = data[base + u * su + v * sv]!;
  if (target === value) return 0;
  const seen = new Uint8Array(width * height);
  let stack = new Int32Array(1024);
  let top = 0;
  const push = (pu: number, pv: number): void => {
    if (top + 2 > stack.length) {
      const next = new Int32Array(stack.length * 2);
      next.set(stack);
      stack = next;
    }
    stack[top++] = pu;
    stack[top++] = pv;
  };
  const matches = (pu: number, pv: number): boolean =>
    !seen[pv * width + pu] && data[base + pu * su + pv * sv] === target;
  push(u, v);
  let filled = 0;
  while (top > 0) {
    const pv = stack[--top]!;
    let pu = stack[--top]!;
    if (!matches(pu, pv)) continue;
    while (pu > 0 && matches(pu - 1, pv)) pu--;
    let above = false;
    let below = false;
    for (; pu < width && matches(pu, pv); pu++) {
      seen[pv * width + pu] = 1;
      edit.set(base + pu * su + pv * sv, value);
      filled++;
      if (pv > 0) {
        const m = matches(pu, pv - 1);
        if (m && !above) push(pu, pv - 1);
        above = m;
      }
      if (pv < height - 1) {
        const m = matches(pu, pv + 1);
        if (m && !below) push(pu, pv + 1);
        below = m;
      }
    }
  }
  return filled;
}

/** The id under a voxel (the "pick object" tool); 0 is background. */
export function pick(vol: LabelVolume, z: number, y: number, x: number): number {
  return vol.inside(z, y, x) ? vol.get(z, y, x) : 0;
}
