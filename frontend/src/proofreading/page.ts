// The proofreading queue page (webapp/proofreading/templates/proofreading/queue.html): one
// detection at a time in the embedded Neuroglancer. Verdicts, skips and undo change the viewer's
// segment set and camera in place (no reload of the page or the viewer); the local queue keeps a
// few items ahead, so the next detection is drawn as soon as the key is pressed and the API calls
// run behind it, one at a time, in the order of the key presses.

import { ApiError, api, setCsrfToken, type Schemas } from "../lib/api";
import { ErrorBanner, SerialWork } from "../lib/page_work";
import { type MissedPoint, MissedObjects } from "../lib/missed_objects";
import { byId, el, jsonScript } from "../lib/dom";
import { sizeMeasure } from "../lib/format";
import {
  type LoadedView,
  type Viewer,
  type ViewerStateJson,
  loadState,
  viewerIn,
} from "../lib/neuroglancer";
import { waitFor } from "../lib/wait";
import { type QueueAction, type VerdictKey, actionForKey } from "./keys";
import { PrefetchQueue } from "./prefetch";
import {
  type PointAnnotation,
  type RoundView,
  mousePosition,
  queueInitialState,
  setPoints,
  showDetection,
  showNothing,
} from "./viewer";
import { type Camera, cameraForBox, isCentredOn, voxelZyx } from "./zoom";

export type Item = Schemas["Item"];
export type { MissedPoint };

export interface VerdictOption extends VerdictKey {
  label: string;
  colour: string;
  kind: string;
}

/** The page's `queue-config` JSON (webapp/proofreading/views.py). */
export interface QueueConfig {
  campaignId: number;
  layer: string;
  round: 1 | 2;
  prefetch: number;
  csrfToken: string;
  verdictSet: VerdictOption[];
  /** The campaign's missed-object points are shown in an annotation layer of this name. */
  missedLayer?: string;
  /** The round's changes to the dataset's view (the second round: one 2D panel, faint segment). */
  view?: RoundView;
  /** `?item=` (a card opened from the gallery), handed to the reviewer: shown first. */
  focusItem?: number | null;
  /** The layer is a 2D image's: its objects have an area, no volume, surface or z. */
  planar?: boolean;
}

/** One step: from a key (or button) to the next detection drawn and centred. */
export interface StepTiming {
  action: string;
  ms: number;
}

/** `window.annotome` on the queue page; the browser tests and bench/proofread.py read it. */
export interface QueueHooks {
  ready: Promise<LoadedView>;
  config: QueueConfig;
  viewer(): Viewer | undefined;
  current(): Item | undefined;
  camera(): Camera | undefined;
  queued(): number[];
  counters(): { decided: number; remaining: number | null };
  /** Resolves once every API call sent so far has answered (successfully or not). */
  settled(): Promise<void>;
  /** Resolves when the current detection is drawn (isReady, centred): the step's end. */
  drawn(): Promise<void>;
  timings: StepTiming[];
  errors: string[];
  perform(action: QueueAction): Promise<void>;
  /** The campaign's missed-object points as last read from the API. */
  missedPoints(): MissedPoint[];
  /** Reads the points again and redraws the annotation layer. */
  reloadMissed(): Promise<void>;
  deleteMissed(id: number): Promise<void>;
}

export const TIMEOUTS = { viewerMs: 60_000, layersMs: 30_000 };
const DRAWN_TIMEOUT_MS = 30_000;

function formatNumber(value: number | null | undefined, digits = 3): string {
  if (value === null || value === undefined || !Number.isFinite(value)) return "–";
  return Number(value.toPrecision(digits)).toString();
}

/** Rows of the second round's "earlier verdicts": reviewer, verdict, when (first round only). */
export function earlierVerdictRows(
  item: Item,
): { reviewer: string; verdict: string; when: string }[] {
  return (item.verdicts ?? [])
    .filter((v) => v.round === 1)
    .map((v) => ({ reviewer: v.reviewer, verdict: v.verdict, when: v.updated }));
}

