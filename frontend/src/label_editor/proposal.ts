// Proposals of the assistance (issue 10's contract): a bbox in box-local voxels (half-open) and
// runs of 1s over the C-order flattening of the bbox. The editor decodes one into a set of flat
// voxel indices of the label volume to outline and, on Enter, paint as a new object.

import type { LabelVolume } from "./volume";

export interface Proposal {
  id: string;
  bbox: [number, number, number, number, number, number];
  rle: number[];
  voxels: number;
  score: number;
  source: "model" | "watershed";
  /** The model version that proposed it ("model v3"), when source is model. */
  model?: string;
}

/** The proposal's voxels as flat indices of ``vol`` (those inside the volume), and a mask
 * over the volume for quick look-ups while drawing. */
export function proposalVoxels(
  p: Proposal,
  vol: LabelVolume,
): { indices: Uint32Array; mask: Uint8Array } {
  const [z0, y0, x0, z1, y1, x1] = p.bbox;
  const bh = y1 - y0;
  const bw = x1 - x0;
  const count = (z1 - z0) * bh * bw;
  const mask = new Uint8Array(vol.data.length);
  let total = 0;
  for (let k = 0; k + 1 < p.rle.length; k += 2) total += p.rle[k + 1]!;
  const indices = new Uint32Array(total);
  let n = 0;
  for (let k = 0; k + 1 < p.rle.length; k += 2) {
    const start = p.rle[k]!;
    const stop = Math.min(count, start + p.rle[k + 1]!);
    for (let i = start; i < stop; i++) {
      const z = z0 + Math.floor(i / (bh * bw));
      const rest = i % (bh * bw);
      const y = y0 + Math.floor(rest / bw);
      const x = x0 + (rest % bw);
      if (!vol.inside(z, y, x)) continue;
      const index = vol.index(z, y, x);
      mask[index] = 1;
      indices[n++] = index;
    }
  }
  return { indices: indices.subarray(0, n), mask };
}
