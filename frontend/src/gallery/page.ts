// The proofreading gallery page (webapp/proofreading/templates/proofreading/gallery.html): the
// reviewer's next items as a grid of server-rendered cards. A page is claimed through `next/`
// (count = page size: the same hand-out as the queue, so N reviewers per item still hold);
// the mouse selects (click, Shift+click range, Ctrl+click toggle, A for the page), a verdict key
// gives that verdict to every selected card in one `verdicts/bulk/` request (all or none), and
// decided cards keep their place, drawn in their verdict's colour. N asks for the next page:
// cards not decided yet stay (they are still the reviewer's), new ones fill the page.
// Alt+click on a card's slice tile (or M while pointing at one) drops a missed-object point on
// the voxel under the pointer (the card's geometry from `cards/page/`, card_geometry.ts); the
// campaign's points are counted, listed, and marked on the cards whose slices hold them.

import { api, setCsrfToken, type Schemas } from "../lib/api";
import { ErrorBanner, SerialWork } from "../lib/page_work";
import { byId, el, jsonScript } from "../lib/dom";
import { sizeMeasure } from "../lib/format";
import { type MissedPoint, MissedObjects } from "../lib/missed_objects";
import {
  type CardGeometry,
  cardPixelToVoxel,
  clientToCardPixel,
  voxelToCardPixels,
} from "./card_geometry";
import { type GalleryAction, PageSelection, galleryActionForKey } from "./selection";

export type Item = Schemas["Item"];

export interface GalleryVerdict {
  name: string;
  label: string;
  colour: string;
  key: string;
  kind: string;
}

/** The page's `gallery-config` JSON (webapp/proofreading/gallery_views.py). */
export interface GalleryConfig {
  campaignId: number;
  round: 1 | 2;
  pageSize: number;
  csrfToken: string;
  verdictSet: GalleryVerdict[];
  cardBase: string;
  datasetSlug: string;
  layerName: string;
  queueUrl: string;
  /** The campaign's missed-object points as CSV (optional: the list's download link). */
  missedCsvUrl?: string;
  /** The layer is a 2D image's: its objects have an area, no volume or sphericity. */
  planar?: boolean;
}

/** `window.annotome` on the gallery page; the browser test reads it. */
export interface GalleryHooks {
  ready: Promise<void>;
  config: GalleryConfig;
  items(): Item[];
  selected(): number[];
  decided(): Record<number, string>;
  /** Milliseconds from navigation to the first page's cards all loaded (null before). */
  firstPageMs(): number | null;
  /** Resolves once every API call sent so far has answered. */
  settled(): Promise<void>;
  errors: string[];
  perform(action: GalleryAction): Promise<void>;
  /** The card's geometry (null before its card came, or without one). */
  geometry(segmentId: number): CardGeometry | null;
  /** The campaign's missed-object points as last read from the API. */
  missedPoints(): MissedPoint[];
  reloadMissed(): Promise<void>;
  /** Removes the page's key listener (unit tests mount several pages in one document). */
  destroy(): void;
}

function short(value: number | null | undefined, digits = 3): string {
  if (value === null || value === undefined || !Number.isFinite(value)) return "–";
  return Number(value.toPrecision(digits)).toString();
}

/** The card's caption: the measurements a glance needs (a 2D object's: its area). */
export function cardMeasures(item: Item, planar = false): string {
  const d = item.detection;
  if (!d) return "removed from the layer";
  if (planar) return `${short(d.volume)} ${sizeMeasure(true).unit}`;
  return `${short(d.volume)} µm³ · sph ${short(d.sphericity, 2)}`;
}

export function cardUrl(config: GalleryConfig, segmentId: number): string {
  return `${config.cardBase}${segmentId}/card.png`;
}

export function queueLink(config: GalleryConfig, itemId: number): string {
  return `${config.queueUrl}?item=${itemId}`;
}

/** Resolves when the image has loaded or failed (a failed card does not hold the page). */
function imageSettled(img: HTMLImageElement): Promise<void> {
  if (img.complete) return Promise.resolve();
  return new Promise((resolve) => {
    img.addEventListener("load", () => resolve(), { once: true });
    img.addEventListener("error", () => resolve(), { once: true });
  });
}

