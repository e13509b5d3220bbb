// A typed bridge to Neuroglancer's `viewer` object in the same-origin iframe (Neuroglancer 2.41,
// the `neuroglancer` wheel's client). Only the parts the pages use are declared; see DESIGN.md's
// probe notes. The state is loaded after the viewer exists (not through the URL fragment) and the
// layers are then checked, because Neuroglancer can silently drop a layer mid-load.

import { TimeoutError, waitFor } from "./wait";

/** Neuroglancer's JSON state (`viewer.state.toJSON()`); only `layers` is read here. */
export interface ViewerStateJson {
  layers?: { name: string; [key: string]: unknown }[];
  [key: string]: unknown;
}

type LayerJson = NonNullable<ViewerStateJson["layers"]>[number];

/** A layer's `source` (a URL, a source spec, or a list of either) as specs whose "bounds"
 * subsource, Neuroglancer's yellow outline of the volume, is off: where a page outlines its own
 * box, the volume's outline would lie on the box's faces that are the volume's and hide them. */
export function sourcesWithoutBounds(source: unknown): Record<string, unknown>[] {
  const list = source === undefined ? [] : Array.isArray(source) ? source : [source];
  return list.map((item: unknown) => {
    const spec = typeof item === "string" ? { url: item } : { ...(item as object) };
    const subsources = (spec as { subsources?: Record<string, unknown> }).subsources ?? {};
    return { ...spec, subsources: { ...subsources, bounds: false } };
  });
}

/** `layer` with its sources' bounds outlines off (see {@link sourcesWithoutBounds}). */
export function withoutBounds(layer: LayerJson): LayerJson {
  return layer["source"] === undefined
    ? layer
    : { ...layer, source: sourcesWithoutBounds(layer["source"]) };
}

/** A Neuroglancer signal: `add` registers a handler and returns its remover. */
export interface Signal {
  add(handler: () => void): () => void;
}

export interface ViewerState {
  toJSON(): ViewerStateJson;
  /** Replaces the state; a partial state changes only the keys it names. */
  restoreState(state: unknown): void;
  changed: Signal;
}

/** `undefined` while loading; `{error}` when the source failed; the loaded source otherwise. */
export type DataSourceLoadState = { error?: unknown } | undefined;

export interface LayerDataSource {
  spec: { url: string };
  loadState: DataSourceLoadState;
}

export interface SegmentationDisplayState {
  segmentationGroupState: { value: { visibleSegments: { readonly size: number } } };
}

export interface UserLayer {
  dataSources: LayerDataSource[];
  /** Present on segmentation layers. */
  displayState?: Partial<SegmentationDisplayState>;
}

export interface ManagedLayer {
  name: string;
  /** null until the layer is created from its spec. */
  layer: UserLayer | null;
  /** In the state but in no viewer of the layout (e.g. a side-by-side comparison's other
   * segmentations): Neuroglancer keeps its spec and creates nothing. */
  archived?: boolean;
}

export interface LayerManager {
  managedLayers: ManagedLayer[];
  getLayerByName(name: string): ManagedLayer | undefined;
}

export interface Viewer {
  state: ViewerState;
  layerManager: LayerManager;
  /** True when every visible chunk is drawn. */
  isReady(): boolean;
}

interface ViewerWindow {
  viewer?: Viewer;
}

/** The iframe's `viewer`, or undefined while Neuroglancer is still starting. */
export function viewerIn(frame: HTMLIFrameElement): Viewer | undefined {
  const win = frame.contentWindow as (Window & ViewerWindow) | null;
  return win?.viewer ?? undefined;
}

export function waitForViewer(frame: HTMLIFrameElement, timeoutMs: number): Promise<Viewer> {
  return waitFor(() => viewerIn(frame), timeoutMs, "the Neuroglancer viewer");
}

/** Calls `handler` after every state change; returns the remover. */
export function onStateChanged(viewer: Viewer, handler: () => void): () => void {
  return viewer.state.changed.add(handler);
}

/** How many segments a segmentation layer shows; undefined for other or missing layers. */
export function visibleSegmentCount(viewer: Viewer, layerName: string): number | undefined {
  const display = viewer.layerManager.getLayerByName(layerName)?.layer?.displayState;
  return display?.segmentationGroupState?.value.visibleSegments.size;
}

export interface LayerReport {
  name: string;
  /** True once every data source has loaded or failed. */
  loaded: boolean;
  errors: string[];
}

function errorText(error: unknown): string {
  if (error instanceof Error) return error.message;
  if (error && typeof error === "object" && "message" in error) {
    return String((error as { message: unknown }).message);
  }
  return String(error);
}

/** One entry per wanted layer: whether its sources are done loading, and their errors. */
export function layerReport(viewer: Viewer, wanted: readonly string[]): LayerReport[] {
  const managed = viewer.layerManager.managedLayers;
  return wanted.map((name) => {
    const found = managed.find((m) => m.name === name);
    if (found?.archived) return { name, loaded: true, errors: [] }; // nothing to load
    const layer = found?.layer;
    if (!layer) return { name, loaded: true, errors: ["layer was not created"] };
    const sources = layer.dataSources;
    const errors: string[] = [];
    let loaded = sources.length > 0;
    for (const source of sources) {
      const state = source.loadState;
      if (state === undefined) loaded = false;
      else if (state.error) errors.push(errorText(state.error));
    }
    return { name, loaded: loaded || errors.length > 0, errors };
  });
}

/**
 * Waits until every wanted layer has loaded or failed. After `timeoutMs` the layers still
 * loading are reported with an error rather than waited for any longer.
 */
export async function waitForLayers(
  viewer: Viewer,
  wanted: readonly string[],
  timeoutMs: number,
): Promise<LayerReport[]> {
  try {
    return await waitFor(
      () => {
        const report = layerReport(viewer, wanted);
        return report.every((entry) => entry.loaded) ? report : undefined;
      },
      timeoutMs,
      "layer data sources",
    );
  } catch (error) {
    if (!(error instanceof TimeoutError)) throw error;
    const seconds = Math.round(timeoutMs / 1000);
    return layerReport(viewer, wanted).map((entry) =>
      entry.loaded
        ? entry
        : { ...entry, errors: [...entry.errors, `data source still loading after ${seconds} s`] },
    );
  }
}

export interface LoadedView {
  viewer: Viewer;
  /** The layers that failed (an empty list when all loaded). */
  errors: LayerReport[];
}

/** Waits for the iframe's viewer, restores `state` into it, and waits for its layers. */
export async function loadState(
  frame: HTMLIFrameElement,
  state: ViewerStateJson,
  timeouts: { viewerMs: number; layersMs: number },
): Promise<LoadedView> {
  const viewer = await waitForViewer(frame, timeouts.viewerMs);
  viewer.state.restoreState(state);
  const wanted = (state.layers ?? []).map((layer) => layer.name);
  const report = await waitForLayers(viewer, wanted, timeouts.layersMs);
  return { viewer, errors: report.filter((entry) => entry.errors.length > 0) };
}

/** "Some layers failed to load: nuclei (404 Not Found; ...), ..." */
export function layerErrorMessage(failed: readonly LayerReport[]): string {
  return (
    "Some layers failed to load: " +
    failed.map((f) => `${f.name} (${f.errors.join("; ")})`).join(", ")
  );
}
