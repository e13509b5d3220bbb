// Edits and the session's undo/redo stacks. An Edit lists the voxels one operation changed
// (flat indices with their values before and after) in growable typed arrays: a stroke over a
// 512 x 512 slice records hundreds of thousands of voxels without an object per voxel.

import type { LabelVolume } from "./volume";

class GrowableU32 {
  array = new Uint32Array(256);
  length = 0;

  push(value: number): void {
    if (this.length === this.array.length) {
      const next = new Uint32Array(this.array.length * 2);
      next.set(this.array);
      this.array = next;
    }
    this.array[this.length++] = value;
  }

  view(): Uint32Array {
    return this.array.subarray(0, this.length);
  }
}

/** A region of a plane or the volume that changed, for redrawing only that part. */
export interface Bounds {
  min: [number, number, number];
  max: [number, number, number]; // inclusive
}

export function emptyBounds(): Bounds {
  return { min: [Infinity, Infinity, Infinity], max: [-1, -1, -1] };
}

function grow(b: Bounds, z: number, y: number, x: number): void {
  if (z < b.min[0]) b.min[0] = z;
  if (y < b.min[1]) b.min[1] = y;
  if (x < b.min[2]) b.min[2] = x;
  if (z > b.max[0]) b.max[0] = z;
  if (y > b.max[1]) b.max[1] = y;
  if (x > b.max[2]) b.max[2] = x;
}

export class Edit {
  private readonly idx = new GrowableU32();
  private readonly before = new GrowableU32();
  private readonly after = new GrowableU32();
  readonly bounds: Bounds = emptyBounds();
  /** The voxels changed since the last ``resetRecent``. */
  recent: Bounds = emptyBounds();

  constructor(
    readonly volume: LabelVolume,
    readonly label: string,
    /** Called with each changed flat index before it changes (the chunk tracker's hook). */
    private readonly touch?: (index: number) => void,
  ) {}

  get size(): number {
    return this.idx.length;
  }

  /** Sets voxel ``index`` to ``value``, recording it when it changes. */
  set(index: number, value: number): void {
    const data = this.volume.data;
    const old = data[index]!;
    if (old === value) return;
    this.touch?.(index);
    data[index] = value;
    this.idx.push(index);
    this.before.push(old);
    this.after.push(value);
    const [sz, sy] = this.volume.strides;
    const z = (index / sz) | 0;
    const rest = index - z * sz;
    const y = (rest / sy) | 0;
    const x = rest - y * sy;
    grow(this.bounds, z, y, x);
    grow(this.recent, z, y, x);
  }

  /** Starts a new ``recent`` box: what the next calls change (one mouse move of a stroke). */
  resetRecent(): void {
    this.recent = emptyBounds();
  }

  indices(): Uint32Array {
    return this.idx.view();
  }

  /** Puts back the values before the edit (latest change first). */
  revert(): void {
    const data = this.volume.data;
    const idx = this.idx.view();
    const before = this.before.view();
    for (let i = idx.length - 1; i >= 0; i--) {
      this.touch?.(idx[i]!);
      data[idx[i]!] = before[i]!;
    }
  }

  /** Writes the edit's values again. */
  apply(): void {
    const data = this.volume.data;
    const idx = this.idx.view();
    const after = this.after.view();
    for (let i = 0; i < idx.length; i++) {
      this.touch?.(idx[i]!);
      data[idx[i]!] = after[i]!;
    }
  }
}

/** Undo and redo over the whole session: a new edit clears the redo stack. */
export class History {
  private readonly done: Edit[] = [];
  private readonly undone: Edit[] = [];

  push(edit: Edit): void {
    if (edit.size === 0) return;
    this.done.push(edit);
    this.undone.length = 0;
  }

  get canUndo(): boolean {
    return this.done.length > 0;
  }

  get canRedo(): boolean {
    return this.undone.length > 0;
  }

  undo(): Edit | null {
    const edit = this.done.pop();
    if (!edit) return null;
    edit.revert();
    this.undone.push(edit);
    return edit;
  }

  redo(): Edit | null {
    const edit = this.undone.pop();
    if (!edit) return null;
    edit.apply();
    this.done.push(edit);
    return edit;
  }

  clear(): void {
    this.done.length = 0;
    this.undone.length = 0;
  }
}
