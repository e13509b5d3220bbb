// Drawing a slice: the box's uint8 image through a contrast window and the labels in colour
// with transparency, written into an RGBA buffer for a region only (a stroke redraws the
// rectangle it touched, not the slice).

import { type LabelVolume, PLANES, type Plane } from "./volume";

/** A 256-entry table mapping the image's uint8 values through the window [low, high]. */
export function contrastLut(low: number, high: number): Uint8Array {
  const lut = new Uint8Array(256);
  const span = Math.max(1, high - low);
  for (let i = 0; i < 256; i++)
    lut[i] = Math.max(0, Math.min(255, Math.round(((i - low) * 255) / span)));
  return lut;
}

/** A stable, well spread colour of an object id as 0xRRGGBB. */
export function colourOf(id: number): number {
  let h = Math.imul(id ^ 0x9e3779b9, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  let rgb = h & 0xffffff;
  // Keep colours bright enough to read over a dark image.
  if (((rgb >> 16) & 255) + ((rgb >> 8) & 255) + (rgb & 255) < 240) rgb |= 0x808080;
  return rgb;
}

export interface SliceSource {
  image: Uint8Array | null; // uint8 (z, y, x) over the label volume's shape, or null
  labels: LabelVolume;
  lut: Uint8Array;
  alpha: number; // 0..1, the labels' opacity
  /** The ids drawn brighter (the active object). */
  active: number;
}

/** Writes pixels [u0, u1) x [v0, v1) of slice ``slice`` of ``plane`` into ``rgba`` (the whole
 * slice's width x height RGBA buffer). */
export function drawRegion(
  out: Uint8ClampedArray,
  src: SliceSource,
  plane: Plane,
  slice: number,
  u0: number,
  v0: number,
  u1: number,
  v1: number,
): void {
  const vol = src.labels;
  const { width, height } = vol.planeSize(plane);
  const a = PLANES[plane];
  const su = vol.strides[a.u];
  const sv = vol.strides[a.v];
  const base = slice * vol.strides[a.normal];
  const data = vol.data;
  const image = src.image;
  const lut = src.lut;
  const alpha = Math.round(src.alpha * 256);
  let lastId = -1;
  let r = 0;
  let g = 0;
  let b = 0;
  const ua = Math.max(0, u0);
  const ub = Math.min(width, u1);
  for (let pv = Math.max(0, v0); pv < Math.min(height, v1); pv++) {
    let o = (pv * width + ua) * 4;
    let index = base + pv * sv + ua * su;
    for (let pu = ua; pu < ub; pu++, o += 4, index += su) {
      const grey = image ? lut[image[index]!]! : 0;
      const id = data[index]!;
      if (id === 0) {
        out[o] = grey;
        out[o + 1] = grey;
        out[o + 2] = grey;
      } else {
        if (id !== lastId) {
          const c = colourOf(id);
          r = c >> 16;
          g = (c >> 8) & 255;
          b = c & 255;
          lastId = id;
        }
        const k = id === src.active ? Math.min(256, alpha + 48) : alpha;
        out[o] = (grey * (256 - k) + r * k) >> 8;
        out[o + 1] = (grey * (256 - k) + g * k) >> 8;
        out[o + 2] = (grey * (256 - k) + b * k) >> 8;
      }
      out[o + 3] = 255;
    }
  }
}

/** Outlines a mask's border (pixels of the mask with a 4-neighbour outside it) in ``rgba``
 * colour: how a proposal is shown before it is accepted. ``inMask(u, v)`` answers the mask. */
export function drawOutline(
  out: Uint8ClampedArray,
  width: number,
  height: number,
  inMask: (u: number, v: number) => boolean,
  rgb: number,
  u0 = 0,
  v0 = 0,
  u1 = width,
  v1 = height,
): number {
  let drawn = 0;
  for (let v = Math.max(0, v0); v < Math.min(height, v1); v++) {
    for (let u = Math.max(0, u0); u < Math.min(width, u1); u++) {
      if (!inMask(u, v)) continue;
      const edge =
        u === 0 ||
        v === 0 ||
        u === width - 1 ||
        v === height - 1 ||
        !inMask(u - 1, v) ||
        !inMask(u + 1, v) ||
        !inMask(u, v - 1) ||
        !inMask(u, v + 1);
      if (!edge) continue;
      const o = (v * width + u) * 4;
      out[o] = rgb >> 16;
      out[o + 1] = (rgb >> 8) & 255;
      out[o + 2] = rgb & 255;
      out[o + 3] = 255;
      drawn++;
    }
  }
  return drawn;
}
