// The review page (webapp/annotation/templates/annotation/review.html): a reviewer's submitted
// tasks one at a time in the embedded Neuroglancer. The task's annotations are a read-only
// annotation layer named by its annotator; with N >= 2 the other annotators' work on the same
// box is one more layer each (named by annotator), and the box's agreement is in the panel.
// In a painted campaign the panel shows the painted agreement instead (per pair object P/R/F1,
// voxel Dice, mean matched IoU) and the objects left out of the consensus, and the consensus
// volume is a segmentation layer. The reviewed assignment's painted objects are listed with
// their morphometrics (labels/objects/: volume, surface, sphericity, provenance), each with a
// "show" that moves Neuroglancer to it, and drawn as volume against sphericity.
// A approves, R rejects (a comment is required), N asks for the next task; after a decision
// the next task is loaded in place (no reload of the page or the viewer).

import { api, listItems, setCsrfToken, type Schemas } from "../lib/api";
import { byId, el, jsonScript } from "../lib/dom";
import {
  type LoadedView,
  type Viewer,
  type ViewerStateJson,
  loadState,
  viewerIn,
  waitForLayers,
} from "../lib/neuroglancer";
import { ErrorBanner, SerialWork } from "../lib/page_work";
import { waitFor } from "../lib/wait";
import { type Scatter, scatterChart } from "../plots/scatter";
import { revisionText } from "../annotation_task/format";
import { labelsLayer, labelsSegments } from "../annotation_task/labels_layer";
import {
  OTHER_COLOURS,
  REVIEWED_COLOUR,
  type ReviewAction,
  type StoredAnnotation,
  annotationLayer,
  boxLayer,
  boxPointGlobal,
  cameraForTaskBox,
  consensusLayer,
  dimensionNames,
  figure,
  labelPairCells,
  reviewActionForKey,
  setAnnotations,
  unmatchedText,
} from "./layers";
import {
  type LabelObject,
  PROVENANCE_COLOURS,
  centroidVoxel,
  objectCells,
  objectsSummary,
  provenanceCounts,
  scatterPoints,
} from "./morphometrics";
import { formatDuration, formatWhen } from "../lib/format";

export type Assignment = Schemas["Assignment"];
export type BoxAgreement = Schemas["BoxAgreement"];
export type Revision = Schemas["Revision"];
export type LabelAgreement = Schemas["BoxLabelAgreement"];
export type LabelConsensus = Schemas["LabelConsensus"];
export type LabelObjects = Schemas["LabelObjects"];

/** The page's `review-config` JSON (webapp/annotation/review_views.py). */
export interface ReviewConfig {
  campaignId: number;
  redundancy: number;
  csrfToken: string;
  toleranceUm: number;
  /** Objects are painted: each annotator's labels show as a segmentation layer, the panel
   * shows the label agreement and the consensus volume. */
  painted: boolean;
}

/** One annotation layer the page made for the current task. */
export interface ShownLayer {
  name: string;
  annotator: string;
  assignment: number;
  state: string;
  count: number;
  reviewed: boolean;
}

/** `window.annotome` on the review page; the browser test reads it. */
export interface ReviewHooks {
  ready: Promise<LoadedView>;
  config: ReviewConfig;
  viewer(): Viewer | undefined;
  current(): Assignment | undefined;
  layers(): ShownLayer[];
  agreement(): BoxAgreement | undefined;
  /** A painted campaign's label agreement and consensus of the current box. */
  labelAgreement(): LabelAgreement | undefined;
  consensus(): LabelConsensus | undefined;
  /** A painted campaign's reviewed assignment's objects (labels/objects/). */
  objects(): LabelObjects | undefined;
  /** The objects' scatter plot, once drawn. */
  objectsPlot(): Scatter | undefined;
  /** Tasks loaded so far (the first is 1); a decision loads the next. */
  loads(): number;
  decided(): number;
  errors: string[];
  /** Resolves when every action asked for so far has finished. */
  settled(): Promise<unknown>;
  perform(action: ReviewAction): Promise<void>;
}

export const TIMEOUTS = { viewerMs: 60_000, layersMs: 30_000 };
const BOX_LAYER = "task box";
const CONSENSUS_LAYER = "consensus";
const PANEL_PIXELS = 300;

