// @vitest-environment happy-dom
import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import { mountDetectionsPanel, toggleLabel } from "../src/detections/panel";
import {
  type DetectionTable,
  countText,
  isBuilding,
  renderTables,
  stateText,
} from "../src/detections/status";
import {
  type Detection,
  cellText,
  columnsFor,
  initialState,
  listQuery,
  mountDetectionsTable,
  nextOrdering,
  rangeText,
} from "../src/detections/table";
import { scriptFetch } from "./helpers";

const BASE = "/api/v1/datasets/cells/layers/nuclei/detections/";

function table(fields: Partial<DetectionTable> = {}): DetectionTable {
  return {
    layer: "nuclei",
    table_state: "succeeded",
    count: 1234,
    built: "2026-03-03T10:00:00Z",
    unit: "micrometer",
    latest_build: null,
    has_meshes: true,
    downloads: {
      csv: `${BASE}export.csv`,
      parquet: `${BASE}export.parquet`,
      meshes_zip: `${BASE}meshes.zip`,
    },
    points: null,
    ...fields,
  };
}

function build(fields: Partial<NonNullable<DetectionTable["latest_build"]>> = {}) {
  return {
    id: 1,
    status: "running" as const,
    state: "running" as const,
    reason: "import",
    stage: "measuring",
    done: 2,
    total: 5,
    progress: 0.4,
    error: "",
    n_detections: null,
    attempts: 1,
    created: "2026-03-03T10:00:00Z",
    started: null,
    finished: null,
    ...fields,
  };
}

describe("detections tables", () => {
  it("says what a table holds and how its build stands", () => {
    expect(countText(table())).toBe("1,234 detections");
    expect(countText(table({ count: 1 }))).toBe("1 detection");
    expect(countText(table({ built: null, count: 0 }))).toBe("no table yet");
    expect(stateText(table())).toBe("up to date");
    expect(stateText(table({ table_state: "none" }))).toBe("never built");
    expect(stateText(table({ table_state: "running", latest_build: build() }))).toBe(
      "building: measuring 40 %",
    );
    expect(
      stateText(table({ table_state: "failed", latest_build: build({ error: "no labels" }) })),
    ).toBe("build failed: no labels");
    expect(isBuilding(table({ table_state: "queued" }))).toBe(true);
    expect(isBuilding(table())).toBe(false);
  });

  it("lists downloads, and Rebuild only when offered", () => {
    const list = document.createElement("ul");
    const rebuild = vi.fn();
    renderTables(list, [table(), table({ layer: "cells", built: null, count: 0 })], {
      browseUrl: (t) => `/datasets/cells/detections/${t.layer}/`,
      rebuild,
    });
    const items = [...list.querySelectorAll(".detections-item")];
    expect(
      [...items[0]!.querySelectorAll("a")].map((a) => [a.textContent, a.getAttribute("href")]),
    ).toEqual([
      ["Browse", "/datasets/cells/detections/nuclei/"],
      ["CSV", `${BASE}export.csv`],
      ["Parquet", `${BASE}export.parquet`],
      ["Meshes (zip)", `${BASE}meshes.zip`],
    ]);
    expect(items[1]!.querySelectorAll("a")).toHaveLength(0); // nothing to download yet
    items[1]!.querySelector<HTMLButtonElement>(".detections-rebuild")!.click();
    expect(rebuild.mock.calls[0]?.[0]).toMatchObject({ layer: "cells" });
    renderTables(list, [table()], { browseUrl: () => "/" });
    expect(list.querySelector(".detections-rebuild")).toBeNull();
    renderTables(list, [], { browseUrl: () => "/" });
    expect(list.textContent).toBe("No segmentation layers.");
  });
});

