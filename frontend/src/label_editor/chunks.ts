// The label volume's chunk grid (the server's 64^3 chunks clipped to the box): which chunks a
// session changed, their bytes for the multipart save (raw uint32 little-endian, z y x C order,
// the chunk's shape clipped at the box's far edges), and reading stored zarr v2 chunk files
// (zstd frames of full, zero-padded chunks).

import { decompress } from "fzstd";
import type { LabelVolume, Shape } from "./volume";

export interface ChunkPart {
  n: number; // the chunk's number in the grid
  key: string; // "z.y.x"
  shape: Shape;
  bytes: Uint8Array;
}

export class ChunkGrid {
  readonly counts: [number, number, number];

  constructor(
    readonly shape: Shape,
    readonly chunk: Shape,
  ) {
    this.counts = [
      Math.ceil(shape[0] / chunk[0]),
      Math.ceil(shape[1] / chunk[1]),
      Math.ceil(shape[2] / chunk[2]),
    ];
  }

  get total(): number {
    return this.counts[0] * this.counts[1] * this.counts[2];
  }

  /** The chunk number (flat over the grid) holding flat voxel index ``index``. */
  chunkOf(index: number): number {
    const [, h, w] = this.shape;
    const z = (index / (h * w)) | 0;
    const rest = index - z * h * w;
    const y = (rest / w) | 0;
    const x = rest - y * w;
    return this.chunkAt(z, y, x);
  }

  chunkAt(z: number, y: number, x: number): number {
    const cz = (z / this.chunk[0]) | 0;
    const cy = (y / this.chunk[1]) | 0;
    const cx = (x / this.chunk[2]) | 0;
    return (cz * this.counts[1] + cy) * this.counts[2] + cx;
  }

  position(n: number): [number, number, number] {
    const cx = n % this.counts[2];
    const cy = ((n / this.counts[2]) | 0) % this.counts[1];
    const cz = (n / (this.counts[1] * this.counts[2])) | 0;
    return [cz, cy, cx];
  }

  /** The voxel start and (clipped) shape of chunk ``n``. */
  extent(n: number): { start: [number, number, number]; shape: [number, number, number] } {
    const p = this.position(n);
    const start: [number, number, number] = [
      p[0] * this.chunk[0],
      p[1] * this.chunk[1],
      p[2] * this.chunk[2],
    ];
    const shape: [number, number, number] = [
      Math.min(this.chunk[0], this.shape[0] - start[0]),
      Math.min(this.chunk[1], this.shape[1] - start[1]),
      Math.min(this.chunk[2], this.shape[2] - start[2]),
    ];
    return { start, shape };
  }

  key(n: number): string {
    return this.position(n).join(".");
  }
}

/** Copies chunk ``n`` of ``vol`` out (its clipped shape, C order). */
export function readChunk(vol: LabelVolume, grid: ChunkGrid, n: number): Uint32Array {
  const { start, shape } = grid.extent(n);
  const out = new Uint32Array(shape[0] * shape[1] * shape[2]);
  let o = 0;
  for (let z = 0; z < shape[0]; z++) {
    for (let y = 0; y < shape[1]; y++) {
      const from = vol.index(start[0] + z, start[1] + y, start[2]);
      out.set(vol.data.subarray(from, from + shape[2]), o);
      o += shape[2];
    }
  }
  return out;
}

/** Writes ``values`` (chunk ``n``'s clipped shape, or the full padded chunk) into ``vol``. */
export function writeChunk(
  vol: LabelVolume,
  grid: ChunkGrid,
  n: number,
  values: Uint32Array,
  padded = false,
): void {
  const { start, shape } = grid.extent(n);
  const rowLen = padded ? grid.chunk[2] : shape[2];
  const planeLen = padded ? grid.chunk[1] * grid.chunk[2] : shape[1] * shape[2];
  for (let z = 0; z < shape[0]; z++) {
    for (let y = 0; y < shape[1]; y++) {
      const from = z * planeLen + y * rowLen;
      vol.data.set(
        values.subarray(from, from + shape[2]),
        vol.index(start[0] + z, start[1] + y, start[2]),
      );
    }
  }
}

const LITTLE_ENDIAN = new Uint8Array(new Uint32Array([1]).buffer)[0] === 1;

/** ``values`` as uint32 little-endian bytes. */
export function uint32le(values: Uint32Array): Uint8Array {
  if (LITTLE_ENDIAN) return new Uint8Array(values.buffer, values.byteOffset, values.byteLength);
  const out = new Uint8Array(values.length * 4);
  const view = new DataView(out.buffer);
  for (let i = 0; i < values.length; i++) view.setUint32(i * 4, values[i]!, true);
  return out;
}

/** Remembers each chunk as it was before the session's first change to it, so that the save
 * sends exactly the chunks that differ (an undone change sends nothing). */
export class ChunkTracker {
  private readonly base = new Map<number, Uint32Array>();

  constructor(
    readonly volume: LabelVolume,
    readonly grid: ChunkGrid,
  ) {}

  /** Edit's hook: call before voxel ``index`` changes. */
  readonly touch = (index: number): void => {
    const n = this.grid.chunkOf(index);
    if (!this.base.has(n)) this.base.set(n, readChunk(this.volume, this.grid, n));
  };

