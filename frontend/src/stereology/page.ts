// The disector counting page (webapp/stereology/templates/stereology/study.html): one
// Neuroglancer xy panel on the pair's reference section; Tab flips to the look-up section at the
// same x, y and back. M marks the object under the mouse (the view's centre when the mouse is
// off the panel) through the API, which says whether it matched a detection; the mark appears as
// a point in the "detected" or "missed" annotation layer and in the panel's list. A mark records
// its pair as counted (services.mark_add: a pair with marks has been looked at), N records it too
// (with no marks: Q- = 0) and goes to the next, P goes back. The estimate panel reloads after each change.

import { api, setCsrfToken } from "../lib/api";
import { ErrorBanner, SerialWork } from "../lib/page_work";
import { byId, el, jsonScript } from "../lib/dom";
import {
  type LoadedView,
  type Viewer,
  type ViewerStateJson,
  loadState,
  viewerIn,
} from "../lib/neuroglancer";
import {
  type DisectorAction,
  type EstimateRow,
  type MarkLike,
  MATCHED_LAYER,
  type PairSpec,
  type Side,
  UNMATCHED_LAYER,
  annotationLayers,
  disectorAction,
  estimateRows,
  markAnnotation,
  markLabel,
  positionFor,
  sectionFitScale,
  sectionZ,
  shownSection,
  voxelOf,
} from "./disector";

export interface DisectorConfig {
  studyId: number;
  layer: string;
  csrfToken: string;
  canMark: boolean;
  study: { id: number; n_pairs: number; h_um: number; shape: number[]; pairs: PairSpec[] };
  marks: MarkLike[];
  countedPairs: number[];
}

interface Estimate {
  detections: number;
  reviewers: EstimateRow[];
  pooled: EstimateRow | null;
}

/** The parts of Neuroglancer the page uses beyond lib/neuroglancer's bridge. */
interface LocalAnnotations {
  add(annotation: unknown, commit?: boolean): unknown;
  delete(reference: unknown): void;
  getReference(id: string): unknown;
}
interface MouseState {
  active: boolean;
  position: Float32Array;
}

function localAnnotations(viewer: Viewer, name: string): LocalAnnotations | undefined {
  const layer = viewer.layerManager.getLayerByName(name)?.layer as
    { localAnnotations?: LocalAnnotations } | null | undefined;
  return layer?.localAnnotations;
}

function mousePosition(viewer: Viewer): number[] | undefined {
  const mouse = (viewer as unknown as { mouseState?: MouseState }).mouseState;
  if (!mouse?.active || mouse.position.length < 3) return undefined;
  const position = Array.from(mouse.position);
  return position.every(Number.isFinite) ? position : undefined;
}

/** `window.annotome` on the disector page (tests read it). */
export interface DisectorHooks {
  ready: Promise<LoadedView>;
  config: DisectorConfig;
  viewer(): Viewer | undefined;
  pair(): number;
  side(): Side;
  marks(): MarkLike[];
  estimate(): Estimate | undefined;
  errors: string[];
  perform(action: DisectorAction): Promise<void>;
  /** Resolves once every API call sent so far has answered. */
  settled(): Promise<void>;
}

export const TIMEOUTS = { viewerMs: 60_000, layersMs: 30_000 };

/** The annotation type Neuroglancer 2.41 numbers points with (AnnotationType.POINT). */
const POINT = 0;

