// @vitest-environment happy-dom
import { afterEach, describe, expect, it } from "vitest";
import { setCsrfToken } from "../src/lib/api";
import { cardMeasures, cardUrl, mountGalleryPage, queueLink } from "../src/gallery/page";
import { PageSelection, galleryActionForKey } from "../src/gallery/selection";
import { type SentRequest, flush, scriptFetch } from "./helpers";
import cases from "./card_geometry_cases.json";

const VERDICTS = [
  { name: "tp", label: "True positive", colour: "#2ca02c", key: "1", kind: "positive" },
  { name: "fp", label: "False positive", colour: "#d62728", key: "3", kind: "negative" },
];
const CONFIG = {
  campaignId: 7,
  round: 1,
  pageSize: 4,
  csrfToken: "c5rf",
  verdictSet: VERDICTS,
  cardBase: "/api/v1/datasets/d/layers/nuclei/detections/",
  datasetSlug: "d",
  layerName: "nuclei",
  queueUrl: "/proofreading/7/",
};

describe("gallery selection", () => {
  it("clicks select one, shift-click a range from the anchor, ctrl-click toggles", () => {
    const selection = new PageSelection();
    selection.reset([5, 6, 7, 8, 9]);
    selection.click(6);
    expect(selection.selected()).toEqual([6]);
    selection.click(8, { shift: true });
    expect(selection.selected()).toEqual([6, 7, 8]);
    selection.click(5, { shift: true }); // the anchor stays at 6
    expect(selection.selected()).toEqual([5, 6]);
    selection.click(9, { toggle: true });
    expect(selection.selected()).toEqual([5, 6, 9]);
    selection.click(6, { toggle: true });
    expect(selection.selected()).toEqual([5, 9]);
    selection.click(42);
    expect(selection.selected()).toEqual([5, 9]);
  });

  it("decided cards leave the selection and are skipped by ranges and the page", () => {
    const selection = new PageSelection();
    selection.reset([1, 2, 3, 4]);
    selection.click(1);
    selection.click(3, { shift: true });
    selection.lock(2);
    expect(selection.selected()).toEqual([1, 3]);
    selection.click(2);
    expect(selection.selected()).toEqual([1, 3]);
    selection.togglePage();
    expect(selection.selected()).toEqual([1, 3, 4]);
    selection.togglePage(); // all selected: the page is deselected
    expect(selection.selected()).toEqual([]);
    expect(selection.open).toBe(3);
    selection.reset([7]);
    expect(selection.isLocked(2)).toBe(false);
  });

  it("maps keys: verdicts first, then A, N and Escape; modifiers are left alone", () => {
    expect(galleryActionForKey({ key: "3" }, VERDICTS)).toEqual({ kind: "verdict", verdict: "fp" });
    expect(galleryActionForKey({ key: "A" }, VERDICTS)).toEqual({ kind: "selectPage" });
    expect(galleryActionForKey({ key: "n" }, VERDICTS)).toEqual({ kind: "next" });
    expect(galleryActionForKey({ key: "Escape" }, VERDICTS)).toEqual({ kind: "clear" });
    expect(galleryActionForKey({ key: "M" }, VERDICTS)).toEqual({ kind: "missed" });
    expect(galleryActionForKey({ key: "a", ctrlKey: true }, VERDICTS)).toBeNull();
    expect(galleryActionForKey({ key: "x" }, VERDICTS)).toBeNull();
    const keyedA = [{ name: "odd", key: "a" }];
    expect(galleryActionForKey({ key: "a" }, keyedA)).toEqual({ kind: "verdict", verdict: "odd" });
  });

  it("builds card and queue URLs", () => {
    expect(cardUrl(CONFIG as never, 12)).toBe(
      "/api/v1/datasets/d/layers/nuclei/detections/12/card.png",
    );
    expect(queueLink(CONFIG as never, 3)).toBe("/proofreading/7/?item=3");
  });
});

function item(id: number) {
  return { id, segment_id: id * 10, detection: { volume: 12.5, sphericity: 0.91 } };
}

function mount(): void {
  document.body.innerHTML = `
    <p id="gallery-counters"></p><div id="gallery-error" hidden></div>
    <button id="gallery-select-page"></button><button id="gallery-clear"></button>
    <button data-verdict="tp"></button><button data-verdict="fp"></button>
    <button id="gallery-next"></button>
    <p id="gallery-status"></p><p id="gallery-empty" hidden></p>
    <span id="gallery-missed-count"></span><ul id="gallery-missed-list"></ul>
    <ol id="gallery-grid"></ol>
    <script type="application/json" id="gallery-config">${JSON.stringify(CONFIG)}</script>`;
}

function clickCard(index: number, init: MouseEventInit = {}): void {
  const card = document.querySelectorAll(".gallery-card")[index] as HTMLElement;
  card.querySelector("img")!.dispatchEvent(new MouseEvent("click", { bubbles: true, ...init }));
}

function key(name: string): void {
  document.dispatchEvent(new KeyboardEvent("keydown", { key: name, bubbles: true }));
}

