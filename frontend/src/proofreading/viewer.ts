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

function segmentSet(viewer: Viewer, layerName: string): SegmentSet | undefined {
  const display = viewer.layerManager.getLayerByName(layerName)?.layer?.displayState as
    { segmentationGroupState?: { value: { visibleSegments: SegmentSet } } } | undefined;
  return display?.segmentationGroupState?.value.visibleSegments;
}

/** Shows `segmentId` alone in `layerName` (2D and its mesh in 3D) and moves the camera. */
export function showDetection(
  viewer: Viewer,
  layerName: string,
  segmentId: number,
  camera: Camera,
): void {
  const segments = segmentSet(viewer, layerName);
  if (segments) {
    segments.clear();
    segments.add(BigInt(segmentId));
  }
  viewer.state.restoreState({
    position: camera.position,
    crossSectionScale: camera.crossSectionScale,
    projectionScale: camera.projectionScale,
  });
}

/** Shows nothing of `layerName` (the queue is empty). */
export function showNothing(viewer: Viewer, layerName: string): void {
  segmentSet(viewer, layerName)?.clear();
}

/**
 * The page's initial state: the dataset's default view with the campaign's layer showing no
 * segment yet and unselected segments hidden in 2D (so the current one is shown alone).
 */
export function queueInitialState(state: ViewerStateJson, layerName: string): ViewerStateJson {
  return {
    ...state,
    layers: (state.layers ?? []).map((layer) =>
      layer.name === layerName ? { ...layer, segments: [], notSelectedAlpha: 0 } : layer,
    ),
  };
}
