// The Share panel's list of links: one item per active link (label, dates, URL, Copy, Revoke).

import type { ShareLink } from "../lib/api";
import { el } from "../lib/dom";
import { formatWhen } from "../lib/format";

export interface ItemActions {
  copy(url: HTMLAnchorElement, button: HTMLButtonElement): void;
  revoke(link: ShareLink, button: HTMLButtonElement): void;
}

/** "created 3 Mar 2026, 10:00 · expires 10 Mar 2026, 10:00" (or "· never expires"). */
export function linkDates(
  link: Pick<ShareLink, "created" | "expires_at">,
  locale?: string,
): string {
  const expiry = link.expires_at
    ? `expires ${formatWhen(link.expires_at, locale)}`
    : "never expires";
  return `created ${formatWhen(link.created, locale)} · ${expiry}`;
}

export function shareItem(link: ShareLink, actions: ItemActions): HTMLLIElement {
  const url = el("a", {
    href: link.viewer_url,
    textContent: link.viewer_url,
    target: "_blank",
    rel: "noopener",
    className: "share-url",
  });
  const copy = el("button", { type: "button", textContent: "Copy", className: "share-copy" });
  copy.addEventListener("click", () => actions.copy(url, copy));
  const revoke = el("button", { type: "button", textContent: "Revoke", className: "share-revoke" });
  revoke.addEventListener("click", () => actions.revoke(link, revoke));
  const label = link.label || "Untitled link";
  return el("li", { className: "share-item" }, [
    el("div", { className: "share-meta" }, [
      el("strong", { className: "share-label", textContent: label }),
      el("small", { textContent: linkDates(link) }),
    ]),
    el("div", { className: "share-row" }, [url, copy, revoke]),
  ]);
}

/** Replaces `list`'s items with the active links, or "No active links."; returns those shown. */
export function renderShareList(
  list: HTMLElement,
  links: readonly ShareLink[],
  actions: ItemActions,
): ShareLink[] {
  const active = links.filter((link) => link.active);
  list.replaceChildren(...active.map((link) => shareItem(link, actions)));
  if (!active.length) {
    list.append(el("li", { className: "share-empty", textContent: "No active links." }));
  }
  return active;
}

/** The expiry for "Expires in N days" ("" for never); throws when N is not a number. */
export function expiryFromDays(days: string, now: number = Date.now()): Date | null {
  const text = days.trim();
  if (text === "") return null;
  const expires = new Date(now + Number(text) * 86_400_000);
  if (Number.isNaN(expires.getTime())) throw new Error("Give the expiry as a number of days.");
  return expires;
}
