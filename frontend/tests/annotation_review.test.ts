import { describe, expect, it } from "vitest";

import {
  annotationLayer,
  boxLayer,
  cameraForTaskBox,
  dimensionNames,
  figure,
  ngAnnotations,
  reviewActionForKey,
  toGlobal,
} from "../src/annotation_review/layers";

const dims = ["x", "y", "z"];

describe("review layers", () => {
  it("writes voxel z y x as global x y z (voxel i's centre at i in both)", () => {
    expect(toGlobal([1, 2, 3], dims)).toEqual([3, 2, 1]);
    expect(dimensionNames({ dimensions: { x: [1, "m"], y: [1, "m"] } })).toEqual(["x", "y"]);
    expect(dimensionNames({})).toEqual(dims);
  });

  it("turns each stored kind into Neuroglancer annotations", () => {
    const base = { label: "nucleus", object_id: 0 };
    expect(ngAnnotations({ ...base, uid: "p", kind: "point", coords: [[1, 2, 3]] }, dims)).toEqual([
      { type: "point", id: "p", point: [3, 2, 1], description: "nucleus" },
    ]);
    const ellipsoid = ngAnnotations(
      {
        ...base,
        uid: "e",
        kind: "ellipsoid",
        coords: [
          [0, 0, 0],
          [1, 2, 3],
        ],
      },
      dims,
    );
    expect(ellipsoid[0]).toMatchObject({ center: [0, 0, 0], radii: [3, 2, 1] });
    const poly = ngAnnotations(
      {
        ...base,
        uid: "q",
        kind: "polyline",
        coords: [
          [0, 0, 0],
          [0, 0, 1],
          [0, 1, 1],
        ],
      },
      dims,
    );
    expect(poly.map((a) => a.type)).toEqual(["line", "line"]);
    const layer = annotationLayer(
      "a1",
      "#ffcc00",
      [{ ...base, uid: "p", kind: "point", coords: [[1, 1, 1]] }],
      dims,
    );
    expect(layer).toMatchObject({ type: "annotation", name: "a1", source: "local://annotations" });
    expect(layer.annotations).toHaveLength(1);
  });

  it("draws the box on its voxels' outer faces and opens at its middle voxel", () => {
    const box = boxLayer("task box", [0, 10, 20], [10, 32, 32], dims);
    // Voxel i spans i - 0.5 to i + 0.5.
    expect(box.annotations[0]).toMatchObject({
      pointA: [19.5, 9.5, -0.5],
      pointB: [51.5, 41.5, 9.5],
    });
    const camera = cameraForTaskBox([0, 10, 20], [10, 32, 32], dims, 320, 1);
    expect(camera.position).toEqual([36, 26, 5]);
    // An odd side: its middle voxel, never the boundary between two sections.
    expect(cameraForTaskBox([3, 0, 0], [9, 4, 4], dims, 320, 1).position).toEqual([2, 2, 7]);
    expect(camera.crossSectionScale).toBeCloseTo(0.1);
  });

  it("maps A, R and N, leaving shortcuts alone", () => {
    expect(reviewActionForKey({ key: "a" })).toBe("approve");
    expect(reviewActionForKey({ key: "R" })).toBe("reject");
    expect(reviewActionForKey({ key: "n" })).toBe("next");
    expect(reviewActionForKey({ key: "a", ctrlKey: true })).toBeNull();
    expect(reviewActionForKey({ key: "x" })).toBeNull();
    expect(figure(2 / 3)).toBe("0.667");
    expect(figure(null)).toBe("–");
  });
});