export function mountDisectorPage(doc: Document = document): DisectorHooks {
  const baseState = jsonScript<ViewerStateJson>("viewer-state", doc);
  const config = jsonScript<DisectorConfig>("disector-config", doc);
  setCsrfToken(config.csrfToken);
  const study_id = config.studyId;
  const pairs = config.study.pairs;
  const frame = byId("neuroglancer", HTMLIFrameElement, doc);
  const banner = new ErrorBanner(byId("disector-error", HTMLElement, doc));
  const errors = banner.errors;
  const where = byId("disector-where", HTMLElement, doc);
  const pairLabel = byId("disector-pair", HTMLElement, doc);
  const sectionLabel = byId("disector-section", HTMLElement, doc);
  const status = byId("disector-status", HTMLElement, doc);
  const list = byId("disector-marks", HTMLOListElement, doc);
  const count = byId("disector-count", HTMLElement, doc);
  const flipButton = byId("disector-flip", HTMLButtonElement, doc);
  const counted = byId("disector-counted", HTMLElement, doc);
  const results = byId("disector-estimate", HTMLElement, doc);

  const marks: MarkLike[] = [...config.marks];
  const countedPairs = new Set<number>(config.countedPairs);
  let pairIndex = Math.max(
    0,
    pairs.findIndex((p) => !countedPairs.has(p.index)),
  );
  let side: Side = "reference";
  let estimate: Estimate | undefined;
  const writes = new SerialWork();

  function serial<T>(task: () => Promise<T>): Promise<T> {
    return writes.run(task);
  }

  function showError(error: unknown): void {
    banner.show(error);
  }

  function clearError(): void {
    banner.clear();
  }

  function pair(): PairSpec {
    return pairs[pairIndex] as PairSpec;
  }

  function render(): void {
    const p = pair();
    pairLabel.textContent = String(p.index + 1);
    const z = sectionZ(p, side);
    const um = side === "reference" ? p.reference_um : p.lookup_um;
    const beyond = side === "lookup" && !p.lookup_in_volume;
    sectionLabel.textContent =
      `${side === "reference" ? "Reference" : "Look-up"} section z = ${z} (${um.toFixed(1)} µm)` +
      (beyond ? ": beyond the volume, shows nothing (every object of the reference counts)" : "") +
      (countedPairs.has(p.index) ? " · counted" : "");
    sectionLabel.dataset["side"] = side;
    where.textContent = `Pair ${p.index + 1} / ${pairs.length} · ${
      side === "reference" ? "REFERENCE" : "LOOK-UP"
    } · ${countedPairs.size} counted`;
    where.dataset["side"] = side;
    flipButton.lastChild!.textContent =
      side === "reference" ? " Flip to look-up" : " Flip to reference";
    const here = marks.filter((m) => m.pair === p.index);
    count.textContent = String(here.length);
    list.replaceChildren(
      ...here.map((m) =>
        el(
          "li",
          { className: m.matched ? "mark-matched" : "mark-unmatched", title: `mark ${m.id}` },
          [
            el("span", { className: "mark-label", textContent: markLabel(m) }),
            ` at x ${Math.round(m.x)}, y ${Math.round(m.y)}`,
          ],
        ),
      ),
    );
  }

  function renderEstimate(): void {
    counted.textContent = `You have counted ${countedPairs.size} of ${pairs.length} pairs; detections in the region: ${estimate?.detections ?? "–"}.`;
    if (!estimate?.pooled) {
      results.replaceChildren(el("p", { textContent: "No pair counted yet." }));
      return;
    }
    const table = (title: string, row: EstimateRow): HTMLElement =>
      el("div", { className: "estimate-block" }, [
        el("h3", { textContent: title }),
        el(
          "dl",
          { className: "queue-measurements" },
          estimateRows(row).flatMap(([label, value]) => [
            el("dt", { textContent: label }),
            el("dd", { textContent: value }),
          ]),
        ),
      ]);
    results.replaceChildren(
      table("Pooled", estimate.pooled),
      ...estimate.reviewers.map((row) => table(`Reviewer ${row.reviewer ?? ""}`, row)),
      el("p", {
        className: "disector-help",
        textContent: "95 % intervals. N: objects in the region from the counts; D: detections.",
      }),
    );
    results.dataset["qMinus"] = String(estimate.pooled.q_minus);
  }

  async function loadEstimate(): Promise<void> {
    try {
      estimate = (await api.get("/api/v1/stereology/studies/{study_id}/estimate/", {
        path: { study_id },
      })) as Estimate;
      renderEstimate();
    } catch (error) {
      showError(error);
    }
  }

  function moveTo(keepXy: boolean): void {
    const viewer = viewerIn(frame);
    if (!viewer) return;
    const current = viewer.state.toJSON().position as number[] | undefined;
    viewer.state.restoreState({
      position: positionFor(pair(), side, config.study.shape, keepXy ? current : undefined),
    });
  }

  function addAnnotation(mark: MarkLike): void {
    const viewer = viewerIn(frame);
    if (!viewer) return;
    const target = localAnnotations(viewer, mark.matched ? MATCHED_LAYER : UNMATCHED_LAYER);
    target?.add({
      type: POINT,
      id: `mark-${mark.id}`,
      point: new Float32Array(markAnnotation(mark).point),
      description: markLabel(mark),
      properties: [],
      relatedSegments: [[]],
    });
  }

  function removeAnnotation(mark: MarkLike): void {
    const viewer = viewerIn(frame);
    if (!viewer) return;
    const source = localAnnotations(viewer, mark.matched ? MATCHED_LAYER : UNMATCHED_LAYER);
    source?.delete(source.getReference(`mark-${mark.id}`));
  }

  function mark(): Promise<void> {
    const viewer = viewerIn(frame);
    if (!viewer) return Promise.resolve();
    if (!config.canMark) {
      showError(new Error("Only the campaign's reviewers and experts mark objects."));
      return Promise.resolve();
    }
    if (side !== "reference") {
      showError(new Error("Marks go on the reference section: flip back (Tab) to mark."));
      return Promise.resolve();
    }
    const position =
      mousePosition(viewer) ?? (viewer.state.toJSON().position as number[] | undefined);
    if (!position) return Promise.resolve();
    const p = pair();
    const point = { ...voxelOf(position), z: p.reference };
    if (shownSection(position) !== p.reference) {
      showError(
        new Error(
          `The view left the reference section z = ${p.reference}; press N or P to come back.`,
        ),
      );
      return Promise.resolve();
    }
    return serial(async () => {
      try {
        const made = (await api.post("/api/v1/stereology/studies/{study_id}/marks/", {
          path: { study_id },
          body: { pair: p.index, ...point },
        })) as MarkLike;
        marks.push(made);
        countedPairs.add(p.index);
        addAnnotation(made);
        status.textContent = `Marked: ${markLabel(made)}.`;
        render();
        await loadEstimate();
      } catch (error) {
        showError(error);
      }
    });
  }

  function undo(): Promise<void> {
    const p = pair();
    const last = [...marks].reverse().find((m) => m.pair === p.index);
    if (!last) {
      showError(new Error("No mark of yours in this pair to remove."));
      return Promise.resolve();
    }
    return serial(async () => {
      try {
        await api.delete("/api/v1/stereology/studies/{study_id}/marks/{mark_id}/", {
          path: { study_id, mark_id: last.id },
        });
        marks.splice(marks.indexOf(last), 1);
        removeAnnotation(last);
        status.textContent = "Mark removed.";
        render();
        await loadEstimate();
      } catch (error) {
        showError(error);
      }
    });
  }

  function go(step: 1 | -1, countIt: boolean): Promise<void> {
    const p = pair();
    const target = Math.min(Math.max(pairIndex + step, 0), pairs.length - 1);
    const moved = target !== pairIndex;
    pairIndex = target;
    side = "reference";
    moveTo(true);
    render();
    if (!countIt || !config.canMark) return Promise.resolve();
    return serial(async () => {
      try {
        const answer = await api.post(
          "/api/v1/stereology/studies/{study_id}/pairs/{pair}/counted/",
          { path: { study_id, pair: p.index } },
        );
        countedPairs.clear();
        for (const index of answer.counted_pairs) countedPairs.add(index);
        status.textContent = moved
          ? `Pair ${p.index + 1} counted.`
          : `Pair ${p.index + 1} counted: it is the last pair.`;
        render();
        await loadEstimate();
      } catch (error) {
        showError(error);
      }
    });
  }

  function flip(): Promise<void> {
    side = side === "reference" ? "lookup" : "reference";
    moveTo(true);
    render();
    return Promise.resolve();
  }

  function perform(action: DisectorAction): Promise<void> {
    clearError();
    switch (action.kind) {
      case "mark":
        return mark();
      case "flip":
        return flip();
      case "next":
        return go(1, true);
      case "previous":
        return go(-1, false);
      case "undo":
        return undo();
    }
  }

  function onKey(event: KeyboardEvent): void {
    const target = event.target as HTMLElement | null;
    if (target && (target.isContentEditable || /^(INPUT|TEXTAREA|SELECT)$/.test(target.tagName))) {
      return;
    }
    if (event.repeat) return;
    const action = disectorAction(event);
    if (!action) return;
    event.preventDefault();
    event.stopPropagation();
    void perform(action);
  }

  doc.addEventListener("keydown", onKey, true);
  const buttons: [string, DisectorAction][] = [
    ["disector-flip", { kind: "flip" }],
    ["disector-mark", { kind: "mark" }],
    ["disector-done", { kind: "next" }],
    ["disector-prev", { kind: "previous" }],
  ];
  for (const [id, action] of buttons) {
    byId(id, HTMLButtonElement, doc).addEventListener("click", () => void perform(action));
  }

  const first = pair();
  const state: ViewerStateJson = {
    ...baseState,
    layout: "xy",
    position: positionFor(first, "reference", config.study.shape),
    // The whole section in the one xy panel (about 650 pixels high).
    crossSectionScale: sectionFitScale(config.study.shape),
    layers: [...(baseState.layers ?? []), ...annotationLayers(marks)] as NonNullable<
      ViewerStateJson["layers"]
    >,
    ...(baseState["selectedLayer"]
      ? { selectedLayer: { layer: config.layer, visible: false } }
      : {}),
  };
  render();
  void loadEstimate();
  const ready = loadState(frame, state, TIMEOUTS).then(
    (view) => {
      frame.contentWindow?.addEventListener("keydown", onKey, true);
      if (view.errors.length) {
        showError(
          new Error(view.errors.map((e) => `${e.name}: ${e.errors.join("; ")}`).join(", ")),
        );
      }
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
    pair: () => pair().index,
    side: () => side,
    marks: () => [...marks],
    estimate: () => estimate,
    errors,
    perform,
    settled: async () => {
      await writes.settled();
    },
  };
}