/** A missed-object point (voxel z y x) as a point of the annotation layer: global coordinates
 * in the order of the viewer's dimensions (the same numbers, see zoom.ts). */
export function missedAnnotation(
  point: MissedPoint,
  dimensions: readonly string[],
): PointAnnotation {
  const voxel: Record<string, number> = { x: point.x, y: point.y, z: point.z };
  return {
    type: "point",
    id: `missed-${point.id}`,
    point: dimensions.map((name) => voxel[name] ?? 0),
    description: point.note ? `${point.created_by}: ${point.note}` : point.created_by,
  };
}

/** Rows of the measurements panel: label, value (a 2D image's object: area, x and y). */
export function measurementRows(item: Item, planar = false): [string, string][] {
  const d = item.detection;
  if (!d) return [["Detection", "removed from the layer"]];
  const { label, unit } = sizeMeasure(planar);
  const axes = planar ? "x, y" : "x, y, z";
  const at = (values: (number | null | undefined)[]): string =>
    values.map((v) => formatNumber(v, 4)).join(", ");
  const voxel = [d.centroid_x, d.centroid_y, d.centroid_z];
  const um = [d.centroid_x_um, d.centroid_y_um, d.centroid_z_um];
  const shape: [string, string][] = planar
    ? []
    : [
        ["Sphericity", formatNumber(d.sphericity)],
        ["Surface area (µm²)", formatNumber(d.surface_area)],
      ];
  return [
    ["Segment", String(item.segment_id)],
    [`${label} (${unit})`, formatNumber(d.volume)],
    ...shape,
    ["Mean intensity", formatNumber(d.mean_intensity)],
    [`Position (${axes} ${planar ? "pixels" : "voxels"})`, at(planar ? voxel.slice(0, 2) : voxel)],
    [`Position (${axes} µm)`, at(planar ? um.slice(0, 2) : um)],
  ];
}

