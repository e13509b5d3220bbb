// @vitest-environment happy-dom
import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import type { Job } from "../src/lib/api";
import { POLL_MS, mountImportPage } from "../src/importer/page";
import { FakeXhr, scriptFetch, stubXhr } from "./helpers";

// The ids and fields of webapp/datasets/templates/datasets/import.html.
const MARKUP = `
<form id="import-form" data-max-bytes="1000000">
  <input type="hidden" name="csrfmiddlewaretoken" value="c5rf">
  <input id="import-file" name="file" type="file">
  <div id="label-rows"></div>
  <button type="button" id="add-label">+ Add a label image</button>
  <input id="import-name" name="name" type="text">
  <textarea id="import-description" name="description"></textarea>
  <input name="voxel_z"><input name="voxel_y"><input name="voxel_x">
  <select name="unit"><option value="nanometer" selected>nm</option><option value="micrometer">µm</option></select>
  <select id="import-visibility" name="visibility"><option value="private">Private</option></select>
  <button type="submit" id="import-submit">Upload and import</button>
  <button type="button" id="import-cancel" hidden>Cancel</button>
  <div id="upload-block" hidden><progress id="upload-progress" max="100" value="0"></progress>
    <p id="upload-caption">Uploading…</p></div>
  <div id="job-block" hidden><progress id="job-progress" max="100" value="0"></progress>
    <p id="job-caption">Waiting for a worker…</p></div>
  <p id="import-status"></p>
</form>
<template id="label-row-template">
  <div class="label-row"><input type="text" name="label_names"><input type="file" name="labels">
    <button type="button" class="remove-label">Remove</button></div>
</template>`;

const $ = <T extends HTMLElement>(id: string) => document.getElementById(id) as T;

function choose(input: HTMLInputElement, file: File): void {
  Object.defineProperty(input, "files", { value: [file], configurable: true });
  input.dispatchEvent(new Event("change"));
}

function job(fields: Partial<Job>): Job {
  return {
    id: 4,
    kind: "import",
    status: "queued",
    state: "queued",
    attempts: 0,
    heartbeat: null,
    stage: "",
    done: 0,
    total: 0,
    progress: 0,
    error: "",
    name: "Spheres",
    dataset: null,
    viewer_url: null,
    created: "",
    updated: "",
    started: null,
    finished: null,
    ...fields,
  };
}

function jobBar(): { value: number | null; caption: string | null; status: string | null } {
  const bar = $<HTMLProgressElement>("job-progress");
  return {
    value: bar.hasAttribute("value") ? bar.value : null,
    caption: $("job-caption").textContent,
    status: $("import-status").textContent,
  };
}

