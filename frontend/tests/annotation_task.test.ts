import { describe, expect, it } from "vitest";

import {
  axesOf,
  geometryOf,
  ngGeometryJson,
  NG_TYPE,
  packRgb,
  toViewer,
  toVoxel,
} from "../src/annotation_task/coords";
import {
  annotationsLayer,
  cameraForTask,
  dimmingLayer,
  outsideSlabs,
  taskBoxLayer,
  toolForKey,
  toolId,
} from "../src/annotation_task/layers";
import {
  type ApiAnnotation,
  Ledger,
  type Op,
  Saver,
  StaleError,
  diffAll,
  keyOf,
} from "../src/annotation_task/sync";

const XYZ = axesOf(["x", "y", "z"]);

function point(uid: string, z: number, y: number, x: number, label = "nucleus"): ApiAnnotation {
  return { uid, kind: "point", label, object_id: 1, coords: [[z, y, x]], description: "" };
}

describe("coordinates", () => {
  it("maps viewer x y z to API z y x and back (voxel i's centre at i in both)", () => {
    expect(toVoxel([10, 20, 30], XYZ)).toEqual([30, 20, 10]);
    expect(toVoxel([10.5, 20.25, 30], XYZ)).toEqual([30, 20.25, 10.5]);
    expect(Array.from(toViewer([30, 20, 10], XYZ))).toEqual([10, 20, 30]);
    const zyx = axesOf(["z", "y", "x"]);
    expect(toVoxel([3, 2, 1], zyx)).toEqual([3, 2, 1]);
  });

  it("keeps float32 noise out (a thousandth of a voxel)", () => {
    const p = new Float32Array([12.345, 7, 3]);
    expect(toVoxel(p, XYZ)).toEqual([3, 7, 12.345]);
  });

  it("round-trips every kind through Neuroglancer's geometry", () => {
    const cases: [string, number[][]][] = [
      ["point", [[5, 6, 7]]],
      [
        "line",
        [
          [1, 2, 3],
          [4, 5, 6],
        ],
      ],
      [
        "axis_aligned_bounding_box",
        [
          [-0.5, 9.5, 9.5],
          [4.5, 19.5, 29.5],
        ],
      ],
      [
        "ellipsoid",
        [
          [5, 6, 7],
          [1, 2.5, 3],
        ],
      ],
      [
        "polyline",
        [
          [1, 1, 1],
          [2, 2, 2],
          [3, 4, 5],
        ],
      ],
    ];
    for (const [kind, coords] of cases) {
      const json = ngGeometryJson(kind as never, coords, XYZ);
      const toF32 = (v: unknown): unknown =>
        Array.isArray(v) && typeof v[0] === "number"
          ? new Float32Array(v as number[])
          : Array.isArray(v)
            ? v.map(toF32)
            : v;
      const ng = Object.fromEntries(Object.entries(json).map(([k, v]) => [k, toF32(v)]));
      const back = geometryOf(
        { ...ng, type: NG_TYPE[kind as keyof typeof NG_TYPE], id: "a", properties: [] } as never,
        XYZ,
      );
      expect(back).toEqual({ kind, coords });
    }
  });

  it("gives an ellipsoid's centre and radii in the viewer's order", () => {
    const json = ngGeometryJson(
      "ellipsoid",
      [
        [0, 0, 0],
        [1, 2, 3],
      ],
      XYZ,
    );
    expect(json["center"]).toEqual([0, 0, 0]);
    expect(json["radii"]).toEqual([3, 2, 1]);
  });

  it("packs colours as Neuroglancer's rgb property", () => {
    expect(packRgb("#ff0000")).toBe(0x0000ff);
    expect(packRgb("#0000ff")).toBe(0xff0000);
    expect(packRgb("bad")).toBe(0xffffff);
  });

  it("refuses a viewer without x and y", () => {
    expect(() => axesOf(["a", "b"])).toThrow(/no y dimension/);
  });
});

