import { describe, expect, it } from "vitest";

import { actionForKey } from "../src/proofreading/keys";
import { PrefetchQueue } from "../src/proofreading/prefetch";
import type { Viewer } from "../src/lib/neuroglancer";
import {
  type Item,
  earlierVerdictRows,
  measurementRows,
  missedAnnotation,
} from "../src/proofreading/page";
import { mousePosition, queueInitialState } from "../src/proofreading/viewer";
import {
  DEFAULT_MARGIN,
  MIN_CROSS_SECTION_SCALE,
  cameraForBox,
  isCentredOn,
  voxelZyx,
} from "../src/proofreading/zoom";

const box = {
  centroid_z: 10,
  centroid_y: 20,
  centroid_x: 30,
  bbox_z0: 5,
  bbox_y0: 12,
  bbox_x0: 26,
  bbox_z1: 15,
  bbox_y1: 28,
  bbox_x1: 34,
};

describe("cameraForBox", () => {
  it("centres on the centroid, x y z (voxel i's centre at i, as in the API)", () => {
    expect(cameraForBox(box, 400).position).toEqual([30, 20, 10]);
  });

  it("fits the largest side of the box into the panel", () => {
    const camera = cameraForBox(box, 400);
    // largest side: y, 16 voxels; 16 * margin voxels over 400 pixels.
    expect(camera.crossSectionScale).toBeCloseTo((16 * DEFAULT_MARGIN) / 400);
    expect(camera.projectionScale).toBeCloseTo(Math.hypot(8, 16, 10) * DEFAULT_MARGIN);
  });

  it("zooms out for bigger boxes and never below the minimum scale", () => {
    const big = { ...box, bbox_x1: box.bbox_x0 + 200 };
    expect(cameraForBox(big, 400).crossSectionScale).toBeGreaterThan(
      cameraForBox(box, 400).crossSectionScale,
    );
    const tiny = { ...box, bbox_z1: 5, bbox_y1: 12, bbox_x1: 26 };
    expect(cameraForBox(tiny, 10_000).crossSectionScale).toBe(MIN_CROSS_SECTION_SCALE);
  });

  it("survives a panel of zero pixels", () => {
    expect(Number.isFinite(cameraForBox(box, 0).crossSectionScale)).toBe(true);
  });
});

describe("isCentredOn and voxelZyx", () => {
  it("compares positions within a tolerance", () => {
    const camera = cameraForBox(box, 400);
    expect(isCentredOn([30, 20, 10.005], camera)).toBe(true);
    expect(isCentredOn([30, 20, 10.5], camera)).toBe(false);
    expect(isCentredOn(undefined, camera)).toBe(false);
    expect(isCentredOn([30], camera)).toBe(false);
  });

  it("turns a viewer position into voxel z y x", () => {
    expect(voxelZyx([30, 20.25, 10])).toEqual({ z: 10, y: 20.25, x: 30 });
  });
});

describe("actionForKey", () => {
  const verdicts = [
    { name: "tp", key: "1" },
    { name: "fp", key: "3" },
    { name: "odd", key: "Q" },
  ];

  it("maps the verdict set's keys, case-insensitively", () => {
    expect(actionForKey({ key: "1" }, verdicts)).toEqual({ kind: "verdict", verdict: "tp" });
    expect(actionForKey({ key: "3" }, verdicts)).toEqual({ kind: "verdict", verdict: "fp" });
    expect(actionForKey({ key: "q" }, verdicts)).toEqual({ kind: "verdict", verdict: "odd" });
    expect(actionForKey({ key: "2" }, verdicts)).toBeNull();
  });

  it("maps the queue's own keys", () => {
    expect(actionForKey({ key: "s" }, verdicts)).toEqual({ kind: "skip" });
    expect(actionForKey({ key: "S" }, verdicts)).toEqual({ kind: "skip" });
    expect(actionForKey({ key: "f" }, verdicts)).toEqual({ kind: "flag" });
    expect(actionForKey({ key: "u" }, verdicts)).toEqual({ kind: "undo" });
    expect(actionForKey({ key: "m" }, verdicts)).toEqual({ kind: "missed" });
  });

  it("undoes on Ctrl+Z and Cmd+Z, leaves other shortcuts alone", () => {
    expect(actionForKey({ key: "z", ctrlKey: true }, verdicts)).toEqual({ kind: "undo" });
    expect(actionForKey({ key: "Z", metaKey: true }, verdicts)).toEqual({ kind: "undo" });
    expect(actionForKey({ key: "z" }, verdicts)).toBeNull();
    expect(actionForKey({ key: "1", ctrlKey: true }, verdicts)).toBeNull();
    expect(actionForKey({ key: "s", altKey: true }, verdicts)).toBeNull();
    expect(actionForKey({ key: "Enter" }, verdicts)).toBeNull();
  });
});

describe("PrefetchQueue", () => {
  const item = (id: number) => ({ id, segment_id: id * 10 });

  it("keeps the order of answers and merges repeats by id", () => {
    const queue = new PrefetchQueue(2);
    expect(queue.needsRefill()).toBe(true);
    expect(queue.wanted).toBe(3);
    expect(queue.merge([item(1), item(2), item(3)])).toBe(3);
    expect(queue.needsRefill()).toBe(false);
    // next/ answers the items still held first.
    expect(queue.merge([item(1), item(2), item(3), item(4)])).toBe(1);
    expect(queue.ids()).toEqual([1, 2, 3, 4]);
    expect(queue.current?.id).toBe(1);
  });

  it("never takes back an item it moved past from a stale answer", () => {
    const queue = new PrefetchQueue(1);
    queue.merge([item(1), item(2)]);
    expect(queue.advance()?.id).toBe(1);
    expect(queue.needsRefill()).toBe(true);
    queue.merge([item(1), item(2), item(3)]);
    expect(queue.ids()).toEqual([2, 3]);
  });

  it("restores an undone item in front", () => {
    const queue = new PrefetchQueue(1);
    queue.merge([item(1), item(2)]);
    const first = queue.advance();
    expect(first).toBeDefined();
    queue.restore(first!);
    expect(queue.ids()).toEqual([1, 2]);
    queue.restore(item(2));
    expect(queue.ids()).toEqual([2, 1]);
  });

  it("is empty when everything was handled", () => {
    const queue = new PrefetchQueue(1);
    expect(queue.current).toBeUndefined();
    expect(queue.advance()).toBeUndefined();
    expect(queue.size).toBe(0);
  });
});

