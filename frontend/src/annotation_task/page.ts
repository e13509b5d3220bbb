// The annotator's task page (webapp/annotation/templates/annotation/task.html): Neuroglancer at
// the task box, the volume around it dimmed, the annotations layer loaded from the API and saved back as
// it changes (sync.ts), the task panel (classes with their keys, drawing tools with Shift+key,
// counters, submit / skip / flag, versions with show and restore), a stale save's conflict
// banner (reload or merge), view activity reported so time on task counts on the server.

import { ApiError, api, setCsrfToken } from "../lib/api";
import { byId, el, jsonScript } from "../lib/dom";
import { objectsText, revisionText } from "./format";
import { flashNext } from "../lib/flash";
import { ErrorBanner, SerialWork, errorMessage } from "../lib/page_work";
import {
  type LoadedView,
  type Viewer,
  type ViewerStateJson,
  loadState,
  viewerIn,
  withoutBounds,
} from "../lib/neuroglancer";
import { type Axes, type NgAnnotation, axesOf, geometryOf, packRgb } from "./coords";
import {
  ANNOTATIONS,
  EARLIER,
  type LabelClass,
  type TaskBox,
  annotationJson,
  annotationsLayer,
  cameraForTask,
  dimmingLayer,
  earlierLayer,
  taskBoxLayer,
  toolForKey,
  toolId,
} from "./layers";
import { labelsLayer, labelsSegments, showLabelsVersion } from "./labels_layer";
import { type AssistPanel, mountAssist } from "./assist_panel";
import { type PaintHooks, mountPaint } from "./paint";
import { type ApiAnnotation, Ledger, type Op, Saver, StaleError } from "./sync";
import { formatDuration, formatWhen } from "../lib/format";

export interface TaskConfig {
  assignmentId: number;
  campaignId: number;
  csrfToken: string;
  editable: boolean;
  isAnnotator: boolean;
  /** The campaign paints objects: the page offers the painting editor (paint.ts) and shows
   * the saved labels as the "painted labels" layer. */
  painted?: boolean;
  assignment: { state: string; version: number; active_seconds: number; count: number };
  box: TaskBox & { name: string };
  labelSchema: LabelClass[];
  geometry: { shape?: number[]; voxel_size_um?: number[] };
  imageLayer: string;
  nextUrl: string;
  reservedKeys: string;
  labelsProvenance?: boolean;
  /** The campaign's image is 2D (no z axis): the Paint tab leaves z out. */
  planar?: boolean;
}

interface Revision {
  number: number;
  kind: string;
  restored_from: number | null;
  author: string | null;
  created: string;
  summary: Record<string, number>;
}

/** The parts of Neuroglancer's local annotation source the page uses. */
interface Reference {
  value: NgAnnotation | null;
  dispose(): void;
}
interface LocalSource {
  readonly: boolean;
  pending: Set<string>;
  get(id: string): NgAnnotation | undefined;
  getReference(id: string): Reference;
  update(reference: Reference, annotation: NgAnnotation): void;
  restoreState(json: unknown): void;
  [Symbol.iterator](): Iterator<NgAnnotation>;
  childAdded: { add(fn: (a: NgAnnotation) => void): () => void };
  childUpdated: { add(fn: (a: NgAnnotation) => void): () => void };
  childCommitted: { add(fn: (id: string) => void): () => void };
  childDeleted: { add(fn: (id: string) => void): () => void };
}
interface ManagedLayerLike {
  layer: {
    localAnnotations?: LocalSource;
    tool?: {
      restoreState(tool: unknown): void;
      toJSON(): unknown;
      changed: { add(fn: () => void): unknown };
    };
  } | null;
  setVisible(visible: boolean): void;
}

function sourceOf(viewer: Viewer, name: string): LocalSource | undefined {
  const managed = viewer.layerManager.getLayerByName(name) as unknown as
    ManagedLayerLike | undefined;
  return managed?.layer?.localAnnotations;
}

