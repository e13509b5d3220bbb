// @vitest-environment happy-dom
// The Paint tab's wiring (annotation_task/paint.ts) against a scripted server: loading the box's
// image and labels, keys reaching the editor, the save's multipart form, and a stale save's
// "reload my changes on top" (loads the current version, re-applies, saves on it).
import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";

import {
  VIEW_FIT,
  countObjects,
  cursorSize,
  mountPaint,
  planePointAt,
  viewCssSize,
  viewFits,
  voxelSize,
} from "../src/annotation_task/paint";
import { objectsText, revisionText, sliceCaption } from "../src/annotation_task/format";

const SHAPE = [2, 4, 6];
const BASE = "/api/v1/annotation/assignments/9/labels/";

function markup(): string {
  const view = (p: string): string =>
    `<figure data-paint-view="${p}"><canvas></canvas><div class="paint-cursor" hidden></div>` +
    `<figcaption class="paint-slice"></figcaption></figure>`;
  return `<section id="paint">
    <button data-paint-tool="brush"></button><button data-paint-tool="eraser"></button>
    <button data-paint-tool="sphere" data-paint-3d></button>
    <button data-paint-action="interpolate" data-paint-3d></button>
    <button data-paint-action="save"></button><button data-paint-action="undo"></button>
    <input data-paint="low" value="0"><input data-paint="high" value="255">
    <span data-paint="info"></span><span data-paint="status"></span>
    <div data-paint="conflict" hidden><span></span><button>on top</button></div>
    <span data-paint="interpolated"></span>${view("xy")}${view("xz")}${view("yz")}</section>`;
}

interface Posted {
  base: string | null;
  parts: Record<string, Uint32Array>;
  provenance: string | null;
}

function fakeServer(
  saves: { status: number; body: unknown }[],
  labels: { version: number } = { version: 0 },
  shape: number[] = SHAPE,
): Posted[] {
  const posted: Posted[] = [];
  const image = new Uint8Array(shape[0]! * shape[1]! * shape[2]!).map((_, i) => i);
  vi.stubGlobal(
    "fetch",
    vi.fn(async (url: string, init: RequestInit = {}) => {
      if (init.method === "POST") {
        const form = init.body as FormData;
        const parts: Record<string, Uint32Array> = {};
        for (const [key, value] of form.entries()) {
          if (typeof value !== "string") {
            const blob = value as Blob;
            // The page gzips every part (application/gzip): what the server reads.
            expect(blob.type).toBe("application/gzip");
            const raw = blob.stream().pipeThrough(new DecompressionStream("gzip"));
            parts[key] = new Uint32Array(await new Response(raw).arrayBuffer());
          }
        }
        posted.push({
          base: form.get("base_version") as string | null,
          parts,
          provenance: form.get("provenance") as string | null,
        });
        const reply = saves.shift()!;
        return new Response(JSON.stringify(reply.body), { status: reply.status });
      }
      if (url === BASE) {
        const geometry = { shape, chunk: [shape[0]!, 4, 4] };
        const { version } = labels;
        return new Response(JSON.stringify({ version, current_version: version, geometry }));
      }
      if (url === `${BASE}image/`) {
        return new Response(image, { headers: { "X-Shape": shape.join(",") } });
      }
      return new Response("", { status: 404 }); // every stored chunk: all zero
    }),
  );
  return posted;
}

beforeEach(() => {
  document.body.innerHTML = markup();
  // happy-dom draws nothing: a 2D context that keeps the last ImageData put.
  vi.spyOn(HTMLCanvasElement.prototype, "getContext").mockImplementation(function (
    this: HTMLCanvasElement,
  ) {
    const canvas = this;
    return {
      createImageData: (w: number, h: number) => ({
        width: w,
        height: h,
        data: new Uint8ClampedArray(w * h * 4),
      }),
      putImageData: (img: ImageData) => {
        (canvas as unknown as { drawn: ImageData }).drawn = img;
      },
    } as unknown as CanvasRenderingContext2D;
  } as never);
});

const mounted: { dispose(): void }[] = [];

afterEach(() => {
  for (const paint of mounted.splice(0)) paint.dispose();
  document.body.innerHTML = "";
});

function key(k: string, ctrl = false): void {
  window.dispatchEvent(new KeyboardEvent("keydown", { key: k, ctrlKey: ctrl, cancelable: true }));
}

