import { describe, expect, it } from "vitest";

import {
  PAINTED_LABELS,
  labelsLayer,
  labelsSegments,
  meshSource,
  packedSegmentColour,
  segmentColour,
  swapLabelsSources,
} from "../src/annotation_task/labels_layer";
import { colourOf } from "../src/label_editor/render";
import type { Viewer } from "../src/lib/neuroglancer";

const ZARR = (v: number): string =>
  `zarr2://http://h/api/v1/annotation/assignments/3/labels/v${v}/`;
const MESH = (v: number): string =>
  `precomputed://http://h/api/v1/annotation/assignments/3/labels/v${v}/meshes/`;

interface FakeSource {
  spec: {
    url: string;
    transform: unknown;
    enableDefaultSubsources: boolean;
    subsources: Map<string, unknown>;
  };
  specSets: number;
}

/** A segmentation layer with Neuroglancer's data source semantics the swap relies on: setting a
 * spec reloads that source, an empty URL removes it, addDataSource appends one. */
function fakeLayerViewer(urls: string[]): {
  viewer: Viewer;
  sources: FakeSource[];
  visible: Set<bigint>;
  colours: Map<bigint, bigint>;
} {
  const sources: FakeSource[] = [];
  const visible = new Set<bigint>([99n]);
  const colours = new Map<bigint, bigint>();
  const make = (url: string, subsources = new Map<string, unknown>()): FakeSource => {
    const source: FakeSource = {
      specSets: 0,
      spec: { url, transform: undefined, enableDefaultSubsources: true, subsources },
    };
    let spec = source.spec;
    Object.defineProperty(source, "spec", {
      get: () => spec,
      set: (value: FakeSource["spec"]) => {
        source.specSets += 1;
        if (value.url === "") sources.splice(sources.indexOf(source), 1);
        else spec = value;
      },
    });
    return source;
  };
  // As Neuroglancer reads the layer's JSON spec: the bounds subsource off.
  sources.push(...urls.map((url) => make(url, new Map([["bounds", { enabled: false }]]))));
  const layer = {
    dataSources: sources,
    addDataSource: (spec: FakeSource["spec"]) => sources.push(make(spec.url, spec.subsources)),
    displayState: {
      segmentationGroupState: { value: { visibleSegments: visible } },
      segmentationColorGroupState: { value: { segmentStatedColors: colours } },
    },
  };
  const managed = { name: PAINTED_LABELS, layer };
  const viewer = {
    layerManager: {
      managedLayers: [managed],
      getLayerByName: (name: string) => (name === PAINTED_LABELS ? managed : undefined),
    },
  } as unknown as Viewer;
  return { viewer, sources, visible, colours };
}

describe("the painted labels layer", () => {
  it("is a segmentation layer of the version's sources showing its objects", () => {
    const layer = labelsLayer([ZARR(2), MESH(2)], undefined, ["4", "7"]);
    expect(layer).toMatchObject({
      type: "segmentation",
      name: PAINTED_LABELS,
      source: [
        { url: ZARR(2), subsources: { bounds: false } },
        { url: MESH(2), subsources: { bounds: false } },
      ],
      segments: ["4", "7"],
      hideSegmentZero: true,
    });
    // Each object in the Paint tab's colour, not Neuroglancer's hash of its id.
    expect(layer["segmentColors"]).toEqual({ "4": segmentColour("4"), "7": segmentColour("7") });
    expect(segmentColour("4")).toMatch(/^#[0-9a-f]{6}$/);
    expect(parseInt(segmentColour("4").slice(1), 16)).toBe(colourOf(4));
    expect(segmentColour("4")).not.toBe(segmentColour("7"));
    expect(meshSource([ZARR(2), MESH(2)])).toBe(MESH(2));
    expect(meshSource([ZARR(0)])).toBeUndefined();
  });

  it("reads the object ids from the mesh source's segment properties", async () => {
    const asked: string[] = [];
    const fetcher = (async (url: string) => {
      asked.push(url);
      return new Response(JSON.stringify({ inline: { ids: ["3", "12"] } }));
    }) as typeof fetch;
    expect(await labelsSegments([ZARR(2), MESH(2)], fetcher)).toEqual(["3", "12"]);
    expect(asked).toEqual([
      "http://h/api/v1/annotation/assignments/3/labels/v2/meshes/segment_properties/info",
    ]);
    expect(await labelsSegments([ZARR(0)], fetcher)).toEqual([]);
    const failing = (async () => new Response("", { status: 404 })) as unknown as typeof fetch;
    await expect(labelsSegments([ZARR(1), MESH(1)], failing)).rejects.toThrow("404");
  });

  it("swaps only the sources whose URL changed, adds and drops the mesh source", () => {
    const { viewer, sources, visible, colours } = fakeLayerViewer([ZARR(1), MESH(1)]);
    const [zarr, mesh] = sources;
    swapLabelsSources(viewer, [ZARR(2), MESH(2)], ["1", "2"]);
    expect(sources.map((s) => s.spec.url)).toEqual([ZARR(2), MESH(2)]);
    expect([zarr?.specSets, mesh?.specSets]).toEqual([1, 1]);
    expect([...visible]).toEqual([1n, 2n]);
    // The same version again changes nothing.
    swapLabelsSources(viewer, [ZARR(2), MESH(2)], ["1", "2"]);
    expect([zarr?.specSets, mesh?.specSets]).toEqual([1, 1]);
    // Everything erased: no mesh source; painting again brings it back.
    swapLabelsSources(viewer, [ZARR(3)], []);
    expect(sources.map((s) => s.spec.url)).toEqual([ZARR(3)]);
    expect(visible.size).toBe(0);
    swapLabelsSources(viewer, [ZARR(4), MESH(4)], ["5"]);
    expect(sources.map((s) => s.spec.url)).toEqual([ZARR(4), MESH(4)]);
    expect([...visible]).toEqual([5n]);
    // New objects get the Paint tab's colours too, packed as Neuroglancer holds them (red low).
    expect(colours.get(5n)).toBe(packedSegmentColour("5"));
    const rgb = colourOf(5);
    expect(Number(packedSegmentColour("5")) & 255).toBe((rgb >> 16) & 255);
    expect((Number(packedSegmentColour("5")) >> 16) & 255).toBe(rgb & 255);
    // Every source, swapped or added, keeps its bounds outline off (it would hide the task box).
    for (const source of sources) {
      expect(source.spec.subsources.get("bounds")).toEqual({ enabled: false });
    }
  });

  it("says so when the page has no such layer", () => {
    const { viewer } = fakeLayerViewer([ZARR(1)]);
    expect(() => swapLabelsSources(viewer, [ZARR(2)], [], "elsewhere")).toThrow(
      'There is no layer "elsewhere"',
    );
  });
});
