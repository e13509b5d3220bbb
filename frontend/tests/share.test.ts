// @vitest-environment happy-dom
import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import type { ShareLink } from "../src/lib/api";
import { expiryFromDays, linkDates, renderShareList } from "../src/share/list";
import { mountSharePanel } from "../src/share/panel";
import { scriptFetch } from "./helpers";

function link(fields: Partial<ShareLink>): ShareLink {
  return {
    id: 1,
    label: "",
    token: "t",
    created_by: "owner",
    created: "2026-03-03T10:00:00Z",
    expires_at: null,
    revoked_at: null,
    active: true,
    viewer_url: "http://site/s/t/datasets/cells/",
    data_url: "http://site/s/t/data/cells/",
    ...fields,
  };
}

const noActions = { copy: () => {}, revoke: () => {} };

describe("share-link list", () => {
  it("lists the active links with label, dates, URL, Copy and Revoke", () => {
    const list = document.createElement("ul");
    const shown = renderShareList(
      list,
      [
        link({ id: 1, label: "reviewers", expires_at: "2026-03-10T10:00:00Z" }),
        link({ id: 2, active: false, revoked_at: "2026-03-04T10:00:00Z" }),
        link({ id: 3, token: "u", viewer_url: "http://site/s/u/datasets/cells/" }),
      ],
      noActions,
    );
    expect(shown.map((l) => l.id)).toEqual([1, 3]);
    const items = [...list.querySelectorAll(".share-item")];
    expect(items.map((i) => i.querySelector(".share-label")?.textContent)).toEqual([
      "reviewers",
      "Untitled link",
    ]);
    expect(items[0]?.querySelector("small")?.textContent).toMatch(/^created .+ · expires .+$/);
    expect(items[1]?.querySelector("small")?.textContent).toMatch(/^created .+ · never expires$/);
    const url = items[1]?.querySelector<HTMLAnchorElement>(".share-url");
    expect([url?.href, url?.textContent, url?.target, url?.rel]).toEqual([
      "http://site/s/u/datasets/cells/",
      "http://site/s/u/datasets/cells/",
      "_blank",
      "noopener",
    ]);
    expect(
      [...items[1]!.querySelectorAll("button")].map((b) => [b.className, b.type, b.textContent]),
    ).toEqual([
      ["share-copy", "button", "Copy"],
      ["share-revoke", "button", "Revoke"],
    ]);
  });

  it("says when there is no active link", () => {
    const list = document.createElement("ul");
    list.innerHTML = "<li>stale</li>";
    renderShareList(list, [link({ active: false })], noActions);
    expect(list.innerHTML).toBe('<li class="share-empty">No active links.</li>');
  });

  it("hands the clicked link to the actions", () => {
    const list = document.createElement("ul");
    const copy = vi.fn();
    const revoke = vi.fn();
    renderShareList(list, [link({ id: 9 })], { copy, revoke });
    list.querySelector<HTMLButtonElement>(".share-copy")!.click();
    list.querySelector<HTMLButtonElement>(".share-revoke")!.click();
    expect(copy.mock.calls[0]?.[0]).toBe(list.querySelector(".share-url"));
    expect(revoke.mock.calls[0]?.[0]).toMatchObject({ id: 9 });
  });

  it("formats dates and reads the expiry in days", () => {
    expect(linkDates(link({ expires_at: "2026-03-10T10:00:00Z" }), "en-GB")).toMatch(
      /^created 3 Mar 2026, \d\d:00 · expires 10 Mar 2026, \d\d:00$/,
    );
    expect(expiryFromDays("  ")).toBeNull();
    expect(expiryFromDays("1.5", 0)?.toISOString()).toBe("1970-01-02T12:00:00.000Z");
    expect(() => expiryFromDays("soon")).toThrow("Give the expiry as a number of days.");
  });
});