/** The Paint tab mounted on a scripted server with no saves to answer (``labels``: the
 * version its labels state names). */
async function mountTab(labels?: { version: number }, shape?: number[], planar = false) {
  fakeServer([], labels, shape);
  const root = document.getElementById("paint")!;
  const paint = mountPaint(
    root,
    { assignmentId: 9, csrfToken: "t", editable: true, provenance: false, planar },
    () => undefined,
  );
  mounted.push(paint);
  await paint.ready;
  return { root, paint };
}

describe("the Paint tab", () => {
  it("loads, draws the image, saves with Ctrl+S and re-applies its changes after a 409", async () => {
    const posted = fakeServer([
      { status: 409, body: { message: "stale", current_version: 3 } },
      { status: 200, body: { version: 4, chunks_changed: 1, chunks: 1, active_seconds: 1 } },
    ]);
    const versions: number[] = [];
    const counts: number[] = [];
    const root = document.getElementById("paint")!;
    const paint = mountPaint(
      root,
      { assignmentId: 9, csrfToken: "t", editable: true, provenance: true },
      (v) => versions.push(v),
      (n) => counts.push(n),
    );
    mounted.push(paint);
    await paint.ready;
    expect(counts).toEqual([0]); // counted once loaded: the stored labels are empty
    const editor = paint.editor;
    expect(editor.volume.shape).toEqual(SHAPE);
    // The xy view of slice 1 shows the image's voxels (1, y, x) = 24 + 6y + x as grey.
    const xy = root.querySelector<HTMLCanvasElement>("[data-paint-view=xy] canvas")!;
    const drawn = (xy as unknown as { drawn: ImageData }).drawn;
    expect([drawn.width, drawn.height]).toEqual([6, 4]);
    expect(Array.from(drawn.data.subarray(4 * 7, 4 * 7 + 4))).toEqual([31, 31, 31, 255]);
    // Paint one voxel with the brush, then Ctrl+S.
    editor.radius = 0.5;
    editor.press("xy", 5, 3);
    editor.release();
    key("s", true);
    await vi.waitFor(() => expect(posted.length).toBe(1));
    expect(posted[0]!.base).toBe("0");
    expect(Object.keys(posted[0]!.parts)).toEqual(["0.0.1"]); // x 4-5: the clipped chunk
    const part = posted[0]!.parts["0.0.1"]!;
    expect(part.length).toBe(2 * 4 * 2);
    expect(part[(1 * 4 + 3) * 2 + 1]).toBe(editor.activeId);
    expect(JSON.parse(posted[0]!.provenance!)).toEqual({
      [editor.activeId]: { source: "manual" },
    });
    const conflict = root.querySelector<HTMLElement>("[data-paint=conflict]")!;
    await vi.waitFor(() => expect(conflict.hidden).toBe(false));
    expect(conflict.textContent).toContain("Version 3");
    // "Reload my changes on top": version 3 (all zero here) plus the voxel, saved on 3.
    conflict.querySelector("button")!.click();
    await vi.waitFor(() => expect(posted.length).toBe(2));
    expect(posted[1]!.base).toBe("3");
    expect(posted[1]!.parts["0.0.1"]).toEqual(part);
    await vi.waitFor(() => expect(paint.version()).toBe(4));
    expect(versions).toEqual([3, 4]);
    // The saved labels hold one object: the page's "Objects" hears of it after the save.
    expect(counts).toEqual([0, 1]);
    expect(paint.objects()).toBe(1);
    expect(conflict.hidden).toBe(true);
    expect(editor.tracker.changed()).toEqual([]);
  });

  it("reaches the editor's keys only while the tab is shown; E and B switch tools", async () => {
    const { root, paint } = await mountTab();
    key("e");
    expect(paint.editor.tool).toBe("eraser");
    const pressed = root.querySelector("[data-paint-tool=eraser]")!.getAttribute("aria-pressed");
    expect(pressed).toBe("true");
    root.hidden = true;
    key("b");
    expect(paint.editor.tool).toBe("eraser");
    root.hidden = false;
    key("b");
    expect(paint.editor.tool).toBe("brush");
  });

  it("paints a box one voxel deep (a 2D image's) in its xy view alone", async () => {
    const { root, paint } = await mountTab(undefined, [1, 4, 6], true);
    expect(paint.editor.flat).toBe(true);
    const hidden = (p: string) => root.querySelector<HTMLElement>(`[data-paint-view=${p}]`)!.hidden;
    expect([hidden("xy"), hidden("xz"), hidden("yz")]).toEqual([false, true, true]);
    // The sphere brush and interpolation leave the toolbar; their keys do nothing.
    const only3d = [...root.querySelectorAll<HTMLElement>("[data-paint-3d]")];
    expect(only3d.length).toBe(2);
    expect(only3d.every((el) => el.hidden)).toBe(true);
    key("s");
    expect(paint.editor.tool).toBe("brush");
    // No z to speak of: the caption names the view, the position line x and y.
    expect(root.querySelector("[data-paint-view=xy] .paint-slice")!.textContent).toBe("xy");
    expect(root.querySelector("[data-paint=info]")!.textContent).toContain("x 3 y 2 · version");
    key("e");
    expect(paint.editor.tool).toBe("eraser");
    // A one-slice box of a volume: the xy view alone too, but its z stays in the captions.
    paint.dispose();
    const slice = await mountTab(undefined, [1, 4, 6], false);
    expect(hidden("xz")).toBe(true);
    expect(root.querySelector("[data-paint-view=xy] .paint-slice")!.textContent).toBe(
      "xy · z 0 of 0–0",
    );
    expect(root.querySelector("[data-paint=info]")!.textContent).toContain(" z 0 ");
    // A volume's box keeps all three views and the 3D tools.
    slice.paint.dispose();
    const volume = await mountTab(undefined, [2, 4, 6]);
    expect(volume.paint.editor.flat).toBe(false);
    expect(hidden("xz") || hidden("yz")).toBe(false);
    expect(only3d.some((el) => el.hidden)).toBe(false);
    key("s");
    expect(volume.paint.editor.tool).toBe("sphere");
  });
});

