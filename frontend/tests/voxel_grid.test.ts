import { describe, expect, it } from "vitest";

import { middleVoxel, voxelAt, voxelCentre, voxelEdge } from "../src/lib/voxel_grid";

describe("voxel grid (Neuroglancer's OME-Zarr convention: voxel i spans i - 0.5 to i + 0.5)", () => {
  it("puts voxel i's centre at i and its lower edge half a voxel below", () => {
    expect(voxelCentre(7)).toBe(7);
    expect(voxelEdge(7)).toBe(6.5);
  });

  it("finds the voxel whose cell holds a position (the upper edge belongs to the next)", () => {
    expect(voxelAt(7)).toBe(7);
    expect(voxelAt(6.5)).toBe(7);
    expect(voxelAt(7.49)).toBe(7);
    expect(voxelAt(7.5)).toBe(8);
    expect(voxelAt(-0.5)).toBe(0);
    expect(voxelAt(-0.51)).toBe(-1);
  });

  it("opens a box at its middle voxel, a whole section", () => {
    expect(middleVoxel(32, 64)).toBe(64);
    expect(middleVoxel(0, 9)).toBe(4);
    expect(middleVoxel(5, 1)).toBe(5);
  });
});
