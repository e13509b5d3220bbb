import { describe, expect, it } from "vitest";
import {
  type CardGeometry,
  cardPixelToVoxel,
  cardTileAt,
  clientToCardPixel,
  voxelToCardPixels,
} from "../src/gallery/card_geometry";
// The hand-worked cases tests/pipeline/test_card_geometry.py checks pipeline.gallery with.
import cases from "./card_geometry_cases.json";

const geometries = cases.geometries as Record<string, CardGeometry>;
const G3 = geometries["3d"]!;
const G2 = geometries["2d"]!;

describe("cardPixelToVoxel (the mirror of pipeline.gallery.card_pixel_to_voxel)", () => {
  for (const c of cases.cases) {
    it(`maps ${c.why}`, () => {
      const found = cardPixelToVoxel(geometries[c.geometry]!, c.px, c.py);
      if (c.voxel === null) {
        expect(found).toBeNull();
      } else {
        expect(found).not.toBeNull();
        const [z, y, x] = c.voxel;
        expect(found!.z).toBeCloseTo(z!, 9);
        expect(found!.y).toBeCloseTo(y!, 9);
        expect(found!.x).toBeCloseTo(x!, 9);
      }
    });
  }

  it("names the tile under a position: xy, zy, xz; none on the mesh or a gap", () => {
    expect(cardTileAt(G3, 10, 10)).toEqual({ index: 0, x: 10, y: 10 });
    expect(cardTileAt(G3, 100, 10)).toEqual({ index: 1, x: 2, y: 10 });
    expect(cardTileAt(G3, 10, 100)).toEqual({ index: 2, x: 10, y: 2 });
    expect(cardTileAt(G3, 100, 100)).toBeNull();
    expect(cardTileAt(G3, 97, 10)).toBeNull();
    expect(cardTileAt(G2, 150, 150)).toEqual({ index: 0, x: 150, y: 150 });
    expect(cardTileAt(G3, Number.NaN, 5)).toBeNull();
  });
});

describe("voxelToCardPixels", () => {
  it("puts a mapped voxel back where it was clicked, on the tile whose slice holds it", () => {
    for (const geometry of [G3, G2]) {
      for (let py = 0.5; py < geometry.size; py += 7) {
        for (let px = 0.5; px < geometry.size; px += 7) {
          const voxel = cardPixelToVoxel(geometry, px, py);
          if (!voxel) continue;
          const back = voxelToCardPixels(geometry, voxel);
          const tile = cardTileAt(geometry, px, py)!.index;
          const same = back.find((b) => b.tile === tile)!;
          expect(same).toBeDefined();
          expect(same.px).toBeCloseTo(px, 6);
          expect(same.py).toBeCloseTo(py, 6);
        }
      }
    }
  });

  it("leaves out tiles whose slice or field does not hold the point", () => {
    // On the xy slice (z 15) only, off the zy (x 33) and xz (y 31) slices.
    const onXy = voxelToCardPixels(G3, { z: 15, y: 25, x: 25 });
    expect(onXy.map((p) => p.tile)).toEqual([0]);
    // On all three slices: the slices' crossing.
    expect(voxelToCardPixels(G3, { z: 15, y: 31, x: 33 }).map((p) => p.tile)).toEqual([0, 1, 2]);
    expect(voxelToCardPixels(G3, { z: 3, y: 25, x: 25 })).toEqual([]);
    // Beyond the field (the field is 48 voxels of y wide around y 31).
    expect(voxelToCardPixels(G3, { z: 15, y: 200, x: 25 })).toEqual([]);
  });
});

describe("clientToCardPixel", () => {
  it("scales a pointer position on an image drawn at another size", () => {
    const rect = { left: 10, top: 20, width: 388, height: 388 };
    const natural = { width: 194, height: 194 };
    expect(clientToCardPixel(rect, natural, 10 + 97, 20 + 41)).toEqual({ px: 48.5, py: 20.5 });
    expect(clientToCardPixel({ ...rect, width: 0 }, natural, 0, 0)).toBeNull();
  });
});