describe("the Paint tab's page wiring", () => {
  it("Shift+wheel over a view sizes the brush; the wheel alone moves the slice", async () => {
    const { root, paint } = await mountTab();
    const xy = root.querySelector<HTMLCanvasElement>("[data-paint-view=xy] canvas")!;
    const radius = paint.editor.radius;
    const wheel = (deltaY: number, shiftKey: boolean): void => {
      const event = new WheelEvent("wheel", { deltaY, cancelable: true });
      // happy-dom's WheelEvent drops the modifier keys of its init: set it as Chromium would.
      Object.defineProperty(event, "shiftKey", { value: shiftKey });
      xy.dispatchEvent(event);
    };
    wheel(-100, true);
    expect(paint.editor.radius).toBe(radius + 1);
    wheel(100, true);
    wheel(100, true);
    expect(paint.editor.radius).toBe(radius - 1);
    expect(root.querySelector("[data-paint=info]")!.textContent).toContain(`radius ${radius - 1}`);
    expect(paint.editor.slice("xy")).toBe(1);
    wheel(-100, false);
    expect(paint.editor.slice("xy")).toBe(0);
    expect(root.querySelector("[data-paint-view=xy] .paint-slice")!.textContent).toBe(
      "xy · z 0 of 0–1",
    );
  });

  it("the contrast inputs redraw the views through the new window", async () => {
    const { root } = await mountTab();
    const xy = root.querySelector<HTMLCanvasElement>("[data-paint-view=xy] canvas")!;
    const grey = (): number => (xy as unknown as { drawn: ImageData }).drawn.data[4 * 7]!;
    expect(grey()).toBe(31); // image value 31 (slice 1, y 1, x 1) through the window 0-255
    const high = root.querySelector<HTMLInputElement>("[data-paint=high]")!;
    high.value = "62";
    high.dispatchEvent(new Event("input"));
    expect(grey()).toBeGreaterThanOrEqual(127);
    expect(grey()).toBeLessThanOrEqual(129); // 31 is half of the window 0-62
  });

  it("reload (after a restore) shows the server's version and forgets the session", async () => {
    const labels = { version: 0 };
    const { root, paint } = await mountTab(labels);
    const editor = paint.editor;
    editor.radius = 0.5;
    editor.press("xy", 5, 3);
    editor.release();
    editor.interpolated.push({ plane: "xy", id: editor.activeId, slices: [1] });
    expect(paint.unsaved()).toBe(true);
    labels.version = 5; // a restore made version 5; its chunks (404 here) are empty
    expect(await paint.reload()).toBe(5);
    expect(paint.version()).toBe(5);
    expect(paint.unsaved()).toBe(false);
    expect(editor.volume.data.every((v) => v === 0)).toBe(true);
    expect(editor.undo()).toBe(null); // nothing to take back into the restored version
    expect(editor.interpolated).toEqual([]);
    expect(root.querySelector("[data-paint=interpolated]")!.textContent).toBe("none yet");
    expect(root.querySelector("[data-paint=status]")!.textContent).toBe("Showing version 5.");
  });
});