export function mountGalleryPage(doc: Document = document): GalleryHooks {
  const config = jsonScript<GalleryConfig>("gallery-config", doc);
  setCsrfToken(config.csrfToken);
  const campaign_id = config.campaignId;
  const grid = byId("gallery-grid", HTMLOListElement, doc);
  const banner = new ErrorBanner(byId("gallery-error", HTMLElement, doc));
  const errors = banner.errors;
  const counters = byId("gallery-counters", HTMLElement, doc);
  const status = byId("gallery-status", HTMLElement, doc);
  const empty = byId("gallery-empty", HTMLElement, doc);
  const NO_SLICE = config.planar
    ? "Missed-object points go on a card's image: Alt+click there, or point there and press M."
    : "Missed-object points go on a card's slice tile (xy, zy or xz), inside the volume: " +
      "Alt+click there, or point there and press M.";
  const colours = new Map(config.verdictSet.map((v) => [v.name, v]));

  const selection = new PageSelection();
  let items: Item[] = [];
  const decided = new Map<number, string>();
  const cards = new Map<number, HTMLLIElement>();
  const geometries = new Map<number, CardGeometry>();
  /** The pointer over the grid (for M): the card and client position. */
  let hovered: { card: HTMLLIElement; x: number; y: number } | null = null;
  let decidedByMe: number | null = null;
  let pageNumber = 0;
  let firstPageMs: number | null = null;
  const writes = new SerialWork();
  let loading: Promise<void> | null = null;

  function showError(error: unknown): void {
    banner.show(error);
  }

  function clearError(): void {
    banner.clear();
  }

  function serial<T>(task: () => Promise<T>): Promise<T> {
    return writes.run(task);
  }

  /** Whether the campaign's missed-object points were read (the counter shows them then). */
  let missedRead = false;
  const missedObjects = new MissedObjects({
    campaignId: campaign_id,
    count: doc.getElementById("gallery-missed-count"),
    list: doc.getElementById("gallery-missed-list"),
    serial,
    status: (text) => (status.textContent = text),
    showError,
    onChange: () => {
      missedRead = true;
      drawMarkers();
      renderCounters();
    },
  });

  function renderCounters(): void {
    const mine = decidedByMe === null ? "" : ` · decided by me: ${decidedByMe}`;
    const here = items.length - selection.open;
    const missed = missedRead ? ` · missed objects: ${missedObjects.points.length}` : "";
    counters.textContent = `Page ${pageNumber} · ${here} of ${items.length} decided · selected: ${selection.selected().length}${mine}${missed}`;
  }

  /** The campaign's missed-object points on the cards whose slice tiles hold them. */
  function drawMarkers(): void {
    for (const item of items) {
      const layer = cards.get(item.id)?.querySelector<HTMLElement>(".card-markers");
      const geometry = geometries.get(item.segment_id);
      if (!layer) continue;
      const marks = geometry
        ? missedObjects.points.flatMap((point) =>
            voxelToCardPixels(geometry, point).map(({ px, py }) => {
              const mark = el("span", {
                className: "missed-marker",
                title: `Missed object ${point.id} (${point.created_by})`,
              });
              mark.dataset["missed"] = String(point.id);
              mark.style.left = `${(100 * px) / geometry.size}%`;
              mark.style.top = `${(100 * py) / geometry.size}%`;
              return mark;
            }),
          )
        : [];
      layer.replaceChildren(...marks);
    }
  }

  /** A missed-object point at a client position on a card's image (its slice tiles only). */
  function dropMissed(card: HTMLLIElement, clientX: number, clientY: number): Promise<void> {
    const segment = Number(card.dataset["segmentId"]);
    const geometry = geometries.get(segment);
    const img = card.querySelector("img");
    if (!geometry || !img) {
      status.textContent = `The card of segment ${segment} has not come (or has no geometry): no point dropped.`;
      return Promise.resolve();
    }
    const natural = {
      width: img.naturalWidth || geometry.size,
      height: img.naturalHeight || geometry.size,
    };
    const pixel = clientToCardPixel(img.getBoundingClientRect(), natural, clientX, clientY);
    const voxel = pixel && cardPixelToVoxel(geometry, pixel.px, pixel.py);
    if (!voxel) {
      status.textContent = NO_SLICE;
      return Promise.resolve();
    }
    return missedObjects.add(voxel, `on card #${segment}`).then(() => undefined);
  }

  function paint(): void {
    for (const item of items) {
      const card = cards.get(item.id);
      if (!card) continue;
      const verdict = decided.get(item.id);
      card.classList.toggle("selected", selection.has(item.id));
      card.classList.toggle("decided", verdict !== undefined);
      card.setAttribute("aria-selected", String(selection.has(item.id)));
      const badge = card.querySelector<HTMLElement>(".card-verdict");
      if (verdict !== undefined && badge) {
        const option = colours.get(verdict);
        card.style.setProperty("--verdict-colour", option?.colour ?? "#888");
        badge.textContent = option?.label ?? verdict;
        badge.hidden = false;
      }
    }
    renderCounters();
  }

  function cardFor(item: Item): HTMLLIElement {
    const img = el("img", {
      alt: `Card of segment ${item.segment_id}`,
      width: 194,
      height: 194,
      decoding: "async",
      draggable: false,
    });
    const open = el("a", { href: queueLink(config, item.id), textContent: "open" });
    open.addEventListener("click", (event) => event.stopPropagation());
    const badge = el("span", { className: "card-verdict" });
    badge.hidden = true;
    const picture = el("div", { className: "card-image" }, [
      img,
      el("div", { className: "card-markers" }),
    ]);
    const card = el("li", { className: "gallery-card", tabIndex: -1 }, [
      picture,
      badge,
      el("div", { className: "card-caption" }, [
        el("strong", { textContent: `#${item.segment_id}` }),
        el("span", { className: "card-measures", textContent: cardMeasures(item, config.planar) }),
        open,
      ]),
    ]);
    card.dataset["itemId"] = String(item.id);
    card.dataset["segmentId"] = String(item.segment_id);
    return card;
  }

  /** The page's cards in one request (cards/page/); one request per card if that fails. */
  async function showCards(nodes: HTMLLIElement[]): Promise<void> {
    const images = new Map(
      nodes.map((node) => [Number(node.dataset["segmentId"]), node.querySelector("img")!]),
    );
    if (images.size === 0) return;
    try {
      const page = await api.get(
        "/api/v1/datasets/{slug}/layers/{layer_name}/detections/cards/page/",
        {
          path: { slug: config.datasetSlug, layer_name: config.layerName },
          query: { segments: [...images.keys()].join(",") },
        },
      );
      for (const card of page.cards) {
        const img = images.get(card.segment_id);
        if (!img) continue;
        if (card.png) img.src = `data:image/png;base64,${card.png}`;
        else img.title = card.error;
        if (card.geometry) geometries.set(card.segment_id, card.geometry);
      }
      drawMarkers();
    } catch (error) {
      showError(error);
      for (const [segment, img] of images) img.src = cardUrl(config, segment);
    }
  }

  async function loadCounters(): Promise<void> {
    try {
      const mine = await api.get("/api/v1/proofreading/campaigns/{campaign_id}/items/", {
        path: { campaign_id },
        query: { decided_by_me: true, limit: 1 },
      });
      decidedByMe = mine.count;
      renderCounters();
    } catch (error) {
      showError(error);
    }
  }

  function loadPage(): Promise<void> {
    if (loading) return loading;
    loading = (async () => {
      try {
        const answer = await api.post("/api/v1/proofreading/campaigns/{campaign_id}/next/", {
          path: { campaign_id },
          body: { count: config.pageSize, round: config.round },
        });
        items = answer.map((handout) => handout.item);
        pageNumber += 1;
        decided.clear();
        cards.clear();
        geometries.clear();
        hovered = null;
        selection.reset(items.map((item) => item.id));
        const nodes = items.map((item) => {
          const card = cardFor(item);
          cards.set(item.id, card);
          return card;
        });
        grid.replaceChildren(...nodes);
        empty.hidden = items.length > 0;
        paint();
        await showCards(nodes);
        if (firstPageMs === null) {
          void Promise.all(nodes.map((node) => imageSettled(node.querySelector("img")!))).then(
            () => (firstPageMs ??= performance.now()),
          );
        }
      } catch (error) {
        showError(error);
      } finally {
        loading = null;
      }
    })();
    return loading;
  }

  function giveVerdict(verdict: string): Promise<void> {
    const chosen = selection.selected();
    if (chosen.length === 0) {
      status.textContent = "Select cards first (click, Shift+click, or A for the page).";
      return Promise.resolve();
    }
    for (const id of chosen) {
      decided.set(id, verdict);
      selection.lock(id);
    }
    paint();
    return serial(async () => {
      try {
        await api.post("/api/v1/proofreading/campaigns/{campaign_id}/verdicts/bulk/", {
          path: { campaign_id },
          body: { items: chosen, verdict, round: config.round },
        });
        if (decidedByMe !== null) decidedByMe += chosen.length;
        const label = colours.get(verdict)?.label ?? verdict;
        status.textContent = `${chosen.length} card${chosen.length === 1 ? "" : "s"}: ${label}.`;
        if (selection.open === 0) status.textContent += " Page done: N for the next page.";
        renderCounters();
      } catch (error) {
        // All or none: nothing was recorded, the cards are open again.
        for (const id of chosen) decided.delete(id);
        selection.reset(items.map((item) => item.id));
        for (const id of decided.keys()) selection.lock(id);
        for (const id of chosen) {
          cards.get(id)?.classList.remove("decided");
          const badge = cards.get(id)?.querySelector<HTMLElement>(".card-verdict");
          if (badge) badge.hidden = true;
        }
        paint();
        showError(error);
      }
    });
  }

  function perform(action: GalleryAction): Promise<void> {
    clearError();
    switch (action.kind) {
      case "verdict":
        return giveVerdict(action.verdict);
      case "selectPage":
        selection.togglePage();
        paint();
        return Promise.resolve();
      case "clear":
        selection.clear();
        paint();
        return Promise.resolve();
      case "next":
        return serial(() => loadPage());
      case "missed":
        if (!hovered) {
          status.textContent = NO_SLICE;
          return Promise.resolve();
        }
        return dropMissed(hovered.card, hovered.x, hovered.y);
    }
  }

  grid.addEventListener("click", (event) => {
    const card = (event.target as HTMLElement).closest<HTMLLIElement>(".gallery-card");
    if (!card) return;
    event.preventDefault();
    if (event.altKey) {
      // Alt+click drops a missed-object point; it never changes the selection.
      clearError();
      void dropMissed(card, event.clientX, event.clientY);
      return;
    }
    selection.click(Number(card.dataset["itemId"]), {
      shift: event.shiftKey,
      toggle: event.ctrlKey || event.metaKey,
    });
    paint();
  });
  grid.addEventListener("dblclick", (event) => {
    const card = (event.target as HTMLElement).closest<HTMLLIElement>(".gallery-card");
    if (!card || event.altKey || selection.isLocked(Number(card.dataset["itemId"]))) return;
    doc.defaultView?.location.assign(queueLink(config, Number(card.dataset["itemId"])));
  });
  grid.addEventListener("mousemove", (event) => {
    const card = (event.target as HTMLElement).closest<HTMLLIElement>(".gallery-card");
    hovered = card ? { card, x: event.clientX, y: event.clientY } : null;
  });
  grid.addEventListener("mouseleave", () => (hovered = null));
  function onKey(event: KeyboardEvent): void {
    const target = event.target as HTMLElement | null;
    if (target && (target.isContentEditable || /^(INPUT|TEXTAREA|SELECT)$/.test(target.tagName))) {
      return;
    }
    if (event.repeat) return;
    const action = galleryActionForKey(event, config.verdictSet);
    if (!action) return;
    event.preventDefault();
    event.stopPropagation();
    void perform(action);
  }
  // On the window, capturing: the page's keys are the gallery's before anything else's.
  const win = doc.defaultView;
  win?.addEventListener("keydown", onKey, true);
  for (const button of doc.querySelectorAll<HTMLButtonElement>("[data-verdict]")) {
    button.addEventListener("click", () => {
      void perform({ kind: "verdict", verdict: button.dataset["verdict"] ?? "" });
    });
  }
  const buttons: [string, GalleryAction][] = [
    ["gallery-select-page", { kind: "selectPage" }],
    ["gallery-clear", { kind: "clear" }],
    ["gallery-next", { kind: "next" }],
  ];
  for (const [id, action] of buttons) {
    byId(id, HTMLButtonElement, doc).addEventListener("click", () => void perform(action));
  }

  const ready = loadPage();
  void loadCounters();
  const missedReady = missedObjects.reload();

  return {
    ready,
    config,
    items: () => items,
    selected: () => selection.selected(),
    decided: () => Object.fromEntries(decided),
    firstPageMs: () => firstPageMs,
    settled: async () => {
      await writes.settled();
      await loading;
      await missedReady;
    },
    errors,
    perform,
    geometry: (segmentId) => geometries.get(segmentId) ?? null,
    missedPoints: () => missedObjects.points,
    reloadMissed: () => missedObjects.reload(),
    destroy: () => win?.removeEventListener("keydown", onKey, true),
  };
}
