// The "Retrain" panel of a painted campaign's page (managers; runs/retrain_panel.html): the
// ground truth a run would take (counted by the server), a preset with optional overrides, Start
// (POST /api/v1/runs/, then the run's page) and the campaign's recent runs, refreshed while one
// of them is active.

import { api, type Schemas } from "../lib/api";
import { BOXES_CHANGED, byId, el, jsonScript } from "../lib/dom";
import { formatWhen } from "../lib/format";
import { type Override, type Run, isActive, overridesFrom, presetValue, statusText } from "./logic";

export interface RetrainConfig {
  campaignId: number;
  dataset: string;
  boxes: number;
  heldOut: number;
  training: number;
  error: string;
  runsUrl: string;
}

export interface RetrainHooks {
  ready: Promise<void>;
  runs(): Run[];
  refreshRuns(): Promise<void>;
}

type Preset = Schemas["RunPreset"];
type PresetName = Schemas["RunStart"]["preset"];

const RUNS_SHOWN = 10;
const RUNS_POLL_MS = 5000;

function message(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

export function runPageUrl(config: Pick<RetrainConfig, "runsUrl">, id: number): string {
  return `${config.runsUrl}${id}/`;
}

export function mountRetrainPanel(doc: Document = document): RetrainHooks | undefined {
  if (!doc.getElementById("retrain-config")) return undefined;
  const config = jsonScript<RetrainConfig>("retrain-config", doc);
  const win = doc.defaultView ?? window;
  const form = byId("retrain-form", HTMLFormElement, doc);
  const select = byId("retrain-preset", HTMLSelectElement, doc);
  const parentSelect = doc.getElementById("retrain-parent") as HTMLSelectElement | null;
  const help = byId("retrain-preset-help", HTMLElement, doc);
  const paramsBox = byId("retrain-params", HTMLElement, doc);
  const start = byId("retrain-start", HTMLButtonElement, doc);
  const status = byId("retrain-status", HTMLElement, doc);
  const error = byId("retrain-error", HTMLElement, doc);
  const table = byId("runs-table", HTMLTableElement, doc);
  const empty = byId("runs-empty", HTMLElement, doc);
  let presets: Preset[] = [];
  let specs: Override[] = [];
  let runs: Run[] = [];

  function showError(text: string): void {
    error.textContent = text;
    error.hidden = !text;
  }

  function describePreset(): void {
    const preset = presets.find((p) => p.name === select.value);
    help.textContent = preset?.description ?? "";
    for (const input of paramsBox.querySelectorAll<HTMLInputElement>("input[data-param]")) {
      const value = preset ? presetValue(preset.config, input.dataset["param"] ?? "") : undefined;
      input.placeholder = value === undefined ? "auto" : String(value);
    }
  }

  async function loadPresets(): Promise<void> {
    const body = await api.get("/api/v1/runs/presets/");
    presets = body.presets;
    specs = body.params;
    select.replaceChildren(
      ...presets.map((p) => el("option", { value: p.name, textContent: p.title })),
    );
    select.disabled = false;
    paramsBox.replaceChildren(
      ...specs.map((spec) => {
        const input = el("input", {
          type: "number",
          min: String(spec.low),
          max: String(spec.high),
          step: spec.type === "int" ? "1" : "any",
          title: spec.help,
        });
        input.dataset["param"] = spec.name;
        input.name = spec.name;
        return el("label", {}, [`${spec.name} (${spec.help}) `, input]);
      }),
    );
    describePreset();
  }

  function runRow(run: Run): HTMLTableRowElement {
    const link = el("a", { href: runPageUrl(config, run.id), textContent: `Run ${run.id}` });
    const result = el("td");
    if (run.result_layer) {
      result.append(
        el("a", {
          href: `/datasets/${encodeURIComponent(run.dataset)}/?show=${encodeURIComponent(run.result_layer)}`,
          textContent: run.result_layer,
        }),
      );
    } else if (run.status === "failed") {
      result.textContent = run.error.split("\n")[0] ?? "";
    }
    const progress = isActive(run) && run.stage ? ` (${Math.round(run.progress * 100)} %)` : "";
    const row = el("tr", {}, [
      el("td", {}, [link]),
      el("td", { textContent: formatWhen(run.created) }),
      el("td", { textContent: run.owner ?? "–" }),
      el("td", { textContent: run.preset }),
      el("td", {
        className: `run-state run-state-${run.state}`,
        textContent: statusText(run) + progress,
      }),
      result,
    ]);
    row.dataset["run"] = String(run.id);
    row.dataset["state"] = run.state;
    return row;
  }

  async function refreshRuns(): Promise<void> {
    const body = await api.get("/api/v1/runs/", {
      query: { campaign: config.campaignId, limit: RUNS_SHOWN },
    });
    runs = body.results;
    table.tBodies[0]!.replaceChildren(...runs.map(runRow));
    table.hidden = runs.length === 0;
    empty.hidden = runs.length > 0;
    table.dataset["count"] = String(body.count);
  }

  function pollRuns(): void {
    win.setTimeout(() => {
      const next = runs.some(isActive) ? refreshRuns() : Promise.resolve();
      next.catch(() => {}).finally(pollRuns);
    }, RUNS_POLL_MS);
  }

  select.addEventListener("change", describePreset);
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    showError("");
    let params: Record<string, number>;
    try {
      params = overridesFrom(
        [...paramsBox.querySelectorAll<HTMLInputElement>("input[data-param]")].map((i) => ({
          name: i.dataset["param"] ?? "",
          value: i.value,
        })),
        specs,
      );
    } catch (e) {
      showError(message(e));
      return;
    }
    start.disabled = true;
    status.textContent = "Starting…";
    api
      .post("/api/v1/runs/", {
        body: {
          campaign: config.campaignId,
          preset: select.value as PresetName,
          ...(Object.keys(params).length ? { params } : {}),
          ...(parentSelect?.value ? { parent: Number(parentSelect.value) } : {}),
        },
      })
      .then(
        (run) => {
          status.textContent = `Run ${run.id} queued: opening its page…`;
          status.dataset["run"] = String(run.id);
          win.location.assign(runPageUrl(config, run.id));
        },
        (e: unknown) => {
          status.textContent = "";
          showError(message(e));
          start.disabled = config.boxes === 0;
        },
      );
  });

  const autoEnabled = byId("auto-enabled", HTMLInputElement, doc);
  const autoEvery = byId("auto-every", HTMLInputElement, doc);
  const autoStatus = byId("auto-status", HTMLElement, doc);
  const autoPath = { campaign_id: config.campaignId };
  type Auto = Schemas["AutoRetrain"];

  function showAuto(auto: Auto): void {
    autoEnabled.checked = auto.enabled;
    if (auto.every !== null) autoEvery.value = String(auto.every);
    const since = auto.approved_boxes - auto.trained_boxes;
    autoStatus.textContent = auto.enabled
      ? `On: every ${auto.every} boxes with the ${auto.preset} preset, as ${auto.owner}; ` +
        `${since} approved since the last run.`
      : `Off (${auto.approved_boxes} boxes approved so far).`;
    autoStatus.dataset["enabled"] = String(auto.enabled);
  }

  const loadAuto = (): Promise<void> =>
    api.get("/api/v1/runs/auto-retrain/{campaign_id}/", { path: autoPath }).then(showAuto);

  byId("auto-form", HTMLFormElement, doc).addEventListener("submit", (event) => {
    event.preventDefault();
    showError("");
    const saving = autoEnabled.checked
      ? api.put("/api/v1/runs/auto-retrain/{campaign_id}/", {
          path: autoPath,
          body: { every: Number(autoEvery.value), preset: select.value as PresetName },
        })
      : api.delete("/api/v1/runs/auto-retrain/{campaign_id}/", { path: autoPath });
    saving.then(showAuto, (e: unknown) => showError(message(e)));
  });

  const suggestForm = doc.getElementById("suggest-form");
  suggestForm?.addEventListener("submit", (event) => {
    event.preventDefault();
    const model = Number(byId("suggest-model", HTMLSelectElement, doc).value);
    const count = Number(byId("suggest-count", HTMLInputElement, doc).value);
    const button = byId("suggest-start", HTMLButtonElement, doc);
    const said = byId("suggest-status", HTMLElement, doc);
    showError("");
    button.disabled = true;
    said.textContent = "Ranking the boxes…";
    api
      .post("/api/v1/models/{id}/suggestions/", {
        path: { id: model },
        body: { campaign: config.campaignId, count },
      })
      .then(
        (answer) => {
          said.replaceChildren(
            `Model v${answer.model} suggests: ` +
              answer.boxes
                .map(
                  (b) =>
                    `${b.name} (${b.created ? "new" : "moved up"}, ${b.uncertainty.toFixed(2)} bits)`,
                )
                .join(", ") +
              ". Annotators get them first. ",
            el("a", { href: "#coverage-title", textContent: "See them on the coverage map" }),
          );
          said.dataset["boxes"] = String(answer.boxes.length);
          // The campaign page redraws its boxes table and coverage map (outlined: suggested).
          doc.dispatchEvent(new CustomEvent(BOXES_CHANGED));
        },
        (e: unknown) => {
          said.textContent = "";
          showError(message(e));
        },
      )
      .finally(() => {
        button.disabled = false;
      });
  });

  const ready = Promise.all([
    loadPresets().catch((e: unknown) =>
      showError(`The presets could not be loaded: ${message(e)}`),
    ),
    refreshRuns().catch((e: unknown) => showError(`The runs could not be loaded: ${message(e)}`)),
    loadAuto().catch((e: unknown) =>
      showError(`The automatic retraining could not be loaded: ${message(e)}`),
    ),
  ]).then(() => {
    pollRuns();
  });
  return { ready, runs: () => runs, refreshRuns };
}