describe("share panel", () => {
  beforeEach(() => {
    document.body.innerHTML = `
      <input type="hidden" name="csrfmiddlewaretoken" value="c5rf">
      <button type="button" id="share-toggle" aria-expanded="false">Share</button>
      <section id="share-panel" hidden data-url="/api/v1/datasets/cells/share-links/">
        <button type="button" id="share-close">×</button>
        <form id="share-form">
          <input type="text" name="label"><input type="number" name="days">
          <button type="submit">Create link</button>
        </form>
        <p id="share-error" hidden></p><p id="share-status"></p><ul id="share-list"></ul>
      </section>`;
  });
  afterEach(() => {
    document.body.innerHTML = "";
  });

  const panel = () => document.getElementById("share-panel")!;
  const toggle = () => document.getElementById("share-toggle")!;
  const text = (id: string) => document.getElementById(id)!.textContent;

  it("opens with the list, creates a link, shows API errors, revokes", async () => {
    let links = [] as ShareLink[];
    const sent = scriptFetch((request) => {
      if (request.method === "GET") return { status: 200, body: links };
      if (request.url.endsWith("/revoke/")) {
        links = [];
        return { status: 200, body: link({ active: false }) };
      }
      const body = request.body as { label: string; expires_at: string | null };
      if (body.expires_at && new Date(body.expires_at) <= new Date()) {
        return {
          status: 400,
          body: { message: "expires_at: the expiry date must be in the future." },
        };
      }
      links = [link({ id: 5, label: body.label, expires_at: body.expires_at })];
      return { status: 201, body: links[0] };
    });
    mountSharePanel(panel(), toggle());
    toggle().click();
    expect([panel().hidden, toggle().getAttribute("aria-expanded")]).toEqual([false, "true"]);
    await vi.waitFor(() => expect(text("share-list")).toBe("No active links."));

    const form = document.getElementById("share-form") as HTMLFormElement;
    (form.elements.namedItem("days") as HTMLInputElement).value = "-1";
    form.requestSubmit();
    await vi.waitFor(() => expect(document.getElementById("share-error")!.hidden).toBe(false));
    expect(text("share-error")).toBe("expires_at: the expiry date must be in the future.");
    expect(text("share-status")).toBe("");

    (form.elements.namedItem("label") as HTMLInputElement).value = " reviewers ";
    (form.elements.namedItem("days") as HTMLInputElement).value = "7";
    form.requestSubmit();
    await vi.waitFor(() => expect(text("share-status")).toBe("Link created."));
    await vi.waitFor(() =>
      expect(document.querySelector(".share-label")?.textContent).toBe("reviewers"),
    );
    expect(document.getElementById("share-error")!.hidden).toBe(true);
    expect((form.elements.namedItem("label") as HTMLInputElement).value).toBe("");
    const create = sent.find((r) => r.method === "POST" && r.url.endsWith("/share-links/"));
    expect(create?.headers["X-CSRFToken"]).toBe("c5rf");
    expect(create?.url).toBe("/api/v1/datasets/cells/share-links/");

    document.defaultView!.confirm = vi.fn(() => true);
    document.querySelector<HTMLButtonElement>(".share-revoke")!.click();
    await vi.waitFor(() => expect(text("share-status")).toBe("Link revoked."));
    await vi.waitFor(() => expect(text("share-list")).toBe("No active links."));
    expect(sent.map((r) => `${r.method} ${r.url}`)).toContain(
      "POST /api/v1/datasets/cells/share-links/5/revoke/",
    );

    panel().dispatchEvent(new KeyboardEvent("keydown", { key: "Escape" }));
    expect([panel().hidden, toggle().getAttribute("aria-expanded")]).toEqual([true, "false"]);
  });

  it("keeps the link when revoking is not confirmed", async () => {
    const sent = scriptFetch(() => ({ status: 200, body: [link({ id: 5 })] }));
    mountSharePanel(panel(), toggle());
    toggle().click();
    await vi.waitFor(() => expect(document.querySelector(".share-revoke")).not.toBeNull());
    document.defaultView!.confirm = vi.fn(() => false);
    document.querySelector<HTMLButtonElement>(".share-revoke")!.click();
    expect(sent.every((r) => r.method === "GET")).toBe(true);
  });
});