describe("gallery page", () => {
  let destroy = (): void => {};
  afterEach(() => {
    destroy();
    setCsrfToken(undefined);
  });

  it("claims a page, selects with click and shift-click, gives one verdict to all by key", async () => {
    mount();
    let pages = 0;
    let bulkStatus = 201;
    const sent: SentRequest[] = scriptFetch((request) => {
      if (request.url.endsWith("/next/")) {
        pages += 1;
        const ids = pages === 1 ? [1, 2, 3, 4] : [4, 5, 6, 7];
        return { status: 200, body: ids.map((id) => ({ item: item(id) })) };
      }
      if (request.url.includes("/items/")) return { status: 200, body: { count: 0, results: [] } };
      if (request.url.includes("/missed/")) {
        return { status: 200, body: { count: 0, next: null, previous: null, results: [] } };
      }
      if (request.url.includes("/cards/page/")) {
        const segments = new URL(request.url, "http://x").searchParams.get("segments")!;
        const cards = segments.split(",").map((s) => ({
          segment_id: Number(s),
          png: s === "40" ? null : "iVBORw0KGgo=",
          error: s === "40" ? "Layer 'nuclei' has no detection 40." : "",
        }));
        return { status: 200, body: { key: "k", cards } };
      }
      if (request.url.endsWith("/verdicts/bulk/")) {
        return bulkStatus === 201
          ? { status: 201, body: [] }
          : { status: 409, body: { message: "Segment 40 is already with 1 other reviewer(s)." } };
      }
      return { status: 500 };
    });
    const hooks = mountGalleryPage();
    destroy = hooks.destroy;
    await hooks.ready;
    expect(sent[0]!.body).toEqual({ count: 4, round: 1 });
    // One request for the page's cards, in page order; a card without one says why.
    const page = sent.filter((r) => r.url.includes("/cards/page/"));
    expect(page.map((r) => r.url)).toEqual([
      "/api/v1/datasets/d/layers/nuclei/detections/cards/page/?segments=10%2C20%2C30%2C40",
    ]);
    const imgs = [...document.querySelectorAll<HTMLImageElement>("#gallery-grid img")];
    expect(imgs.map((img) => img.getAttribute("src"))).toEqual([
      ...Array(3).fill("data:image/png;base64,iVBORw0KGgo="),
      null,
    ]);
    expect(imgs[3]!.title).toContain("no detection 40");
    expect(document.querySelector(".gallery-card")!.textContent).toContain("12.5 µm³");

    clickCard(0);
    clickCard(2, { shiftKey: true });
    expect(hooks.selected()).toEqual([1, 2, 3]);
    expect(document.querySelectorAll(".gallery-card.selected")).toHaveLength(3);
    key("3");
    expect(hooks.decided()).toEqual({ 1: "fp", 2: "fp", 3: "fp" }); // at once
    await hooks.settled();
    const bulk = sent.filter((r) => r.url.endsWith("/verdicts/bulk/"));
    expect(bulk.map((r) => r.body)).toEqual([{ items: [1, 2, 3], verdict: "fp", round: 1 }]);
    expect(bulk[0]!.headers["X-CSRFToken"]).toBe("c5rf");
    expect(document.querySelectorAll(".gallery-card.decided")).toHaveLength(3);
    expect(document.getElementById("gallery-status")!.textContent).toContain("3 cards");

    // A refused verdict (all or none) leaves the card open and says why.
    bulkStatus = 409;
    key("a");
    expect(hooks.selected()).toEqual([4]);
    key("1");
    await hooks.settled();
    await flush();
    expect(hooks.decided()).toEqual({ 1: "fp", 2: "fp", 3: "fp" });
    expect(document.getElementById("gallery-error")!.textContent).toContain("already with");
    expect(document.querySelectorAll(".gallery-card.decided")).toHaveLength(3);

    // Next page: the open card stays, new ones fill in.
    key("n");
    await hooks.settled();
    expect(hooks.items().map((i) => i.id)).toEqual([4, 5, 6, 7]);
    expect(hooks.decided()).toEqual({});
    expect(document.querySelectorAll(".gallery-card")).toHaveLength(4);
  });

  it("drops a missed-object point where a slice tile is Alt+clicked or M is pressed", async () => {
    mount();
    const geometry = cases.geometries["3d"];
    const points: Record<string, unknown>[] = [];
    const sent = scriptFetch((request) => {
      if (request.url.endsWith("/next/")) {
        return { status: 200, body: [1, 2].map((id) => ({ item: item(id) })) };
      }
      if (request.url.includes("/items/")) return { status: 200, body: { count: 0, results: [] } };
      if (request.url.includes("/cards/page/")) {
        const cards = [10, 20].map((segment_id) => ({
          segment_id,
          png: "iVBORw0KGgo=",
          error: "",
          geometry: segment_id === 10 ? geometry : null,
        }));
        return { status: 200, body: { key: "k", cards } };
      }
      if (request.method === "POST" && request.url.endsWith("/missed/")) {
        const body = request.body as Record<string, number>;
        const made = {
          id: points.length + 1,
          note: "",
          created_by: "rev",
          created: "2026-01-01T10:00:00Z",
          ...body,
        };
        points.push(made);
        return { status: 201, body: made };
      }
      if (request.method === "DELETE" && request.url.includes("/missed/")) {
        points.splice(0, 1);
        return { status: 204 };
      }
      if (request.url.includes("/missed/")) {
        return {
          status: 200,
          body: { count: points.length, next: null, previous: null, results: points },
        };
      }
      return { status: 500 };
    });
    const hooks = mountGalleryPage();
    destroy = hooks.destroy;
    await hooks.ready;
    await hooks.settled();
    expect(hooks.geometry(10)).toEqual(geometry);
    expect(hooks.geometry(20)).toBeNull();
    const counters = document.getElementById("gallery-counters")!;
    expect(counters.textContent).toContain("missed objects: 0");

    // The card is drawn at twice its size: the click is scaled by natural size / drawn size.
    const img = document.querySelectorAll<HTMLImageElement>("#gallery-grid img")[0]!;
    img.getBoundingClientRect = () => ({ left: 10, top: 20, width: 388, height: 388 }) as DOMRect;
    const at = (px: number, py: number, init: MouseEventInit = {}) =>
      img.dispatchEvent(
        new MouseEvent("click", {
          bubbles: true,
          clientX: 10 + 2 * px,
          clientY: 20 + 2 * py,
          ...init,
        }),
      );
    at(48.5, 48.5, { altKey: true }); // the xy tile: the first hand-worked case
    await hooks.settled();
    const posts = () => sent.filter((r) => r.method === "POST" && r.url.endsWith("/missed/"));
    expect(posts().map((r) => r.body)).toEqual([{ z: 15, y: 31.25, x: 30.75 }]);
    expect(hooks.selected()).toEqual([]); // Alt+click does not select
    expect(hooks.missedPoints()).toHaveLength(1);
    expect(counters.textContent).toContain("missed objects: 1");
    expect(document.getElementById("gallery-missed-count")!.textContent).toBe("1");
    expect(document.getElementById("gallery-status")!.textContent).toContain("on card #10");
    // A marker where it was dropped (in % of the card, so it follows the image's size).
    const marker = document.querySelector<HTMLElement>(".gallery-card .missed-marker")!;
    expect(marker.style.left).toBe(`${(100 * 48.5) / 194}%`);
    expect(marker.style.top).toBe(`${(100 * 48.5) / 194}%`);

    // The mesh tile, a card without geometry: nothing dropped, a hint.
    at(150, 150, { altKey: true });
    const other = document.querySelectorAll<HTMLImageElement>("#gallery-grid img")[1]!;
    other.dispatchEvent(new MouseEvent("click", { bubbles: true, altKey: true }));
    await hooks.settled();
    expect(posts()).toHaveLength(1);
    // M while pointing at the zy tile.
    img.dispatchEvent(
      new MouseEvent("mousemove", {
        bubbles: true,
        clientX: 10 + 2 * 108.5,
        clientY: 20 + 2 * 20.5,
      }),
    );
    key("m");
    await hooks.settled();
    expect(posts().map((r) => r.body)).toEqual([
      { z: 15, y: 31.25, x: 30.75 },
      { z: 10.8125, y: 17.25, x: 33 },
    ]);
    expect(counters.textContent).toContain("missed objects: 2");
    // The list, latest first, each with a remove button.
    const rows = document.querySelectorAll("#gallery-missed-list li");
    expect([...rows].map((r) => r.querySelector("span")!.textContent)).toEqual([
      "rev: 33, 17.25, 10.81",
      "rev: 30.75, 31.25, 15",
    ]);
    document
      .querySelector<HTMLButtonElement>("#gallery-missed-list button[data-missed='1']")!
      .click();
    await hooks.settled();
    expect(sent.some((r) => r.method === "DELETE" && r.url.endsWith("/missed/1/"))).toBe(true);
    expect(counters.textContent).toContain("missed objects: 1");
    expect(hooks.errors).toEqual([]);
  });

  it("says so when the queue is empty", async () => {
    mount();
    scriptFetch((request) =>
      request.url.endsWith("/next/")
        ? { status: 200, body: [] }
        : { status: 200, body: { count: 0, results: [] } },
    );
    const hooks = mountGalleryPage();
    destroy = hooks.destroy;
    await hooks.ready;
    expect(document.getElementById("gallery-empty")!.hidden).toBe(false);
    key("1");
    expect(document.getElementById("gallery-status")!.textContent).toContain("Select cards first");
  });
});

describe("a card's caption", () => {
  it("gives a volume and a sphericity, or a 2D object's area", () => {
    const card = { id: 1, segment_id: 10, detection: { volume: 12.5, sphericity: 0.912 } };
    expect(cardMeasures(card as never)).toBe("12.5 µm³ · sph 0.91");
    expect(cardMeasures(card as never, true)).toBe("12.5 µm²");
  });
});
