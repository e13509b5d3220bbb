import { afterEach, describe, expect, it, vi } from "vitest";

import {
  ChunkGrid,
  compressedSaveForm,
  decodeChunkFile,
  loadVersion,
  saveForm,
} from "../src/label_editor/chunks";
import { LabelEditor } from "../src/label_editor/editor";
import { Edit, History } from "../src/label_editor/history";
import { distanceTransform2d, interpolate } from "../src/label_editor/interpolate";
import type { Proposal } from "../src/label_editor/proposal";
import { colourOf, contrastLut, drawOutline, drawRegion } from "../src/label_editor/render";
import { floodFill2d, paintDisc, paintSphere, paintStroke } from "../src/label_editor/tools";
import { LabelVolume } from "../src/label_editor/volume";

function count(vol: LabelVolume, id: number): number {
  let n = 0;
  for (const v of vol.data) if (v === id) n++;
  return n;
}

/** The voxels of one slice of ``plane`` holding ``id``, as "u,v" strings. */
function slicePixels(vol: LabelVolume, z: number, id: number): Set<string> {
  const out = new Set<string>();
  for (let y = 0; y < vol.shape[1]; y++)
    for (let x = 0; x < vol.shape[2]; x++) if (vol.get(z, y, x) === id) out.add(`${x},${y}`);
  return out;
}

describe("brush and eraser", () => {
  it("paints a disc of radius r in the xy plane of one slice only", () => {
    const vol = new LabelVolume([4, 20, 20]);
    const edit = new Edit(vol, "brush");
    paintDisc(edit, "xy", 2, 10, 10, 3, 5);
    // Pixels within distance 3 of (10, 10): the lattice count of a radius-3 disc is 29.
    expect(count(vol, 5)).toBe(29);
    expect(slicePixels(vol, 2, 5).size).toBe(29);
    expect(slicePixels(vol, 1, 5).size).toBe(0);
    expect(vol.get(2, 10, 13)).toBe(5);
    expect(vol.get(2, 10, 14)).toBe(0);
    expect(vol.get(2, 12, 12)).toBe(5); // 2^2 + 2^2 = 8 <= 9
    expect(vol.get(2, 13, 12)).toBe(0); // 9 + 4 > 9
    expect(edit.bounds).toEqual({ min: [2, 7, 7], max: [2, 13, 13] });
  });

  it("paints xz and yz planes across slices of the volume", () => {
    const vol = new LabelVolume([10, 8, 12]);
    const edit = new Edit(vol, "brush");
    paintDisc(edit, "xz", 3, 6, 5, 1, 2); // y = 3, u = x = 6, v = z = 5
    expect(vol.get(5, 3, 6)).toBe(2);
    expect(vol.get(4, 3, 6)).toBe(2);
    expect(vol.get(5, 3, 7)).toBe(2);
    expect(vol.get(5, 4, 6)).toBe(0);
    paintDisc(edit, "yz", 1, 2, 7, 0.5, 3); // x = 1, u = y = 2, v = z = 7
    expect(vol.get(7, 2, 1)).toBe(3);
    expect(count(vol, 3)).toBe(1);
  });

  it("clips at the volume's edges and leaves no gaps along a fast stroke", () => {
    const vol = new LabelVolume([1, 10, 40]);
    const edit = new Edit(vol, "brush");
    paintDisc(edit, "xy", 0, 0, 0, 2, 1);
    expect(count(vol, 1)).toBe(6); // a quarter disc of radius 2 with its axes
    paintStroke(edit, "xy", 0, [2, 5], [37, 5], 1, 4);
    for (let x = 1; x <= 38; x++) expect(vol.get(0, 5, x)).toBe(4);
    expect(vol.get(0, 5, 39)).toBe(0);
  });

  it("erases with value 0 and records only the voxels that changed", () => {
    const vol = new LabelVolume([1, 10, 10]);
    const paint = new Edit(vol, "brush");
    paintDisc(paint, "xy", 0, 5, 5, 2, 9);
    const erase = new Edit(vol, "eraser");
    paintDisc(erase, "xy", 0, 7, 5, 1, 0);
    // The eraser's disc of 5 pixels overlaps the painted disc at (6, 5) and (7, 5) only.
    expect(erase.size).toBe(2);
    expect(vol.get(0, 5, 7)).toBe(0);
    expect(vol.get(0, 5, 5)).toBe(9);
    expect(count(vol, 9)).toBe(13 - 2);
  });

  it("paints a 3D sphere", () => {
    const vol = new LabelVolume([9, 9, 9]);
    paintSphere(new Edit(vol, "sphere"), 4, 4, 4, 2, 3);
    expect(count(vol, 3)).toBe(33); // lattice points of a radius-2 ball
    expect(vol.get(2, 4, 4)).toBe(3);
    expect(vol.get(1, 4, 4)).toBe(0);
  });
});

