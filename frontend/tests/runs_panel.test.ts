// @vitest-environment happy-dom
import { afterEach, describe, expect, it, vi } from "vitest";

import { mountRetrainPanel } from "../src/runs/retrain_panel";
import { scriptFetch } from "./helpers";

const PRESETS = {
  presets: [
    { name: "standard", title: "Standard", description: "The pipeline's choices.", config: {} },
    {
      name: "tiny",
      title: "Tiny",
      description: "A small U-Net.",
      config: { training: { max_epochs: 6 } },
    },
  ],
  params: [
    { name: "training.max_epochs", type: "int", low: 1, high: 1000, help: "epochs of training" },
  ],
};

function run(id: number, over: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    id,
    dataset: "nuclei",
    campaign: 7,
    owner: "manager",
    preset: "tiny",
    params: {},
    parent: null,
    status: "succeeded",
    state: "succeeded",
    stage: "publish",
    done: 0,
    total: 0,
    progress: 1,
    stages: [],
    history: [],
    boxes: [],
    metrics: {},
    error: "",
    result_layer: "nuclei-run-1",
    model: 1,
    created: "2026-12-01T10:00:00Z",
    started: null,
    finished: null,
    ...over,
  };
}

const AUTO_OFF = {
  enabled: false,
  every: null,
  preset: null,
  params: null,
  owner: null,
  approved_boxes: 5,
  trained_boxes: 0,
};

function page(boxes = 5): void {
  document.body.innerHTML = `
    <p id="retrain-truth"></p>
    <form id="retrain-form"><select id="retrain-preset"></select><p id="retrain-preset-help"></p>
      <div id="retrain-params"></div><button type="submit" id="retrain-start">Start</button></form>
    <form id="auto-form"><input type="checkbox" id="auto-enabled"><input id="auto-every" value="10">
      <span id="auto-status"></span></form>
    <p id="retrain-status"></p><p id="retrain-error" hidden></p>
    <table id="runs-table"><tbody></tbody></table><p id="runs-empty" hidden></p>
    <script type="application/json" id="retrain-config">${JSON.stringify({
      campaignId: 7,
      dataset: "nuclei",
      boxes,
      heldOut: 1,
      training: boxes - 1,
      error: "",
      runsUrl: "/runs/",
    })}</script>`;
}

afterEach(() => {
  document.body.innerHTML = "";
});

