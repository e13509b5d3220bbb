// The painting editor's state and actions, free of the DOM: the label volume, the tools, the
// session's history and chunk tracking, proposals and the keys (WEBKNOSSOS's habits). The page
// (annotation_task/paint.ts) turns mouse and keyboard events into these calls and redraws the
// region each answers.

import { Edit, History } from "./history";
import { ChunkGrid, ChunkTracker, type ChunkPart } from "./chunks";
import { interpolate } from "./interpolate";
import { type Proposal, proposalVoxels } from "./proposal";
import { contrastLut } from "./render";
import { floodFill2d, paintSphere, paintStroke, pick } from "./tools";
import { LabelVolume, PLANES, type Plane, type Shape } from "./volume";

export type Tool = "brush" | "eraser" | "sphere" | "fill" | "pick";

export interface Provenance {
  source: "manual" | "click" | "proposal";
  proposal_source?: "model" | "watershed";
  /** The model version that proposed it ("model v3"). */
  model?: string;
  /** The slices interpolation filled, per plane (box indices along the plane's normal). */
  interpolated?: Partial<Record<Plane, number[]>>;
}

/** What a labels save records for an object painted from an accepted proposal: "click" for
 * one grown from a click, "proposal" for one of a propose-all job, and what made it (the
 * model version's name when a model did). */
export function proposalProvenance(
  p: Pick<Proposal, "source" | "model">,
  via: "click" | "proposal",
): Provenance {
  return { source: via, proposal_source: p.source, ...(p.model ? { model: p.model } : {}) };
}

/** What changed, for the page to redraw: a voxel box (inclusive), or everything. */
export type Changed =
  { min: [number, number, number]; max: [number, number, number] } | "all" | null;

export interface Interpolated {
  plane: Plane;
  id: number;
  slices: number[];
}

export interface KeyLike {
  key: string;
  ctrlKey?: boolean;
  metaKey?: boolean;
  shiftKey?: boolean;
  altKey?: boolean;
}

export const MIN_RADIUS = 0.5;
export const MAX_RADIUS = 64;

export class LabelEditor {
  readonly volume: LabelVolume;
  readonly grid: ChunkGrid;
  tracker: ChunkTracker;
  readonly history = new History();
  image: Uint8Array | null = null;
  tool: Tool = "brush";
  radius = 4;
  activeId = 1;
  plane: Plane = "xy";
  /** The cursor voxel (z, y, x): each plane shows the slice through it. */
  readonly position: [number, number, number];
  window: [number, number] = [0, 255];
  lut = contrastLut(0, 255);
  provenance: Record<string, Provenance> = {};
  /** This session's interpolations (V), in order; undo takes one back, redo puts it again. */
  readonly interpolated: Interpolated[] = [];
  private readonly filledBy = new Map<Edit, Interpolated>();
  proposal: {
    p: Proposal;
    indices: Uint32Array;
    mask: Uint8Array;
    kind: "click" | "proposal";
  } | null = null;
  onAssistClick?: (z: number, y: number, x: number) => void;
  onProposalDone?: (accepted: boolean, p: Proposal) => void;
  private stroke: {
    edit: Edit;
    plane: Plane;
    slice: number;
    last: [number, number];
    value: number;
  } | null = null;
  private clickPending = false;

  constructor(shape: Shape, chunk: Shape, data?: Uint32Array) {
    this.volume = new LabelVolume(shape, data);
    this.grid = new ChunkGrid(this.volume.shape, chunk);
    this.tracker = new ChunkTracker(this.volume, this.grid);
    this.position = [shape[0] >> 1, shape[1] >> 1, shape[2] >> 1];
    this.activeId = this.volume.nextFreeId();
  }

  get dirty(): boolean {
    return this.tracker.changed().length > 0;
  }

  /** A box one voxel deep (a 2D image's, or one slice of a volume): painted in its xy view
   * alone, where the sphere brush and interpolation between slices mean nothing. (Only a 2D
   * image's page leaves z out of its captions: the page's config says which.) */
  get flat(): boolean {
    return this.volume.shape[0] === 1;
  }