describe("queueInitialState", () => {
  it("starts the campaign's layer with no segment and others hidden", () => {
    const state = queueInitialState(
      {
        layers: [
          { name: "image", type: "image" },
          { name: "nuclei", segments: ["1", "2"] },
          { name: "truth", type: "segmentation" },
        ],
        selectedLayer: { layer: "image", visible: true },
      },
      "nuclei",
    );
    expect(state.layers).toEqual([
      { name: "image", type: "image" },
      { name: "nuclei", segments: [], notSelectedAlpha: 0 },
      { name: "truth", type: "segmentation", visible: false },
    ]);
    expect(state["selectedLayer"]).toEqual({ layer: "nuclei", visible: false });
    expect(queueInitialState({ layers: [] }, "nuclei")["selectedLayer"]).toBeUndefined();
  });
});

describe("the second round's view and the missed-object layer", () => {
  it("switches to one 2D panel with a faint segment and adds the annotation layer", () => {
    const state = queueInitialState(
      { layout: "4panel", layers: [{ name: "image" }, { name: "nuclei" }] },
      "nuclei",
      { layout: "xy", selectedAlpha: 0.2 },
      "missed objects",
    );
    expect(state["layout"]).toBe("xy");
    expect(state.layers?.[1]).toEqual({
      name: "nuclei",
      segments: [],
      notSelectedAlpha: 0,
      selectedAlpha: 0.2,
    });
    expect(state.layers?.[2]).toMatchObject({
      type: "annotation",
      name: "missed objects",
      source: "local://annotations",
      annotations: [],
    });
    // The first round keeps the dataset's layout and opacity.
    const first = queueInitialState({ layout: "4panel", layers: [{ name: "nuclei" }] }, "nuclei");
    expect(first["layout"]).toBe("4panel");
    expect(first.layers).toHaveLength(1);
  });

  it("puts a missed point at its voxel centre in the viewer's dimension order", () => {
    const point = {
      id: 4,
      z: 10,
      y: 20.25,
      x: 30,
      note: "",
      created_by: "rev",
      created: "2026-01-01T00:00:00Z",
    };
    expect(missedAnnotation(point, ["x", "y", "z"])).toEqual({
      type: "point",
      id: "missed-4",
      point: [30, 20.25, 10],
      description: "rev",
    });
    expect(missedAnnotation({ ...point, note: "dim" }, ["z", "y", "x"]).point).toEqual([
      10, 20.25, 30,
    ]);
  });

  it("reads the mouse position only while the pointer is over data", () => {
    const viewer = (mouseState: unknown) => ({ mouseState }) as unknown as Viewer;
    expect(mousePosition(viewer({ active: true, position: new Float32Array([1, 2, 3]) }))).toEqual([
      1, 2, 3,
    ]);
    expect(mousePosition(viewer({ active: false, position: [1, 2, 3] }))).toBeUndefined();
    expect(mousePosition(viewer({ active: true, position: [1, NaN, 3] }))).toBeUndefined();
    expect(mousePosition(viewer(undefined))).toBeUndefined();
  });

  it("lists the first round's verdicts for the expert", () => {
    const item = {
      verdicts: [
        { id: 1, reviewer: "a", round: 1, verdict: "uncertain", updated: "t1" },
        { id: 2, reviewer: "b", round: 1, verdict: "tp", updated: "t2" },
        { id: 3, reviewer: "x", round: 2, verdict: "fp", updated: "t3" },
      ],
    } as unknown as Item;
    expect(earlierVerdictRows(item)).toEqual([
      { reviewer: "a", verdict: "uncertain", when: "t1" },
      { reviewer: "b", verdict: "tp", when: "t2" },
    ]);
    expect(earlierVerdictRows({ verdicts: null } as unknown as Item)).toEqual([]);
  });
});

describe("the measurements panel", () => {
  it("shows a 2D object's area and its x, y; a volume's object its volume, surface and z", () => {
    const detection = {
      volume: 3.25,
      sphericity: 0.9,
      surface_area: 10,
      mean_intensity: 100,
      centroid_x: 4,
      centroid_y: 5,
      centroid_z: 0,
      centroid_x_um: 0.4,
      centroid_y_um: 0.5,
      centroid_z_um: 0,
    };
    const item = { id: 1, segment_id: 7, detection } as unknown as Item;
    const flat = Object.fromEntries(measurementRows(item, true));
    expect(flat["Area (µm²)"]).toBe("3.25");
    expect(Object.keys(flat)).not.toContain("Volume (µm³)");
    expect(Object.keys(flat)).not.toContain("Sphericity");
    expect(flat["Position (x, y pixels)"]).toBe("4, 5");
    const deep = Object.fromEntries(measurementRows(item));
    expect(Object.keys(deep)).toEqual(expect.arrayContaining(["Volume (µm³)", "Sphericity"]));
  });
});