describe("the views' physical aspect ratio", () => {
  const shape = [16, 64, 32]; // z, y, x voxels
  const anisotropic = [0.4, 0.2, 0.2]; // um: z voxels twice as deep as wide

  it("draws each view at the box's physical extent, fitted in its box", () => {
    // xy: 32 x 64 voxels of 0.2 um = 6.4 x 12.8 um, held by the height (1024 px).
    expect(viewCssSize("xy", shape, anisotropic, VIEW_FIT.xy)).toEqual({
      width: 512,
      height: 1024,
    });
    // xz: x 6.4 um wide, z 16 * 0.4 = 6.4 um tall: square on screen although 32 x 16 voxels.
    const xz = viewCssSize("xz", shape, anisotropic, VIEW_FIT.xz);
    expect(xz).toEqual({ width: 320, height: 320 });
    // yz: y 12.8 um wide, z 6.4 um tall.
    expect(viewCssSize("yz", shape, anisotropic, VIEW_FIT.yz)).toEqual({
      width: 320,
      height: 160,
    });
    // Cubic voxels: the pixel aspect of the voxels (half as tall for xz's 32 x 16).
    expect(viewCssSize("xz", shape, [1, 1, 1], VIEW_FIT.xz)).toEqual({ width: 320, height: 160 });
    // A tall yz (deep box, thin y) is shrunk to fit 512 px high, keeping its aspect.
    const deep = viewCssSize("yz", [256, 16, 16], anisotropic, VIEW_FIT.yz);
    expect(deep.height).toBe(512);
    expect(deep.width).toBeCloseTo((512 * 16 * 0.2) / (256 * 0.4));
  });

  it("fits xy on the left and xz over yz on the right of the tab's free area", () => {
    // The Paint tab at 1280 x 800: about 880 x 550 px below the tools.
    const fits = viewFits(880, 550);
    const cube = [32, 32, 32];
    const xy = viewCssSize("xy", cube, [1, 1, 1], fits.xy);
    const xz = viewCssSize("xz", cube, [1, 1, 1], fits.xz);
    const yz = viewCssSize("yz", cube, [1, 1, 1], fits.yz);
    // Side by side within the width; xz and yz stacked within the height, captions included.
    expect(xy.width + 8 + Math.max(xz.width, yz.width)).toBeLessThanOrEqual(880);
    expect(xy.height + 22).toBeLessThanOrEqual(550);
    expect(xz.height + 22 + 8 + yz.height + 22).toBeLessThanOrEqual(550);
    expect(xy.width).toBeGreaterThan(xz.width); // the main view is the larger
    // A tiny area does not shrink the views to nothing (the tab scrolls); a huge one does not
    // blow them up past their largest size.
    expect(viewFits(100, 100).xz.maxHeight).toBe(160);
    expect(viewFits(10_000, 10_000).xy.maxWidth).toBe(900);
  });

  it("gives a box one voxel deep its xy view alone, over the whole area", () => {
    const fits = viewFits(880, 550, true);
    expect(fits.xy).toEqual({ maxWidth: 880, maxHeight: 550 - 22 });
    const xy = viewCssSize("xy", [1, 128, 128], [0.1, 0.1, 0.1], fits.xy);
    expect(xy.width).toBe(528); // the height limits a square box: larger than in three views
    expect(xy.width).toBeGreaterThan(
      viewCssSize("xy", [1, 128, 128], [1, 1, 1], viewFits(880, 550).xy).width,
    );
  });

  it("maps every voxel centre on screen back to its voxel, however stretched", () => {
    // The xz view above: 32 x 16 pixels in 320 x 320 px: 10 px per x voxel, 20 per z voxel.
    const pixels = { width: 32, height: 16 };
    const rect = { left: 100, top: 50, width: 320, height: 320 };
    for (const [u, v] of [
      [0, 0],
      [31, 15],
      [7, 9],
    ] as const) {
      const cx = rect.left + (u + 0.5) * 10;
      const cy = rect.top + (v + 0.5) * 20;
      const [pu, pv] = planePointAt(rect, pixels, cx, cy);
      expect(pu).toBeCloseTo(u);
      expect(pv).toBeCloseTo(v);
    }
    // A voxel's edges round to it: just inside its top-left and bottom-right corners.
    const [u0, v0] = planePointAt(rect, pixels, rect.left + 70.1, rect.top + 180.1);
    const [u1, v1] = planePointAt(rect, pixels, rect.left + 79.9, rect.top + 199.9);
    expect([Math.round(u0), Math.round(v0), Math.round(u1), Math.round(v1)]).toEqual([7, 9, 7, 9]);
    // The brush cursor covers 2r+1 voxels each way: an ellipse twice as tall as wide.
    expect(cursorSize(rect, pixels, 2)).toEqual({ width: 50, height: 100 });
  });

  it("falls back to cubic voxels when the geometry has no usable voxel size", () => {
    expect(voxelSize(undefined)).toEqual([1, 1, 1]);
    expect(voxelSize([0.4, 0, 0.2])).toEqual([1, 1, 1]);
    expect(voxelSize([0.4, 0.2])).toEqual([1, 1, 1]);
    expect(voxelSize([0.4, 0.2, 0.2])).toEqual([0.4, 0.2, 0.2]);
  });

  it("sizes the mounted views from the config's voxel size", async () => {
    fakeServer([]);
    const root = document.getElementById("paint")!;
    const paint = mountPaint(
      root,
      {
        assignmentId: 9,
        csrfToken: "t",
        editable: true,
        provenance: false,
        voxelSizeUm: [2, 1, 1],
      },
      () => undefined,
    );
    mounted.push(paint);
    await paint.ready;
    // SHAPE 2 x 4 x 6: xz is 6 x 2 voxels, 6 x 4 um: 320 x 213.3 px; xy 6 x 4 um.
    const style = (p: string): string[] => {
      const c = root.querySelector<HTMLCanvasElement>(`[data-paint-view=${p}] canvas`)!;
      return [c.style.width, c.style.height].map((s) => Number.parseFloat(s).toFixed(1));
    };
    expect(style("xz")).toEqual(["320.0", "213.3"]);
    expect(style("xy")).toEqual(["512.0", "341.3"]);
    expect(style("yz")).toEqual(["320.0", "320.0"]);
  });
});

