// @vitest-environment happy-dom
import { afterEach, describe, expect, it, vi } from "vitest";
import { type CurationJob, jobCaption, mountPublish } from "../src/curation/publish";
import { scriptFetch } from "./helpers";

function job(fields: Partial<CurationJob>): CurationJob {
  return {
    id: 9,
    kind: "publish",
    status: "running",
    state: "running",
    stage: "labels",
    done: 3,
    total: 12,
    progress: 0.25,
    error: "",
    campaign: 4,
    layer: "nuclei",
    dataset: "cells",
    name: "nuclei-curated",
    verdicts: ["tp", "tp_distortion"],
    kept: null,
    result_layer: null,
    viewer_url: null,
    created: "2026-12-02T08:00:00Z",
    updated: "2026-12-02T08:00:00Z",
    started: null,
    finished: null,
    ...fields,
  } as CurationJob;
}

function controls(): HTMLElement {
  document.body.innerHTML = `<div class="curate-publish" data-campaign="4">
    <button class="curate-start">Publish curated layer</button>
    <button class="curate-cancel" hidden>Cancel</button>
    <progress max="1" value="0" hidden></progress>
    <span class="curate-status"></span><a class="curate-open" hidden>Open</a></div>`;
  return document.querySelector<HTMLElement>(".curate-publish")!;
}

afterEach(() => {
  vi.unstubAllGlobals();
  vi.useRealTimers();
});

describe("curated layer publication", () => {
  it("captions each state", () => {
    expect(jobCaption(job({}))).toBe("labels 3/12");
    expect(jobCaption(job({ state: "queued" }))).toBe("Waiting for a worker…");
    expect(jobCaption(job({ state: "succeeded", result_layer: "nuclei-curated", kept: 7 }))).toBe(
      "Published layer nuclei-curated (7 objects).",
    );
    expect(jobCaption(job({ state: "failed", error: "disk full" }))).toBe("Failed: disk full");
  });

  it("starts a job, follows its progress live and links to the viewer at the end", async () => {
    vi.useFakeTimers();
    const root = controls();
    const sent = scriptFetch([
      { status: 200, body: [] },
      { status: 202, body: job({ state: "queued", status: "queued", progress: 0 }) },
      { status: 200, body: job({}) },
      {
        status: 200,
        body: job({
          state: "succeeded",
          status: "succeeded",
          progress: 1,
          kept: 7,
          result_layer: "nuclei-curated",
          viewer_url: "/datasets/cells/",
        }),
      },
    ]);
    mountPublish(root);
    await vi.runOnlyPendingTimersAsync();
    root.querySelector<HTMLButtonElement>(".curate-start")!.click();
    await vi.advanceTimersByTimeAsync(0);
    expect(sent[1]).toMatchObject({
      method: "POST",
      url: "/api/v1/curation/campaigns/4/publish/",
    });
    expect(root.querySelector<HTMLButtonElement>(".curate-start")!.disabled).toBe(true);
    expect(root.querySelector<HTMLButtonElement>(".curate-cancel")!.hidden).toBe(false);
    await vi.advanceTimersByTimeAsync(500);
    const bar = root.querySelector("progress")!;
    expect([bar.hidden, bar.value]).toEqual([false, 0.25]);
    expect(root.querySelector(".curate-status")!.textContent).toBe("labels 3/12");
    await vi.advanceTimersByTimeAsync(500);
    expect(root.dataset.state).toBe("succeeded");
    expect(bar.hidden).toBe(true);
    const open = root.querySelector<HTMLAnchorElement>(".curate-open")!;
    expect([open.hidden, open.getAttribute("href")]).toEqual([false, "/datasets/cells/"]);
    expect(sent.map((r) => r.url)).toEqual([
      "/api/v1/curation/campaigns/4/publish/",
      "/api/v1/curation/campaigns/4/publish/",
      "/api/v1/curation/jobs/9/",
      "/api/v1/curation/jobs/9/",
    ]);
  });

  it("shows the server's refusal", async () => {
    const root = controls();
    scriptFetch([
      { status: 200, body: [] },
      { status: 403, body: { message: "Only the campaign's managers can publish." } },
    ]);
    mountPublish(root);
    root.querySelector<HTMLButtonElement>(".curate-start")!.click();
    await vi.waitFor(() =>
      expect(root.querySelector(".curate-status")!.textContent).toBe(
        "Only the campaign's managers can publish.",
      ),
    );
    expect(root.querySelector<HTMLButtonElement>(".curate-start")!.disabled).toBe(false);
  });
});
