// Viewer page, owners only: the Share panel lists the dataset's active share links and creates
// and revokes them through /api/v1/datasets/<slug>/share-links/ (session auth + CSRF token).

import { type ShareLink, api, listItems, pathParams } from "../lib/api";
import { copyNodeText } from "../lib/clipboard";
import { byId } from "../lib/dom";
import { type ItemActions, expiryFromDays, renderShareList } from "./list";

const LIST = "/api/v1/datasets/{slug}/share-links/";

export function mountSharePanel(
  panel: HTMLElement,
  toggle: HTMLElement,
  doc: Document = document,
): void {
  const form = byId("share-form", HTMLFormElement, doc);
  const list = byId("share-list", HTMLElement, doc);
  const errorBox = byId("share-error", HTMLElement, doc);
  const statusBox = byId("share-status", HTMLElement, doc);
  const slug = pathParams(LIST, panel.dataset.url ?? "").slug ?? "";
  const labelInput = form.elements.namedItem("label") as HTMLInputElement;
  const daysInput = form.elements.namedItem("days") as HTMLInputElement;
  const win = doc.defaultView ?? window;

  function showError(message: string): void {
    errorBox.textContent = message;
    errorBox.hidden = !message;
  }

  const actions: ItemActions = {
    copy(anchor, button) {
      void copyNodeText(anchor, anchor.href, win).then((copied) => {
        button.textContent = copied ? "Copied" : "Press Ctrl+C";
        setTimeout(() => (button.textContent = "Copy"), 2000);
      });
    },
    revoke(link, button) {
      void revokeLink(link, button);
    },
  };

  async function refresh(): Promise<ShareLink[]> {
    const body = await api.get(LIST, { path: { slug } });
    // The endpoint answers a plain list; listItems also takes the paginated shape.
    return renderShareList(list, listItems<ShareLink>(body), actions);
  }

  async function revokeLink(link: ShareLink, button: HTMLButtonElement): Promise<void> {
    if (!win.confirm("Revoke this link? Anyone using it loses access at once.")) return;
    button.disabled = true;
    showError("");
    try {
      await api.post("/api/v1/datasets/{slug}/share-links/{link_id}/revoke/", {
        path: { slug, link_id: link.id },
      });
      statusBox.textContent = "Link revoked.";
      await refresh();
    } catch (error) {
      showError(error instanceof Error ? error.message : String(error));
      button.disabled = false;
    }
  }

  form.addEventListener("submit", (event) => {
    event.preventDefault();
    void create();
  });

  async function create(): Promise<void> {
    const submit = form.querySelector<HTMLButtonElement>("button[type=submit]");
    if (submit) submit.disabled = true;
    showError("");
    statusBox.textContent = "Creating…";
    try {
      const expires = expiryFromDays(daysInput.value);
      await api.post(LIST, {
        path: { slug },
        body: { label: labelInput.value.trim(), expires_at: expires && expires.toISOString() },
      });
      form.reset();
      statusBox.textContent = "Link created.";
      await refresh();
    } catch (error) {
      statusBox.textContent = "";
      showError(error instanceof Error ? error.message : String(error));
    } finally {
      if (submit) submit.disabled = false;
    }
  }

  function setOpen(open: boolean): void {
    panel.hidden = !open;
    toggle.setAttribute("aria-expanded", String(open));
    if (open) {
      showError("");
      statusBox.textContent = "";
      refresh().catch((error: unknown) =>
        showError(error instanceof Error ? error.message : String(error)),
      );
      labelInput.focus();
    }
  }

  toggle.addEventListener("click", () => setOpen(panel.hidden));
  byId("share-close", HTMLElement, doc).addEventListener("click", () => setOpen(false));
  panel.addEventListener("keydown", (event) => {
    if (event.key === "Escape") {
      setOpen(false);
      toggle.focus();
    }
  });
}