describe("Retrain panel", () => {
  it("is not mounted on pages without it", () => {
    document.body.innerHTML = "<p>no panel</p>";
    expect(mountRetrainPanel(document)).toBeUndefined();
  });

  it("lists presets and the campaign's runs, starts a run and opens its page", async () => {
    page();
    const sent = scriptFetch((request) => {
      if (request.url.startsWith("/api/v1/runs/presets/")) return { status: 200, body: PRESETS };
      if (request.url.startsWith("/api/v1/runs/auto-retrain/")) {
        return { status: 200, body: AUTO_OFF };
      }
      if (request.method === "GET") {
        return { status: 200, body: { count: 1, results: [run(3)] } };
      }
      return { status: 202, body: run(4, { status: "queued", state: "queued" }) };
    });
    const assign = vi.fn();
    vi.spyOn(window, "location", "get").mockReturnValue({ assign } as unknown as Location);
    const hooks = mountRetrainPanel(document)!;
    await hooks.ready;
    const select = document.getElementById("retrain-preset") as HTMLSelectElement;
    expect([...select.options].map((o) => o.value)).toEqual(["standard", "tiny"]);
    expect(sent.some((r) => r.url === "/api/v1/runs/?campaign=7&limit=10")).toBe(true);
    const row = document.querySelector<HTMLTableRowElement>("#runs-table tr[data-run='3']")!;
    expect(row.querySelector("a")!.getAttribute("href")).toBe("/runs/3/");
    expect(row.textContent).toContain("Succeeded");
    expect(row.querySelector("a[href='/datasets/nuclei/?show=nuclei-run-1']")).not.toBeNull();

    select.value = "tiny";
    select.dispatchEvent(new Event("change"));
    const epochs = document.querySelector<HTMLInputElement>("input[data-param]")!;
    expect(epochs.placeholder).toBe("6");
    expect(document.getElementById("retrain-preset-help")!.textContent).toBe("A small U-Net.");
    epochs.value = "2";
    document.getElementById("retrain-form")!.dispatchEvent(new Event("submit"));
    await vi.waitFor(() => expect(assign).toHaveBeenCalledWith("/runs/4/"));
    const post = sent.find((r) => r.method === "POST")!;
    expect(post.url).toBe("/api/v1/runs/");
    expect(post.body).toEqual({
      campaign: 7,
      preset: "tiny",
      params: { "training.max_epochs": 2 },
    });
  });

  it("shows the server's refusal and a bad override without posting", async () => {
    page();
    const sent = scriptFetch((request) => {
      if (request.url.startsWith("/api/v1/runs/presets/")) return { status: 200, body: PRESETS };
      if (request.url.startsWith("/api/v1/runs/auto-retrain/")) {
        return { status: 200, body: AUTO_OFF };
      }
      if (request.method === "GET") return { status: 200, body: { count: 0, results: [] } };
      return { status: 409, body: { message: "A run of this campaign is already queued." } };
    });
    const hooks = mountRetrainPanel(document)!;
    await hooks.ready;
    expect(document.getElementById("runs-empty")!.hidden).toBe(false);
    const error = document.getElementById("retrain-error")!;
    const epochs = document.querySelector<HTMLInputElement>("input[data-param]")!;
    epochs.value = "0";
    document.getElementById("retrain-form")!.dispatchEvent(new Event("submit"));
    expect(error.hidden).toBe(false);
    expect(error.textContent).toContain("between 1 and 1000");
    expect(sent.filter((r) => r.method === "POST")).toHaveLength(0);
    epochs.value = "";
    document.getElementById("retrain-form")!.dispatchEvent(new Event("submit"));
    await vi.waitFor(() =>
      expect(error.textContent).toBe("A run of this campaign is already queued."),
    );
    expect(sent.find((r) => r.method === "POST")!.body).toEqual({
      campaign: 7,
      preset: "standard",
    });
  });

  it("turns automatic retraining on with the chosen preset and off again", async () => {
    page();
    const on = { ...AUTO_OFF, enabled: true, every: 3, preset: "tiny", owner: "manager" };
    const sent = scriptFetch((request) => {
      if (request.url.startsWith("/api/v1/runs/presets/")) return { status: 200, body: PRESETS };
      if (request.url === "/api/v1/runs/auto-retrain/7/") {
        const body = { GET: AUTO_OFF, PUT: on, DELETE: AUTO_OFF }[request.method];
        return { status: 200, body };
      }
      return { status: 200, body: { count: 0, results: [] } };
    });
    const hooks = mountRetrainPanel(document)!;
    await hooks.ready;
    const status = document.getElementById("auto-status")!;
    expect(status.textContent).toBe("Off (5 boxes approved so far).");
    const enabled = document.getElementById("auto-enabled") as HTMLInputElement;
    const select = document.getElementById("retrain-preset") as HTMLSelectElement;
    select.value = "tiny";
    enabled.checked = true;
    (document.getElementById("auto-every") as HTMLInputElement).value = "3";
    document.getElementById("auto-form")!.dispatchEvent(new Event("submit"));
    await vi.waitFor(() => expect(status.dataset["enabled"]).toBe("true"));
    expect(sent.find((r) => r.method === "PUT")!.body).toEqual({ every: 3, preset: "tiny" });
    expect(status.textContent).toBe(
      "On: every 3 boxes with the tiny preset, as manager; 5 approved since the last run.",
    );
    enabled.checked = false;
    document.getElementById("auto-form")!.dispatchEvent(new Event("submit"));
    await vi.waitFor(() => expect(status.dataset["enabled"]).toBe("false"));
    expect(sent.filter((r) => r.method === "DELETE")).toHaveLength(1);
  });
});

describe("the run page's warnings", () => {
  it("lists each stage that produced nothing under one heading, nothing without any", async () => {
    const { warningItems } = await import("../src/runs/page");
    expect(warningItems([])).toEqual([]);
    const host = document.createElement("div");
    host.replaceChildren(...warningItems(["segment: no seed formed", "measure: zero objects"]));
    expect(host.querySelector("strong")!.textContent).toBe(
      "2 stages produced nothing; this version is not made the current model:",
    );
    expect([...host.querySelectorAll("li")].map((li) => li.textContent)).toEqual([
      "segment: no seed formed",
      "measure: zero objects",
    ]);
  });
});