describe("flood fill", () => {
  it("fills the 4-connected region of the clicked value within the slice", () => {
    const vol = new LabelVolume([2, 6, 6]);
    // A ring of id 1 on slice 0 around (2..3, 2..3); slice 1 empty.
    const ring = new Edit(vol, "brush");
    for (let i = 1; i <= 4; i++) {
      ring.set(vol.index(0, 1, i), 1);
      ring.set(vol.index(0, 4, i), 1);
      ring.set(vol.index(0, i, 1), 1);
      ring.set(vol.index(0, i, 4), 1);
    }
    const fill = new Edit(vol, "fill");
    expect(floodFill2d(fill, "xy", 0, 2, 2, 7)).toBe(4);
    expect(vol.get(0, 2, 2)).toBe(7);
    expect(vol.get(0, 3, 3)).toBe(7);
    expect(vol.get(0, 0, 0)).toBe(0);
    expect(vol.get(1, 2, 2)).toBe(0);
    // Filling the outside (value 0) stops at the ring of 12: 36 - 12 - 4 pixels.
    expect(floodFill2d(new Edit(vol, "fill"), "xy", 0, 0, 0, 8)).toBe(20);
    expect(count(vol, 8)).toBe(20);
    // Filling with the same value changes nothing.
    expect(floodFill2d(new Edit(vol, "fill"), "xy", 0, 2, 2, 7)).toBe(0);
  });
});

