// The task page's painting mode (painted campaigns): three slice views (xy, xz, yz) of the box
// drawn on canvases from the box's image (labels/image/) and the label volume, the tools'
// buttons and keys (label_editor/editor.ts), and the chunked save to labels/ with a stale
// save's "reload my changes on top". Each action redraws only the region it changed.
// The views are drawn at the voxels' physical aspect ratio (the campaign's voxel size), so xz
// and yz of 400 nm z / 200 nm xy voxels are not squashed; the mouse maps to voxels per axis.

import {
  ChunkGrid,
  MAX_CHUNKS_PER_SAVE,
  compressedSaveForm,
  loadVersion,
} from "../label_editor/chunks";
import { type Changed, LabelEditor, type Provenance, type Tool } from "../label_editor/editor";
import type { Proposal } from "../label_editor/proposal";
import { drawOutline, drawRegion } from "../label_editor/render";
import { LabelVolume, PLANES, type Plane } from "../label_editor/volume";
import { sliceRanges } from "../lib/format";
import { sliceCaption } from "./format";

export interface PaintConfig {
  assignmentId: number;
  csrfToken: string;
  editable: boolean;
  /** Whether the server takes the save's provenance field. */
  provenance: boolean;
  /** The campaign's voxel size (z, y, x) in um (its geometry): the views are drawn at the
   * voxels' physical aspect ratio. Missing: cubic voxels. */
  voxelSizeUm?: readonly number[] | undefined;
  /** The box's first voxel (z, y, x) in the dataset: positions and slices are shown in the
   * dataset's coordinates, as Neuroglancer shows them. Missing: the box's own, from 0. */
  origin?: readonly number[] | undefined;
  /** The image is 2D (no z axis): positions and captions leave z out. A one-slice box of a
   * volume is painted in its xy view alone too, but keeps its z. */
  planar?: boolean;
}

/** What the page and tests reach: the editor's contract hooks and a few read-outs. */
export interface PaintHooks {
  editor: LabelEditor;
  ready: Promise<void>;
  version(): number;
  /** Objects (distinct non-zero ids) in the labels as last counted (after a load, a save, or
   * a pause in the painting). */
  objects(): number;
  /** Objects in the editor's labels this moment (counted now); null before they are loaded. */
  objectsNow(): number | null;
  /** Whether the editor holds painted changes not yet saved. */
  unsaved(): boolean;
  save(): Promise<void>;
  /** Loads the server's current labels version in place of the editor's (after a restore);
   * answers that version. Unsaved painting is dropped: save it first. */
  reload(describe?: (version: number) => string): Promise<number>;
  showProposal(p: Proposal): void;
  /** Stops listening to the window's keys and to the tab's size. */
  dispose(): void;
  /** Redraws so far, the last one's time, and how long the last mouse move and key took to
   * handle, drawing included (the benchmark reads them). */
  stats: PaintStats;
}

export interface PaintStats {
  draws: number;
  lastDrawMs: number;
  lastPlane: Plane | null;
  lastMoveMs: number;
  lastKeyMs: number;
}

interface LabelsState {
  version: number;
  current_version: number;
  geometry: { shape: number[]; chunk: number[] };
  /** Where each object of the version came from (its interpolated slices too). */
  provenance?: Record<string, Provenance>;
}

const VIEWS: Plane[] = ["xy", "xz", "yz"];
/** The (z, y, x) axis along each view's normal. */
const NORMAL_AXIS: Record<Plane, number> = { xy: 0, xz: 1, yz: 2 };

type Fit = { maxWidth: number; maxHeight: number };

/** The largest CSS box each view is drawn in (px) when the page cannot measure its area (the
 * Paint tab hidden): the xy view is the main one. */
export const VIEW_FIT: Record<Plane, Fit> = {
  xy: { maxWidth: 512, maxHeight: 1024 },
  xz: { maxWidth: 320, maxHeight: 512 },
  yz: { maxWidth: 320, maxHeight: 512 },
};

/** How long the painting must pause before its objects are counted again (ms). */
const COUNT_DELAY_MS = 300;

