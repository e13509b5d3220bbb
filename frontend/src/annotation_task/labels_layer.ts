// The painted labels of a task as a Neuroglancer segmentation layer: the labels version's
// OME-Zarr (zarr3://, NGFF 0.5: read through its zarr.json files, where zarr2:// had
// Neuroglancer probe .zarray and .zattrs files that do not exist, each a 404 in the console)
// and the meshes of its objects (precomputed://, absent while nothing is painted), as
// `labels/`'s `neuroglancer_sources` gives them. A version's URLs never change, so showing a
// new version swaps the layer's sources in place (`showLabelsVersion`): Neuroglancer
// reloads that layer only, and the objects whose voxels did not change keep their mesh fragment
// URL (webapp/annotation/api/label_mesh_views.py), which the browser already holds.
// Each source's "bounds" subsource (Neuroglancer's yellow outline of the volume) is off: the
// labels volume is the task box, and its outline would lie on the box's own cyan one and hide it
// (`sourcesWithoutBounds`; the swap keeps it off). Each object has the colour the Paint tab draws
// it in (`label_editor/render.colourOf`), not Neuroglancer's own hash of its id: one object, one
// colour on both tabs.

import { colourOf } from "../label_editor/render";
import { type Viewer, sourcesWithoutBounds } from "../lib/neuroglancer";

export const PAINTED_LABELS = "painted labels";

/** The mesh source among a version's sources (its `precomputed://` URL), if any. */
export function meshSource(sources: readonly string[]): string | undefined {
  return sources.find((url) => url.startsWith("precomputed://"));
}

/** The Paint tab's colour of object `id` (decimal) as Neuroglancer's "#rrggbb". */
export function segmentColour(id: string): string {
  return `#${colourOf(Number(id)).toString(16).padStart(6, "0")}`;
}

/** The same colour packed as Neuroglancer holds a stated segment colour (red in the low byte). */
export function packedSegmentColour(id: string): bigint {
  const rgb = colourOf(Number(id));
  return BigInt(((rgb >> 16) & 255) | (rgb & 0xff00) | ((rgb & 255) << 16));
}

/** Neuroglancer's spec of a segmentation layer showing `sources`, with `segments` (decimal
 * ids) visible: their meshes in 3D; in 2D every painted voxel shows (`hideSegmentZero`). */
export function labelsLayer(
  sources: readonly string[],
  name: string = PAINTED_LABELS,
  segments: readonly string[] = [],
): { name: string; [key: string]: unknown } {
  return {
    type: "segmentation",
    name,
    source: sourcesWithoutBounds(sources),
    segments: [...segments],
    segmentColors: Object.fromEntries(segments.map((id) => [id, segmentColour(id)])),
    selectedAlpha: 0.4,
    notSelectedAlpha: 0.15,
    objectAlpha: 1,
    hideSegmentZero: true,
    pick: false,
  };
}

/** The object ids of a version, read from its meshes' segment properties (none without). */
export async function labelsSegments(
  sources: readonly string[],
  fetcher: typeof fetch = fetch,
): Promise<string[]> {
  const mesh = meshSource(sources);
  if (mesh === undefined) return [];
  const url = mesh.slice("precomputed://".length).replace(/\/?$/, "/") + "segment_properties/info";
  const response = await fetcher(url, { credentials: "same-origin" });
  if (!response.ok) throw new Error(`The painted objects could not be read (${response.status}).`);
  const body = (await response.json()) as { inline?: { ids?: unknown } };
  const ids = body.inline?.ids;
  return Array.isArray(ids) ? ids.map(String) : [];
}

/** Neuroglancer's data source spec (`LayerDataSource.spec`), as far as the swap needs it. */
interface DataSourceSpec {
  url: string;
  transform: unknown;
  enableDefaultSubsources: boolean;
  subsources: Map<string, unknown>;
  [key: string]: unknown;
}
interface SwappableSource {
  spec: DataSourceSpec;
}
interface VisibleSegments {
  clear(): void;
  add(id: bigint): void;
  readonly size: number;
}
interface StatedColours {
  set(id: bigint, colour: bigint): void;
}
interface SegmentationLayerLike {
  dataSources: SwappableSource[];
  addDataSource(spec: DataSourceSpec): unknown;
  displayState?: {
    segmentationGroupState?: { value: { visibleSegments: VisibleSegments } };
    segmentationColorGroupState?: { value: { segmentStatedColors: StatedColours } };
  };
}

/** Points the existing layer `name` at a version's `sources` (and shows `segments`) without
 * touching any other layer: sources whose URL is unchanged stay as they are, a changed URL is
 * set on its data source (Neuroglancer reloads that one; its subsource choices, the hidden
 * bounds included, carry over), a missing one is added with the hidden subsources off, a
 * surplus one removed (its URL set to "", Neuroglancer's way to drop a source). */
export function swapLabelsSources(
  viewer: Viewer,
  sources: readonly string[],
  segments: readonly string[],
  name: string = PAINTED_LABELS,
): void {
  const layer = viewer.layerManager.getLayerByName(name)?.layer as unknown as
    SegmentationLayerLike | null | undefined;
  if (!layer) throw new Error(`There is no layer "${name}" to show the labels in.`);
  const current = layer.dataSources;
  for (let i = current.length - 1; i >= sources.length; i -= 1) {
    const source = current[i];
    if (source) source.spec = { ...source.spec, url: "" };
  }
  sources.forEach((url, i) => {
    const source = layer.dataSources[i];
    if (source === undefined) {
      layer.addDataSource({
        url,
        transform: undefined,
        enableDefaultSubsources: true,
        subsources: new Map([["bounds", { enabled: false }]]),
      });
    } else if (source.spec.url !== url) {
      source.spec = { ...source.spec, url };
    }
  });
  const colours = layer.displayState?.segmentationColorGroupState?.value.segmentStatedColors;
  for (const id of segments) colours?.set(BigInt(id), packedSegmentColour(id));
  const visible = layer.displayState?.segmentationGroupState?.value.visibleSegments;
  if (visible) {
    visible.clear();
    for (const id of segments) visible.add(BigInt(id));
  }
}

/** Shows a labels version (`labels/`'s `neuroglancer_sources`) in the layer, in place: what
 * the page calls after a labels save. */
export async function showLabelsVersion(
  viewer: Viewer,
  sources: readonly string[],
  name: string = PAINTED_LABELS,
): Promise<void> {
  swapLabelsSources(viewer, sources, await labelsSegments(sources), name);
}