describe("layers", () => {
  it("cuts the outside into at most six slabs that with the box tile the outer block", () => {
    const box = { start: [2, 3, 4], size: [5, 6, 7] };
    const outer = { lo: [0, 0, 0], hi: [10, 12, 14] };
    const slabs = outsideSlabs(box, outer);
    expect(slabs).toHaveLength(6);
    const volume = (lo: number[], hi: number[]): number =>
      lo.reduce((v, l, i) => v * ((hi[i] ?? 0) - l), 1);
    const total = slabs.reduce((v, [lo, hi]) => v + volume(lo ?? [], hi ?? []), 0);
    expect(total + 5 * 6 * 7).toBe(10 * 12 * 14);
    // A box at the edge leaves no empty slab.
    expect(outsideSlabs({ start: [0, 0, 0], size: [10, 12, 14] }, outer)).toHaveLength(0);
  });

  it("dims only the volume around the box, nothing beyond its edges", () => {
    const layer = dimmingLayer({ start: [0, 10, 20], size: [8, 8, 8] }, [16, 32, 64], XYZ);
    const boxes = layer["annotations"] as { pointA: number[]; pointB: number[] }[];
    expect(boxes).toHaveLength(5); // the box touches the volume's z = 0 face
    for (const b of boxes) {
      for (const p of [b.pointA, b.pointB]) {
        p.forEach((v, i) => {
          // The volume's faces: the edges of voxel 0 and of voxel n (viewer x y z).
          expect(v).toBeGreaterThanOrEqual(-0.5);
          expect(v).toBeLessThanOrEqual(([64, 32, 16][i] ?? 0) - 0.5);
        });
      }
    }
  });

  it("draws the task box on its voxels' outer faces (voxel i spans i - 0.5 to i + 0.5)", () => {
    const layer = taskBoxLayer({ start: [0, 10, 20], size: [8, 16, 32] }, XYZ);
    const [box] = layer["annotations"] as { pointA: number[]; pointB: number[] }[];
    expect(box?.pointA).toEqual([19.5, 9.5, -0.5]);
    expect(box?.pointB).toEqual([51.5, 25.5, 7.5]);
  });

  it("maps Shift+letter to a drawing tool, nothing else, and no tool bindings", () => {
    const key = (k: string, mods: Partial<KeyboardEvent> = {}) =>
      toolForKey({
        key: k,
        shiftKey: true,
        ctrlKey: false,
        altKey: false,
        metaKey: false,
        ...mods,
      });
    expect(key("B")).toBe("annotateBoundingBox");
    expect(key("l")).toBe("annotateLine"); // caps lock
    expect(key("E")).toBe("annotateSphere");
    expect(key("B", { shiftKey: false })).toBeUndefined();
    expect(key("B", { ctrlKey: true })).toBeUndefined();
    expect(key("Q")).toBeUndefined();
    expect(key("Shift")).toBeUndefined();
    expect(toolId("annotateLine")).toBe("annotateLine");
    expect(toolId({ type: "annotatePoint" })).toBe("annotatePoint");
    expect(toolId(undefined)).toBeUndefined();
    // Neuroglancer drops a layer's toolBindings of legacy annotation tools: none are sent.
    const layer = annotationsLayer([], XYZ, [], true);
    expect(layer["toolBindings"]).toBeUndefined();
    expect(layer["tool"]).toBe("annotatePoint");
    // A painted task's Neuroglancer tab opens with no tool armed.
    expect(annotationsLayer([], XYZ, [], false)["tool"]).toBeUndefined();
  });

  it("centres the camera on the box and fits its largest side", () => {
    const camera = cameraForTask({ start: [0, 10, 20], size: [10, 32, 64] }, XYZ, 400, 1.25);
    // The middle voxel of each side: a whole section, the one the Paint tab opens at.
    expect(camera.position).toEqual([52, 26, 5]);
    expect(camera.crossSectionScale).toBeCloseTo((64 * 1.25) / 400);
  });
});

