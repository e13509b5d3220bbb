// Viewer page: the Detections panel lists each segmentation layer's detections table (count,
// build state, downloads) from /api/v1/datasets/<slug>/detections/, polls while a build runs,
// and lets the dataset's owner start a rebuild.

import { api, pathParams } from "../lib/api";
import { byId } from "../lib/dom";
import { type DetectionTable, isBuilding, renderTables } from "./status";

const LIST = "/api/v1/datasets/{slug}/detections/";
export const POLL_MS = 2000;

export interface DetectionsPanel {
  refresh(): Promise<DetectionTable[]>;
}

/** The panel button's text: one table's count; with several (a layer and its model versions,
 * most often the same objects found again), how many tables, never a sum of their counts. */
export function toggleLabel(tables: readonly Pick<DetectionTable, "count">[]): string {
  if (tables.length === 0) return "Detections";
  if (tables.length === 1) return `Detections (${(tables[0]?.count ?? 0).toLocaleString("en")})`;
  return `Detections (${tables.length} layers)`;
}

export function mountDetectionsPanel(
  panel: HTMLElement,
  toggle: HTMLButtonElement,
  doc: Document = document,
): DetectionsPanel {
  const list = byId("detections-list", HTMLElement, doc);
  const errorBox = byId("detections-error", HTMLElement, doc);
  const slug = pathParams(LIST, panel.dataset.url ?? "").slug ?? "";
  const canRebuild = panel.dataset.canRebuild === "1";
  const win = doc.defaultView ?? window;
  let timer: number | undefined;

  function showError(message: string): void {
    errorBox.textContent = message;
    errorBox.hidden = !message;
  }

  async function rebuild(table: DetectionTable, button: HTMLButtonElement): Promise<void> {
    button.disabled = true;
    showError("");
    try {
      await api.post("/api/v1/datasets/{slug}/layers/{layer_name}/detections/table/", {
        path: { slug, layer_name: table.layer },
      });
      await refresh();
    } catch (error) {
      showError(error instanceof Error ? error.message : String(error));
      button.disabled = false;
    }
  }

  async function refresh(): Promise<DetectionTable[]> {
    win.clearTimeout(timer);
    const tables = await api.get(LIST, { path: { slug } });
    renderTables(list, tables, {
      browseUrl: (t) =>
        `/datasets/${encodeURIComponent(slug)}/detections/${encodeURIComponent(t.layer)}/`,
      ...(canRebuild ? { rebuild: (t, b) => void rebuild(t, b) } : {}),
    });
    toggle.textContent = toggleLabel(tables);
    if (tables.some(isBuilding)) {
      timer = win.setTimeout(() => void refresh().catch(report), POLL_MS);
    }
    return tables;
  }

  function report(error: unknown): void {
    showError(error instanceof Error ? error.message : String(error));
  }

  function setOpen(open: boolean): void {
    panel.hidden = !open;
    toggle.setAttribute("aria-expanded", String(open));
  }

  toggle.addEventListener("click", () => setOpen(panel.hidden));
  doc.getElementById("detections-close")?.addEventListener("click", () => setOpen(false));
  void refresh().catch(report);
  return { refresh };
}
