// @vitest-environment happy-dom
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import {
  ApiError,
  UploadAborted,
  api,
  buildUrl,
  csrfToken,
  listItems,
  pathParams,
  requestJson,
  serverMessage,
  setCsrfToken,
  uploadForm,
} from "../src/lib/api";
import { FakeXhr, scriptFetch, stubXhr } from "./helpers";

function clearCookies(): void {
  for (const part of document.cookie.split(";")) {
    const name = part.split("=")[0]?.trim();
    if (name) document.cookie = `${name}=; max-age=0`;
  }
}

beforeEach(() => {
  setCsrfToken(undefined);
  document.body.innerHTML = "";
  clearCookies();
});
afterEach(() => setCsrfToken(undefined));

describe("csrfToken", () => {
  it("prefers the token the page set, then the form field, then the cookie", () => {
    document.cookie = "csrftoken=from%20cookie";
    expect(csrfToken()).toBe("from cookie");
    document.body.innerHTML = '<input name="csrfmiddlewaretoken" value="from-field">';
    expect(csrfToken()).toBe("from-field");
    setCsrfToken("from-config");
    expect(csrfToken()).toBe("from-config");
  });

  it("is empty when the page has none", () => {
    expect(csrfToken()).toBe("");
  });
});

describe("requestJson", () => {
  it("sends the CSRF token and JSON on writes, neither on reads", async () => {
    setCsrfToken("tok");
    const sent = scriptFetch([
      { status: 201, body: { key: "k" } },
      { status: 200, body: [] },
    ]);
    expect(await requestJson("post", "/api/v1/x/", { body: { a: 1 } })).toEqual({ key: "k" });
    expect(await requestJson("get", "/api/v1/x/")).toEqual([]);
    expect(sent[0]).toMatchObject({
      method: "POST",
      headers: { "X-CSRFToken": "tok", "Content-Type": "application/json" },
      body: { a: 1 },
    });
    expect(sent[1]?.method).toBe("GET");
    expect(sent[1]?.headers).not.toHaveProperty("X-CSRFToken");
    expect(sent[1]?.headers).not.toHaveProperty("Content-Type");
  });

  it("rejects with the server's message and status", async () => {
    scriptFetch([
      { status: 400, body: { message: "expires_at: the expiry date must be in the future" } },
    ]);
    const error = await requestJson("post", "/api/v1/x/", { body: {} }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(ApiError);
    expect(error).toMatchObject({
      status: 400,
      message: "expires_at: the expiry date must be in the future",
    });
  });

  it("falls back to a message with the status when the body has none", async () => {
    scriptFetch([
      { status: 502, text: "<html>Bad Gateway</html>" },
      { status: 403, body: { detail: "no message key" } },
    ]);
    await expect(requestJson("get", "/a/")).rejects.toThrow("The request failed (HTTP 502).");
    await expect(
      requestJson("get", "/a/", { fallback: (s) => `Saving the view failed (HTTP ${s}).` }),
    ).rejects.toThrow("Saving the view failed (HTTP 403).");
  });

  it("turns a network failure into an ApiError with status 0", async () => {
    scriptFetch(() => {
      throw new TypeError("Failed to fetch");
    });
    await expect(requestJson("get", "/a/")).rejects.toMatchObject({
      status: 0,
      message: "The server could not be reached (Failed to fetch).",
    });
  });

  it("resolves to undefined for an empty answer", async () => {
    scriptFetch([{ status: 204 }]);
    expect(await requestJson("delete", "/a/")).toBeUndefined();
  });
});

describe("serverMessage", () => {
  it("reads message from parsed or JSON text bodies only", () => {
    expect(serverMessage({ message: "m" })).toBe("m");
    expect(serverMessage('{"message": "t"}')).toBe("t");
    expect(serverMessage("plain text")).toBeUndefined();
    expect(serverMessage({ message: "" })).toBeUndefined();
    expect(serverMessage(null)).toBeUndefined();
  });
});

describe("URLs", () => {
  it("fills path templates, encoded, and appends a query", () => {
    expect(
      buildUrl(
        "/api/v1/datasets/{slug}/states/{key}/",
        { slug: "a b", key: "k/1" },
        {
          share_token: "t",
          skip: undefined,
        },
      ),
    ).toBe("/api/v1/datasets/a%20b/states/k%2F1/?share_token=t");
    expect(() => buildUrl("/api/v1/jobs/{id}/")).toThrow(
      "No value for {id} in /api/v1/jobs/{id}/.",
    );
  });

  it("reads parameters back from a server-rendered URL and refuses other shapes", () => {
    expect(
      pathParams("/api/v1/datasets/{slug}/share-links/", "/api/v1/datasets/cells/share-links/"),
    ).toEqual({ slug: "cells" });
    expect(
      pathParams("/api/v1/datasets/{slug}/states/", "http://x/api/v1/datasets/n%C3%BC/states/"),
    ).toEqual({ slug: "nü" });
    expect(() => pathParams("/api/v1/datasets/{slug}/states/", "/api/v1/jobs/3/")).toThrow(
      "/api/v1/jobs/3/ is not a /api/v1/datasets/{slug}/states/ URL.",
    );
  });

  it("takes list items from plain and paginated answers", () => {
    expect(listItems([1, 2])).toEqual([1, 2]);
    expect(listItems({ count: 1, results: [3] } as { results: number[] })).toEqual([3]);
  });
});

describe("api", () => {
  it("calls the template's URL with the typed body", async () => {
    setCsrfToken("tok");
    const sent = scriptFetch([{ status: 201, body: { key: "abc", url: "/v/abc/" } }]);
    const saved = await api.post("/api/v1/datasets/{slug}/states/", {
      path: { slug: "cells" },
      body: { state: { layers: [] }, share_token: null },
    });
    expect(saved.key).toBe("abc");
    expect(sent).toEqual([
      {
        method: "POST",
        url: "/api/v1/datasets/cells/states/",
        headers: {
          Accept: "application/json",
          "Content-Type": "application/json",
          "X-CSRFToken": "tok",
        },
        body: { state: { layers: [] }, share_token: null },
      },
    ]);
  });
});

// Compile-time checks: `npm run typecheck` fails when one of these lines stops being an error.
export function typeChecks(): void {
  // @ts-expect-error: not a path of the schema
  void api.get("/api/v1/nope/");
  // @ts-expect-error: the template has {id}
  void api.get("/api/v1/jobs/{id}/");
  // @ts-expect-error: id is a number
  void api.get("/api/v1/jobs/{id}/", { path: { id: "3" } });
  // @ts-expect-error: the body needs `state`
  void api.post("/api/v1/datasets/{slug}/states/", { path: { slug: "s" }, body: {} });
  // @ts-expect-error: jobs cannot be POSTed to
  void api.post("/api/v1/jobs/", {});
  void api.get("/api/v1/jobs/{id}/", { path: { id: 3 } }).then((job) => {
    // @ts-expect-error: not a field of Job
    void job.percent;
    const status: "queued" | "running" | "succeeded" | "failed" | "cancelled" = job.status;
    void status;
  });
}

describe("uploadForm", () => {
  beforeEach(stubXhr);

  it("posts the form with the CSRF token, reports progress and resolves with the job", async () => {
    setCsrfToken("tok");
    const progress: number[][] = [];
    const form = new FormData();
    const upload = uploadForm("/api/v1/imports/", {
      form,
      onProgress: (loaded, total) => progress.push([loaded, total]),
    });
    const xhr = FakeXhr.last!;
    expect([xhr.method, xhr.url, xhr.body]).toEqual(["POST", "/api/v1/imports/", form]);
    expect(xhr.headers).toEqual({ "X-CSRFToken": "tok", Accept: "application/json" });
    xhr.progress(5, 10);
    xhr.progress(10, 10);
    xhr.respond(202, { id: 7, status: "queued" });
    expect(await upload.result).toEqual({ id: 7, status: "queued" });
    expect(progress).toEqual([
      [5, 10],
      [10, 10],
    ]);
  });

  it("rejects with the server's message, or the fallback for the status", async () => {
    const fallback = (s: number) => (s === 413 ? "The upload is too large." : `HTTP ${s}`);
    const first = uploadForm("/api/v1/imports/", { form: new FormData(), fallback });
    FakeXhr.last!.respond(400, { message: "broken.tif is not a TIFF file" });
    await expect(first.result).rejects.toMatchObject({
      status: 400,
      message: "broken.tif is not a TIFF file",
    });
    const second = uploadForm("/api/v1/imports/", { form: new FormData(), fallback });
    FakeXhr.last!.respond(413, "<html>413 Request Entity Too Large</html>");
    await expect(second.result).rejects.toMatchObject({
      status: 413,
      message: "The upload is too large.",
    });
  });

  it("tells a broken connection from an abort", async () => {
    const broken = uploadForm("/api/v1/imports/", { form: new FormData(), networkError: "cut" });
    FakeXhr.last!.fail();
    await expect(broken.result).rejects.toMatchObject({ status: 0, message: "cut" });
    const aborted = uploadForm("/api/v1/imports/", { form: new FormData() });
    aborted.abort();
    expect(FakeXhr.last!.aborted).toBe(true);
    await expect(aborted.result).rejects.toBeInstanceOf(UploadAborted);
  });
});