export function mountReviewPage(doc: Document = document): ReviewHooks {
  const config = jsonScript<ReviewConfig>("review-config", doc);
  const baseState = jsonScript<ViewerStateJson>("viewer-state", doc);
  setCsrfToken(config.csrfToken);
  const campaign_id = config.campaignId;
  const dims = dimensionNames(baseState);
  const dimensions = baseState["dimensions"] as Record<string, unknown> | undefined;
  const frame = byId("neuroglancer", HTMLIFrameElement, doc);
  const banner = new ErrorBanner(byId("review-error", HTMLElement, doc));
  const status = byId("review-status", HTMLElement, doc);
  const comment = byId("review-comment", HTMLTextAreaElement, doc);
  const work = new SerialWork();

  let current: Assignment | undefined;
  let shown: ShownLayer[] = [];
  let agreement: BoxAgreement | undefined;
  let labelAgreement: LabelAgreement | undefined;
  let consensus: LabelConsensus | undefined;
  let objects: LabelObjects | undefined;
  let objectsPlot: Scatter | undefined;
  let loads = 0;
  let decided = 0;

  function showError(error: unknown): void {
    banner.show(error);
  }

  function setStatus(text: string): void {
    status.textContent = text;
  }

  function renderCounters(): void {
    byId("review-counters", HTMLElement, doc).textContent =
      `${decided} decided in this session` + (current ? "" : " · nothing waits");
  }

  /** A layer's name: the annotator's, or the slot's when the account is gone. */
  function layerName(a: Assignment): string {
    return a.annotator ?? `slot ${a.slot + 1}`;
  }

  function renderFacts(a: Assignment): void {
    byId("review-box", HTMLElement, doc).textContent = a.box.name;
    const facts: [string, string][] = [
      ["Annotator", a.annotator ?? "–"],
      ["Version", String(a.version)],
      // A painted campaign's work is its painted objects; points are an extra there.
      ...(config.painted
        ? ([
            ["Painted objects", objects ? String(objects.objects.length) : "–"],
            ["Points", String(a.count)],
          ] as [string, string][])
        : ([["Annotations", String(a.count)]] as [string, string][])),
      ["Submitted", a.submitted ? formatWhen(a.submitted) : "–"],
      ["Time on task", formatDuration(a.active_seconds)],
      ["Box (z y x)", `${a.box.start.join(" ")} + ${a.box.size.join(" ")} voxels`],
    ];
    if (a.review_comment) facts.push(["Last review", a.review_comment]);
    byId("review-facts", HTMLElement, doc).replaceChildren(
      ...facts.flatMap(([k, v]) => [el("dt", { textContent: k }), el("dd", { textContent: v })]),
    );
    byId("review-layers", HTMLElement, doc).replaceChildren(
      ...shown.map((layer) =>
        el("li", {
          textContent:
            `${layer.name}: ${layer.count} ${config.painted ? "point(s)" : "annotation(s)"}, ${layer.state}` +
            (layer.reviewed ? " (under review)" : ""),
        }),
      ),
    );
  }

  function renderAgreement(): void {
    const section = byId("review-agreement-section", HTMLElement, doc);
    const body = byId("review-agreement", HTMLTableElement, doc).tBodies[0];
    section.hidden = !agreement || agreement.pairs.length === 0;
    if (!agreement || !body) return;
    byId("review-tolerance", HTMLElement, doc).textContent =
      `(points within ${figure(agreement.tolerance_um)} um; mean F1 ${figure(agreement.mean_f1)})`;
    body.replaceChildren(
      ...agreement.pairs.map((p) =>
        el("tr", {}, [
          el("td", { textContent: p.reference }),
          el("td", { textContent: p.other }),
          el("td", { textContent: `${p.matched} of ${p.n_reference} / ${p.n_other}` }),
          el("td", { textContent: figure(p.precision) }),
          el("td", { textContent: figure(p.recall) }),
          el("td", { textContent: figure(p.f1) }),
        ]),
      ),
    );
  }

  function renderPainted(): void {
    const section = byId("review-painted-section", HTMLElement, doc);
    const body = byId("review-painted", HTMLTableElement, doc).tBodies[0];
    section.hidden = !labelAgreement || labelAgreement.pairs.length === 0;
    if (!labelAgreement || !body) return;
    byId("review-painted-summary", HTMLElement, doc).textContent =
      `(objects matched at IoU ≥ ${labelAgreement.iou_threshold}; mean F1 ` +
      `${figure(labelAgreement.mean_f1)}, mean Dice ${figure(labelAgreement.mean_dice)})`;
    body.replaceChildren(
      ...labelAgreement.pairs.map((p) =>
        el(
          "tr",
          {},
          labelPairCells(p).map((text) => el("td", { textContent: text })),
        ),
      ),
    );
    const note = byId("review-consensus", HTMLElement, doc);
    const list = byId("review-unmatched", HTMLElement, doc);
    if (!consensus) {
      note.textContent = "";
      list.replaceChildren();
      return;
    }
    note.textContent =
      `Consensus (quorum ${consensus.quorum} of ${consensus.annotators.length}): ` +
      `${consensus.objects.length} object(s), shown as the layer “${CONSENSUS_LAYER}”; ` +
      `${consensus.unmatched.length} left out` +
      (consensus.pending ? ` (${consensus.pending} volume(s) not yet approved)` : "") +
      (consensus.unmatched.length ? ":" : ".");
    const start = current?.box.start ?? [0, 0, 0];
    list.replaceChildren(
      ...consensus.unmatched.map((o) => {
        const go = el("button", {
          type: "button",
          className: "link-button unmatched-show",
          textContent: "show",
        });
        go.addEventListener("click", () => {
          // Only the position changes: the layers and the zoom stay as they are.
          viewerIn(frame)?.state.restoreState({
            position: boxPointGlobal(start, o.centroid, dims),
          });
        });
        const item = el("li", {}, [el("span", { textContent: unmatchedText(o) }), " ", go]);
        item.dataset["annotator"] = o.annotator;
        item.dataset["id"] = String(o.id);
        return item;
      }),
    );
  }

  /** Moves Neuroglancer to an image voxel (z, y, x); the layers and the zoom stay. */
  function goTo(voxel: readonly number[]): void {
    viewerIn(frame)?.state.restoreState({ position: boxPointGlobal([0, 0, 0], voxel, dims) });
  }

  function renderObjects(): void {
    const section = byId("review-objects-section", HTMLElement, doc);
    const body = byId("review-objects", HTMLTableElement, doc).tBodies[0];
    section.hidden = !objects;
    if (!objects || !body) return;
    const list: readonly LabelObject[] = objects.objects;
    byId("review-objects-summary", HTMLElement, doc).textContent =
      `(${objectsSummary(list, objects.version)})`;
    body.replaceChildren(
      ...list.map((o) => {
        const go = el("button", {
          type: "button",
          className: "link-button object-show",
          textContent: "show",
        });
        go.addEventListener("click", () => goTo(centroidVoxel(o)));
        const row = el("tr", {}, [
          ...objectCells(o).map((text) => el("td", { textContent: text })),
          el("td", {}, [go]),
        ]);
        row.dataset["id"] = String(o.segment_id);
        return row;
      }),
    );
    byId("review-objects-legend", HTMLElement, doc).replaceChildren(
      ...provenanceCounts(list).map(([p, n]) => {
        const swatch = el("span", { className: "legend-swatch" });
        swatch.style.background = PROVENANCE_COLOURS[p];
        return el("li", {}, [swatch, `${p} (${n})`]);
      }),
    );
    // Drawn once the section is shown, so the plot takes the panel's width.
    objectsPlot ??= scatterChart(byId("review-objects-plot", HTMLElement, doc), {
      xLabel: "Volume (µm³, log)",
      yLabel: "Sphericity",
      height: 180,
    });
    objectsPlot.update(scatterPoints(list));
  }

  function renderHistory(revisions: readonly Revision[]): void {
    byId("review-history", HTMLElement, doc).replaceChildren(
      ...revisions.map((r) =>
        el("li", {
          textContent: `v${r.number} ${formatWhen(r.created)} ${r.author ?? "?"}: ${revisionText(r)}`,
        }),
      ),
    );
  }

  /** An assignment's current labels as a segmentation layer "<name> · painted". */
  async function paintedLayerOf(
    assignment: number,
    name: string,
  ): Promise<{ name: string; [key: string]: unknown }> {
    const labels = await api.get("/api/v1/annotation/assignments/{assignment_id}/labels/", {
      path: { assignment_id: assignment },
    });
    const sources = labels.neuroglancer_sources;
    return labelsLayer(sources, `${name} · painted`, await labelsSegments(sources));
  }

  async function annotationsOf(assignment: number): Promise<StoredAnnotation[]> {
    const state = await api.get("/api/v1/annotation/assignments/{assignment_id}/annotations/", {
      path: { assignment_id: assignment },
    });
    return state.annotations;
  }

  /** A painted box's agreement and consensus: the consensus first (it reads and matches the
   * volumes once and leaves the agreement in the server's cache), then the agreement. */
  async function paintedReport(box_id: number): Promise<[LabelAgreement, LabelConsensus]> {
    const path = { campaign_id, box_id };
    const found = await api.get(
      "/api/v1/annotation/campaigns/{campaign_id}/boxes/{box_id}/label-consensus/",
      { path },
    );
    const figures = await api.get(
      "/api/v1/annotation/campaigns/{campaign_id}/boxes/{box_id}/label-agreement/",
      { path },
    );
    return [figures, found];
  }

  /** Draws the task: the box, the reviewed layer, the others' layers; the camera at the box. */
  async function show(a: Assignment): Promise<void> {
    const viewer = await ready;
    const box_id = a.box.id;
    const siblings = listItems(
      await api.get("/api/v1/annotation/campaigns/{campaign_id}/assignments/", {
        path: { campaign_id },
        query: { box: box_id },
      }),
    ).filter((s) => s.id !== a.id && s.annotator && s.version > 0);
    const compared = config.redundancy >= 2;
    const [paintedLayers, mine, others, revisions, boxAgreement, paintedFigures, measured] =
      await Promise.all([
        config.painted
          ? Promise.all([a, ...siblings].map((s) => paintedLayerOf(s.id, layerName(s))))
          : Promise.resolve([]),
        annotationsOf(a.id),
        Promise.all(siblings.map((s) => annotationsOf(s.id))),
        api.get("/api/v1/annotation/assignments/{assignment_id}/revisions/", {
          path: { assignment_id: a.id },
        }),
        compared && !config.painted
          ? api.get("/api/v1/annotation/campaigns/{campaign_id}/boxes/{box_id}/agreement/", {
              path: { campaign_id, box_id },
            })
          : Promise.resolve(undefined),
        compared && config.painted ? paintedReport(box_id) : Promise.resolve(undefined),
        config.painted
          ? api.get("/api/v1/annotation/assignments/{assignment_id}/labels/objects/", {
              path: { assignment_id: a.id },
            })
          : Promise.resolve(undefined),
      ]);
    const [boxLabels, boxConsensus] = paintedFigures ?? [undefined, undefined];
    const consensusSource = boxConsensus?.neuroglancer_source;
    const segmentation = consensusSource
      ? [
          consensusLayer(
            consensusSource,
            boxConsensus.objects.map((o) => o.id),
            CONSENSUS_LAYER,
          ),
        ]
      : [];
    const layers = [
      boxLayer(BOX_LAYER, a.box.start, a.box.size, dims, dimensions),
      annotationLayer(layerName(a), REVIEWED_COLOUR, mine, dims, dimensions),
      ...siblings.map((s, k) =>
        annotationLayer(
          layerName(s),
          OTHER_COLOURS[k % OTHER_COLOURS.length] ?? "#ffffff",
          others[k] ?? [],
          dims,
          dimensions,
        ),
      ),
    ];
    shown = [
      {
        name: layerName(a),
        annotator: layerName(a),
        assignment: a.id,
        state: a.state,
        count: mine.length,
        reviewed: true,
      },
      ...siblings.map((s, k) => ({
        name: layerName(s),
        annotator: layerName(s),
        assignment: s.id,
        state: s.state,
        count: others[k]?.length ?? 0,
        reviewed: false,
      })),
    ];
    const camera = cameraForTaskBox(a.box.start, a.box.size, dims, PANEL_PIXELS);
    // The dataset's whole view plus the task's layers (the image layers are kept as they are).
    viewer.viewer.state.restoreState({
      ...baseState,
      layers: [...(baseState.layers ?? []), ...paintedLayers, ...layers, ...segmentation],
      position: camera.position,
      crossSectionScale: camera.crossSectionScale,
      projectionScale: camera.projectionScale,
      selectedLayer: { layer: a.annotator, visible: false },
    });
    await waitForLayers(
      viewer.viewer,
      [...paintedLayers, ...layers, ...segmentation].map((l) => l.name),
      TIMEOUTS.layersMs,
    );
    // Neuroglancer makes a local annotation layer's source after the state is restored; the
    // annotations are written into it then (as the proofreading queue does its points).
    for (const layer of layers) {
      await waitFor(
        () => setAnnotations(viewer.viewer, layer.name, layer.annotations),
        TIMEOUTS.layersMs,
        `the annotation layer ${layer.name}`,
      );
    }
    current = a;
    agreement = boxAgreement;
    labelAgreement = boxLabels;
    consensus = boxConsensus;
    objects = measured;
    loads += 1;
    byId("review-current", HTMLElement, doc).hidden = false;
    byId("review-empty", HTMLElement, doc).hidden = true;
    renderFacts(a);
    renderAgreement();
    renderPainted();
    renderObjects();
    renderHistory(revisions);
    renderCounters();
  }

  async function showNothing(): Promise<void> {
    const viewer = await ready;
    // The dataset's whole view, restored in two steps: restored over the layers already there,
    // Neuroglancer rebuilt the global dimensions from the reloaded image layer, in its z y x
    // order (panels "z y"); restored over none, they keep the state's x y z, as on first load.
    viewer.viewer.state.restoreState({ ...baseState, layers: [] });
    viewer.viewer.state.restoreState(baseState);
    current = undefined;
    shown = [];
    agreement = undefined;
    labelAgreement = undefined;
    consensus = undefined;
    objects = undefined;
    loads += 1;
    byId("review-current", HTMLElement, doc).hidden = true;
    const empty = byId("review-empty", HTMLElement, doc);
    empty.hidden = false;
    renderHistory([]);
    renderCounters();
    // No one reviews their own work: say so when only the caller's own submissions wait.
    const own = await api.get("/api/v1/annotation/campaigns/{campaign_id}/assignments/", {
      path: { campaign_id },
      query: { state: "submitted", mine: true },
    });
    const note = empty.querySelector<HTMLElement>("[data-own]");
    if (note) {
      note.textContent = own.count
        ? ` ${own.count} submitted task(s) of yours wait for another reviewer: no one reviews their own work.`
        : "";
    }
  }

  async function loadNext(): Promise<void> {
    const next = await api.post("/api/v1/annotation/campaigns/{campaign_id}/review/next/", {
      path: { campaign_id },
    });
    if (next) await show(next);
    else await showNothing();
  }

  async function decide(kind: "approve" | "reject"): Promise<void> {
    const a = current;
    if (!a) {
      setStatus("No task to decide: press N to look for one.");
      return;
    }
    const text = comment.value.trim();
    if (kind === "reject" && !text) {
      setStatus("Say what to fix: a comment is required to reject (then press R again).");
      comment.focus();
      return;
    }
    const path = { assignment_id: a.id };
    if (kind === "approve") {
      await api.post("/api/v1/annotation/assignments/{assignment_id}/approve/", {
        path,
        body: { comment: text },
      });
    } else {
      await api.post("/api/v1/annotation/assignments/{assignment_id}/reject/", {
        path,
        body: { comment: text },
      });
    }
    decided += 1;
    comment.value = "";
    setStatus(
      `${kind === "approve" ? "Approved" : "Rejected"} ${a.annotator}'s box ${a.box.name}.`,
    );
    await loadNext();
  }

  function perform(action: ReviewAction): Promise<void> {
    return work.run(async () => {
      banner.clear();
      try {
        if (action === "next") {
          await loadNext();
          // Said again on every N, so a press on an empty queue visibly did something.
          if (!current)
            setStatus(`Nothing waits for review (looked at ${new Date().toLocaleTimeString()}).`);
        } else await decide(action);
      } catch (error) {
        showError(error);
      }
    });
  }

  function onKey(event: KeyboardEvent): void {
    const target = event.target as HTMLElement | null;
    if (target && (target.isContentEditable || /^(INPUT|TEXTAREA|SELECT)$/.test(target.tagName))) {
      if (event.key === "Escape") target.blur();
      return;
    }
    if (event.repeat) return;
    const action = reviewActionForKey(event);
    if (!action) return;
    event.preventDefault();
    event.stopPropagation();
    void perform(action);
  }

  doc.addEventListener("keydown", onKey, true);
  const buttons: [string, ReviewAction][] = [
    ["review-approve", "approve"],
    ["review-reject", "reject"],
    ["review-next", "next"],
  ];
  for (const [id, action] of buttons) {
    byId(id, HTMLButtonElement, doc).addEventListener("click", () => void perform(action));
  }

  const ready = loadState(frame, baseState, TIMEOUTS).then(
    (loaded) => {
      // Keys pressed while Neuroglancer has the focus reach the page too (same origin).
      frame.contentWindow?.addEventListener("keydown", onKey, true);
      if (loaded.errors.length) {
        showError(
          new Error(loaded.errors.map((e) => `${e.name}: ${e.errors.join("; ")}`).join(", ")),
        );
      }
      return loaded;
    },
    (error: unknown) => {
      showError(error);
      throw error;
    },
  );
  void perform("next");

  return {
    ready,
    config,
    viewer: () => viewerIn(frame),
    current: () => current,
    layers: () => shown,
    agreement: () => agreement,
    labelAgreement: () => labelAgreement,
    consensus: () => consensus,
    objects: () => objects,
    objectsPlot: () => objectsPlot,
    loads: () => loads,
    decided: () => decided,
    errors: banner.errors,
    settled: () => work.settled(),
    perform,
  };
}