  slice(plane: Plane = this.plane): number {
    return this.position[PLANES[plane].normal];
  }

  /** Moves the current plane's slice by ``step`` (F: +1, D: -1), clipped to the box. */
  step(step: number, plane: Plane = this.plane): boolean {
    const axis = PLANES[plane].normal;
    const next = Math.max(0, Math.min(this.volume.shape[axis] - 1, this.position[axis] + step));
    if (next === this.position[axis]) return false;
    this.position[axis] = next;
    return true;
  }

  /** The voxel (z, y, x) at plane pixel (u, v) of the plane's current slice. */
  voxelAt(plane: Plane, u: number, v: number): [number, number, number] {
    const a = PLANES[plane];
    const p: [number, number, number] = [0, 0, 0];
    p[a.normal] = this.position[a.normal];
    p[a.u] = Math.round(u);
    p[a.v] = Math.round(v);
    return p;
  }

  setWindow(low: number, high: number): void {
    this.window = [low, high];
    this.lut = contrastLut(low, high);
  }

  setRadius(r: number): void {
    this.radius = Math.max(MIN_RADIUS, Math.min(MAX_RADIUS, r));
  }

  /** C: the next free id (one more than the largest in the volume); an active id not
   * painted yet is that id already. */
  newObject(): number {
    this.activeId = this.volume.nextFreeId();
    return this.activeId;
  }

  private edit(label: string): Edit {
    return new Edit(this.volume, label, this.tracker.touch);
  }

  private record(edit: Edit): Changed {
    this.history.push(edit);
    if (edit.size === 0) return null;
    if (edit.label !== "eraser" && this.activeId && !this.provenance[this.activeId]) {
      this.provenance[this.activeId] = { source: "manual" };
    }
    return { min: [...edit.bounds.min], max: [...edit.bounds.max] };
  }

  /** Mouse down in a slice view at plane pixel (u, v): starts a stroke (brush, eraser,
   * sphere) or does a one-click tool (fill, pick). Alt+click asks the assistance. */
  press(plane: Plane, u: number, v: number, alt = false): Changed {
    this.plane = plane;
    const [z, y, x] = this.voxelAt(plane, u, v);
    if (alt) {
      this.clickPending = true;
      this.onAssistClick?.(z, y, x);
      return null;
    }
    if (this.tool === "pick") {
      const id = pick(this.volume, z, y, x);
      if (id) this.activeId = id;
      return null;
    }
    if (this.tool === "fill") {
      const edit = this.edit("fill");
      floodFill2d(edit, plane, this.slice(plane), Math.round(u), Math.round(v), this.activeId);
      return this.record(edit);
    }
    const value = this.tool === "eraser" ? 0 : this.activeId;
    const edit = this.edit(this.tool);
    this.stroke = { edit, plane, slice: this.slice(plane), last: [u, v], value };
    return this.paintTo(u, v);
  }

  /** Mouse move with the button down: paints from the last point to (u, v). Answers the box
   * this move changed (not the whole stroke's). */
  drag(u: number, v: number): Changed {
    const s = this.stroke;
    if (!s) return null;
    return this.paintTo(u, v);
  }

  private paintTo(u: number, v: number): Changed {
    const s = this.stroke!;
    const before = s.edit.size;
    s.edit.resetRecent();
    if (this.tool === "sphere") {
      const [z, y, x] = this.voxelAt(s.plane, u, v);
      paintSphere(s.edit, z, y, x, this.radius, s.value);
    } else {
      paintStroke(s.edit, s.plane, s.slice, s.last, [u, v], this.radius, s.value);
    }
    s.last = [u, v];
    if (s.edit.size === before) return null;
    return { min: [...s.edit.recent.min], max: [...s.edit.recent.max] };
  }

  /** Mouse up: the stroke becomes one undo step. */
  release(): Changed {
    const s = this.stroke;
    this.stroke = null;
    if (!s) return null;
    return this.record(s.edit);
  }