  /** The chunks that differ from the saved version, as save parts. */
  changed(): ChunkPart[] {
    const parts: ChunkPart[] = [];
    const numbers = [...this.base.keys()].sort((a, b) => a - b);
    for (const n of numbers) {
      const before = this.base.get(n)!;
      const now = readChunk(this.volume, this.grid, n);
      let same = true;
      for (let i = 0; i < now.length; i++) {
        if (now[i] !== before[i]) {
          same = false;
          break;
        }
      }
      if (!same)
        parts.push({
          n,
          key: this.grid.key(n),
          shape: this.grid.extent(n).shape,
          bytes: uint32le(now),
        });
    }
    return parts;
  }

  /** The session's changes as voxel values (flat index, new value), to re-apply on top of
   * another version after a conflict. */
  diff(): { index: Uint32Array; value: Uint32Array } {
    const index: number[] = [];
    const value: number[] = [];
    for (const [n, before] of this.base) {
      const { start, shape } = this.grid.extent(n);
      const now = readChunk(this.volume, this.grid, n);
      let i = 0;
      for (let z = 0; z < shape[0]; z++)
        for (let y = 0; y < shape[1]; y++)
          for (let x = 0; x < shape[2]; x++, i++) {
            if (now[i] !== before[i]) {
              index.push(this.volume.index(start[0] + z, start[1] + y, start[2] + x));
              value.push(now[i]!);
            }
          }
    }
    return { index: Uint32Array.from(index), value: Uint32Array.from(value) };
  }

  /** After a save of ``parts``: what they held is the saved version of those chunks (changes
   * made while the save was under way still differ from it and go with the next save). */
  markSaved(parts: readonly ChunkPart[]): void {
    for (const part of parts) {
      const copy = new Uint8Array(part.bytes).buffer;
      this.base.set(part.n, new Uint32Array(copy));
    }
  }
}

/** The server's limit of chunks per save (services.MAX_LABEL_CHUNKS_PER_SAVE). */
export const MAX_CHUNKS_PER_SAVE = 100;

/** The gzip of ``bytes`` by the browser's own CompressionStream. */
export async function gzipBytes(bytes: Uint8Array<ArrayBuffer>): Promise<Uint8Array<ArrayBuffer>> {
  const stream = new Blob([bytes]).stream().pipeThrough(new CompressionStream("gzip"));
  return new Uint8Array(await new Response(stream).arrayBuffer());
}

/** The save form with every chunk part gzip-compressed (``application/gzip``, which the server
 * reads as gzip): painted labels compress about 70-fold, so a save of 100 changed 64^3 chunks
 * sends 1.4 MiB instead of 100 MiB (bench/label_save_api.py). Without CompressionStream the
 * parts go raw. */
export async function compressedSaveForm(
  parts: ChunkPart[],
  baseVersion: number,
  provenance?: Record<string, unknown>,
): Promise<FormData> {
  if (typeof CompressionStream === "undefined") return saveForm(parts, baseVersion, provenance);
  const zipped = await Promise.all(parts.map((part) => gzipBytes(new Uint8Array(part.bytes))));
  const form = saveForm([], baseVersion, provenance);
  parts.forEach((part, i) => {
    form.append(part.key, new Blob([zipped[i]!], { type: "application/gzip" }), part.key);
  });
  return form;
}

/** The multipart form of a labels save: base_version, optional provenance, one file part per
 * chunk named z.y.x. */
export function saveForm(
  parts: ChunkPart[],
  baseVersion: number,
  provenance?: Record<string, unknown>,
): FormData {
  const form = new FormData();
  form.append("base_version", String(baseVersion));
  if (provenance && Object.keys(provenance).length) {
    form.append("provenance", JSON.stringify(provenance));
  }
  for (const part of parts) {
    const bytes = new Uint8Array(part.bytes); // a copy: the volume keeps changing
    form.append(part.key, new Blob([bytes], { type: "application/octet-stream" }), part.key);
  }
  return form;
}

/** Decodes a stored zarr v2 chunk file (one zstd frame of a full chunk's uint32 LE ids). */
export function decodeChunkFile(file: Uint8Array, chunk: Shape): Uint32Array {
  const raw = decompress(file);
  const count = chunk[0] * chunk[1] * chunk[2];
  if (raw.length !== count * 4)
    throw new Error(`a label chunk of ${raw.length} bytes, not ${count * 4}`);
  if (LITTLE_ENDIAN)
    return new Uint32Array(raw.buffer.slice(raw.byteOffset, raw.byteOffset + raw.length));
  const out = new Uint32Array(count);
  const view = new DataView(raw.buffer, raw.byteOffset, raw.length);
  for (let i = 0; i < count; i++) out[i] = view.getUint32(i * 4, true);
  return out;
}

/** Loads version ``version`` of the labels from ``labels/v<n>/s0/z/y/x`` (404: all zero). */
export async function loadVersion(
  baseUrl: string,
  version: number,
  vol: LabelVolume,
  grid: ChunkGrid,
  fetcher: typeof fetch = fetch,
): Promise<void> {
  vol.data.fill(0);
  if (version === 0) return;
  const jobs: Promise<void>[] = [];
  for (let n = 0; n < grid.total; n++) {
    const url = `${baseUrl}v${version}/s0/${grid.position(n).join("/")}`;
    jobs.push(
      fetcher(url, { credentials: "same-origin" }).then(async (response) => {
        if (response.status === 404) return;
        if (!response.ok) throw new Error(`labels chunk ${grid.key(n)}: HTTP ${response.status}`);
        const values = decodeChunkFile(new Uint8Array(await response.arrayBuffer()), grid.chunk);
        writeChunk(vol, grid, n, values, true);
      }),
    );
  }
  await Promise.all(jobs);
}
