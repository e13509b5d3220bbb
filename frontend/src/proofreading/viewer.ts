// The queue page's writes to Neuroglancer: one segment shown, the camera on it. The lib bridge
// (lib/neuroglancer.ts) declares what every page reads; the segment set's writes are declared
// here, for this page only.

import type { Viewer, ViewerStateJson } from "../lib/neuroglancer";
import type { Camera } from "./zoom";

interface SegmentSet {
  readonly size: number;
  clear(): void;
  add(id: bigint): void;
  has(id: bigint): boolean;
}

interface SegmentGroup {
  visibleSegments: SegmentSet;
  /** Neuroglancer 2.41: segments remembered in the list, shown or not ("!17" when hidden). */
  selectedSegments?: SegmentSet;
}

function segmentGroup(viewer: Viewer, layerName: string): SegmentGroup | undefined {
  const display = viewer.layerManager.getLayerByName(layerName)?.layer?.displayState as
    { segmentationGroupState?: { value: SegmentGroup } } | undefined;
  return display?.segmentationGroupState?.value;
}

/** Empties the layer's segment list (hidden entries too), so that nothing is remembered. */
function clearSegments(group: SegmentGroup): void {
  group.visibleSegments.clear();
  group.selectedSegments?.clear();
}

/** Shows `segmentId` alone in `layerName` (2D and its mesh in 3D) and moves the camera. */
export function showDetection(
  viewer: Viewer,
  layerName: string,
  segmentId: number,
  camera: Camera,
): void {
  const group = segmentGroup(viewer, layerName);
  if (group) {
    clearSegments(group);
    group.selectedSegments?.add(BigInt(segmentId));
    group.visibleSegments.add(BigInt(segmentId));
  }
  viewer.state.restoreState({
    position: camera.position,
    crossSectionScale: camera.crossSectionScale,
    projectionScale: camera.projectionScale,
  });
}

/** Shows nothing of `layerName` (the queue is empty). */
export function showNothing(viewer: Viewer, layerName: string): void {
  const group = segmentGroup(viewer, layerName);
  if (group) clearSegments(group);
}

/** What the page changes in the dataset's view for one round (the second round's raw-data view). */
export interface RoundView {
  /** Neuroglancer layout, e.g. "xy" (one large 2D panel). */
  layout?: string;
  /** Opacity of the shown segment in 2D: low, so that the image under it stays visible. */
  selectedAlpha?: number;
}

/** The missed-object annotation layer: Neuroglancer local annotations in the global space. */
export function missedLayerJson(name: string): { name: string; [key: string]: unknown } {
  return {
    type: "annotation",
    name,
    source: "local://annotations",
    annotationColor: "#ff00ff",
    annotations: [],
  };
}

/**
 * The page's initial state: the dataset's default view with the campaign's layer showing no
 * segment yet and unselected segments hidden in 2D (so the current one is shown alone), the
 * dataset's other segmentations hidden (a ground truth or another model version drawn over the
 * detection under review blurs what is judged; the layer panel can still show them),
 * Neuroglancer's layer side panel closed, the missed-object layer (when named) and the round's
 * view changes.
 */
export function queueInitialState(
  state: ViewerStateJson,
  layerName: string,
  view: RoundView = {},
  missedLayer?: string,
): ViewerStateJson {
  const layers = (state.layers ?? []).map((layer) =>
    layer.name === layerName
      ? {
          ...layer,
          segments: [],
          notSelectedAlpha: 0,
          ...(view.selectedAlpha !== undefined ? { selectedAlpha: view.selectedAlpha } : {}),
        }
      : layer["type"] === "segmentation"
        ? { ...layer, visible: false }
        : layer,
  );
  if (missedLayer) layers.push(missedLayerJson(missedLayer));
  return {
    ...state,
    ...(view.layout ? { layout: view.layout } : {}),
    // The layer side panel would take a third of the view; the page has its own panel.
    ...(state["selectedLayer"] ? { selectedLayer: { layer: layerName, visible: false } } : {}),
    layers,
  };
}

/** Neuroglancer's mouse state: where the pointer is in the global space, when over a panel. */
interface MouseState {
  active: boolean;
  position: Float32Array | number[];
}

/** The pointer's position (global coordinates, the dimensions' order) when it is over data
 * in a panel; undefined otherwise (over the page's own panel or a button, or off the data). */
export function mousePosition(viewer: Viewer): number[] | undefined {
  const mouse = (viewer as unknown as { mouseState?: MouseState }).mouseState;
  if (!mouse?.active) return undefined;
  const position = Array.from(mouse.position, Number);
  return position.length >= 3 && position.every(Number.isFinite) ? position : undefined;
}

/** One point of the missed-object layer, as Neuroglancer's annotation JSON writes it. */
export interface PointAnnotation {
  type: "point";
  id: string;
  point: number[];
  description?: string;
}

interface AnnotationSource {
  restoreState(json: unknown): void;
  toJSON(): PointAnnotation[];
}

/** Replaces the annotation layer's points (undefined until the layer has loaded). */
export function setPoints(
  viewer: Viewer,
  layerName: string,
  points: readonly PointAnnotation[],
): boolean {
  const layer = viewer.layerManager.getLayerByName(layerName)?.layer as
    { localAnnotations?: AnnotationSource } | null | undefined;
  const source = layer?.localAnnotations;
  if (!source) return false;
  source.restoreState(points);
  return true;
}