/** `window.annotome` on the task page (tests and the benchmark read it). */
export interface TaskHooks {
  ready: Promise<LoadedView>;
  config: TaskConfig;
  viewer(): Viewer | undefined;
  version(): number;
  count(): number;
  dirty(): number;
  currentClass(): string;
  errors: string[];
  /** Resolves once every change so far is saved (or saving stopped). */
  settled(): Promise<void>;
  timings: { readyMs?: number; lastSaveMs?: number; lastChangeToSavedMs?: number };
  annotations(): ApiAnnotation[];
  /** The annotations layer's active tool (Neuroglancer's tool id), set by the tool buttons,
   * Shift+key or Neuroglancer's own tool buttons. */
  tool(): unknown;
  /** The earlier version shown beside the work (read-only), if any. */
  shownVersion(): number | undefined;
  /** Shows a labels version (`labels/`'s `neuroglancer_sources`) in the "painted labels"
   * layer without reloading anything else: what follows a labels save. */
  showLabelsVersion(sources: readonly string[]): Promise<void>;
  /** The painting editor of a painted campaign's task (its contract hooks), else null. */
  paint: PaintHooks | null;
  /** The assistance on the Paint tab (click-to-object, propose all), else null. */
  assist(): AssistPanel | null;
}

export const TIMEOUTS = { viewerMs: 60_000, layersMs: 30_000 };
const ACTIVITY_MS = 15_000;
const ASSIGNMENT = "/api/v1/annotation/assignments/{assignment_id}/" as const;

