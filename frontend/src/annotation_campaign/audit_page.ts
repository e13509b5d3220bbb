// The audit log page (annotation/audit.html): the API's audit entries, newest first, filtered
// by action (or its group), user and box, a page at a time.

import { api } from "../lib/api";
import { byId, el, jsonScript } from "../lib/dom";
import { formatWhen } from "../lib/format";

export interface AuditConfig {
  campaignId: number;
  auditUrl: string;
  pageSize: number;
}

export interface AuditHooks {
  ready: Promise<void>;
  load(): Promise<void>;
}

/** An entry's detail as short text: "user=a1, role=annotator" (pure: unit-tested). */
export function detailText(detail: Record<string, unknown>): string {
  return Object.entries(detail)
    .map(([key, value]) => `${key}=${typeof value === "string" ? value : JSON.stringify(value)}`)
    .join(", ");
}

export function mountAuditPage(doc: Document = document): AuditHooks {
  const config = jsonScript<AuditConfig>("audit-config", doc);
  const table = byId("audit-table", HTMLTableElement, doc);
  const tbody = table.tBodies[0] ?? table.createTBody();
  const error = byId("audit-error", HTMLElement, doc);
  const pageLabel = byId("audit-page", HTMLElement, doc);
  const prev = byId("audit-prev", HTMLButtonElement, doc);
  const next = byId("audit-next", HTMLButtonElement, doc);
  let offset = 0;

  async function load(): Promise<void> {
    const action = byId("audit-action", HTMLSelectElement, doc).value;
    const actor = byId("audit-actor", HTMLSelectElement, doc).value;
    const box = byId("audit-box", HTMLInputElement, doc).value;
    error.hidden = true;
    try {
      const body = await api.get("/api/v1/annotation/campaigns/{campaign_id}/audit/", {
        path: { campaign_id: config.campaignId },
        query: {
          limit: config.pageSize,
          offset,
          ...(action ? { action } : {}),
          ...(actor ? { actor } : {}),
          ...(box ? { box: Number(box) } : {}),
        },
      });
      tbody.replaceChildren(
        ...body.results.map((entry) =>
          el("tr", {}, [
            el("td", { textContent: formatWhen(entry.created) }),
            el("td", { textContent: entry.actor ?? "" }),
            el("td", { textContent: entry.action }),
            el("td", { textContent: entry.box ?? "" }),
            el("td", { textContent: entry.assignment === null ? "" : String(entry.assignment) }),
            el("td", { textContent: detailText(entry.detail) }),
          ]),
        ),
      );
      table.dataset["count"] = String(body.count);
      const last = Math.min(offset + config.pageSize, body.count);
      pageLabel.textContent = body.count ? `${offset + 1}–${last} of ${body.count}` : "no entries";
      prev.disabled = offset === 0;
      next.disabled = last >= body.count;
    } catch (e) {
      error.textContent = e instanceof Error ? e.message : String(e);
      error.hidden = false;
    }
  }

  byId("audit-filter", HTMLFormElement, doc).addEventListener("submit", (event) => {
    event.preventDefault();
    offset = 0;
    void load();
  });
  prev.addEventListener("click", () => {
    offset = Math.max(0, offset - config.pageSize);
    void load();
  });
  next.addEventListener("click", () => {
    offset += config.pageSize;
    void load();
  });
  return { ready: load(), load };
}
