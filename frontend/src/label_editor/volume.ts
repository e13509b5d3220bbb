// The label volume of a task box: uint32 ids over (z, y, x) in one Uint32Array, C order, and
// the three slice planes the editor paints in. Every tool writes through an Edit (history.ts)
// so that undo, redo and the chunked save see each changed voxel once.

export type Shape = readonly [number, number, number];
export type Plane = "xy" | "xz" | "yz";

/** A plane's axes: the slice axis (its normal), the horizontal (u) and vertical (v) axes. */
export interface PlaneAxes {
  normal: 0 | 1 | 2;
  u: 0 | 1 | 2;
  v: 0 | 1 | 2;
}

export const PLANES: Record<Plane, PlaneAxes> = {
  xy: { normal: 0, u: 2, v: 1 },
  xz: { normal: 1, u: 2, v: 0 },
  yz: { normal: 2, u: 1, v: 0 },
};

export class LabelVolume {
  readonly shape: Shape;
  readonly data: Uint32Array;
  /** Element strides of z, y, x. */
  readonly strides: readonly [number, number, number];

  constructor(shape: Shape, data?: Uint32Array) {
    const [d, h, w] = shape;
    this.shape = [d, h, w];
    this.data = data ?? new Uint32Array(d * h * w);
    if (this.data.length !== d * h * w) throw new Error("label data does not match the shape");
    this.strides = [h * w, w, 1];
  }

  index(z: number, y: number, x: number): number {
    return z * this.strides[0] + y * this.strides[1] + x;
  }

  inside(z: number, y: number, x: number): boolean {
    const [d, h, w] = this.shape;
    return z >= 0 && y >= 0 && x >= 0 && z < d && y < h && x < w;
  }

  get(z: number, y: number, x: number): number {
    return this.data[this.index(z, y, x)]!;
  }

  /** Width and height of a plane's slices, and how many slices it has. */
  planeSize(plane: Plane): { width: number; height: number; depth: number } {
    const a = PLANES[plane];
    return { width: this.shape[a.u], height: this.shape[a.v], depth: this.shape[a.normal] };
  }

  /** The flat index of plane pixel (u, v) of slice ``slice``. */
  planeIndex(plane: Plane, slice: number, u: number, v: number): number {
    const a = PLANES[plane];
    return slice * this.strides[a.normal] + u * this.strides[a.u] + v * this.strides[a.v];
  }

  /** The largest id in the volume plus one: the id of a new object. */
  nextFreeId(): number {
    let max = 0;
    const data = this.data;
    for (let i = 0; i < data.length; i++) if (data[i]! > max) max = data[i]!;
    return max + 1;
  }
}
