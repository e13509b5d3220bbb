import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import {
  layerErrorMessage,
  layerReport,
  loadState,
  onStateChanged,
  sourcesWithoutBounds,
  viewerIn,
  visibleSegmentCount,
  waitForLayers,
  withoutBounds,
} from "../src/lib/neuroglancer";
import { fakeFrame, fakeViewer } from "./fake_viewer";

describe("layerReport", () => {
  it("says which layers are loading, loaded, failed or missing", () => {
    const viewer = fakeViewer();
    const [image] = viewer.addLayer("image", 1);
    const [labels, meshes] = viewer.addLayer("nuclei", 2);
    viewer.layerManager.managedLayers.push({ name: "pending", layer: null });
    // In no viewer of a side-by-side layout: kept, never created, nothing to wait for.
    viewer.layerManager.managedLayers.push({ name: "archived", layer: null, archived: true });
    const wanted = ["image", "nuclei", "pending", "absent", "archived"];

    expect(layerReport(viewer, wanted)).toEqual([
      { name: "image", loaded: false, errors: [] },
      { name: "nuclei", loaded: false, errors: [] },
      { name: "pending", loaded: true, errors: ["layer was not created"] },
      { name: "absent", loaded: true, errors: ["layer was not created"] },
      { name: "archived", loaded: true, errors: [] },
    ]);
    image!.loadState = {};
    labels!.loadState = { error: new Error("404 Not Found") };
    expect(layerReport(viewer, ["image", "nuclei"])).toEqual([
      { name: "image", loaded: true, errors: [] },
      // One failed source is enough to report the layer, even while the other still loads.
      { name: "nuclei", loaded: true, errors: ["404 Not Found"] },
    ]);
    meshes!.loadState = { error: "plain text" };
    expect(layerReport(viewer, ["nuclei"])[0]?.errors).toEqual(["404 Not Found", "plain text"]);
  });

  it("counts a layer without data sources as not loaded", () => {
    const viewer = fakeViewer();
    viewer.addLayer("empty", 0);
    expect(layerReport(viewer, ["empty"])).toEqual([{ name: "empty", loaded: false, errors: [] }]);
  });
});

describe("waiting", () => {
  beforeEach(() => {
    vi.useFakeTimers();
  });
  afterEach(() => {
    vi.useRealTimers();
  });

  it("waits for every source, then reports still-loading ones after the timeout", async () => {
    const viewer = fakeViewer();
    const [image] = viewer.addLayer("image", 1);
    viewer.addLayer("nuclei", 1);
    const report = waitForLayers(viewer, ["image", "nuclei"], 30_000);
    await vi.advanceTimersByTimeAsync(1000);
    image!.loadState = {};
    await vi.advanceTimersByTimeAsync(30_000);
    expect(await report).toEqual([
      { name: "image", loaded: true, errors: [] },
      { name: "nuclei", loaded: false, errors: ["data source still loading after 30 s"] },
    ]);
  });

  it("loads the state once the iframe's viewer exists, and returns the failed layers", async () => {
    const { frame, start } = fakeFrame();
    const viewer = fakeViewer();
    const state = { layers: [{ name: "image" }, { name: "nuclei" }], position: [1, 2, 3] };
    const loaded = loadState(frame, state, { viewerMs: 60_000, layersMs: 30_000 });
    await vi.advanceTimersByTimeAsync(500);
    expect(viewerIn(frame)).toBeUndefined();
    // Neuroglancer creates the layers in restoreState (synchronously); their sources load later.
    const [image] = viewer.addLayer("image", 1);
    const [labels] = viewer.addLayer("nuclei", 1);
    start(viewer);
    await vi.advanceTimersByTimeAsync(100);
    expect(viewer.restored).toEqual([state]);
    await vi.advanceTimersByTimeAsync(1000);
    image!.loadState = {};
    labels!.loadState = { error: { message: "HTTP 403" } };
    await vi.advanceTimersByTimeAsync(100);
    const result = await loaded;
    expect(result.viewer).toBe(viewer);
    expect(result.errors).toEqual([{ name: "nuclei", loaded: true, errors: ["HTTP 403"] }]);
    expect(layerErrorMessage(result.errors)).toBe("Some layers failed to load: nuclei (HTTP 403)");
  });

  it("gives up on a viewer that never starts", async () => {
    const { frame } = fakeFrame();
    const loaded = loadState(frame, {}, { viewerMs: 2000, layersMs: 1000 });
    const outcome = expect(loaded).rejects.toThrow("Timed out waiting for the Neuroglancer viewer");
    await vi.advanceTimersByTimeAsync(2500);
    await outcome;
  });
});

describe("viewer helpers", () => {
  it("counts visible segments of segmentation layers only", () => {
    const viewer = fakeViewer();
    viewer.addLayer("image", 1);
    viewer.addLayer("nuclei", 2, 12);
    expect(visibleSegmentCount(viewer, "nuclei")).toBe(12);
    expect(visibleSegmentCount(viewer, "image")).toBeUndefined();
    expect(visibleSegmentCount(viewer, "absent")).toBeUndefined();
  });

  it("subscribes to state changes and unsubscribes with the remover", () => {
    const viewer = fakeViewer();
    const seen: unknown[] = [];
    const remove = onStateChanged(viewer, () => seen.push(viewer.state.toJSON()));
    viewer.state.restoreState({ layout: "3d" });
    remove();
    viewer.state.restoreState({ layout: "xy" });
    expect(seen).toEqual([{ layout: "3d" }]);
  });
});

describe("volume outlines off", () => {
  it("turns the bounds subsource off in every form a source takes, keeping the rest", () => {
    expect(sourcesWithoutBounds("zarr3://a/")).toEqual([
      { url: "zarr3://a/", subsources: { bounds: false } },
    ]);
    expect(
      sourcesWithoutBounds(["zarr3://a/", { url: "precomputed://m/", subsources: { mesh: true } }]),
    ).toEqual([
      { url: "zarr3://a/", subsources: { bounds: false } },
      { url: "precomputed://m/", subsources: { mesh: true, bounds: false } },
    ]);
    expect(withoutBounds({ name: "img", type: "image", source: "zarr3://a/" })).toEqual({
      name: "img",
      type: "image",
      source: [{ url: "zarr3://a/", subsources: { bounds: false } }],
    });
    const local = { name: "box", type: "annotation" };
    expect(withoutBounds(local)).toBe(local); // no source: nothing to change
  });
});