/** Space a view's caption and the gaps between views take (px). */
const CAPTION_PX = 22;
const GAP_PX = 8;
/** No view is fitted smaller than this (a tiny window scrolls) or larger (a big screen does
 * not blow a 32-voxel box up to giant pixels). */
const VIEW_MIN_PX = 160;
const VIEW_MAX_PX: Record<Plane, number> = { xy: 900, xz: 600, yz: 600 };

/** Each view's fit in an area of `width` x `height` CSS pixels: xy on the left over the whole
 * height, xz and yz stacked on the right, so that the three show at once on a laptop screen
 * (at 1280 x 800 the fixed sizes put yz below the fold); a ``flat`` box's xy over all of it. */
export function viewFits(width: number, height: number, flat = false): Record<Plane, Fit> {
  const clamp = (px: number, plane: Plane): number =>
    Math.min(VIEW_MAX_PX[plane], Math.max(VIEW_MIN_PX, Math.floor(px)));
  if (flat) {
    // A box one voxel deep: xy alone, over the whole area (xz and yz would be 1 voxel high).
    const xy = { maxWidth: clamp(width, "xy"), maxHeight: clamp(height - CAPTION_PX, "xy") };
    return { ...VIEW_FIT, xy };
  }
  const left = (width - GAP_PX) * 0.6;
  const right = width - GAP_PX - left;
  const half = (height - GAP_PX) / 2 - CAPTION_PX;
  return {
    xy: { maxWidth: clamp(left, "xy"), maxHeight: clamp(height - CAPTION_PX, "xy") },
    xz: { maxWidth: clamp(right, "xz"), maxHeight: clamp(half, "xz") },
    yz: { maxWidth: clamp(right, "yz"), maxHeight: clamp(half, "yz") },
  };
}

/** The voxel size (z, y, x, um) to draw with: the geometry's, or cubic when it is missing or
 * not three positive numbers. */
export function voxelSize(voxelUm: readonly number[] | undefined): [number, number, number] {
  const v = (voxelUm ?? []).map(Number);
  if (v.length !== 3 || !v.every((n) => Number.isFinite(n) && n > 0)) return [1, 1, 1];
  return [v[0]!, v[1]!, v[2]!];
}

/** A view's CSS size: the box's physical extent along the view's u and v axes, as large as
 * fits in ``fit``. With 400 nm z and 200 nm xy, an xz or yz pixel is twice as tall as wide, so
 * a round nucleus looks round. */
export function viewCssSize(
  plane: Plane,
  shape: readonly number[],
  voxelUm: readonly number[],
  fit: { maxWidth: number; maxHeight: number },
): { width: number; height: number } {
  const a = PLANES[plane];
  const w = shape[a.u]! * voxelUm[a.u]!;
  const h = shape[a.v]! * voxelUm[a.v]!;
  const scale = Math.min(fit.maxWidth / w, fit.maxHeight / h);
  return { width: w * scale, height: h * scale };
}

interface Rect {
  left: number;
  top: number;
  width: number;
  height: number;
}

/** Plane pixel (u, v) under a client point (voxel centres at whole numbers) of a canvas of
 * ``pixels`` shown in ``rect``: each axis scaled on its own, exact however stretched. */
export function planePointAt(
  rect: Rect,
  pixels: { width: number; height: number },
  clientX: number,
  clientY: number,
): [number, number] {
  const u = ((clientX - rect.left) / rect.width) * pixels.width - 0.5;
  const v = ((clientY - rect.top) / rect.height) * pixels.height - 0.5;
  return [u, v];
}

/** The brush cursor's CSS size: ``2 radius + 1`` voxels across each axis (an ellipse where
 * the voxels are not square on screen). */
export function cursorSize(
  rect: Rect,
  pixels: { width: number; height: number },
  radius: number,
): { width: number; height: number } {
  const across = radius * 2 + 1;
  return {
    width: Math.max(2, (across * rect.width) / pixels.width),
    height: Math.max(2, (across * rect.height) / pixels.height),
  };
}

/** How many objects (distinct non-zero ids) ``data`` holds; runs of one id are counted once,
 * so a 256^3 box takes tens of milliseconds. */
