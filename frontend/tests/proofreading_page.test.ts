// @vitest-environment happy-dom
import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import { setCsrfToken } from "../src/lib/api";
import { mountQueuePage } from "../src/proofreading/page";
import { fakeViewer } from "./fake_viewer";
import { type SentRequest, scriptFetch } from "./helpers";

const STATE = { layers: [{ name: "image" }, { name: "nuclei", segments: ["1"] }] };
const CONFIG = {
  campaignId: 7,
  layer: "nuclei",
  round: 1,
  prefetch: 2,
  csrfToken: "c5rf",
  verdictSet: [
    { name: "tp", label: "True positive", colour: "#2ca02c", key: "1", kind: "positive" },
    { name: "fp", label: "False positive", colour: "#d62728", key: "3", kind: "negative" },
  ],
};

function item(id: number) {
  return {
    id,
    segment_id: id * 10,
    detection: {
      centroid_x: id,
      centroid_y: 2 * id,
      centroid_z: 3 * id,
      bbox_x0: id - 2,
      bbox_x1: id + 2,
      bbox_y0: 0,
      bbox_y1: 8,
      bbox_z0: 0,
      bbox_z1: 4,
      volume: 12.5,
      sphericity: 0.9,
      surface_area: 30,
      mean_intensity: 200,
      centroid_x_um: 1,
      centroid_y_um: 2,
      centroid_z_um: 3,
    },
  };
}

function mountPage(): {
  viewer: ReturnType<typeof fakeViewer>;
  visible: Set<bigint>;
  selected: Set<bigint>;
} {
  document.body.innerHTML = `
    <p id="queue-counters"></p>
    <div id="queue-error" hidden></div>
    <iframe id="neuroglancer" srcdoc=""></iframe>
    <p id="queue-empty" hidden></p>
    <section id="queue-current"><h2><span id="queue-segment"></span></h2><dl id="queue-measurements"></dl></section>
    <button data-verdict="tp">1</button><button data-verdict="fp">3</button>
    <button id="queue-skip"></button><button id="queue-flag"></button>
    <button id="queue-undo"></button><button id="queue-missed"></button>
    <p id="queue-status"></p>
    <script type="application/json" id="viewer-state">${JSON.stringify(STATE)}</script>
    <script type="application/json" id="queue-config">${JSON.stringify(CONFIG)}</script>`;
  const viewer = fakeViewer();
  viewer.addLayer("image", 1)[0]!.loadState = {};
  viewer.addLayer("nuclei", 1)[0]!.loadState = {};
  const visible = new Set<bigint>();
  const selected = new Set<bigint>();
  viewer.layerManager.getLayerByName("nuclei")!.layer!.displayState = {
    segmentationGroupState: { value: { visibleSegments: visible, selectedSegments: selected } },
  } as never;
  const frame = document.getElementById("neuroglancer") as HTMLIFrameElement;
  Object.defineProperty(frame, "contentWindow", {
    value: {
      viewer,
      addEventListener: () => {},
      requestAnimationFrame: (callback: () => void) => setTimeout(callback, 1),
    },
    configurable: true,
  });
  return { viewer, visible, selected };
}

function key(name: string): void {
  document.dispatchEvent(new KeyboardEvent("keydown", { key: name, bubbles: true }));
}

describe("proofreading queue page", () => {
  beforeEach(() => {
    vi.useFakeTimers();
  });
  afterEach(() => {
    vi.useRealTimers();
    setCsrfToken(undefined);
  });

  it("shows one detection at a time, gives verdicts by key, reports a stale undo, ends empty", async () => {
    const { viewer, visible, selected } = mountPage();
    let nextCalls = 0;
    const sent: SentRequest[] = scriptFetch((request) => {
      if (request.url.endsWith("/next/")) {
        nextCalls += 1;
        return {
          status: 200,
          body: nextCalls === 1 ? [{ item: item(1) }, { item: item(2) }] : [],
        };
      }
      if (request.url.includes("/items/")) {
        return { status: 200, body: { count: request.url.includes("true") ? 0 : 2, results: [] } };
      }
      if (request.url.endsWith("/verdicts/")) {
        return { status: 201, body: { id: 100 + (request.body as { item: number }).item } };
      }
      if (request.url.endsWith("/undo/")) {
        return { status: 409, body: { message: "Stale undo: verdict 101 was already undone." } };
      }
      return { status: 500 };
    });
    const hooks = mountQueuePage();
    await vi.advanceTimersByTimeAsync(200);
    await hooks.ready;
    expect(viewer.restored[0]).toEqual({
      layers: [{ name: "image" }, { name: "nuclei", segments: [], notSelectedAlpha: 0 }],
    });
    expect(hooks.current()?.id).toBe(1);
    expect([...visible]).toEqual([10n]);
    expect([...selected]).toEqual([10n]);
    expect(viewer.state.toJSON()["position"]).toEqual([1, 2, 3]);
    expect(document.getElementById("queue-segment")!.textContent).toBe("10");
    expect(document.getElementById("queue-measurements")!.textContent).toContain("Volume");
    expect(document.getElementById("queue-counters")!.textContent).toContain("remaining: 2");

    key("1");
    expect(hooks.current()?.id).toBe(2); // at once, before the API answers
    expect([...visible]).toEqual([20n]);
    await vi.advanceTimersByTimeAsync(100);
    await hooks.settled();
    const verdicts = sent.filter((r) => r.url.endsWith("/verdicts/"));
    expect(verdicts.map((r) => r.body)).toEqual([{ item: 1, verdict: "tp", round: 1 }]);
    expect(verdicts[0]!.headers["X-CSRFToken"]).toBe("c5rf");
    expect(hooks.counters()).toEqual({ decided: 1, remaining: 1 });

    key("u");
    await vi.advanceTimersByTimeAsync(100);
    await hooks.settled();
    const banner = document.getElementById("queue-error")!;
    expect(banner.hidden).toBe(false);
    expect(banner.textContent).toContain("Stale undo");
    expect(hooks.errors).toEqual(["Stale undo: verdict 101 was already undone."]);
    expect(hooks.current()?.id).toBe(2);

    key("3");
    await vi.advanceTimersByTimeAsync(100);
    await hooks.settled();
    expect(hooks.current()).toBeUndefined();
    expect(document.getElementById("queue-empty")!.hidden).toBe(false);
    expect(visible.size).toBe(0);
    expect(hooks.timings.map((t) => t.action)).toEqual(["verdict", "undo", "verdict"]);
    // Keys in form fields are typing, not verdicts.
    const input = document.createElement("input");
    document.body.append(input);
    input.dispatchEvent(new KeyboardEvent("keydown", { key: "1", bubbles: true }));
    await vi.advanceTimersByTimeAsync(50);
    expect(sent.filter((r) => r.url.endsWith("/verdicts/"))).toHaveLength(2);
  });
});
