// Detections table page: one segmentation layer's detections, paged, sorted by a click on a
// column header, filtered by a range on one column, from
// /api/v1/datasets/<slug>/layers/<layer>/detections/.

import { api, pathParams } from "../lib/api";
import type { Schemas } from "../lib/api";
import type { paths } from "../../generated/openapi";
import { byId, el } from "../lib/dom";
import { sizeMeasure } from "../lib/format";

export type Detection = Schemas["Detection"];
export type ListQuery = NonNullable<
  paths["/api/v1/datasets/{slug}/layers/{layer_name}/detections/"]["get"]["parameters"]["query"]
>;
type Ordering = NonNullable<ListQuery["ordering"]>;

const LIST = "/api/v1/datasets/{slug}/layers/{layer_name}/detections/";
export const PAGE_SIZE = 50;

type Column = { key: keyof Detection; label: string; digits: number };

/** The columns the page shows, with their headings. */
export const COLUMNS: readonly Column[] = [
  { key: "segment_id", label: "Segment", digits: 0 },
  { key: "voxels", label: "Voxels", digits: 0 },
  { key: "volume", label: "Volume (µm³)", digits: 3 },
  { key: "surface_area", label: "Surface (µm²)", digits: 3 },
  { key: "sphericity", label: "Sphericity", digits: 3 },
  { key: "mean_intensity", label: "Mean intensity", digits: 1 },
  { key: "mean_probability", label: "Mean probability", digits: 3 },
  { key: "centroid_z", label: "z", digits: 1 },
  { key: "centroid_y", label: "y", digits: 1 },
  { key: "centroid_x", label: "x", digits: 1 },
];

/** A 2D image's layer (`planar`): the volume column is the area, and neither a surface, a
 * sphericity nor a z is measured, so those columns go. */
export function columnsFor(planar: boolean): readonly Column[] {
  if (!planar) return COLUMNS;
  const { label, unit } = sizeMeasure(true);
  const gone = new Set<string>(["surface_area", "sphericity", "centroid_z"]);
  return COLUMNS.filter((c) => !gone.has(c.key)).map((c) =>
    c.key === "volume" ? { ...c, label: `${label} (${unit})` } : c,
  );
}

export interface TableState {
  ordering: string;
  offset: number;
  filter: { column: string; min: string; max: string };
}

export const initialState = (): TableState => ({
  ordering: "segment_id",
  offset: 0,
  filter: { column: "volume", min: "", max: "" },
});

/** Clicking a column sorts by it ascending, clicking it again descending. */
export function nextOrdering(current: string, column: string): string {
  return current === column ? `-${column}` : column;
}

/** The list's query parameters for a state (empty or non-numeric bounds are left out). */
export function listQuery(state: TableState, limit = PAGE_SIZE): ListQuery {
  const query: ListQuery = {
    ordering: state.ordering as Ordering,
    limit,
    offset: state.offset,
  };
  const bounds = query as Record<string, number>;
  const { column, min, max } = state.filter;
  if (min.trim() !== "" && Number.isFinite(Number(min))) bounds[`${column}_min`] = Number(min);
  if (max.trim() !== "" && Number.isFinite(Number(max))) bounds[`${column}_max`] = Number(max);
  return query;
}

/** A cell's text: numbers rounded to the column's digits, missing values as "–". */
export function cellText(value: number | null | undefined, digits: number): string {
  if (value === null || value === undefined) return "–";
  return digits === 0 ? String(value) : value.toFixed(digits);
}

/** "51–100 of 1,234" (or "none" when the filter leaves nothing). */
export function rangeText(offset: number, shown: number, count: number): string {
  if (!count) return "none";
  return `${(offset + 1).toLocaleString("en")}–${(offset + shown).toLocaleString("en")} of ${count.toLocaleString("en")}`;
}

export interface TablePage {
  state: TableState;
  load(): Promise<void>;
}

export function mountDetectionsTable(root: HTMLElement, doc: Document = document): TablePage {
  const { slug = "", layer_name = "" } = pathParams(LIST, root.dataset.url ?? "");
  const head = byId("detections-head", HTMLElement, doc);
  const body = byId("detections-body", HTMLElement, doc);
  const range = byId("detections-range", HTMLElement, doc);
  const errorBox = byId("detections-error", HTMLElement, doc);
  const previous = byId("detections-previous", HTMLButtonElement, doc);
  const next = byId("detections-next", HTMLButtonElement, doc);
  const form = byId("detections-filter", HTMLFormElement, doc);
  const state = initialState();
  const columns = columnsFor(root.dataset.planar === "true");
  const meshes = root.dataset.meshes !== "false";
  let count = 0;

  function renderHead(): void {
    const cells = columns.map(({ key, label }) => {
      const sorted = state.ordering.replace(/^-/, "") === key;
      const arrow = sorted ? (state.ordering.startsWith("-") ? " ▼" : " ▲") : "";
      const button = el("button", {
        type: "button",
        className: "sort",
        textContent: label + arrow,
      });
      button.addEventListener("click", () => {
        state.ordering = nextOrdering(state.ordering, key);
        state.offset = 0;
        void load();
      });
      const th = el("th", { scope: "col" }, [button]);
      if (sorted)
        th.setAttribute("aria-sort", state.ordering.startsWith("-") ? "descending" : "ascending");
      return th;
    });
    const mesh = meshes ? [el("th", { scope: "col", textContent: "Mesh" })] : [];
    head.replaceChildren(el("tr", {}, [...cells, ...mesh]));
  }

  function renderRows(rows: readonly Detection[]): void {
    body.replaceChildren(
      ...rows.map((row) => {
        const mesh = el("a", {
          href: `${root.dataset.url}${row.segment_id}/mesh.ply`,
          textContent: "PLY",
          download: "",
        });
        return el("tr", {}, [
          ...columns.map(({ key, digits }) =>
            el("td", { textContent: cellText(row[key] as number | null, digits) }),
          ),
          ...(meshes ? [el("td", {}, [mesh])] : []),
        ]);
      }),
    );
  }

  async function load(): Promise<void> {
    errorBox.hidden = true;
    renderHead();
    try {
      const page = await api.get(LIST, {
        path: { slug, layer_name },
        query: listQuery(state),
      });
      count = page.count;
      renderRows(page.results);
      range.textContent = rangeText(state.offset, page.results.length, count);
      previous.disabled = state.offset === 0;
      next.disabled = state.offset + PAGE_SIZE >= count;
    } catch (error) {
      errorBox.textContent = error instanceof Error ? error.message : String(error);
      errorBox.hidden = false;
    }
  }

  previous.addEventListener("click", () => {
    state.offset = Math.max(0, state.offset - PAGE_SIZE);
    void load();
  });
  next.addEventListener("click", () => {
    state.offset += PAGE_SIZE;
    void load();
  });
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    const data = new FormData(form);
    state.filter = {
      column: String(data.get("column") ?? "volume"),
      min: String(data.get("min") ?? ""),
      max: String(data.get("max") ?? ""),
    };
    state.offset = 0;
    void load();
  });
  form.addEventListener("reset", () => {
    state.filter = { ...state.filter, min: "", max: "" };
    state.offset = 0;
    setTimeout(() => void load(), 0);
  });
  void load();
  return { state, load };
}