export function countObjects(data: Uint32Array): number {
  const ids = new Set<number>();
  let last = 0;
  for (let i = 0; i < data.length; i++) {
    const id = data[i]!;
    if (id !== last) {
      if (id) ids.add(id);
      last = id;
    }
  }
  return ids.size;
}
const TOOLS: Tool[] = ["brush", "eraser", "sphere", "fill", "pick"];

interface View {
  plane: Plane;
  canvas: HTMLCanvasElement;
  ctx: CanvasRenderingContext2D;
  pixels: ImageData;
  cursor: HTMLElement;
  label: HTMLElement;
}

export function mountPaint(
  root: HTMLElement,
  config: PaintConfig,
  onVersion: (version: number) => void,
  onObjects: (count: number) => void = () => undefined,
): PaintHooks {
  const doc = root.ownerDocument;
  const origin = config.origin ?? [0, 0, 0];
  const base = `/api/v1/annotation/assignments/${config.assignmentId}/labels/`;
  const status = root.querySelector<HTMLElement>("[data-paint=status]")!;
  const conflict = root.querySelector<HTMLElement>("[data-paint=conflict]")!;
  const info = root.querySelector<HTMLElement>("[data-paint=info]")!;
  const filledList = root.querySelector<HTMLElement>("[data-paint=interpolated]")!;
  let editor: LabelEditor | null = null;
  let version = 0;
  let objects = 0;
  let saving: Promise<void> | null = null;
  let staleAt: number | null = null;
  const views: View[] = [];
  const stats: PaintStats = {
    draws: 0,
    lastDrawMs: 0,
    lastPlane: null,
    lastMoveMs: 0,
    lastKeyMs: 0,
  };

  function say(text: string): void {
    status.textContent = text;
  }

  let countTimer: ReturnType<typeof setTimeout> | undefined;
  let observer: ResizeObserver | undefined;
  let disposed = false;
  /** Counts the objects (after a load or a save) and tells the page. */
  function countNow(): void {
    if (!editor) return;
    if (countTimer !== undefined) clearTimeout(countTimer);
    countTimer = undefined;
    objects = countObjects(editor.volume.data);
    onObjects(objects);
  }

  /** Counts again once the painting pauses (a 256^3 box takes tens of ms: not per frame), so
   * the side panel's Objects follows the strokes before they are saved. */
  function countSoon(): void {
    if (disposed) return;
    if (countTimer !== undefined) clearTimeout(countTimer);
    countTimer = setTimeout(countNow, COUNT_DELAY_MS);
  }

  function showInfo(): void {
    if (!editor) return;
    const [z, y, x] = editor.position;
    info.textContent =
      `tool ${editor.tool} · object ${editor.activeId} · radius ${editor.radius} · ` +
      `x ${x + (origin[2] ?? 0)} y ${y + (origin[1] ?? 0)}` +
      (config.planar ? " · " : ` z ${z + (origin[0] ?? 0)} · `) +
      `version ${version}` +
      (editor.proposal ? ` · proposal ${editor.proposal.p.id}: Enter accepts, Esc rejects` : "");
    for (const button of root.querySelectorAll<HTMLButtonElement>("[data-paint-tool]")) {
      button.setAttribute("aria-pressed", String(button.dataset["paintTool"] === editor.tool));
    }
    const filled = editor.filledSlices();
    filledList.textContent =
      filled.map((f) => `object ${f.id}, ${f.plane} slices ${sliceRanges(f.slices)}`).join("; ") ||
      "none yet";
    sliceLabels(filled);
  }

  /** Redraws the part of ``view`` inside the voxel box ``changed`` (or all of it). */
  function draw(view: View, changed: Changed): void {
    if (!editor || changed === null) return;
    const t0 = performance.now();
    const a = PLANES[view.plane];
    const slice = editor.slice(view.plane);
    let u0 = 0;
    let v0 = 0;
    let u1 = view.pixels.width;
    let v1 = view.pixels.height;
    if (changed !== "all") {
      if (slice < changed.min[a.normal] || slice > changed.max[a.normal]) return;
      u0 = changed.min[a.u];
      v0 = changed.min[a.v];
      u1 = changed.max[a.u] + 1;
      v1 = changed.max[a.v] + 1;
    }
    const src = {
      image: image,
      labels: editor.volume,
      lut: editor.lut,
      alpha: 0.45,
      active: editor.activeId,
    };
    drawRegion(view.pixels.data, src, view.plane, slice, u0, v0, u1, v1);
    const shown = editor.proposal;
    if (shown) {
      const vol = editor.volume;
      const mask = shown.mask;
      drawOutline(
        view.pixels.data,
        view.pixels.width,
        view.pixels.height,
        (u, v) => mask[vol.planeIndex(view.plane, slice, u, v)] === 1,
        0xffff00,
        u0,
        v0,
        u1,
        v1,
      );
    }
    view.ctx.putImageData(view.pixels, 0, 0, u0, v0, u1 - u0, v1 - v0);
    stats.draws++;
    stats.lastDrawMs = performance.now() - t0;
    stats.lastPlane = view.plane;
  }

  function redraw(changed: Changed): void {
    if (changed === null) return;
    // A proposal's outline spans slices: draw whole views while one is shown.
    for (const view of views) draw(view, editor?.proposal ? "all" : changed);
    showInfo();
    countSoon();
  }

  let image: Uint8Array | null = null;

  function makeView(plane: Plane, vol: LabelVolume): View {
    const { width, height } = vol.planeSize(plane);
    const canvas = root.querySelector<HTMLCanvasElement>(`[data-paint-view=${plane}] canvas`)!;
    canvas.width = width;
    canvas.height = height;
    const ctx = canvas.getContext("2d")!;
    const cursor = root.querySelector<HTMLElement>(`[data-paint-view=${plane}] .paint-cursor`)!;
    const label = root.querySelector<HTMLElement>(`[data-paint-view=${plane}] .paint-slice`)!;
    return { plane, canvas, ctx, pixels: ctx.createImageData(width, height), cursor, label };
  }

  /** Sizes the views to the Paint tab's free area (below the tools, to the bottom of the
   * tab); while the tab is hidden it cannot be measured and they keep their sizes. */
  function fitViews(): void {
    const vol = editor?.volume;
    if (!vol || disposed) return;
    const area = root.querySelector<HTMLElement>(".paint-views");
    const width = area?.clientWidth ?? 0;
    // The views' top within the tab's content (however far the tab is scrolled) to its bottom.
    const top = area
      ? area.getBoundingClientRect().top - root.getBoundingClientRect().top + root.scrollTop
      : 0;
    const height = root.clientHeight - top - GAP_PX;
    // Hidden (no width): the fixed sizes; too short: the smallest fit (the tab scrolls).
    const fits = width > 0 ? viewFits(width, Math.max(0, height), editor!.flat) : VIEW_FIT;
    for (const view of views) {
      const css = viewCssSize(
        view.plane,
        vol.shape,
        voxelSize(config.voxelSizeUm),
        fits[view.plane],
      );
      view.canvas.style.width = `${css.width}px`;
      view.canvas.style.height = `${css.height}px`;
    }
  }

  /** Plane pixel (u, v) under a mouse event. */
  function planePoint(view: View, event: MouseEvent): [number, number] {
    const rect = view.canvas.getBoundingClientRect();
    return planePointAt(rect, view.canvas, event.clientX, event.clientY);
  }

  function showCursor(view: View, event: MouseEvent): void {
    if (!editor) return;
    const rect = view.canvas.getBoundingClientRect();
    const size = cursorSize(rect, view.canvas, editor.radius);
    const s = view.cursor.style;
    s.width = `${size.width}px`;
    s.height = `${size.height}px`;
    s.left = `${event.clientX - rect.left - size.width / 2}px`;
    s.top = `${event.clientY - rect.top - size.height / 2}px`;
    view.cursor.hidden = false;
  }

  /** Each view's slice number, and the objects interpolation filled on that slice. */
  function sliceLabels(filled = editor?.filledSlices() ?? []): void {
    if (!editor) return;
    for (const view of views) {
      const { depth } = editor.volume.planeSize(view.plane);
      const slice = editor.slice(view.plane);
      const ids = filled
        .filter((f) => f.plane === view.plane && f.slices.includes(slice))
        .map((f) => f.id);
      const which = ids.length === 1 ? `object ${ids[0]}` : `objects ${ids.join(", ")}`;
      // A flat box's one slice needs no number (a 2D image has no z).
      view.label.textContent =
        (config.planar
          ? view.plane
          : sliceCaption(view.plane, slice, depth, origin[NORMAL_AXIS[view.plane]] ?? 0)) +
        (ids.length ? ` · interpolated (${which})` : "");
      view.label.classList.toggle("paint-slice-interpolated", ids.length > 0);
    }
  }

  function wire(view: View): void {
    let down = false;
    view.canvas.addEventListener("mousedown", (event) => {
      if (!editor || event.button !== 0) return;
      event.preventDefault();
      const [u, v] = planePoint(view, event);
      if (!config.editable) return; // reviewers look; only the annotator paints or asks
      editor.plane = view.plane;
      const changed = editor.press(view.plane, u, v, event.altKey);
      down = !event.altKey && ["brush", "eraser", "sphere"].includes(editor.tool);
      redraw(changed);
    });
    view.canvas.addEventListener("mousemove", (event) => {
      const t0 = performance.now();
      showCursor(view, event);
      if (down && editor) {
        const [u, v] = planePoint(view, event);
        redraw(editor.drag(u, v));
      }
      stats.lastMoveMs = performance.now() - t0;
    });
    const up = (): void => {
      if (!down || !editor) return;
      down = false;
      editor.release();
      showInfo();
    };
    view.canvas.addEventListener("mouseup", up);
    view.canvas.addEventListener("mouseleave", () => {
      view.cursor.hidden = true;
      up();
    });
    view.canvas.addEventListener("mouseenter", () => {
      if (editor) editor.plane = view.plane;
    });
    view.canvas.addEventListener(
      "wheel",
      (event) => {
        if (!editor) return;
        event.preventDefault();
        editor.plane = view.plane;
        if (event.shiftKey) {
          editor.wheel(event.deltaY);
          showCursor(view, event);
          showInfo();
        } else if (editor.step(event.deltaY > 0 ? 1 : -1, view.plane)) {
          sliceLabels();
          redraw("all");
        }
      },
      { passive: false },
    );
  }

  function active(): boolean {
    return root.isConnected && !root.hidden;
  }

  function onKey(event: KeyboardEvent): void {
    const t0 = performance.now();
    try {
      handleKey(event);
    } finally {
      stats.lastKeyMs = performance.now() - t0;
    }
  }

  function handleKey(event: KeyboardEvent): void {
    if (!editor || !active()) return;
    const target = event.target as HTMLElement | null;
    if (target && /^(INPUT|TEXTAREA|SELECT)$/.test(target.tagName)) return;
    if (!config.editable && !/^[fd]$/i.test(event.key)) return;
    const done = editor.key(event);
    if (!done) return;
    event.preventDefault();
    event.stopPropagation();
    if (done.action === "save") {
      void save();
      return;
    }
    if (done.action === "slice") {
      // Only the current plane's view moved: the other two show the same slices as before.
      sliceLabels();
      for (const view of views) if (view.plane === editor.plane) draw(view, done.changed);
      showInfo();
      return;
    }
    redraw(done.changed ?? (done.action === "new" ? "all" : null));
    showInfo();
  }

  async function fetchLabels(): Promise<LabelsState> {
    const response = await fetch(base, { credentials: "same-origin" });
    if (!response.ok) throw new Error(`labels: HTTP ${response.status}`);
    return (await response.json()) as LabelsState;
  }

  async function fetchImage(): Promise<{ data: Uint8Array; shape: number[] }> {
    const response = await fetch(`${base}image/`, { credentials: "same-origin" });
    if (!response.ok) throw new Error(`box image: HTTP ${response.status}`);
    const shape = (response.headers.get("X-Shape") ?? "").split(",").map(Number);
    return { data: new Uint8Array(await response.arrayBuffer()), shape };
  }

  /** Saves the changed chunks, at most MAX_CHUNKS_PER_SAVE a request (each a version). */
  async function save(): Promise<void> {
    if (!editor || !config.editable) return;
    if (saving) return saving;
    const parts = editor.tracker.changed();
    if (!parts.length) {
      say("Nothing to save.");
      return;
    }
    const provenance = config.provenance ? editor.provenanceNow() : undefined;
    say(`Saving ${parts.length} chunk(s)…`);
    saving = (async () => {
      let changed = 0;
      for (let i = 0; i < parts.length; i += MAX_CHUNKS_PER_SAVE) {
        const batch = parts.slice(i, i + MAX_CHUNKS_PER_SAVE);
        const response = await fetch(base, {
          method: "POST",
          body: await compressedSaveForm(batch, version, provenance),
          credentials: "same-origin",
          headers: { "X-CSRFToken": config.csrfToken },
        });
        const body = (await response.json().catch(() => ({}))) as Record<string, unknown>;
        if (response.status === 409) {
          staleAt = Number(body["current_version"]);
          conflict.hidden = false;
          conflict.querySelector("span")!.textContent =
            `Version ${staleAt} was saved elsewhere after yours (${version}).`;
          say("Not saved: a newer version exists.");
          return;
        }
        if (!response.ok) throw new Error(String(body["message"] ?? `HTTP ${response.status}`));
        version = Number(body["version"]);
        changed += Number(body["chunks_changed"]);
        editor!.saved(batch);
        onVersion(version);
      }
      say(`Saved version ${version} (${changed} chunk(s) changed).`);
      countNow();
      showInfo();
    })().finally(() => {
      saving = null;
    });
    return saving;
  }

  /** The conflict banner's "reload my changes on top": the current version with this
   * session's changed voxels written over it, then saved. */
  async function reloadOnTop(): Promise<void> {
    if (!editor || staleAt === null) return;
    const other = new LabelVolume(editor.volume.shape);
    await loadVersion(base, staleAt, other, editor.grid);
    const n = editor.rebase(other.data);
    version = staleAt;
    staleAt = null;
    conflict.hidden = true;
    onVersion(version);
    redraw("all");
    say(`Re-applied ${n} changed voxel(s) on version ${version}.`);
    await save();
  }

  /** The task's labels as the server has them now: the state and its version's voxels. */
  async function currentLabels(
    state: LabelsState,
  ): Promise<{ vol: LabelVolume; chunk: [number, number, number] }> {
    const shape = state.geometry.shape as [number, number, number];
    const chunk = state.geometry.chunk as [number, number, number];
    const vol = new LabelVolume(shape);
    await loadVersion(base, state.version, vol, new ChunkGrid(vol.shape, chunk));
    return { vol, chunk };
  }

  /** After loading a version: its provenance goes on with the objects (a later stroke on a
   * clicked object keeps "click", slices an earlier session interpolated stay recorded), and
   * every view, count and label is redrawn. */
  function shown(state: LabelsState, message: string): void {
    editor!.provenance = { ...state.provenance };
    version = state.version;
    sliceLabels();
    redraw("all");
    countNow();
    say(message);
  }

  async function reload(
    describe: (version: number) => string = (v) => `Showing version ${v}.`,
  ): Promise<number> {
    await ready;
    if (saving) await saving;
    const state = await fetchLabels();
    const { vol } = await currentLabels(state);
    editor!.replace(vol.data);
    staleAt = null;
    conflict.hidden = true;
    shown(state, describe(state.version));
    return version;
  }

  const ready = (async () => {
    const [state, img] = await Promise.all([fetchLabels(), fetchImage()]);
    const { vol, chunk } = await currentLabels(state);
    const shape = vol.shape;
    editor = new LabelEditor(shape, chunk, vol.data);
    // The image may be clipped where the box reaches past it: pad it to the box with zeros.
    if (img.shape.join() === shape.join()) {
      image = img.data;
    } else {
      image = new Uint8Array(vol.data.length);
      const [d, h, w] = img.shape as [number, number, number];
      for (let z = 0; z < d; z++)
        for (let y = 0; y < h; y++)
          image.set(img.data.subarray((z * h + y) * w, (z * h + y + 1) * w), vol.index(z, y, 0));
    }
    for (const plane of VIEWS) {
      const figure = root.querySelector<HTMLElement>(`[data-paint-view=${plane}]`)!;
      figure.hidden = editor.flat && plane !== "xy";
      if (figure.hidden) continue;
      const view = makeView(plane, vol);
      views.push(view);
      wire(view);
    }
    // What only a volume has (the sphere brush, interpolation, next and previous slice, in the
    // toolbar and the keys' help) leaves the page of a box one voxel deep.
    for (const el of doc.querySelectorAll<HTMLElement>("[data-paint-3d]")) el.hidden = editor.flat;
    root.querySelector(".paint-views")?.classList.toggle("paint-views-flat", editor.flat);
    fitViews();
    // Refitted whenever the tab's box changes (a window resize, a banner above the tab shown or
    // closed) or what lies above the views in it does (the conflict banner, a status line that
    // wraps, the proposals' progress bar): the views were pushed below the fold, or left a gap.
    const win = doc.defaultView;
    const Observer = win?.ResizeObserver as typeof ResizeObserver | undefined;
    if (Observer) {
      observer = new Observer(() => fitViews());
      observer.observe(root);
      for (const child of root.children)
        if (!child.matches(".paint-views")) observer.observe(child);
    } else {
      win?.addEventListener("resize", fitViews);
    }
    for (const button of root.querySelectorAll<HTMLButtonElement>("[data-paint-tool]")) {
      button.disabled = !config.editable;
      button.addEventListener("click", () => {
        editor!.tool = button.dataset["paintTool"] as Tool;
        showInfo();
      });
    }
    const actions: Record<string, () => Changed> = {
      new: () => (editor!.newObject(), "all"),
      interpolate: () => editor!.interpolate(),
      undo: () => editor!.undo(),
      redo: () => editor!.redo(),
    };
    for (const button of root.querySelectorAll<HTMLButtonElement>("[data-paint-action]")) {
      const name = button.dataset["paintAction"] ?? "";
      button.disabled = !config.editable;
      button.addEventListener("click", () => {
        if (name === "save") void save().catch((e: unknown) => say(String(e)));
        else redraw(actions[name]?.() ?? null);
      });
    }
    const low = root.querySelector<HTMLInputElement>("[data-paint=low]")!;
    const high = root.querySelector<HTMLInputElement>("[data-paint=high]")!;
    const contrast = (): void => {
      editor!.setWindow(Number(low.value), Number(high.value));
      redraw("all");
    };
    low.addEventListener("input", contrast);
    high.addEventListener("input", contrast);
    conflict.querySelector("button")!.addEventListener("click", () => {
      void reloadOnTop().catch((e: unknown) => say(String(e)));
    });
    shown(state, config.editable ? "Ready: paint with the mouse." : "Read-only.");
  })();
  ready.catch((e: unknown) => say(`The painting editor could not load: ${String(e)}`));
  doc.defaultView?.addEventListener("keydown", onKey, true);

  return {
    get editor(): LabelEditor {
      if (!editor) throw new Error("The painting editor is not loaded yet.");
      return editor;
    },
    ready,
    version: () => version,
    objects: () => objects,
    objectsNow(): number | null {
      if (!editor) return null;
      countNow();
      return objects;
    },
    unsaved: () => !!editor && config.editable && editor.dirty,
    save,
    reload,
    showProposal(p: Proposal): void {
      if (!editor) return;
      editor.showProposal(p);
      sliceLabels();
      redraw("all");
    },
    stats,
    dispose(): void {
      disposed = true;
      if (countTimer !== undefined) clearTimeout(countTimer);
      observer?.disconnect();
      doc.defaultView?.removeEventListener("resize", fitViews);
      doc.defaultView?.removeEventListener("keydown", onKey, true);
    },
  };
}

export { TOOLS };