describe("import page", () => {
  beforeEach(() => {
    vi.useFakeTimers();
    stubXhr();
    document.body.innerHTML = MARKUP;
    mountImportPage($<HTMLFormElement>("import-form"));
  });
  afterEach(() => {
    vi.useRealTimers();
  });

  it("checks the form before uploading", () => {
    $<HTMLFormElement>("import-form").requestSubmit();
    expect($("import-status").textContent).toBe("Choose a volume file to import.");
    expect($("import-status").classList.contains("error")).toBe(true);
    expect(FakeXhr.last).toBeUndefined();
    choose($("import-file"), new File([new Uint8Array(2_000_000)], "huge.tif"));
    $<HTMLFormElement>("import-form").requestSubmit();
    expect($("import-status").textContent).toBe(
      "The files (1.9 MB) exceed the upload limit of 976.6 KB.",
    );
  });

  it("uploads with a progress bar, polls the job to the end and links to the viewer", async () => {
    choose($("import-file"), new File(["volume"], "spheres.ome.tif"));
    expect($<HTMLInputElement>("import-name").value).toBe("spheres");
    $("add-label").click();
    const row = document.querySelector(".label-row")!;
    choose(row.querySelector<HTMLInputElement>("input[type=file]")!, new File(["l"], "nuclei.tif"));
    expect(row.querySelector<HTMLInputElement>("input[type=text]")!.value).toBe("nuclei");

    $<HTMLFormElement>("import-form").requestSubmit();
    const xhr = FakeXhr.last!;
    expect([xhr.url, xhr.headers["X-CSRFToken"]]).toEqual(["/api/v1/imports/", "c5rf"]);
    expect((xhr.body as FormData).getAll("label_names")).toEqual(["nuclei"]);
    expect($("upload-block").hidden).toBe(false);
    expect($<HTMLButtonElement>("import-submit").disabled).toBe(true);
    expect($("import-cancel").hidden).toBe(false);
    expect($<HTMLInputElement>("import-name").disabled).toBe(true);
    expect($<HTMLInputElement>("add-label").disabled).toBe(true);
    xhr.progress(3, 6);
    expect($("upload-caption").textContent).toBe("Uploading… 50 % (3 B of 6 B)");
    expect($<HTMLProgressElement>("upload-progress").value).toBe(50);

    const polls = [
      job({ status: "running", stage: "Writing pyramid", done: 1, total: 4, progress: 0.25 }),
      job({ status: "running", stage: "Writing pyramid", done: 3, total: 4, progress: 0.75 }),
      job({ status: "succeeded", viewer_url: "/datasets/spheres/" }),
    ];
    const sent = scriptFetch(() => ({ status: 200, body: polls.shift() }));
    xhr.respond(202, job({ status: "queued" }));
    await vi.advanceTimersByTimeAsync(0);
    expect($("upload-caption").textContent).toBe("Upload complete.");
    expect($("job-block").hidden).toBe(false);
    expect(jobBar()).toEqual({ value: null, caption: "Queued: waiting for a worker…", status: "" });

    await vi.advanceTimersByTimeAsync(POLL_MS);
    expect(jobBar()).toEqual({ value: 25, caption: "Writing pyramid — 25 % (1 of 4)", status: "" });
    await vi.advanceTimersByTimeAsync(POLL_MS);
    expect(jobBar().value).toBe(75);
    await vi.advanceTimersByTimeAsync(POLL_MS);
    expect(jobBar()).toEqual({
      value: 100,
      caption: "Done.",
      status: "Import finished. Open Spheres in the viewer",
    });
    expect(
      document.querySelector<HTMLAnchorElement>("#import-status a")!.getAttribute("href"),
    ).toBe("/datasets/spheres/");
    expect(sent.map((r) => r.url)).toEqual(Array(3).fill("/api/v1/jobs/4/"));
    await vi.advanceTimersByTimeAsync(POLL_MS * 5);
    expect(sent).toHaveLength(3); // no polling after the end
    expect($("import-cancel").hidden).toBe(true);
    expect($<HTMLButtonElement>("import-submit").disabled).toBe(false);
  });

  it("shows the server's refusal of an upload and hides the bar", async () => {
    choose($("import-file"), new File(["junk"], "broken.tif"));
    $<HTMLFormElement>("import-form").requestSubmit();
    FakeXhr.last!.respond(400, { message: "broken.tif: not a TIFF file" });
    await vi.advanceTimersByTimeAsync(0);
    expect($("import-status").textContent).toBe("broken.tif: not a TIFF file");
    expect($("import-status").classList.contains("error")).toBe(true);
    expect([$("upload-block").hidden, $("import-cancel").hidden]).toEqual([true, true]);
    expect($<HTMLButtonElement>("import-submit").disabled).toBe(false);
  });

  it("cancels an upload in flight", async () => {
    choose($("import-file"), new File(["v"], "v.tif"));
    $<HTMLFormElement>("import-form").requestSubmit();
    $("import-cancel").click();
    await vi.advanceTimersByTimeAsync(0);
    expect(FakeXhr.last!.aborted).toBe(true);
    expect($("import-status").textContent).toBe("Upload cancelled.");
    expect($("import-status").classList.contains("error")).toBe(false);
    expect($("upload-block").hidden).toBe(true);
  });

  it("cancels a running job, keeps polling through errors, and shows the end", async () => {
    choose($("import-file"), new File(["v"], "v.tif"));
    $<HTMLFormElement>("import-form").requestSubmit();
    const replies = [
      { status: 502, text: "<html>Bad Gateway</html>" },
      { status: 200, body: job({ status: "running", stage: "Reading" }) },
      { status: 200, body: job({ status: "running", stage: "Reading" }) },
      { status: 200, body: job({ status: "cancelled" }) },
    ];
    const sent = scriptFetch((request) =>
      request.method === "POST"
        ? { status: 200, body: job({ status: "running" }) }
        : replies.shift()!,
    );
    FakeXhr.last!.respond(202, job({ status: "queued" }));
    await vi.advanceTimersByTimeAsync(POLL_MS);
    expect($("import-status").textContent).toBe(
      "Could not read the job's progress (HTTP 502); retrying…",
    );
    await vi.advanceTimersByTimeAsync(POLL_MS * 3);
    expect(jobBar()).toEqual({ value: null, caption: "Reading", status: "" });
    $("import-cancel").click();
    await vi.advanceTimersByTimeAsync(0);
    expect(sent.at(-1)).toMatchObject({ method: "POST", url: "/api/v1/jobs/4/cancel/" });
    await vi.advanceTimersByTimeAsync(POLL_MS * 2);
    expect(jobBar().caption).toBe("Cancelled.");
    expect($("import-status").textContent).toBe("The import was cancelled; nothing was kept.");
  });
});