describe("detections panel", () => {
  beforeEach(() => {
    document.body.innerHTML = `
      <input type="hidden" name="csrfmiddlewaretoken" value="c5rf">
      <button type="button" id="detections-toggle" aria-expanded="false">Detections</button>
      <section id="detections-panel" hidden data-url="/api/v1/datasets/cells/detections/"
               data-can-rebuild="1">
        <button type="button" id="detections-close">×</button>
        <p id="detections-error" hidden></p><ul id="detections-list"></ul>
      </section>`;
  });
  afterEach(() => {
    document.body.innerHTML = "";
    vi.useRealTimers();
  });

  it("shows the count on its button, polls while building, starts a rebuild", async () => {
    vi.useFakeTimers({ shouldAdvanceTime: true });
    let state: DetectionTable = table({ table_state: "running", latest_build: build() });
    const sent = scriptFetch((request) => {
      if (request.method === "POST") {
        state = table({ table_state: "queued" });
        return { status: 202, body: state };
      }
      return { status: 200, body: [state] };
    });
    const toggle = document.getElementById("detections-toggle") as HTMLButtonElement;
    const panel = document.getElementById("detections-panel")!;
    mountDetectionsPanel(panel, toggle);
    await vi.waitFor(() => expect(toggle.textContent).toBe("Detections (1,234)"));
    toggle.click();
    expect(panel.hidden).toBe(false);
    expect(panel.querySelector(".detections-state")?.textContent).toBe("building: measuring 40 %");
    state = table();
    await vi.advanceTimersByTimeAsync(2100);
    await vi.waitFor(() =>
      expect(panel.querySelector(".detections-state")?.textContent).toBe("up to date"),
    );
    const gets = sent.filter((r) => r.method === "GET").length;
    await vi.advanceTimersByTimeAsync(5000);
    expect(sent.filter((r) => r.method === "GET")).toHaveLength(gets); // no more polling
    panel.querySelector<HTMLButtonElement>(".detections-rebuild")!.click();
    await vi.waitFor(() =>
      expect(panel.querySelector(".detections-state")?.textContent).toBe("build queued"),
    );
    const post = sent.find((r) => r.method === "POST")!;
    expect([post.url, post.headers["X-CSRFToken"]]).toEqual([`${BASE}table/`, "c5rf"]);
  });

  it("counts one table's detections, and names several tables without summing them", () => {
    expect(toggleLabel([])).toBe("Detections");
    expect(toggleLabel([{ count: 1234 }])).toBe("Detections (1,234)");
    expect(toggleLabel([{ count: 270 }, { count: 270 }])).toBe("Detections (2 layers)");
  });

  it("shows the server's message when the list fails", async () => {
    scriptFetch([{ status: 404, body: { message: "No such dataset, or you may not see it." } }]);
    const toggle = document.getElementById("detections-toggle") as HTMLButtonElement;
    mountDetectionsPanel(document.getElementById("detections-panel")!, toggle);
    const error = document.getElementById("detections-error")!;
    await vi.waitFor(() => expect(error.hidden).toBe(false));
    expect(error.textContent).toBe("No such dataset, or you may not see it.");
  });
});

function detection(segment_id: number): Detection {
  const row: Record<string, number | null> = { id: segment_id + 100, segment_id };
  for (const key of ["voxels", "volume", "sphericity", "centroid_z", "centroid_y", "centroid_x"]) {
    row[key] = segment_id * 1.5;
  }
  for (const key of ["surface_area", "mean_intensity", "mean_probability"]) row[key] = null;
  return row as unknown as Detection;
}

