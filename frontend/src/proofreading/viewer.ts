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

/**
 * The page's initial state: the dataset's default view with the campaign's layer showing no
 * segment yet and unselected segments hidden in 2D (so the current one is shown alone), and
 * Neuroglancer's layer side panel closed.
 */
export function queueInitialState(state: ViewerStateJson, layerName: string): ViewerStateJson {
  return {
    ...state,
    // The layer side panel would take a third of the view; the page has its own panel.
    ...(state["selectedLayer"] ? { selectedLayer: { layer: layerName, visible: false } } : {}),
    layers: (state.layers ?? []).map((layer) =>
      layer.name === layerName ? { ...layer, segments: [], notSelectedAlpha: 0 } : layer,
    ),
  };
}