  /** V: interpolates the active object between its painted slices along the current plane's
   * normal; the filled slices are recorded in ``interpolated``. */
  interpolate(plane: Plane = this.plane): Changed {
    const edit = this.edit("interpolate");
    const slices = interpolate(edit, plane, this.activeId);
    if (slices.length) {
      const filled = { plane, id: this.activeId, slices };
      this.interpolated.push(filled);
      this.filledBy.set(edit, filled);
    }
    return this.record(edit);
  }

  /** Every object's interpolated slices per plane: those its saved provenance records (an
   * earlier session's) and this session's (``interpolated``, less what undo took back). */
  filledSlices(): Interpolated[] {
    const byKey = new Map<string, Interpolated>();
    const add = (id: number, plane: Plane, slices: readonly number[]): void => {
      const key = `${id} ${plane}`;
      const entry = byKey.get(key) ?? { plane, id, slices: [] };
      entry.slices = [...new Set([...entry.slices, ...slices])].sort((a, b) => a - b);
      byKey.set(key, entry);
    };
    for (const [id, p] of Object.entries(this.provenance)) {
      for (const [plane, slices] of Object.entries(p.interpolated ?? {})) {
        add(Number(id), plane as Plane, slices);
      }
    }
    for (const f of this.interpolated) add(f.id, f.plane, f.slices);
    return [...byKey.values()].sort((a, b) => a.id - b.id || a.plane.localeCompare(b.plane));
  }

  undo(): Changed {
    const edit = this.history.undo();
    const filled = edit && this.filledBy.get(edit);
    if (filled) this.interpolated.splice(this.interpolated.indexOf(filled), 1);
    return edit && edit.size ? { min: [...edit.bounds.min], max: [...edit.bounds.max] } : null;
  }

  redo(): Changed {
    const edit = this.history.redo();
    const filled = edit && this.filledBy.get(edit);
    if (filled) this.interpolated.push(filled);
    return edit && edit.size ? { min: [...edit.bounds.min], max: [...edit.bounds.max] } : null;
  }

  // --- proposals (the assistance's hooks) -----------------------------------------------------

  /** Shows ``p`` as an outlined overlay until Enter accepts or Esc rejects it. */
  showProposal(p: Proposal): void {
    const { indices, mask } = proposalVoxels(p, this.volume);
    const kind = this.clickPending ? "click" : "proposal";
    this.clickPending = false;
    this.proposal = { p, indices, mask, kind };
    if (indices.length) {
      // Show the proposal's middle slice in every plane.
      const [z0, y0, x0, z1, y1, x1] = p.bbox;
      this.position[0] = Math.min(this.volume.shape[0] - 1, (z0 + z1 - 1) >> 1);
      this.position[1] = Math.min(this.volume.shape[1] - 1, (y0 + y1 - 1) >> 1);
      this.position[2] = Math.min(this.volume.shape[2] - 1, (x0 + x1 - 1) >> 1);
    }
  }

  /** Enter: paints the proposal as a new object on the empty voxels it covers. */
  acceptProposal(): Changed {
    const shown = this.proposal;
    if (!shown) return null;
    this.proposal = null;
    const id = this.newObject();
    const edit = this.edit("proposal");
    for (let i = 0; i < shown.indices.length; i++) {
      if (this.volume.data[shown.indices[i]!] === 0) edit.set(shown.indices[i]!, id);
    }
    this.provenance[id] = proposalProvenance(shown.p, shown.kind);
    const changed = this.record(edit);
    this.onProposalDone?.(true, shown.p);
    return changed ?? "all";
  }

  /** Esc: drops the proposal. */
  rejectProposal(): Changed {
    const shown = this.proposal;
    if (!shown) return null;
    this.proposal = null;
    this.onProposalDone?.(false, shown.p);
    return "all";
  }