describe("counting objects", () => {
  it("counts distinct non-zero ids, runs and repeats once", () => {
    expect(countObjects(new Uint32Array([0, 0, 0]))).toBe(0);
    expect(countObjects(new Uint32Array([3, 3, 0, 5, 5, 3, 0, 7]))).toBe(3);
    expect(countObjects(new Uint32Array([0, 1, 0, 1]))).toBe(1);
  });

  it("writes the side panel's Objects with the painted ones named in a painted campaign", () => {
    // Slices in the dataset's coordinates, as Neuroglancer's position bar shows them.
    expect(sliceCaption("xy", 25, 50, 32)).toBe("xy · z 57 of 32–81");
    expect(sliceCaption("yz", 0, 16)).toBe("yz · x 0 of 0–15");
    expect(objectsText(4, null)).toBe("4");
    expect(objectsText(1, 3)).toBe("3 painted · 1 point");
    // Version lists: a painting save in chunks, not in point edits ("+0 ~0 −0 (? in all)").
    expect(revisionText({ kind: "save", summary: { chunks_changed: 2, chunks: 5 } })).toBe(
      "painted: 2 chunk(s) changed, 5 with labels",
    );
    expect(
      revisionText({ kind: "save", summary: { created: 1, changed: 0, deleted: 2, count: 7 } }),
    ).toBe("+1 ~0 −2 · 7 objects");
    expect(revisionText({ kind: "restore", restored_from: 3, summary: {} })).toBe(
      "restored version 3",
    );
    expect(objectsText(0, 0)).toBe("0 painted · 0 points");
  });
});