export function mountTaskPage(doc: Document = document): TaskHooks {
  const baseState = jsonScript<ViewerStateJson>("viewer-state", doc);
  const config = jsonScript<TaskConfig>("task-config", doc);
  setCsrfToken(config.csrfToken);
  const assignment_id = config.assignmentId;
  const frame = byId("neuroglancer", HTMLIFrameElement, doc);
  const banner = new ErrorBanner(byId("task-error", HTMLElement, doc));
  const saveStatus = byId("task-save", HTMLElement, doc);
  const conflict = byId("task-conflict", HTMLElement, doc);
  const conflictText = byId("task-conflict-text", HTMLElement, doc);
  const countLabel = byId("task-count", HTMLElement, doc);
  const timeLabel = byId("task-time", HTMLElement, doc);
  const versionLabel = byId("task-version", HTMLElement, doc);
  const classList = byId("task-classes", HTMLUListElement, doc);
  const objectInput = byId("task-object-id", HTMLInputElement, doc);
  const versionsList = byId("task-versions", HTMLOListElement, doc);
  const shownLabel = byId("task-shown", HTMLElement, doc);
  const flagForm = byId("task-flag-form", HTMLFormElement, doc);
  byId("task-readonly", HTMLElement, doc).hidden = config.editable;
  for (const id of ["task-submit", "task-skip", "task-flag"]) {
    byId(id, HTMLButtonElement, doc).disabled = !config.editable;
  }

  const dimensionNames = Object.keys((baseState["dimensions"] as Record<string, unknown>) ?? {});
  const axes: Axes = axesOf(dimensionNames);
  const schema = config.labelSchema;
  const colours = new Map(schema.map((c) => [c.name, c.colour]));
  const colourOf = (label: string): string => colours.get(label) ?? "#ffffff";
  let currentClass = schema[0]?.name ?? "";
  /** Class and object id of each annotation (Neuroglancer holds only the display of them). */
  const meta = new Map<string, { label: string; object_id: number }>();
  let nextObjectId = 1;
  let loading = false;
  const ledger = new Ledger();
  const timings: TaskHooks["timings"] = {};
  const work = new SerialWork();
  let activeSeconds = config.assignment.active_seconds;
  let changeAt: number | undefined;

  function source(): LocalSource | undefined {
    const viewer = viewerIn(frame);
    return viewer ? sourceOf(viewer, ANNOTATIONS) : undefined;
  }

  function read(uid: string): ApiAnnotation | undefined | null {
    const src = source();
    const a = src?.get(uid);
    if (!src || !a) return undefined;
    if (src.pending.has(uid)) return null;
    const geometry = geometryOf(a, axes);
    if (!geometry) return undefined;
    const m = meta.get(uid) ?? { label: currentClass, object_id: 0 };
    return { uid, ...geometry, ...m, description: a.description ?? "" };
  }

  function annotations(): ApiAnnotation[] {
    const src = source();
    if (!src) return [];
    const out: ApiAnnotation[] = [];
    for (const a of src) {
      const r = read(a.id);
      if (r) out.push(r);
    }
    return out;
  }

  function showTime(): void {
    timeLabel.textContent = formatDuration(activeSeconds);
  }

  /** Painted objects in the labels as last loaded or saved (a painted campaign's). */
  let paintedObjects = 0;

  /** Annotations (points and other shapes) in the viewer's layer now. */
  function pointCount(): number {
    const src = source();
    let n = 0;
    if (src) for (const _ of src) n++;
    return n;
  }

  /** The side panel's "Objects": the points, plus the painted objects in a painted campaign. */
  function showCount(): void {
    countLabel.textContent = objectsText(pointCount(), config.painted ? paintedObjects : null);
  }

  /** The painting editor once mounted (the header also tells of its unsaved strokes). */
  let painting: PaintHooks | null = null;

  function showSaveState(): void {
    if (!config.editable) {
      saveStatus.textContent = `Read-only · version ${ledger.version}`;
    } else if (painting?.unsaved()) {
      saveStatus.textContent = `Painted changes not saved (Ctrl+S) · version ${ledger.version}`;
    } else if (saver.stale) {
      saveStatus.textContent = "Not saved: a newer version exists";
    } else if (saver.busy) {
      saveStatus.textContent = "Saving…";
    } else {
      saveStatus.textContent = `All changes saved · version ${ledger.version}`;
    }
    saveStatus.dataset["version"] = String(ledger.version);
    versionLabel.textContent = String(ledger.version);
  }

  const saver = new Saver({
    ledger,
    read,
    post: async (base_version, ops) => {
      try {
        const answer = await api.post(`${ASSIGNMENT}annotations/`, {
          path: { assignment_id },
          body: { base_version, ops } as never,
        });
        activeSeconds = answer.active_seconds;
        return answer;
      } catch (error) {
        const current = staleVersion(error);
        if (current !== undefined) throw new StaleError(current);
        throw error;
      }
    },
    onSaved: (_version, _ops, ms) => {
      timings.lastSaveMs = ms;
      if (changeAt !== undefined) timings.lastChangeToSavedMs = Date.now() - changeAt;
      changeAt = undefined;
      banner.clear();
      showTime();
      void loadRevisions();
    },
    // "All changes saved" once the save is no longer in flight (onSaved runs inside it).
    onSettled: () => showSaveState(),
    onStale: (error) => {
      showConflict(
        `Your changes were not saved: version ${error.currentVersion} was saved since ` +
          `(another tab or machine), after your version ${ledger.version}.`,
      );
    },
    onError: (error) => {
      banner.show(error);
      showSaveState();
    },
  });
  saver.enabled = config.editable;

  function showConflict(text: string): void {
    conflictText.textContent = text;
    conflict.hidden = false;
    showSaveState();
  }

  /** The current version of a 409 answer, when it says one. */
  function staleVersion(error: unknown): number | undefined {
    if (!(error instanceof ApiError) || error.status !== 409) return undefined;
    const current = (error.body as { current_version?: number } | null)?.current_version;
    return typeof current === "number" ? current : undefined;
  }

  function changed(uid: string): void {
    if (loading || !config.editable) return;
    changeAt ??= Date.now();
    saver.mark(uid);
    showSaveState();
  }

  function objectIdForNew(): number {
    const typed = objectInput.value.trim();
    if (typed !== "" && /^\d+$/.test(typed)) return Number(typed);
    return nextObjectId++;
  }

  function adopt(a: NgAnnotation): void {
    // A new annotation drawn with a tool: it takes the current class and an object id.
    if (loading || meta.has(a.id)) return;
    const m = { label: currentClass, object_id: objectIdForNew() };
    meta.set(a.id, m);
    const src = source();
    if (!src) return;
    const reference = src.getReference(a.id);
    try {
      if (reference.value) {
        src.update(reference, {
          ...reference.value,
          properties: [packRgb(colourOf(m.label)), Math.min(m.object_id, 0xffffffff)],
        });
      }
    } finally {
      reference.dispose();
    }
  }

  function setMeta(list: readonly ApiAnnotation[]): void {
    meta.clear();
    for (const a of list) {
      meta.set(a.uid, { label: a.label, object_id: a.object_id });
      nextObjectId = Math.max(nextObjectId, a.object_id + 1);
    }
  }

  function loadInto(src: LocalSource, list: readonly ApiAnnotation[]): void {
    loading = true;
    try {
      src.restoreState(list.map((a) => annotationJson(a, axes, colourOf)));
    } finally {
      loading = false;
    }
  }

  /** The current labels version as a segmentation layer (a painted campaign's only). */
  async function paintedLayers(): Promise<{ name: string; [key: string]: unknown }[]> {
    if (!config.painted) return [];
    const labels = await api.get(`${ASSIGNMENT}labels/`, { path: { assignment_id } });
    const sources = labels.neuroglancer_sources;
    return [labelsLayer(sources, undefined, await labelsSegments(sources))];
  }

  async function fetchVersion(version?: number): Promise<{
    version: number;
    current_version: number;
    annotations: ApiAnnotation[];
  }> {
    const body = await api.get(`${ASSIGNMENT}annotations/`, {
      path: { assignment_id },
      ...(version === undefined ? {} : { query: { version } }),
    });
    return body as never;
  }

  /** Load the server's current version into the layer; with `reapply`, this page's unsaved
   * changes are put back on top and saved (merge). */
  async function reloadCurrent(reapply: boolean): Promise<void> {
    const src = source();
    if (!src) return;
    const unsaved = reapply
      ? [...saver.dirty].map((uid) => ({ uid, value: read(uid) ?? undefined }))
      : [];
    const body = await fetchVersion();
    saver.discard();
    ledger.reset(body.current_version, body.annotations);
    const merged = new Map(body.annotations.map((a) => [a.uid, a]));
    for (const { uid, value } of unsaved) {
      if (value) merged.set(uid, value);
      else merged.delete(uid);
    }
    const list = [...merged.values()];
    setMeta(list);
    loadInto(src, list);
    for (const { uid } of unsaved) saver.mark(uid);
    conflict.hidden = true;
    saver.resume();
    showCount();
    showSaveState();
    await loadRevisions();
  }

  let revisions: Revision[] = [];
  let shownVersion: number | undefined;

  async function loadRevisions(): Promise<void> {
    try {
      revisions = (await api.get(`${ASSIGNMENT}revisions/`, {
        path: { assignment_id },
      })) as unknown as Revision[];
      renderRevisions();
    } catch (error) {
      banner.show(error);
    }
  }

  function renderRevisions(): void {
    versionsList.replaceChildren(...revisions.map(revisionItem));
  }

  function revisionItem(r: Revision): HTMLLIElement {
    const shown = r.number === shownVersion;
    const show = el("button", {
      type: "button",
      textContent: shown ? "hide" : "show",
      className: "link-button task-version-show",
    });
    show.addEventListener("click", () => void (shown ? hideVersion() : showVersion(r.number)));
    const items: (Node | string)[] = [
      el("strong", { textContent: `v${r.number}` }),
      ` ${revisionText(r)} · ${r.author ?? "?"} · ${formatWhen(r.created)} `,
      show,
    ];
    if (config.editable && r.number < ledger.version) {
      const restore = el("button", {
        type: "button",
        textContent: "restore",
        className: "link-button task-version-restore",
      });
      restore.addEventListener("click", () => void restoreVersion(r.number));
      items.push(" ", restore);
    }
    const item = el("li", { className: "task-version", value: r.number }, items);
    item.dataset["version"] = String(r.number);
    if (shown) item.setAttribute("aria-current", "true");
    return item;
  }

  /** Fills the grey, read-only "earlier version" layer with `version`, beside the work. */
  async function showVersion(version: number): Promise<void> {
    const viewer = viewerIn(frame);
    if (!viewer) return;
    try {
      const body = await fetchVersion(version);
      const src = sourceOf(viewer, EARLIER);
      if (!src) return;
      src.readonly = true;
      // In grey: without the class colour and object id (the layer has no such properties).
      src.restoreState(
        body.annotations.map((a) => {
          const { props: _props, ...json } = annotationJson(a, axes, colourOf);
          return json;
        }),
      );
      layerOf(EARLIER)?.setVisible(true);
      shownVersion = version;
      shownLabel.textContent =
        `Showing version ${version} in grey (read-only, ${body.annotations.length} objects) ` +
        "beside your work.";
      shownLabel.hidden = false;
      renderRevisions();
    } catch (error) {
      banner.show(error);
    }
  }

  function hideVersion(): void {
    const viewer = viewerIn(frame);
    if (viewer) {
      sourceOf(viewer, EARLIER)?.restoreState([]);
      layerOf(EARLIER)?.setVisible(false);
    }
    shownVersion = undefined;
    shownLabel.hidden = true;
    renderRevisions();
  }

  function restoreVersion(version: number): Promise<void> {
    return work.run(async () => {
      try {
        await saver.settled();
        if (saver.stale) return;
        // Unsaved painting is saved first, so the restore keeps it in the history.
        if (painting?.unsaved()) await painting.save();
        if (painting?.unsaved()) return; // not saved (a newer version): the banner says so
        await api.post(`${ASSIGNMENT}restore/`, {
          path: { assignment_id },
          body: { version, base_version: ledger.version },
        });
        await reloadCurrent(false);
        if (painting) {
          showSavedLabels(
            await painting.reload((now) => `Restored version ${version} as version ${now}.`),
          );
        }
      } catch (error) {
        const current = staleVersion(error);
        if (current === undefined) {
          banner.show(error);
          return;
        }
        saver.stale = new StaleError(current);
        showConflict(
          `Version ${version} was not restored: version ${current} was saved since your ` +
            `version ${ledger.version}.`,
        );
      }
    });
  }

  async function leaveFor(action: "submit" | "skip" | "flag", reason = ""): Promise<void> {
    await work.run(async () => {
      try {
        await saver.settled();
        if (saver.stale || saver.dirty.size) {
          banner.show(new Error("Save your changes first (see the message above)."));
          return;
        }
        // Painted labels are saved by hand (Ctrl+S): leaving saves them first, so that the
        // submitted version holds what the annotator sees; a stale or failed save stays.
        if (paint?.unsaved()) {
          await paint.save();
          if (paint.unsaved()) {
            banner.show(new Error("Save your painted labels first (see the message above)."));
            return;
          }
        }
        if (action === "submit") {
          await api.post(`${ASSIGNMENT}submit/`, {
            path: { assignment_id },
            body: { base_version: ledger.version },
          });
        } else if (action === "skip") {
          await api.post(`${ASSIGNMENT}skip/`, { path: { assignment_id } });
        } else {
          await api.post(`${ASSIGNMENT}flag/`, { path: { assignment_id }, body: { reason } });
        }
        saver.enabled = false;
        // Said on the page that opens next (the next task, or the list when none is left).
        const done = { submit: "Submitted", skip: "Skipped", flag: "Flagged" }[action];
        const version = action === "submit" ? ` (version ${ledger.version})` : "";
        flashNext(`${done} box ${config.box.name}${version}.`);
        doc.defaultView?.location.assign(config.nextUrl);
      } catch (error) {
        const current = staleVersion(error);
        if (current !== undefined && current !== ledger.version) {
          saver.stale = new StaleError(current);
          showConflict(
            `Not submitted: version ${current} was saved since your version ${ledger.version}.`,
          );
          return;
        }
        banner.show(error);
      }
    });
  }

  function renderClasses(): void {
    classList.replaceChildren(
      ...schema.map((c) => {
        const button = el("button", { type: "button", className: "task-class" }, [
          el("span", { className: "task-swatch" }),
          el("kbd", { textContent: c.key }),
          ` ${c.label || c.name}`,
        ]);
        (button.firstChild as HTMLElement).style.background = c.colour;
        button.setAttribute("aria-pressed", String(c.name === currentClass));
        button.dataset["class"] = c.name;
        button.addEventListener("click", () => chooseClass(c.name));
        return el("li", {}, [button]);
      }),
    );
  }

  function layerOf(name: string): ManagedLayerLike | undefined {
    const viewer = viewerIn(frame);
    return viewer?.layerManager.getLayerByName(name) as unknown as ManagedLayerLike | undefined;
  }

  function useTool(tool: string): void {
    layerOf(ANNOTATIONS)?.layer?.tool?.restoreState(tool);
    showTool();
  }

  /** The tool buttons say the layer's tool, whoever chose it (buttons, Shift+key, Neuroglancer's
   * own tool buttons in the layer panel). */
  function showTool(): void {
    const tool = layerOf(ANNOTATIONS)?.layer?.tool;
    if (!tool) return;
    const current = toolId(tool.toJSON());
    for (const button of doc.querySelectorAll<HTMLButtonElement>("[data-tool]")) {
      button.setAttribute("aria-pressed", String(button.dataset["tool"] === current));
    }
  }

  function chooseClass(name: string): void {
    currentClass = name;
    renderClasses();
  }

  let lastActivity = 0;
  let activityTimer: ReturnType<typeof setTimeout> | undefined;
  function activity(): void {
    if (!config.editable) return;
    const wait = lastActivity + ACTIVITY_MS - Date.now();
    if (wait > 0) {
      activityTimer ??= setTimeout(() => {
        activityTimer = undefined;
        activity();
      }, wait);
      return;
    }
    lastActivity = Date.now();
    api.post(`${ASSIGNMENT}activity/`, { path: { assignment_id } }).then(
      (row) => {
        activeSeconds = row.active_seconds;
        showTime();
      },
      () => undefined, // a lost report costs a little time on task, nothing else
    );
  }

  /** Class keys and the tools' Shift+keys, in the page and in the viewer's frame (capture, so
   * Neuroglancer, which reads Shift+letter as "activate the tool bound to the letter", does
   * not see them). */
  function onKey(event: KeyboardEvent): void {
    const target = event.target as HTMLElement | null;
    if (target && (target.isContentEditable || /^(INPUT|TEXTAREA|SELECT)$/.test(target.tagName))) {
      return;
    }
    const tool = config.editable ? toolForKey(event) : undefined;
    if (tool) {
      event.preventDefault();
      event.stopPropagation();
      useTool(tool);
      return;
    }
    if (event.ctrlKey || event.metaKey || event.altKey || event.shiftKey) return;
    const chosen = schema.find((c) => c.key === event.key.toLowerCase());
    if (!chosen) return;
    event.preventDefault();
    event.stopPropagation();
    chooseClass(chosen.name);
  }

  doc.addEventListener("keydown", onKey, true);
  byId("task-reload", HTMLButtonElement, doc).addEventListener("click", () => {
    void work.run(() => reloadCurrent(false).catch((e: unknown) => banner.show(e)));
  });
  byId("task-merge", HTMLButtonElement, doc).addEventListener("click", () => {
    void work.run(() => reloadCurrent(true).catch((e: unknown) => banner.show(e)));
  });
  // A box with nothing marked is asked about first: submitted, it is ground truth that the box
  // holds no object (a model learns its voxels as background).
  const emptyAsk = byId("task-empty", HTMLElement, doc);
  function nothingMarked(): boolean {
    const points = pointCount();
    if (points > 0 || !config.painted) return points === 0;
    // Counted now (the side panel's count waits for a pause in the painting); not asked while
    // the painting has not loaded (its saved objects are not known yet).
    const painted = paint?.objectsNow();
    return painted === 0 && !paint?.unsaved();
  }
  byId("task-submit", HTMLButtonElement, doc).addEventListener("click", () => {
    if (config.editable && nothingMarked()) {
      emptyAsk.hidden = false;
      byId("task-empty-submit", HTMLButtonElement, doc).focus();
      return;
    }
    void leaveFor("submit");
  });
  byId("task-empty-submit", HTMLButtonElement, doc).addEventListener("click", () => {
    emptyAsk.hidden = true;
    void leaveFor("submit");
  });
  byId("task-empty-cancel", HTMLButtonElement, doc).addEventListener("click", () => {
    emptyAsk.hidden = true;
  });
  byId("task-skip", HTMLButtonElement, doc).addEventListener("click", () => {
    emptyAsk.hidden = true;
    void leaveFor("skip");
  });
  byId("task-flag", HTMLButtonElement, doc).addEventListener("click", () => {
    emptyAsk.hidden = true;
    flagForm.hidden = !flagForm.hidden;
  });
  flagForm.addEventListener("submit", (event) => {
    event.preventDefault();
    const reason = byId("task-flag-reason", HTMLInputElement, doc).value;
    void leaveFor("flag", reason);
  });

  for (const button of doc.querySelectorAll<HTMLButtonElement>("[data-tool]")) {
    button.disabled = !config.editable;
    button.addEventListener("click", () => useTool(button.dataset["tool"] ?? ""));
  }
  renderClasses();
  showTime();
  saveStatus.textContent = "Loading annotations…";
  let assistPanel: AssistPanel | null = null;
  const paint = config.painted ? mountPaintTab() : null;
  painting = paint;
  if (paint) {
    // Strokes and keys change what is unsaved: the header follows, and leaving the page with
    // unsaved painting asks first.
    byId("paint", HTMLElement, doc).addEventListener("pointerup", () => showSaveState());
    doc.addEventListener("keyup", () => showSaveState());
    doc.defaultView?.addEventListener("beforeunload", (event) => {
      if (paint.unsaved()) event.preventDefault();
    });
  }

  let labelsShown: Promise<void> = Promise.resolve();
  let labelsWanted = 0;
  /** After a labels save, the "painted labels" layer shows the saved version in place (only
   * the changed chunks and objects are fetched); saves in quick succession show the last. */
  function showSavedLabels(version: number): void {
    labelsWanted = Math.max(labelsWanted, version);
    labelsShown = labelsShown
      .then(async () => {
        if (version < labelsWanted) return;
        const viewer = (await ready).viewer;
        const labels = await api.get(`${ASSIGNMENT}labels/`, { path: { assignment_id } });
        await showLabelsVersion(viewer, labels.neuroglancer_sources);
      })
      .catch((e: unknown) => banner.show(e));
  }

  /** The painting editor in its tab beside Neuroglancer (which keeps its own state). */
  function mountPaintTab(): PaintHooks {
    const section = byId("paint", HTMLElement, doc);
    const keys = byId("paint-keys", HTMLElement, doc); // in the side panel: no scrolling to read
    const tabs = {
      viewer: byId("tab-viewer", HTMLButtonElement, doc),
      paint: byId("tab-paint", HTMLButtonElement, doc),
    };
    const show = (which: "viewer" | "paint"): void => {
      section.hidden = which !== "paint";
      keys.hidden = which !== "paint";
      frame.classList.toggle("paint-behind", which === "paint");
      tabs.viewer.setAttribute("aria-selected", String(which === "viewer"));
      tabs.paint.setAttribute("aria-selected", String(which === "paint"));
    };
    tabs.viewer.addEventListener("click", () => show("viewer"));
    tabs.paint.addEventListener("click", () => show("paint"));
    show("paint");
    const hooks = mountPaint(
      section,
      {
        assignmentId: assignment_id,
        csrfToken: config.csrfToken,
        editable: config.editable,
        provenance: !!config.labelsProvenance,
        voxelSizeUm: config.geometry.voxel_size_um,
        origin: config.box.start,
        planar: !!config.planar,
      },
      (version) => {
        // Points and labels share one version sequence: the points' next save builds on it.
        ledger.version = Math.max(ledger.version, version);
        showSaveState();
        void loadRevisions();
        showSavedLabels(version);
      },
      (count) => {
        paintedObjects = count;
        showCount();
      },
    );
    hooks.ready
      .then(() => {
        assistPanel = mountAssist(section, hooks, assignment_id, config.editable);
      })
      .catch((e: unknown) => banner.show(e));
    return hooks;
  }

  const ready = (async (): Promise<LoadedView> => {
    const [body, painted] = await Promise.all([fetchVersion(), paintedLayers()]);
    ledger.reset(body.current_version, body.annotations);
    setMeta(body.annotations);
    const width = frame.clientWidth || 800;
    const height = frame.clientHeight || 600;
    const layout = (baseState["layout"] as string | undefined) ?? "4panel";
    const panel = layout === "4panel" ? Math.min(width, height) / 2 : Math.min(width, height);
    const camera = cameraForTask(config.box, axes, panel);
    const shape =
      config.geometry.shape ?? config.box.start.map((s, i) => s + (config.box.size[i] ?? 0));
    const state: ViewerStateJson = {
      ...baseState,
      ...camera,
      // The 3D panel's sections without their grey background: only the volume is drawn there.
      hideCrossSectionBackground3D: true,
      layers: [
        // The image without its volume outline: it would hide the task box's edges on the
        // volume's faces (the first boxes of a tiling all have some).
        ...(baseState.layers ?? []).map(withoutBounds),
        dimmingLayer(config.box, shape, axes),
        taskBoxLayer(config.box, axes),
        earlierLayer(),
        ...painted,
        // A painted task paints in its Paint tab: its Neuroglancer tab opens for looking (no
        // point tool armed, the layer panel closed; the tool buttons still arm one).
        annotationsLayer(body.annotations, axes, schema, config.editable && !config.painted),
      ] as NonNullable<ViewerStateJson["layers"]>,
      selectedLayer: { layer: ANNOTATIONS, visible: !config.painted },
    };
    loading = true;
    let view: LoadedView;
    try {
      view = await loadState(frame, state, TIMEOUTS);
    } finally {
      loading = false;
    }
    const src = sourceOf(view.viewer, ANNOTATIONS);
    if (!src) throw new Error("The annotations layer was not created.");
    src.readonly = !config.editable;
    src.childAdded.add((a) => {
      adopt(a);
      changed(a.id);
    });
    src.childUpdated.add((a) => changed(a.id));
    src.childCommitted.add((id) => {
      changed(id);
      showCount();
    });
    src.childDeleted.add((id) => {
      changed(id);
      meta.delete(id);
      showCount();
    });
    view.viewer.state.changed.add(activity);
    layerOf(ANNOTATIONS)?.layer?.tool?.changed.add(showTool);
    showTool();
    frame.contentWindow?.addEventListener("keydown", onKey, true);
    if (view.errors.length) {
      banner.show(
        new Error(view.errors.map((e) => `${e.name}: ${e.errors.join("; ")}`).join(", ")),
      );
    }
    showCount();
    showSaveState();
    timings.readyMs = performance.now();
    void loadRevisions();
    return view;
  })().catch((error: unknown) => {
    banner.show(error);
    saveStatus.textContent = errorMessage(error);
    throw error;
  });

  return {
    ready,
    config,
    viewer: () => viewerIn(frame),
    version: () => ledger.version,
    count: () => annotations().length,
    dirty: () => saver.dirty.size,
    currentClass: () => currentClass,
    errors: banner.errors,
    settled: async () => {
      await ready;
      await saver.settled();
      await work.settled();
      showSaveState();
    },
    timings,
    annotations,
    tool: () => layerOf(ANNOTATIONS)?.layer?.tool?.toJSON(),
    shownVersion: () => shownVersion,
    showLabelsVersion: async (sources) => {
      await showLabelsVersion((await ready).viewer, sources);
    },
    paint,
    assist: () => assistPanel,
  };
}

export type { Op };