  /** The provenance of the objects present now (the save's ``provenance`` field). */
  provenanceNow(): Record<string, Provenance> {
    const present = new Set<number>();
    const data = this.volume.data;
    for (let i = 0; i < data.length; i++) if (data[i]!) present.add(data[i]!);
    const out: Record<string, Provenance> = {};
    for (const [id, p] of Object.entries(this.provenance)) if (present.has(Number(id))) out[id] = p;
    for (const f of this.filledSlices()) {
      const p = out[String(f.id)];
      if (p) out[String(f.id)] = { ...p, interpolated: { ...p.interpolated, [f.plane]: f.slices } };
    }
    return out;
  }

  /** A key press: the editor's action, or null when the key is not the editor's. The page
   * handles "save" (Ctrl+S) itself. */
  key(e: KeyLike): { action: string; changed: Changed } | null {
    const ctrl = !!(e.ctrlKey || e.metaKey);
    const k = e.key.length === 1 ? e.key.toLowerCase() : e.key;
    if (ctrl && k === "z" && !e.shiftKey) return { action: "undo", changed: this.undo() };
    if (ctrl && (k === "y" || (k === "z" && e.shiftKey)))
      return { action: "redo", changed: this.redo() };
    if (ctrl && k === "s") return { action: "save", changed: null };
    if (ctrl || e.altKey) return null;
    if (k === "Enter" && this.proposal) return { action: "accept", changed: this.acceptProposal() };
    if (k === "Escape" && this.proposal)
      return { action: "reject", changed: this.rejectProposal() };
    if (this.flat && (k === "v" || k === "s")) return null;
    switch (k) {
      case "c":
        this.newObject();
        return { action: "new", changed: null };
      case "v":
        return { action: "interpolate", changed: this.interpolate() };
      case "f":
        return { action: "slice", changed: this.step(1) ? "all" : null };
      case "d":
        return { action: "slice", changed: this.step(-1) ? "all" : null };
      case "b":
        this.tool = "brush";
        return { action: "tool", changed: null };
      case "e":
        this.tool = "eraser";
        return { action: "tool", changed: null };
      case "s":
        this.tool = "sphere";
        return { action: "tool", changed: null };
      case "g":
        this.tool = "fill";
        return { action: "tool", changed: null };
      case "p":
        this.tool = "pick";
        return { action: "tool", changed: null };
      case "+":
      case "=":
        this.setRadius(this.radius + 1);
        return { action: "radius", changed: null };
      case "-":
        this.setRadius(this.radius - 1);
        return { action: "radius", changed: null };
      default:
        return null;
    }
  }

  /** Shift+wheel: the brush grows or shrinks by a voxel per notch. */
  wheel(deltaY: number): void {
    this.setRadius(this.radius + (deltaY < 0 ? 1 : -1));
  }

  /** After a save of ``parts`` (from ``tracker.changed()``). */
  saved(parts: readonly ChunkPart[]): void {
    this.tracker.markSaved(parts);
  }

  /** Replaces the voxels by another version's and forgets this session (a restore): nothing is
   * unsaved, undo has nothing to take back, and the session's provenance, interpolated slices and
   * shown proposal belonged to voxels that are gone. */
  replace(current: Uint32Array): void {
    this.volume.data.set(current);
    this.tracker = new ChunkTracker(this.volume, this.grid);
    this.history.clear();
    this.provenance = {};
    this.interpolated.length = 0;
    this.filledBy.clear();
    this.proposal = null;
    this.activeId = this.volume.nextFreeId();
  }

  /** Replaces the voxels by another version's and re-applies this session's changes on top
   * (a stale save's "reload my changes on top"); answers how many voxels were re-applied. */
  rebase(current: Uint32Array): number {
    const diff = this.tracker.diff();
    this.volume.data.set(current);
    this.tracker = new ChunkTracker(this.volume, this.grid);
    this.history.clear();
    const edit = this.edit("rebase");
    for (let i = 0; i < diff.index.length; i++) edit.set(diff.index[i]!, diff.value[i]!);
    return diff.index.length;
  }
}
