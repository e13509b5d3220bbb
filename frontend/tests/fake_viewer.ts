// A stand-in for Neuroglancer's viewer object with the shape the bridge reads: layers whose data
// sources the test moves from loading to loaded or failed. (The real viewer is exercised by the
// browser tests in tests/browser/.)
import type {
  LayerDataSource,
  ManagedLayer,
  Viewer,
  ViewerStateJson,
} from "../src/lib/neuroglancer";

export interface FakeViewer extends Viewer {
  restored: unknown[];
  handlers: Set<() => void>;
  addLayer(name: string, sources: number, visibleSegments?: number): LayerDataSource[];
}

export function fakeViewer(): FakeViewer {
  const managedLayers: ManagedLayer[] = [];
  const handlers = new Set<() => void>();
  const restored: unknown[] = [];
  let json: ViewerStateJson = {};
  return {
    restored,
    handlers,
    state: {
      toJSON: () => json,
      restoreState: (state: unknown) => {
        restored.push(state);
        json = state as ViewerStateJson;
        for (const handler of handlers) handler();
      },
      changed: {
        add: (handler) => {
          handlers.add(handler);
          return () => handlers.delete(handler);
        },
      },
    },
    layerManager: {
      managedLayers,
      getLayerByName: (name) => managedLayers.find((m) => m.name === name),
    },
    isReady: () => true,
    addLayer(name, sources, visibleSegments) {
      const dataSources: LayerDataSource[] = Array.from({ length: sources }, (_, i) => ({
        spec: { url: `zarr3://http://x/${name}/${i}` },
        loadState: undefined,
      }));
      managedLayers.push({
        name,
        layer: {
          dataSources,
          ...(visibleSegments === undefined
            ? {}
            : {
                displayState: {
                  segmentationGroupState: { value: { visibleSegments: { size: visibleSegments } } },
                },
              }),
        },
      });
      return dataSources;
    },
  };
}

/** An iframe whose window gets `viewer` only when the test says so. */
export function fakeFrame(): { frame: HTMLIFrameElement; start(viewer: Viewer): void } {
  const win: { viewer?: Viewer } = {};
  return {
    frame: { contentWindow: win } as unknown as HTMLIFrameElement,
    start: (viewer) => {
      win.viewer = viewer;
    },
  };
}