describe("interpolation", () => {
  it("computes exact squared distances", () => {
    const seed = new Uint8Array(5 * 5);
    seed[2 * 5 + 2] = 1;
    const d = distanceTransform2d(seed, 5, 5);
    expect(d[2 * 5 + 2]).toBe(0);
    expect(d[0]).toBe(8);
    expect(d[2 * 5 + 4]).toBe(4);
  });

  it("fills the slices between two painted discs with discs of intermediate radius", () => {
    const vol = new LabelVolume([9, 40, 40]);
    const edit = new Edit(vol, "brush");
    paintDisc(edit, "xy", 0, 20, 20, 4, 3);
    paintDisc(edit, "xy", 8, 20, 20, 12, 3);
    const other = new Edit(vol, "brush");
    other.set(vol.index(4, 20, 20), 9); // another object in the way is kept
    const interp = new Edit(vol, "interpolate");
    const filled = interpolate(interp, "xy", 3);
    expect(filled).toEqual([1, 2, 3, 4, 5, 6, 7]);
    expect(vol.get(4, 20, 20)).toBe(9);
    // The middle slice holds a disc of radius about 8: (20+8, 20) inside, (20+10, 20) not.
    expect(vol.get(4, 20, 28)).toBe(3);
    expect(vol.get(4, 20, 30)).toBe(0);
    const areas = [1, 4, 7].map((z) => slicePixels(vol, z, 3).size);
    expect(areas[0]! < areas[1]! && areas[1]! < areas[2]!).toBe(true);
    // Slices already painted are untouched and nothing grew outside [0, 8].
    expect(interp.bounds.min[0]).toBe(1);
    expect(interp.bounds.max[0]).toBe(7);
  });

  it("works along the yz plane's normal (x) with several painted slices", () => {
    const vol = new LabelVolume([20, 20, 12]);
    const edit = new Edit(vol, "brush");
    for (const x of [0, 5, 11]) paintDisc(edit, "yz", x, 10, 10, 3, 2);
    const filled = interpolate(new Edit(vol, "interpolate"), "yz", 2);
    expect(filled).toEqual([1, 2, 3, 4, 6, 7, 8, 9, 10]);
    for (let x = 0; x < 12; x++) expect(vol.get(10, 10, x)).toBe(2);
  });

  it("works along the xz plane's normal (y)", () => {
    const vol = new LabelVolume([16, 10, 16]);
    const edit = new Edit(vol, "brush");
    paintDisc(edit, "xz", 1, 8, 8, 2, 4);
    paintDisc(edit, "xz", 7, 8, 8, 5, 4);
    const filled = interpolate(new Edit(vol, "interpolate"), "xz", 4);
    expect(filled).toEqual([2, 3, 4, 5, 6]);
    for (let y = 1; y <= 7; y++) expect(vol.get(8, y, 8)).toBe(4);
    expect(vol.get(8, 0, 8)).toBe(0);
    expect(vol.get(8, 8, 8)).toBe(0);
    // The disc grows from radius 2 to 5: slice 6 reaches further along x than slice 2.
    expect(vol.get(8, 6, 12)).toBe(4);
    expect(vol.get(8, 2, 12)).toBe(0);
  });
});

describe("undo and redo", () => {
  it("undoes and redoes whole operations in order; a new edit clears redo", () => {
    const vol = new LabelVolume([1, 10, 10]);
    const history = new History();
    const a = new Edit(vol, "brush");
    paintDisc(a, "xy", 0, 3, 3, 1, 1);
    history.push(a);
    const b = new Edit(vol, "brush");
    paintDisc(b, "xy", 0, 3, 4, 1, 2);
    history.push(b);
    const after = vol.data.slice();
    expect(vol.get(0, 4, 3)).toBe(2);
    history.undo();
    expect(vol.get(0, 4, 3)).toBe(1);
    expect(vol.get(0, 5, 3)).toBe(0);
    history.undo();
    expect(count(vol, 0)).toBe(100);
    expect(history.canUndo).toBe(false);
    history.redo();
    history.redo();
    expect(vol.data).toEqual(after);
    history.undo();
    const c = new Edit(vol, "eraser");
    paintDisc(c, "xy", 0, 3, 3, 0, 0);
    history.push(c);
    expect(history.canRedo).toBe(false);
  });
});