describe("op diffing", () => {
  it("turns dirty ids into upserts and deletes, skipping unchanged and pending ones", () => {
    const ledger = new Ledger();
    ledger.reset(3, [point("a", 1, 1, 1), point("b", 2, 2, 2), point("c", 3, 3, 3)]);
    const page = new Map<string, ApiAnnotation | null>([
      ["a", point("a", 1, 1, 1)], // unchanged
      ["b", point("b", 2, 2, 9)], // moved
      ["d", point("d", 4, 4, 4)], // new
      ["e", null], // still being drawn
    ]);
    const { ops, skipped } = ledger.opsFor(["a", "b", "c", "d", "e", "zz"], (uid) =>
      page.has(uid) ? page.get(uid) : undefined,
    );
    expect(ops.map((o) => [o.op, o.uid])).toEqual([
      ["upsert", "b"],
      ["delete", "c"],
      ["upsert", "d"],
    ]);
    expect(skipped).toEqual(["e"]);
    ledger.applied(ops, 4);
    expect(ledger.version).toBe(4);
    expect(ledger.saved.has("c")).toBe(false);
    expect(ledger.saved.get("b")).toBe(keyOf(point("b", 2, 2, 9)));
  });

  it("notices a class, object id or description change as a change", () => {
    const ledger = new Ledger();
    ledger.reset(1, [point("a", 1, 1, 1)]);
    const current = new Map([["a", { ...point("a", 1, 1, 1), label: "other" }]]);
    expect(diffAll(ledger, current)).toHaveLength(1);
    current.set("a", { ...point("a", 1, 1, 1), object_id: 7 });
    expect(diffAll(ledger, current)).toHaveLength(1);
    current.set("a", point("a", 1, 1, 1));
    expect(diffAll(ledger, current)).toHaveLength(0);
  });

  it("diffs 2,000 annotations with one moved in well under 50 ms", () => {
    const all = Array.from({ length: 2000 }, (_, i) => point(`p${i}`, i % 10, i % 50, i % 70));
    const ledger = new Ledger();
    ledger.reset(1, all);
    const moved = { ...all[1234]!, coords: [[1, 2, 3]] };
    const started = performance.now();
    const { ops } = ledger.opsFor(["p1234"], () => moved);
    const full = diffAll(ledger, new Map(all.map((a) => [a.uid, a.uid === "p1234" ? moved : a])));
    const ms = performance.now() - started;
    expect(ops).toHaveLength(1);
    expect(full).toHaveLength(1);
    expect(ms).toBeLessThan(50);
  });
});

describe("saver", () => {
  function harness(post: (base: number, ops: Op[]) => Promise<{ version: number }>) {
    const ledger = new Ledger();
    ledger.reset(0, []);
    const page = new Map<string, ApiAnnotation>();
    const timers: (() => void)[] = [];
    const stale: StaleError[] = [];
    const settled: boolean[] = []; // busy, as the page would read it when told
    const saver: Saver = new Saver({
      ledger,
      read: (uid) => page.get(uid),
      post,
      onStale: (e) => stale.push(e),
      onSettled: () => settled.push(saver.busy),
      setTimer: (fn) => timers.push(fn),
      clearTimer: () => undefined,
    });
    return { ledger, page, saver, timers, stale, settled };
  }

  it("batches changes into one save based on the last version, one save at a time", async () => {
    const calls: [number, string[]][] = [];
    let release: (() => void) | undefined;
    const h = harness(async (base, ops) => {
      calls.push([base, ops.map((o) => o.uid)]);
      if (calls.length === 1) await new Promise<void>((r) => (release = r));
      return { version: base + 1 };
    });
    h.page.set("a", point("a", 1, 1, 1));
    h.page.set("b", point("b", 2, 2, 2));
    h.saver.mark("a");
    h.saver.mark("b");
    const first = h.saver.flush();
    await Promise.resolve();
    h.page.set("c", point("c", 3, 3, 3));
    h.saver.mark("c");
    const second = h.saver.flush(); // waits for the first
    release?.();
    await Promise.all([first, second]);
    expect(calls).toEqual([
      [0, ["a", "b"]],
      [1, ["c"]],
    ]);
    expect(h.ledger.version).toBe(2);
    expect(h.saver.busy).toBe(false);
    // The page is told after each save, the last time with nothing in flight or dirty (it then
    // says "All changes saved"; told only from inside the save it kept saying "Saving…").
    expect(h.settled).toEqual([true, false]);
  });

  it("stops on a stale save, keeps the changes, and resumes after a merge", async () => {
    let refuse = true;
    const h = harness(async (base) => {
      if (refuse) throw new StaleError(5);
      return { version: base + 1 };
    });
    h.page.set("a", point("a", 1, 1, 1));
    h.saver.mark("a");
    await h.saver.flush();
    expect(h.stale.map((e) => e.currentVersion)).toEqual([5]);
    expect([...h.saver.dirty]).toEqual(["a"]);
    h.page.set("b", point("b", 1, 1, 1));
    h.saver.mark("b");
    await h.saver.flush(); // nothing is sent while stale
    expect(h.ledger.version).toBe(0);
    refuse = false;
    h.ledger.reset(5, []);
    h.saver.resume();
    await h.saver.flush();
    expect(h.ledger.version).toBe(6);
    expect([...h.ledger.saved.keys()].sort()).toEqual(["a", "b"]);
  });
});
