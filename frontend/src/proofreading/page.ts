// The proofreading queue page (webapp/proofreading/templates/proofreading/queue.html): one
// detection at a time in the embedded Neuroglancer. Verdicts, skips and undo change the viewer's
// segment set and camera in place (no reload of the page or the viewer); the local queue keeps a
// few items ahead, so the next detection is drawn as soon as the key is pressed and the API calls
// run behind it, one at a time, in the order of the key presses.

import { ApiError, api, setCsrfToken, type Schemas } from "../lib/api";
import { byId, el, jsonScript } from "../lib/dom";
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
import { queueInitialState, showDetection, showNothing } from "./viewer";
import { type Camera, cameraForBox, isCentredOn, voxelZyx } from "./zoom";

export type Item = Schemas["Item"];

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
  /** `?item=` (a card opened from the gallery), handed to the reviewer: shown first. */
  focusItem?: number | null;
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
}

export const TIMEOUTS = { viewerMs: 60_000, layersMs: 30_000 };
const DRAWN_TIMEOUT_MS = 30_000;

function message(error: unknown): string {
  if (error instanceof ApiError) return error.message;
  return error instanceof Error ? error.message : String(error);
}

function formatNumber(value: number | null | undefined, digits = 3): string {
  if (value === null || value === undefined || !Number.isFinite(value)) return "–";
  return Number(value.toPrecision(digits)).toString();
}

/** Rows of the measurements panel: label, value. */
export function measurementRows(item: Item): [string, string][] {
  const d = item.detection;
  if (!d) return [["Detection", "removed from the layer"]];
  return [
    ["Segment", String(item.segment_id)],
    ["Volume (µm³)", formatNumber(d.volume)],
    ["Sphericity", formatNumber(d.sphericity)],
    ["Surface area (µm²)", formatNumber(d.surface_area)],
    ["Mean intensity", formatNumber(d.mean_intensity)],
    [
      "Position (x, y, z voxels)",
      [d.centroid_x, d.centroid_y, d.centroid_z].map((v) => formatNumber(v, 4)).join(", "),
    ],
    [
      "Position (x, y, z µm)",
      [d.centroid_x_um, d.centroid_y_um, d.centroid_z_um].map((v) => formatNumber(v, 4)).join(", "),
    ],
  ];
}

export function mountQueuePage(doc: Document = document): QueueHooks {
  const baseState = jsonScript<ViewerStateJson>("viewer-state", doc);
  const config = jsonScript<QueueConfig>("queue-config", doc);
  setCsrfToken(config.csrfToken);
  const campaign_id = config.campaignId;
  const frame = byId("neuroglancer", HTMLIFrameElement, doc);
  const banner = byId("queue-error", HTMLElement, doc);
  const counters = byId("queue-counters", HTMLElement, doc);
  const empty = byId("queue-empty", HTMLElement, doc);
  const currentBox = byId("queue-current", HTMLElement, doc);
  const segmentLabel = byId("queue-segment", HTMLElement, doc);
  const measurements = byId("queue-measurements", HTMLElement, doc);
  const status = byId("queue-status", HTMLElement, doc);

  const queue = new PrefetchQueue<Item>(config.prefetch);
  const undoStack: { verdictId: number; item: Item }[] = [];
  const timings: StepTiming[] = [];
  const errors: string[] = [];
  let decided = 0;
  let remaining: number | null = null;
  let camera: Camera | undefined;
  let exhausted = false;
  let writes: Promise<unknown> = Promise.resolve();
  let refilling: Promise<void> | null = null;

  function showError(error: unknown): void {
    if (error instanceof DOMException && error.name === "AbortError") return;
    const text = message(error);
    errors.push(text);
    banner.textContent = text;
    banner.hidden = false;
  }

  function clearError(): void {
    banner.hidden = true;
    banner.textContent = "";
  }

  /** Runs API calls one after the other (an undo must follow the verdict it undoes). */
  function serial<T>(task: () => Promise<T>): Promise<T> {
    const run = writes.then(task, task);
    writes = run.catch(() => undefined);
    return run;
  }

  function renderCounters(): void {
    const rest = remaining === null ? "" : ` · remaining: ${Math.max(0, remaining)}`;
    counters.textContent = `Decided by me: ${decided}${rest} · in hand: ${queue.size}`;
  }

  function panelPixels(): number {
    // Four panels: each 2D panel is about half the frame's smaller side.
    const side = Math.min(frame.clientWidth || 800, frame.clientHeight || 600);
    return Math.max(64, side / 2);
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
    measurements.replaceChildren(
      ...measurementRows(item).flatMap(([label, value]) => [
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
        api.get("/api/v1/proofreading/campaigns/{campaign_id}/items/", {
          path: { campaign_id },
          query: { decided_by_me: false, limit: 1 },
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
        status.textContent = `Segment ${item.segment_id}: ${verdict}.`;
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

  function missed(): Promise<void> {
    const viewer = viewerIn(frame);
    const position = viewer?.state.toJSON().position as number[] | undefined;
    if (!position) return Promise.resolve();
    const point = voxelZyx(position);
    return serial(async () => {
      try {
        const made = await api.post("/api/v1/proofreading/campaigns/{campaign_id}/missed/", {
          path: { campaign_id },
          body: point,
        });
        status.textContent = `Missed object marked at x ${formatNumber(made.x, 4)}, y ${formatNumber(made.y, 4)}, z ${formatNumber(made.z, 4)}.`;
      } catch (error) {
        showError(error);
      }
    });
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

  const state = queueInitialState(baseState, config.layer);
  const first = refill().then(focus);
  void loadCounters();
  const ready = loadState(frame, state, TIMEOUTS).then(
    async (view) => {
      // Keys pressed while Neuroglancer has the focus reach the page too (same origin).
      frame.contentWindow?.addEventListener("keydown", onKey, true);
      if (view.errors.length) {
        showError(
          new Error(view.errors.map((e) => `${e.name}: ${e.errors.join("; ")}`).join(", ")),
        );
      }
      await first;
      render();
      return view;
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
      await writes;
      await refilling;
    },
    drawn,
    timings,
    errors,
    perform,
  };
}
