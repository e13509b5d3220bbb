// Shape-based interpolation between painted slices of one object along a plane's normal: the
// two nearest painted slices around each gap are turned into signed distance maps (exact
// Euclidean distance transforms, Felzenszwalb & Huttenlocher), blended linearly, and the
// blend's inside (<= 0) is painted on the empty voxels of every slice between them.

import type { Edit } from "./history";
import { PLANES, type Plane } from "./volume";

const BIG = 1e20;

/** Squared 1D distance transform of ``f`` (length n) into ``d``; v, z are scratch. */
function edt1d(f: Float64Array, n: number, d: Float64Array, v: Int32Array, z: Float64Array): void {
  let k = 0;
  v[0] = 0;
  z[0] = -BIG;
  z[1] = BIG;
  for (let q = 1; q < n; q++) {
    let s = (f[q]! + q * q - (f[v[k]!]! + v[k]! * v[k]!)) / (2 * q - 2 * v[k]!);
    while (s <= z[k]!) {
      k--;
      s = (f[q]! + q * q - (f[v[k]!]! + v[k]! * v[k]!)) / (2 * q - 2 * v[k]!);
    }
    k++;
    v[k] = q;
    z[k] = s;
    z[k + 1] = BIG;
  }
  k = 0;
  for (let q = 0; q < n; q++) {
    while (z[k + 1]! < q) k++;
    const dq = q - v[k]!;
    d[q] = dq * dq + f[v[k]!]!;
  }
}

/** Squared Euclidean distance of every pixel of a width x height grid to the nearest pixel
 * where ``seed`` is 1 (BIG when there is none). */
export function distanceTransform2d(seed: Uint8Array, width: number, height: number): Float64Array {
  const n = Math.max(width, height);
  const f = new Float64Array(n);
  const d = new Float64Array(n);
  const v = new Int32Array(n);
  const z = new Float64Array(n + 1);
  const out = new Float64Array(width * height);
  for (let i = 0; i < out.length; i++) out[i] = seed[i] ? 0 : BIG;
  for (let x = 0; x < width; x++) {
    for (let y = 0; y < height; y++) f[y] = out[y * width + x]!;
    edt1d(f, height, d, v, z);
    for (let y = 0; y < height; y++) out[y * width + x] = d[y]!;
  }
  for (let y = 0; y < height; y++) {
    const row = y * width;
    for (let x = 0; x < width; x++) f[x] = out[row + x]!;
    edt1d(f, width, d, v, z);
    for (let x = 0; x < width; x++) out[row + x] = d[x]!;
  }
  return out;
}

/** Signed distance of a mask: negative inside (to the nearest outside pixel), positive outside. */
export function signedDistance(mask: Uint8Array, width: number, height: number): Float32Array {
  const outside = new Uint8Array(mask.length);
  for (let i = 0; i < mask.length; i++) outside[i] = mask[i] ? 0 : 1;
  const toInside = distanceTransform2d(mask, width, height);
  const toOutside = distanceTransform2d(outside, width, height);
  const out = new Float32Array(mask.length);
  for (let i = 0; i < mask.length; i++) {
    out[i] = mask[i]! ? 0.5 - Math.sqrt(toOutside[i]!) : Math.sqrt(toInside[i]!) - 0.5;
  }
  return out;
}

/** Which slices of ``plane`` hold voxels of object ``id``. */
export function paintedSlices(edit: Edit, plane: Plane, id: number): number[] {
  const vol = edit.volume;
  const { width, height, depth } = vol.planeSize(plane);
  const a = PLANES[plane];
  const su = vol.strides[a.u];
  const sv = vol.strides[a.v];
  const found: number[] = [];
  for (let s = 0; s < depth; s++) {
    const base = s * vol.strides[a.normal];
    let hit = false;
    for (let pv = 0; pv < height && !hit; pv++) {
      const row = base + pv * sv;
      for (let pu = 0; pu < width; pu++) {
        if (vol.data[row + pu * su] === id) {
          hit = true;
          break;
        }
      }
    }
    if (hit) found.push(s);
  }
  return found;
}

function sliceMask(edit: Edit, plane: Plane, slice: number, id: number): Uint8Array {
  const vol = edit.volume;
  const { width, height } = vol.planeSize(plane);
  const a = PLANES[plane];
  const su = vol.strides[a.u];
  const sv = vol.strides[a.v];
  const base = slice * vol.strides[a.normal];
  const mask = new Uint8Array(width * height);
  for (let pv = 0; pv < height; pv++) {
    for (let pu = 0; pu < width; pu++) {
      if (vol.data[base + pu * su + pv * sv] === id) mask[pv * width + pu] = 1;
    }
  }
  return mask;
}

/** Fills the gaps between the painted slices of object ``id`` along ``plane``'s normal
 * (only empty voxels are painted: other objects are kept). Answers the slices it filled. */
export function interpolate(edit: Edit, plane: Plane, id: number): number[] {
  const vol = edit.volume;
  const { width, height } = vol.planeSize(plane);
  const a = PLANES[plane];
  const su = vol.strides[a.u];
  const sv = vol.strides[a.v];
  const painted = paintedSlices(edit, plane, id);
  const filled: number[] = [];
  for (let k = 0; k + 1 < painted.length; k++) {
    const s0 = painted[k]!;
    const s1 = painted[k + 1]!;
    if (s1 - s0 < 2) continue;
    const d0 = signedDistance(sliceMask(edit, plane, s0, id), width, height);
    const d1 = signedDistance(sliceMask(edit, plane, s1, id), width, height);
    for (let s = s0 + 1; s < s1; s++) {
      const t = (s - s0) / (s1 - s0);
      const base = s * vol.strides[a.normal];
      let any = false;
      for (let pv = 0; pv < height; pv++) {
        for (let pu = 0; pu < width; pu++) {
          const i = pv * width + pu;
          if ((1 - t) * d0[i]! + t * d1[i]! > 0) continue;
          const index = base + pu * su + pv * sv;
          if (vol.data[index] !== 0) continue;
          edit.set(index, id);
          any = true;
        }
      }
      if (any) filled.push(s);
    }
  }
  return filled;
}