describe("chunk diffing and the save", () => {
  it("sends exactly the chunks that differ, clipped, as uint32 LE in z y x order", async () => {
    const editor = new LabelEditor([3, 70, 130], [64, 64, 64]);
    expect(editor.grid.counts).toEqual([1, 2, 3]);
    editor.position[0] = 1;
    editor.radius = 0.5;
    editor.activeId = 5;
    editor.press("xy", 129, 69);
    editor.release();
    editor.press("xy", 10, 10);
    editor.release();
    let parts = editor.tracker.changed();
    expect(parts.map((p) => p.key)).toEqual(["0.0.0", "0.1.2"]);
    const far = parts[1]!;
    expect(far.shape).toEqual([3, 6, 2]);
    expect(far.bytes.length).toBe(3 * 6 * 2 * 4);
    const values = new DataView(far.bytes.buffer, far.bytes.byteOffset, far.bytes.byteLength);
    // Voxel (1, 69, 129) is (1, 5, 1) of chunk 0.1.2: index (1*6 + 5)*2 + 1 = 23.
    expect(values.getUint32(23 * 4, true)).toBe(5);
    expect(values.getUint32(22 * 4, true)).toBe(0);
    // Undoing the second stroke leaves one changed chunk; the save form names it.
    editor.undo();
    parts = editor.tracker.changed();
    expect(parts.map((p) => p.key)).toEqual(["0.1.2"]);
    const form = saveForm(parts, 4, editor.provenanceNow());
    expect(form.get("base_version")).toBe("4");
    expect(JSON.parse(String(form.get("provenance")))).toEqual({ "5": { source: "manual" } });
    const file = form.get("0.1.2") as File;
    expect(file.name).toBe("0.1.2");
    expect(new Uint8Array(await file.arrayBuffer())).toEqual(far.bytes);
    // The page sends the same form with gzip parts: a gzip stream of the same bytes.
    const zipped = (await compressedSaveForm(parts, 4)).get("0.1.2") as File;
    expect(zipped.type).toBe("application/gzip");
    const header = new Uint8Array(await zipped.arrayBuffer()).subarray(0, 2);
    expect([...header]).toEqual([0x1f, 0x8b]);
    const raw = zipped.stream().pipeThrough(new DecompressionStream("gzip"));
    expect(new Uint8Array(await new Response(raw).arrayBuffer())).toEqual(far.bytes);
    // A change made while the save is under way (after its parts were taken) goes with the
    // next save; the saved chunks are otherwise the new base.
    editor.position[0] = 2;
    editor.press("xy", 129, 69);
    editor.release();
    editor.saved(parts);
    expect(editor.tracker.changed().map((p) => p.key)).toEqual(["0.1.2"]);
    editor.undo();
    expect(editor.tracker.changed()).toEqual([]);
  });

  it("reads stored zstd chunk files, padded at the edges, into the volume", async () => {
    // numcodecs Zstd of arange(24).reshape(2, 3, 4) * 1000 + 7 as uint32 LE.
    const b64 =
      "KLUv/SBgpQIAAgYUIqCrOed9732vWuF71Qrfq/4Rb0+/5R13yQHLZQlcgIsgLCk3Mi84K9qJN4KwgXHh8SCyYHKgMuCypbnq/NzU9XRYcuwgR5IbZcgyw/xszgIA";
    const file = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
    const chunk = decodeChunkFile(file, [2, 3, 4]);
    expect(chunk[23]).toBe(23007);
    // A box of 2 x 3 x 6 with chunks of 2 x 3 x 4: chunk 0.0.1 holds x 4..5 of a padded chunk.
    const vol = new LabelVolume([2, 3, 6]);
    const grid = new ChunkGrid(vol.shape, [2, 3, 4]);
    const urls: string[] = [];
    const fetcher = vi.fn(async (url: string) => {
      urls.push(url);
      return url.endsWith("/0/0/1")
        ? new Response(file, { status: 200 })
        : new Response("", { status: 404 });
    }) as unknown as typeof fetch;
    await loadVersion("/l/", 3, vol, grid, fetcher);
    expect(urls.sort()).toEqual(["/l/v3/s0/0/0/0", "/l/v3/s0/0/0/1"]);
    expect(vol.get(0, 0, 0)).toBe(0);
    expect(vol.get(0, 0, 4)).toBe(7);
    expect(vol.get(1, 2, 5)).toBe((12 + 8 + 1) * 1000 + 7);
  });

  it("re-applies the session's changes on top of another version (a stale save)", () => {
    const editor = new LabelEditor([1, 8, 8], [64, 64, 64]);
    editor.activeId = 2;
    editor.radius = 0.5;
    editor.press("xy", 1, 1);
    editor.release();
    const theirs = new Uint32Array(64);
    theirs[7 * 8 + 7] = 9;
    expect(editor.rebase(theirs)).toBe(1);
    expect(editor.volume.get(0, 1, 1)).toBe(2);
    expect(editor.volume.get(0, 7, 7)).toBe(9);
    expect(editor.tracker.changed().map((p) => p.key)).toEqual(["0.0.0"]);
  });
});

