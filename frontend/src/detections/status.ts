// Detections tables of a dataset's segmentation layers, as the viewer's Detections panel lists
// them: rows, build state, downloads. Rendering only; panel.ts fetches and polls.

import type { Schemas } from "../lib/api";
import { el } from "../lib/dom";

export type DetectionTable = Schemas["TableStatus"];

const ACTIVE = new Set(["queued", "running", "retrying"]);

/** Whether the layer's latest build has yet to end (the panel polls while one has). */
export function isBuilding(table: DetectionTable): boolean {
  return ACTIVE.has(table.table_state);
}

/** "1,234 detections" / "no table yet". */
export function countText(table: DetectionTable): string {
  if (table.built === null) return "no table yet";
  const n = table.count.toLocaleString("en");
  return `${n} detection${table.count === 1 ? "" : "s"}`;
}

/** The build's state for a person: "building: measuring 40 %", "build failed: ...". */
export function stateText(table: DetectionTable): string {
  const build = table.latest_build;
  switch (table.table_state) {
    case "none":
      return "never built";
    case "queued":
      return "build queued";
    case "retrying":
      return "build restarting";
    case "running": {
      const stage = build?.stage || "starting";
      const percent = build && build.total > 0 ? ` ${Math.floor(build.progress * 100)} %` : "";
      return `building: ${stage}${percent}`;
    }
    case "failed":
      return `build failed: ${build?.error || "no message"}`;
    case "cancelled":
      return "build cancelled";
    default:
      return "up to date";
  }
}

export interface TableActions {
  /** Offered when set (the dataset's owner). */
  rebuild?: (table: DetectionTable, button: HTMLButtonElement) => void;
  /** The sortable table page of a layer. */
  browseUrl: (table: DetectionTable) => string;
}

/** Replaces `list`'s items with one per layer: name, count, state, downloads, actions. */
export function renderTables(
  list: HTMLElement,
  tables: readonly DetectionTable[],
  actions: TableActions,
): void {
  const items = tables.map((table) => {
    const links: (Node | string)[] = [];
    if (table.built !== null) {
      links.push(
        el("a", { href: actions.browseUrl(table), textContent: "Browse" }),
        el("a", { href: table.downloads.csv, textContent: "CSV", download: "" }),
        el("a", { href: table.downloads.parquet, textContent: "Parquet", download: "" }),
      );
      if (table.downloads.meshes_zip) {
        links.push(
          el("a", { href: table.downloads.meshes_zip, textContent: "Meshes (zip)", download: "" }),
        );
      }
    }
    if (actions.rebuild) {
      const button = el("button", {
        type: "button",
        className: "detections-rebuild",
        textContent: "Rebuild",
        disabled: isBuilding(table),
      });
      button.addEventListener("click", () => actions.rebuild?.(table, button));
      links.push(button);
    }
    const failed = table.table_state === "failed";
    return el("li", { className: "detections-item" }, [
      el("div", { className: "detections-meta" }, [
        el("strong", { textContent: table.layer }),
        el("span", { className: "detections-count", textContent: countText(table) }),
        el("small", {
          className: failed ? "detections-state detections-failed" : "detections-state",
          textContent: stateText(table),
        }),
      ]),
      el("div", { className: "detections-links" }, links),
    ]);
  });
  if (!items.length) {
    items.push(el("li", { className: "detections-item", textContent: "No segmentation layers." }));
  }
  list.replaceChildren(...items);
}