describe("detections table page", () => {
  it("builds its queries and texts", () => {
    expect(nextOrdering("segment_id", "volume")).toBe("volume");
    expect(nextOrdering("volume", "volume")).toBe("-volume");
    expect(nextOrdering("-volume", "volume")).toBe("volume");
    const state = initialState();
    expect(listQuery(state)).toEqual({ ordering: "segment_id", limit: 50, offset: 0 });
    state.filter = { column: "sphericity", min: " 0.8 ", max: "x" };
    expect(listQuery(state, 10)).toEqual({
      ordering: "segment_id",
      limit: 10,
      offset: 0,
      sphericity_min: 0.8,
    });
    expect(cellText(null, 2)).toBe("–");
    expect(cellText(1.23456, 3)).toBe("1.235");
    expect(cellText(7, 0)).toBe("7");
    expect(rangeText(50, 50, 1234)).toBe("51–100 of 1,234");
    expect(rangeText(0, 0, 0)).toBe("none");
  });

  it("sorts on a header click, pages and filters", async () => {
    document.body.innerHTML = `
      <form id="detections-filter">
        <select name="column"><option value="volume">volume</option></select>
        <input name="min"><input name="max"><button type="submit">Filter</button>
      </form>
      <p id="detections-error" hidden></p>
      <div id="detections-table" data-url="${BASE}">
        <table><thead id="detections-head"></thead><tbody id="detections-body"></tbody></table>
      </div>
      <button id="detections-previous"></button><span id="detections-range"></span>
      <button id="detections-next"></button>`;
    const sent = scriptFetch((request) => {
      const offset = Number(new URL(request.url, "http://x").searchParams.get("offset"));
      const results = [detection(offset + 1), detection(offset + 2)];
      return { status: 200, body: { count: 120, next: null, previous: null, results } };
    });
    mountDetectionsTable(document.getElementById("detections-table")!);
    const range = document.getElementById("detections-range")!;
    await vi.waitFor(() => expect(range.textContent).toBe("1–2 of 120"));
    const rows = [...document.querySelectorAll("#detections-body tr")];
    expect(rows[0]!.querySelectorAll("td")[0]!.textContent).toBe("1");
    expect(rows[0]!.querySelector("a")!.getAttribute("href")).toBe(`${BASE}1/mesh.ply`);
    // the header is drawn again after each load: look the button up each time
    const volume = () => [...document.querySelectorAll<HTMLButtonElement>("th .sort")][2]!;
    volume().click();
    await vi.waitFor(() => expect(sent).toHaveLength(2));
    await vi.waitFor(() => expect(volume().textContent).toBe("Volume (µm³) ▲"));
    volume().click();
    await vi.waitFor(() => expect(sent).toHaveLength(3));
    expect(new URL(sent[2]!.url, "http://x").searchParams.get("ordering")).toBe("-volume");
    expect(volume().closest("th")!.getAttribute("aria-sort")).toBe("descending");
    document.getElementById("detections-next")!.click();
    await vi.waitFor(() => expect(range.textContent).toBe("51–52 of 120"));
    const form = document.getElementById("detections-filter") as HTMLFormElement;
    (form.elements.namedItem("min") as HTMLInputElement).value = "2.5";
    form.requestSubmit();
    await vi.waitFor(() => expect(sent).toHaveLength(5));
    const last = new URL(sent[4]!.url, "http://x").searchParams;
    expect([last.get("volume_min"), last.get("offset"), last.get("ordering")]).toEqual([
      "2.5",
      "0",
      "-volume",
    ]);
  });

  it("shows a 2D image's objects by their area, without surface, sphericity, z or meshes", async () => {
    const labels = columnsFor(true).map((c) => c.label);
    expect(labels).toContain("Area (µm²)");
    for (const gone of ["Volume (µm³)", "Surface (µm²)", "Sphericity", "z"])
      expect(labels).not.toContain(gone);
    expect(columnsFor(false).map((c) => c.label)).toContain("Volume (µm³)");
    document.body.innerHTML = `
      <form id="detections-filter"><select name="column"></select>
        <input name="min"><input name="max"></form>
      <p id="detections-error" hidden></p>
      <div id="detections-table" data-url="${BASE}" data-planar="true" data-meshes="false">
        <table><thead id="detections-head"></thead><tbody id="detections-body"></tbody></table>
      </div>
      <button id="detections-previous"></button><span id="detections-range"></span>
      <button id="detections-next"></button>`;
    scriptFetch(() => ({
      status: 200,
      body: { count: 1, next: null, previous: null, results: [detection(1)] },
    }));
    mountDetectionsTable(document.getElementById("detections-table")!);
    const range = document.getElementById("detections-range")!;
    await vi.waitFor(() => expect(range.textContent).toBe("1–1 of 1"));
    const heads = [...document.querySelectorAll("#detections-head th")].map((th) => th.textContent);
    // Sorted by segment (▲); no Mesh column: a 2D segmentation has no meshes.
    expect(heads).toEqual(labels.map((label, i) => (i === 0 ? `${label} ▲` : label)));
    expect(document.querySelector("#detections-body a")).toBeNull();
  });
});
