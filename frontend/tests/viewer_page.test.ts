// @vitest-environment happy-dom
import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import { setCsrfToken } from "../src/lib/api";
import { mountViewerPage } from "../src/viewer/page";
import { fakeViewer } from "./fake_viewer";
import { scriptFetch } from "./helpers";

const STATE = { layers: [{ name: "image" }, { name: "nuclei" }], layout: "4panel" };

function page(config: object): HTMLIFrameElement {
  document.body.innerHTML = `
    <button type="button" id="copy-link">Copy link</button>
    <input type="text" id="copy-link-url" readonly hidden>
    <span id="copy-link-status" role="status"></span>
    <div id="viewer-error" class="error-banner" role="alert" hidden></div>
    <iframe id="neuroglancer" srcdoc=""></iframe>
    <script type="application/json" id="viewer-state">${JSON.stringify(STATE)}</script>
    <script type="application/json" id="viewer-config">${JSON.stringify(config)}</script>`;
  return document.getElementById("neuroglancer") as HTMLIFrameElement;
}

function withViewer(frame: HTMLIFrameElement, viewer: unknown): void {
  Object.defineProperty(frame, "contentWindow", { value: { viewer }, configurable: true });
}

/** A viewer whose two layers have loaded. */
function loadedViewer(): ReturnType<typeof fakeViewer> {
  const viewer = fakeViewer();
  for (const name of ["image", "nuclei"]) {
    for (const source of viewer.addLayer(name, 1)) source.loadState = {};
  }
  return viewer;
}

const CONFIG = {
  saveUrl: "/api/v1/datasets/cells/states/",
  shareToken: "sh4re",
  csrfToken: "c5rf",
};

describe("viewer page", () => {
  beforeEach(() => {
    vi.useFakeTimers();
  });
  afterEach(() => {
    vi.useRealTimers();
    setCsrfToken(undefined);
  });

  it("restores the state, reports failed layers on the banner and in ready", async () => {
    const frame = page(CONFIG);
    const viewer = fakeViewer();
    const [image] = viewer.addLayer("image", 1);
    const [labels] = viewer.addLayer("nuclei", 2);
    withViewer(frame, viewer);
    const hooks = mountViewerPage();
    image!.loadState = {};
    labels!.loadState = { error: new Error("404 Not Found") };
    await vi.advanceTimersByTimeAsync(200);
    const view = await hooks.ready;
    expect(viewer.restored).toEqual([STATE]);
    expect(hooks.viewer()).toBe(viewer);
    expect(view.errors).toEqual([{ name: "nuclei", loaded: true, errors: ["404 Not Found"] }]);
    const banner = document.getElementById("viewer-error")!;
    expect(banner.hidden).toBe(false);
    expect(banner.textContent).toBe("Some layers failed to load: nuclei (404 Not Found)");
    expect(hooks.layerReport().map((r) => r.name)).toEqual(["image", "nuclei"]);
    expect(hooks.state).toEqual(STATE);
  });

  it("copies a link: saves the state with the share token and CSRF token, shows the URL", async () => {
    const frame = page(CONFIG);
    withViewer(frame, loadedViewer());
    const sent = scriptFetch([
      { status: 201, body: { key: "k1", url: "/datasets/cells/?state=k1" } },
    ]);
    const hooks = mountViewerPage();
    await vi.advanceTimersByTimeAsync(100);
    expect((await hooks.ready).errors).toEqual([]);
    expect(document.getElementById("viewer-error")!.hidden).toBe(true);
    const saved = await hooks.copyLink();
    expect(saved).toEqual({ key: "k1", url: `${location.origin}/datasets/cells/?state=k1` });
    expect(sent).toHaveLength(1);
    expect(sent[0]).toMatchObject({
      method: "POST",
      url: "/api/v1/datasets/cells/states/",
      headers: { "X-CSRFToken": "c5rf" },
      body: { state: STATE, share_token: "sh4re" },
    });
    const field = document.getElementById("copy-link-url") as HTMLInputElement;
    expect([field.hidden, field.value]).toEqual([false, saved.url]);
    // happy-dom is not a secure context: no Clipboard API, so the person copies by hand.
    expect(document.getElementById("copy-link-status")!.textContent).toBe("Copy the link above.");
    expect((document.getElementById("copy-link") as HTMLButtonElement).disabled).toBe(false);
  });

  it("shows the server's refusal on the banner", async () => {
    const frame = page({ ...CONFIG, shareToken: null });
    withViewer(frame, loadedViewer());
    scriptFetch([
      { status: 429, body: { message: "Request was throttled. Expected available in 3 seconds." } },
      { status: 500, text: "Server Error" },
    ]);
    const hooks = mountViewerPage();
    await vi.advanceTimersByTimeAsync(100);
    await expect(hooks.copyLink()).rejects.toThrow("Request was throttled.");
    await expect(hooks.saveState()).rejects.toThrow("Saving the view failed (HTTP 500).");
    expect(document.getElementById("viewer-error")!.textContent).toBe(
      "Request was throttled. Expected available in 3 seconds.",
    );
    expect(document.getElementById("copy-link-status")!.textContent).toBe("");
  });

  it("says so when the viewer never starts", async () => {
    page(CONFIG);
    const hooks = mountViewerPage();
    const outcome = expect(hooks.ready).rejects.toThrow(
      "Timed out waiting for the Neuroglancer viewer",
    );
    await vi.advanceTimersByTimeAsync(61_000);
    await outcome;
    expect(document.getElementById("viewer-error")!.textContent).toBe(
      "Timed out waiting for the Neuroglancer viewer",
    );
    await expect(hooks.saveState()).rejects.toThrow("The viewer is not ready yet.");
  });

  it("refuses a save URL that is not the states endpoint", () => {
    page({ ...CONFIG, saveUrl: "/elsewhere/" });
    expect(() => mountViewerPage()).toThrow(
      "/elsewhere/ is not a /api/v1/datasets/{slug}/states/ URL.",
    );
  });
});
