// Viewer page: loads the server-built state into the Neuroglancer iframe, reports layers that
// failed to load, and saves the current view for "Copy link".

import { api, pathParams, setCsrfToken } from "../lib/api";
import { writeClipboard } from "../lib/clipboard";
import { byId, jsonScript } from "../lib/dom";
import {
  type LayerReport,
  type LoadedView,
  type Viewer,
  type ViewerStateJson,
  layerErrorMessage,
  layerReport,
  loadState,
  viewerIn,
} from "../lib/neuroglancer";

/** The page's `viewer-config` JSON (webapp/viewer/views.py). */
export interface ViewerConfig {
  saveUrl: string;
  shareToken: string | null;
  csrfToken: string;
}

export interface SavedLink {
  key: string;
  /** Absolute URL that reopens the view. */
  url: string;
}

/** `window.annotome` on the viewer page; the browser tests drive the page through it. */
export interface ViewerHooks {
  ready: Promise<LoadedView>;
  state: ViewerStateJson;
  config: ViewerConfig;
  viewer(): Viewer | undefined;
  layerReport(): LayerReport[];
  saveState(): Promise<SavedLink>;
  copyLink(): Promise<SavedLink>;
}

export const TIMEOUTS = { viewerMs: 60_000, layersMs: 30_000 };

/** Appends `message` to the page's error banner and shows it. */
export function showError(banner: HTMLElement, message: string): void {
  banner.textContent = banner.textContent ? `${banner.textContent} ${message}` : message;
  banner.hidden = false;
}

export function mountViewerPage(doc: Document = document): ViewerHooks {
  const state = jsonScript<ViewerStateJson>("viewer-state", doc);
  const config = jsonScript<ViewerConfig>("viewer-config", doc);
  setCsrfToken(config.csrfToken);
  const { slug } = pathParams("/api/v1/datasets/{slug}/states/", config.saveUrl);
  const frame = byId("neuroglancer", HTMLIFrameElement, doc);
  const banner = byId("viewer-error", HTMLElement, doc);
  const copyButton = byId("copy-link", HTMLButtonElement, doc);
  const copyField = byId("copy-link-url", HTMLInputElement, doc);
  const copyStatus = byId("copy-link-status", HTMLElement, doc);
  const wanted = (state.layers ?? []).map((layer) => layer.name);

  async function saveState(): Promise<SavedLink> {
    const viewer = viewerIn(frame);
    if (!viewer) throw new Error("The viewer is not ready yet.");
    const saved = await api.post("/api/v1/datasets/{slug}/states/", {
      path: { slug: slug ?? "" },
      body: { state: viewer.state.toJSON(), share_token: config.shareToken },
      fallback: (status) => `Saving the view failed (HTTP ${status}).`,
    });
    return { key: saved.key, url: new URL(saved.url, doc.location.origin).toString() };
  }

  async function copyLink(): Promise<SavedLink> {
    copyButton.disabled = true;
    copyStatus.textContent = "Saving…";
    try {
      const saved = await saveState();
      copyField.value = saved.url;
      copyField.hidden = false;
      copyField.select();
      const copied = doc.defaultView ? await writeClipboard(saved.url, doc.defaultView) : false;
      copyStatus.textContent = copied ? "Link copied." : "Copy the link above.";
      return saved;
    } catch (error) {
      copyStatus.textContent = "";
      showError(banner, error instanceof Error ? error.message : String(error));
      throw error;
    } finally {
      copyButton.disabled = false;
    }
  }

  const ready = loadState(frame, state, TIMEOUTS).then(
    (view) => {
      if (view.errors.length) showError(banner, layerErrorMessage(view.errors));
      return view;
    },
    (error: unknown) => {
      showError(banner, error instanceof Error ? error.message : String(error));
      throw error;
    },
  );
  copyButton.addEventListener("click", () => {
    copyLink().catch(() => {});
  });

  return {
    ready,
    state,
    config,
    viewer: () => viewerIn(frame),
    layerReport: () => {
      const viewer = viewerIn(frame);
      return viewer ? layerReport(viewer, wanted) : [];
    },
    saveState,
    copyLink,
  };
}