export function mountQueuePage(doc: Document = document): QueueHooks {
  const baseState = jsonScript<ViewerStateJson>("viewer-state", doc);
  const config = jsonScript<QueueConfig>("queue-config", doc);
  setCsrfToken(config.csrfToken);
  const campaign_id = config.campaignId;
  const frame = byId("neuroglancer", HTMLIFrameElement, doc);
  const banner = new ErrorBanner(byId("queue-error", HTMLElement, doc));
  const errors = banner.errors;
  const counters = byId("queue-counters", HTMLElement, doc);
  const empty = byId("queue-empty", HTMLElement, doc);
  const currentBox = byId("queue-current", HTMLElement, doc);
  const segmentLabel = byId("queue-segment", HTMLElement, doc);
  const measurements = byId("queue-measurements", HTMLElement, doc);
  const status = byId("queue-status", HTMLElement, doc);
  // Optional parts of the panel (the second round's, the missed-object list).
  const earlier = doc.getElementById("queue-earlier");
  const earlierReason = doc.getElementById("queue-earlier-reason");
  const view: RoundView = config.view ?? {};
  const dimensionNames = Object.keys(
    (baseState["dimensions"] as Record<string, unknown> | undefined) ?? { x: 0, y: 0, z: 0 },
  );

  const queue = new PrefetchQueue<Item>(config.prefetch);
  const undoStack: { verdictId: number; item: Item }[] = [];
  const timings: StepTiming[] = [];
  let decided = 0;
  let remaining: number | null = null;
  let camera: Camera | undefined;
  let exhausted = false;
  const writes = new SerialWork();
  let refilling: Promise<void> | null = null;

  /** A verdict's label for people ("False positive"), its name when the set has none. */
  function verdictLabel(name: string): string {
    return config.verdictSet.find((v) => v.name === name)?.label ?? name;
  }

  function showError(error: unknown): void {
    banner.show(error);
  }

  function clearError(): void {
    banner.clear();
  }

  function serial<T>(task: () => Promise<T>): Promise<T> {
    return writes.run(task);
  }

  const missedObjects = new MissedObjects({
    campaignId: campaign_id,
    count: doc.getElementById("queue-missed-count"),
    list: doc.getElementById("queue-missed-list"),
    serial,
    status: (text) => (status.textContent = text),
    showError,
    onChange: drawMissed,
  });

  function renderCounters(): void {
    const what = config.round === 2 ? "waiting for an expert" : "remaining";
    const rest = remaining === null ? "" : ` · ${what}: ${Math.max(0, remaining)}`;
    const missedText = config.missedLayer
      ? ` · missed objects: ${missedObjects.points.length}`
      : "";
    counters.textContent = `Decided by me: ${decided}${rest} · in hand: ${queue.size}${missedText}`;
  }

  function panelPixels(): number {
    // Four panels: each 2D panel is about half the frame's smaller side; one panel fills it.
    const side = Math.min(frame.clientWidth || 800, frame.clientHeight || 600);
    const single = view.layout !== undefined && !view.layout.includes("panel");
    return Math.max(64, single ? side : side / 2);
  }

  function renderEarlier(item: Item): void {
    if (!earlier) return;
    const rows = earlierVerdictRows(item);
    earlier.replaceChildren(
      ...(rows.length
        ? rows.map((row) =>
            el("li", {}, [
              el("span", { className: "reviewer", textContent: row.reviewer }),
              el("span", { className: "verdict-name", textContent: verdictLabel(row.verdict) }),
              el("time", {
                dateTime: row.when,
                textContent: new Date(row.when).toLocaleString(),
              }),
            ]),
          )
        : [el("li", { textContent: "none you may see" })]),
    );
    if (earlierReason) earlierReason.textContent = item.reason ? `(${item.reason})` : "";
  }

  function render(): void {
    const item = queue.current;
    const viewer = viewerIn(frame);
    renderCounters();
    if (!item) {
      camera = undefined;
      currentBox.hidden = true;
      empty.hidden = !exhausted;
      if (viewer) showNothing(viewer, config.layer);
      return;
    }
    empty.hidden = true;
    currentBox.hidden = false;
    segmentLabel.textContent = String(item.segment_id);
    renderEarlier(item);
    measurements.replaceChildren(
      ...measurementRows(item, config.planar).flatMap(([label, value]) => [
        el("dt", { textContent: label }),
        el("dd", { textContent: value }),
      ]),
    );
    if (item.detection) {
      camera = cameraForBox(item.detection, panelPixels());
      if (viewer) showDetection(viewer, config.layer, item.segment_id, camera);
    }
  }

  async function refill(): Promise<void> {
    if (refilling) return refilling;
    if (!queue.needsRefill()) return;
    refilling = (async () => {
      try {
        const answer = await api.post("/api/v1/proofreading/campaigns/{campaign_id}/next/", {
          path: { campaign_id },
          body: { count: queue.wanted, round: config.round },
        });
        const hadCurrent = queue.current !== undefined;
        queue.merge(answer.map((handout) => handout.item));
        exhausted = answer.length === 0 || queue.size === 0;
        if (!hadCurrent || queue.size === 0) render();
        else renderCounters();
      } catch (error) {
        showError(error);
      } finally {
        refilling = null;
      }
    })();
    return refilling;
  }

  async function loadCounters(): Promise<void> {
    try {
      const [mine, left] = await Promise.all([
        api.get("/api/v1/proofreading/campaigns/{campaign_id}/items/", {
          path: { campaign_id },
          query: { decided_by_me: true, limit: 1 },
        }),
        // Round 2 counts what waits for an expert, not the first round's undecided items.
        api.get("/api/v1/proofreading/campaigns/{campaign_id}/items/", {
          path: { campaign_id },
          query:
            config.round === 2
              ? { status: "second_round", limit: 1 }
              : { decided_by_me: false, limit: 1 },
        }),
      ]);
      decided = mine.count;
      remaining = left.count;
      renderCounters();
    } catch (error) {
      showError(error);
    }
  }

  /** Two animation frames of the viewer: Neuroglancer recomputes the chunks a view needs when
   * it draws, so isReady() right after a camera change may still describe the old view. */
  function frames(): Promise<void> {
    const win = frame.contentWindow ?? doc.defaultView;
    return new Promise((resolve) => {
      if (!win) resolve();
      else win.requestAnimationFrame(() => win.requestAnimationFrame(() => resolve()));
    });
  }

  async function drawn(): Promise<void> {
    await frames();
    await waitFor(
      () => {
        const viewer = viewerIn(frame);
        if (!viewer || !viewer.isReady()) return false;
        if (!camera) return true;
        return isCentredOn(viewer.state.toJSON().position as number[] | undefined, camera);
      },
      DRAWN_TIMEOUT_MS,
      "the detection to be drawn",
      5,
    );
  }

  function timeStep(action: string, started: number): void {
    drawn().then(
      () => timings.push({ action, ms: performance.now() - started }),
      () => {},
    );
  }

  function giveVerdict(verdict: string): Promise<void> {
    const item = queue.current;
    if (!item) return Promise.resolve();
    queue.advance();
    decided += 1;
    if (remaining !== null) remaining -= 1;
    render();
    void refill();
    return serial(async () => {
      try {
        const created = await api.post("/api/v1/proofreading/campaigns/{campaign_id}/verdicts/", {
          path: { campaign_id },
          body: { item: item.id, verdict, round: config.round },
        });
        undoStack.push({ verdictId: created.id, item });
        status.textContent = `Segment ${item.segment_id}: ${verdictLabel(verdict)}.`;
      } catch (error) {
        decided -= 1;
        if (remaining !== null) remaining += 1;
        // Not reached or a server failure: the item is still to decide, show it again.
        if (error instanceof ApiError && (error.status === 0 || error.status >= 500)) {
          queue.restore(item);
          render();
        } else {
          renderCounters();
        }
        showError(error);
      }
    });
  }

  function skip(): Promise<void> {
    const item = queue.current;
    if (!item) return Promise.resolve();
    queue.advance();
    render();
    return serial(async () => {
      try {
        await api.post("/api/v1/proofreading/campaigns/{campaign_id}/skip/", {
          path: { campaign_id },
          body: { item: item.id, round: config.round },
        });
        status.textContent = `Segment ${item.segment_id} skipped: it comes back last.`;
      } catch (error) {
        showError(error);
      }
      await refill();
    });
  }

  function flag(): Promise<void> {
    const item = queue.current;
    if (!item) return Promise.resolve();
    const reason = doc.defaultView?.prompt(`Flag segment ${item.segment_id}: why?`, "")?.trim();
    if (!reason) return Promise.resolve();
    return serial(async () => {
      try {
        await api.post("/api/v1/proofreading/campaigns/{campaign_id}/flags/", {
          path: { campaign_id },
          body: { item: item.id, reason, round: config.round },
        });
        status.textContent = `Segment ${item.segment_id} flagged for the managers.`;
      } catch (error) {
        showError(error);
      }
    });
  }

  function undo(): Promise<void> {
    return serial(async () => {
      const last = undoStack.at(-1);
      if (!last) {
        showError(new Error("Nothing to undo: no verdict given on this page yet."));
        return;
      }
      try {
        const result = await api.post("/api/v1/proofreading/campaigns/{campaign_id}/undo/", {
          path: { campaign_id },
          body: { verdict: last.verdictId },
        });
        undoStack.pop();
        decided -= 1;
        if (remaining !== null) remaining += 1;
        queue.restore(result.handout?.item ?? last.item);
        exhausted = false;
        status.textContent = `Verdict on segment ${last.item.segment_id} undone.`;
        render();
      } catch (error) {
        // 409: the page's "last" is stale (undone elsewhere, or a newer verdict): forget it.
        if (error instanceof ApiError && error.status === 409) undoStack.pop();
        showError(error);
      }
    });
  }

  /** The points in the annotation layer (the count and list are the MissedObjects'). */
  function drawMissed(): void {
    renderCounters();
    const viewer = viewerIn(frame);
    if (viewer && config.missedLayer) {
      setPoints(
        viewer,
        config.missedLayer,
        missedObjects.points.map((point) => missedAnnotation(point, dimensionNames)),
      );
    }
  }

  /** A missed-object point where the mouse points in a panel (M), else the view's centre. */
  function missed(): Promise<void> {
    const viewer = viewerIn(frame);
    if (!viewer) return Promise.resolve();
    const pointer = mousePosition(viewer);
    const position = pointer ?? (viewer.state.toJSON().position as number[] | undefined);
    if (!position) return Promise.resolve();
    const byName: Record<string, number> = {};
    dimensionNames.forEach((name, i) => (byName[name] = position[i] ?? NaN));
    const point = voxelZyx([byName["x"] ?? NaN, byName["y"] ?? NaN, byName["z"] ?? NaN]);
    const where = pointer ? "at the mouse" : "at the centre of the view";
    return missedObjects.add(point, where).then(() => undefined);
  }

  function perform(action: QueueAction): Promise<void> {
    clearError();
    const started = performance.now();
    let done: Promise<void>;
    switch (action.kind) {
      case "verdict":
        done = giveVerdict(action.verdict);
        break;
      case "skip":
        done = skip();
        break;
      case "flag":
        return flag();
      case "undo":
        done = undo();
        break;
      case "missed":
        return missed();
    }
    timeStep(action.kind, started);
    return done;
  }

  function onKey(event: KeyboardEvent): void {
    const target = event.target as HTMLElement | null;
    if (target && (target.isContentEditable || /^(INPUT|TEXTAREA|SELECT)$/.test(target.tagName))) {
      return;
    }
    if (event.repeat) return;
    const action = actionForKey(event, config.verdictSet);
    if (!action) return;
    event.preventDefault();
    event.stopPropagation();
    void perform(action);
  }

  doc.addEventListener("keydown", onKey, true);
  for (const button of doc.querySelectorAll<HTMLButtonElement>("[data-verdict]")) {
    button.addEventListener("click", () => {
      void perform({ kind: "verdict", verdict: button.dataset["verdict"] ?? "" });
    });
  }
  const buttons: [string, QueueAction][] = [
    ["queue-skip", { kind: "skip" }],
    ["queue-flag", { kind: "flag" }],
    ["queue-undo", { kind: "undo" }],
    ["queue-missed", { kind: "missed" }],
  ];
  for (const [id, action] of buttons) {
    byId(id, HTMLButtonElement, doc).addEventListener("click", () => void perform(action));
  }

  /** The `?item=` item goes in front of the queue (the server handed it to the reviewer). */
  async function focus(): Promise<void> {
    if (!config.focusItem) return;
    try {
      const item = await api.get("/api/v1/proofreading/campaigns/{campaign_id}/items/{item_id}/", {
        path: { campaign_id, item_id: config.focusItem },
      });
      queue.restore(item);
      exhausted = false;
    } catch (error) {
      showError(error);
    }
  }

  const state = queueInitialState(baseState, config.layer, view, config.missedLayer);
  const first = refill().then(focus);
  void loadCounters();
  const ready = loadState(frame, state, TIMEOUTS).then(
    async (loaded) => {
      // Keys pressed while Neuroglancer has the focus reach the page too (same origin).
      frame.contentWindow?.addEventListener("keydown", onKey, true);
      if (loaded.errors.length) {
        showError(
          new Error(loaded.errors.map((e) => `${e.name}: ${e.errors.join("; ")}`).join(", ")),
        );
      }
      await first;
      render();
      if (config.missedLayer) await missedObjects.reload();
      return loaded;
    },
    (error: unknown) => {
      showError(error);
      throw error;
    },
  );

  return {
    ready,
    config,
    viewer: () => viewerIn(frame),
    current: () => queue.current,
    camera: () => camera,
    queued: () => queue.ids(),
    counters: () => ({ decided, remaining }),
    settled: async () => {
      await writes.settled();
      await refilling;
    },
    drawn,
    timings,
    errors,
    perform,
    missedPoints: () => missedObjects.points,
    reloadMissed: () => missedObjects.reload(),
    deleteMissed: (id) => missedObjects.remove(id),
  };
}