describe("the editor's tools, keys and proposals", () => {
  afterEach(() => vi.restoreAllMocks());

  it("C gives the next free id, B/E switch tools, F/D move the slice, Ctrl+Z/Ctrl+Y", () => {
    const data = new Uint32Array(4 * 8 * 8);
    data[0] = 6;
    const editor = new LabelEditor([4, 8, 8], [64, 64, 64], data);
    expect(editor.activeId).toBe(7);
    editor.key({ key: "c" });
    expect(editor.activeId).toBe(7); // 7 is not painted yet: still the next free id
    editor.key({ key: "e" });
    expect(editor.tool).toBe("eraser");
    editor.key({ key: "b" });
    expect(editor.tool).toBe("brush");
    expect(editor.slice()).toBe(2);
    editor.key({ key: "f" });
    editor.key({ key: "f" });
    expect(editor.slice()).toBe(3);
    editor.key({ key: "d" });
    expect(editor.slice()).toBe(2);
    editor.press("xy", 4, 4);
    editor.drag(6, 4);
    editor.release();
    expect(editor.volume.get(2, 4, 5)).toBe(7);
    expect(editor.key({ key: "z", ctrlKey: true })?.action).toBe("undo");
    expect(editor.volume.get(2, 4, 5)).toBe(0);
    expect(editor.key({ key: "y", ctrlKey: true })?.changed).not.toBeNull();
    expect(editor.volume.get(2, 4, 5)).toBe(7);
    expect(editor.key({ key: "s", ctrlKey: true })?.action).toBe("save");
    editor.wheel(-1);
    expect(editor.radius).toBe(5);
    editor.key({ key: "c" });
    expect(editor.activeId).toBe(8);
    editor.tool = "pick";
    editor.position[0] = 0;
    editor.press("xy", 0, 0);
    expect(editor.activeId).toBe(6);
  });

  /** Object 3 brushed at (8, 8) on xy slices 0 and 4, then V. */
  function strokesThenV(editor: LabelEditor): void {
    editor.activeId = 3;
    for (const z of [0, 4]) {
      editor.position[0] = z;
      editor.press("xy", 8, 8);
      editor.release();
    }
    editor.key({ key: "v" });
  }

  it("V interpolates the active object and records the slices", () => {
    const editor = new LabelEditor([5, 16, 16], [64, 64, 64]);
    strokesThenV(editor);
    expect(editor.interpolated).toEqual([{ plane: "xy", id: 3, slices: [1, 2, 3] }]);
    expect(editor.volume.get(2, 8, 8)).toBe(3);
    editor.undo();
    expect(editor.volume.get(2, 8, 8)).toBe(0);
    expect(editor.interpolated).toEqual([]); // undo takes the record back too
    editor.redo();
    expect(editor.interpolated).toEqual([{ plane: "xy", id: 3, slices: [1, 2, 3] }]);
  });

  it("records interpolated slices in the save's provenance, with an earlier session's", () => {
    const editor = new LabelEditor([5, 16, 16], [64, 64, 64]);
    // Loaded with the version: object 3 came from a click, and its y slices 9-10 (xz) were
    // interpolated in an earlier session; object 7 was painted but is gone now.
    editor.volume.data[editor.volume.index(0, 0, 0)] = 3;
    editor.provenance = {
      "3": { source: "click", interpolated: { xz: [9, 10] } },
      "7": { source: "manual" },
    };
    strokesThenV(editor);
    expect(editor.filledSlices()).toEqual([
      { plane: "xy", id: 3, slices: [1, 2, 3] },
      { plane: "xz", id: 3, slices: [9, 10] },
    ]);
    // A stroke on a clicked object keeps its provenance; the interpolation is added to it.
    expect(editor.provenanceNow()).toEqual({
      "3": { source: "click", interpolated: { xz: [9, 10], xy: [1, 2, 3] } },
    });
  });

  it("shows a proposal; Enter paints it as a new object with provenance, Esc drops it", () => {
    const editor = new LabelEditor([2, 4, 4], [64, 64, 64]);
    const clicks: number[][] = [];
    const done: [boolean, string][] = [];
    editor.onAssistClick = (z, y, x) => clicks.push([z, y, x]);
    editor.onProposalDone = (accepted, p) => done.push([accepted, p.id]);
    editor.position[0] = 1;
    editor.press("xy", 2, 3, true);
    expect(clicks).toEqual([[1, 3, 2]]);
    const p: Proposal = {
      id: "a",
      bbox: [1, 1, 1, 2, 3, 3],
      rle: [0, 1, 2, 2], // (1,1,1), (1,2,1), (1,2,2) of the 1 x 2 x 2 bbox
      voxels: 3,
      score: 0.9,
      source: "watershed",
    };
    editor.showProposal(p);
    // The page outlines it: every proposal voxel of slice 1 is on the mask's border.
    const out = new Uint8ClampedArray(4 * 4 * 4);
    const mask = editor.proposal!.mask;
    const drawn = drawOutline(
      out,
      4,
      4,
      (u, v) => mask[editor.volume.index(1, v, u)] === 1,
      0xffff00,
    );
    expect(drawn).toBe(3);
    expect(editor.key({ key: "Enter" })?.action).toBe("accept");
    const id = editor.volume.get(1, 1, 1);
    expect(id).toBeGreaterThan(0);
    expect(count(editor.volume, id)).toBe(3);
    expect(editor.provenanceNow()).toEqual({
      [id]: { source: "click", proposal_source: "watershed" },
    });
    editor.showProposal({ ...p, id: "b", source: "model" });
    expect(editor.key({ key: "Escape" })?.action).toBe("reject");
    expect(done).toEqual([
      [true, "a"],
      [false, "b"],
    ]);
    expect(editor.proposal).toBeNull();
    expect(editor.key({ key: "Enter" })).toBeNull();
    // A model's proposal: its version is kept with the object.
    editor.showProposal({
      ...p,
      id: "c",
      bbox: [0, 1, 1, 1, 3, 3],
      source: "model",
      model: "model v4",
    });
    expect(editor.key({ key: "Enter" })?.action).toBe("accept");
    const second = editor.volume.get(0, 1, 1);
    expect(second).not.toBe(id);
    expect(editor.provenanceNow()[second]).toEqual({
      source: "proposal",
      proposal_source: "model",
      model: "model v4",
    });
  });
});

describe("drawing", () => {
  it("maps the image through the contrast window and blends label colours", () => {
    const vol = new LabelVolume([1, 2, 2]);
    vol.data[3] = 4;
    const image = new Uint8Array([0, 100, 200, 200]);
    const out = new Uint8ClampedArray(2 * 2 * 4);
    const lut = contrastLut(100, 200);
    expect([lut[50], lut[100], lut[150], lut[250]]).toEqual([0, 0, 128, 255]);
    drawRegion(out, { image, labels: vol, lut, alpha: 0.5, active: 0 }, "xy", 0, 0, 0, 2, 2);
    expect([...out.subarray(0, 12)]).toEqual([0, 0, 0, 255, 0, 0, 0, 255, 255, 255, 255, 255]);
    const c = colourOf(4);
    expect(out[12]).toBe((255 * 128 + (c >> 16) * 128) >> 8);
    // Only the region asked for is written.
    const part = new Uint8ClampedArray(2 * 2 * 4);
    drawRegion(part, { image, labels: vol, lut, alpha: 0.5, active: 0 }, "xy", 0, 1, 1, 2, 2);
    expect([...part.subarray(0, 12)]).toEqual(new Array(12).fill(0));
    expect(part[15]).toBe(255);
  });
});
