// The run page (runs/run.html): the run's status, a bar per stage with its ETA, the training
// curves (uPlot) and the held-out evaluation, polled every second while the run is active and
// no more once it ended; Cancel (the dataset's owner and whoever started it), the failure's
// message, and "Open in viewer" on the published layer. Tests read `window.annotome`.

import { ApiError, api, setCsrfToken } from "../lib/api";
import { byId, el, jsonScript } from "../lib/dom";
import { formatWhen } from "../lib/format";
import { type CurvesChart, curvesChart } from "./curves";
import {
  type Curves,
  type Run,
  boxesText,
  curveData,
  evaluationRows,
  isActive,
  runEtaText,
  stageCaption,
  stagePercent,
  statusText,
  trainingSteps,
  viewerLink,
} from "./logic";

export interface RunConfig {
  runId: number;
  runUrl: string;
  dataset: string;
  viewerUrl: string;
  canCancel: boolean;
  /** The dataset's owner: may open a proofreading campaign on the published version. */
  canManage: boolean;
  pollMs: number;
  stages: string[];
}

export interface RunHooks {
  /** Resolves once the first answer has been drawn. */
  ready: Promise<void>;
  refresh(): Promise<void>;
  run(): Run | undefined;
  /** How many answers have been drawn, and whether the page still polls. */
  refreshes(): number;
  polling(): boolean;
  curves(): Curves | undefined;
  chart: CurvesChart;
}

function message(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

/** The warnings banner's content: a heading line, then one item per warning. */
export function warningItems(found: readonly string[]): Node[] {
  if (!found.length) return [];
  const heading = el("strong", {
    textContent:
      found.length === 1
        ? "A stage produced nothing; this version is not made the current model:"
        : `${found.length} stages produced nothing; this version is not made the current model:`,
  });
  return [
    heading,
    el(
      "ul",
      {},
      found.map((w) => el("li", { textContent: w })),
    ),
  ];
}

export function mountRunPage(doc: Document = document): RunHooks {
  const config = jsonScript<RunConfig>("run-config", doc);
  const input = doc.querySelector<HTMLInputElement>("input[name=csrfmiddlewaretoken]");
  setCsrfToken(input?.value);
  const win = doc.defaultView ?? window;
  const path = { id: config.runId };
  const status = byId("run-status", HTMLElement, doc);
  const updated = byId("run-updated", HTMLElement, doc);
  const banner = byId("run-error", HTMLElement, doc);
  const failure = byId("run-failure", HTMLElement, doc);
  const warnings = byId("run-warnings", HTMLElement, doc);
  const log = byId("run-log", HTMLElement, doc);
  const eta = byId("run-eta", HTMLElement, doc);
  const open = byId("run-open", HTMLAnchorElement, doc);
  const modelSpan = byId("run-model", HTMLElement, doc);
  const boxes = byId("run-boxes", HTMLElement, doc);
  const curvesCaption = byId("curves-caption", HTMLElement, doc);
  const evaluation = byId("run-evaluation", HTMLTableElement, doc);
  const evaluationCaption = byId("evaluation-caption", HTMLElement, doc);
  const cancel = doc.getElementById("run-cancel") as HTMLButtonElement | null;
  const chart = curvesChart(byId("run-curves", HTMLDivElement, doc));
  let current: Run | undefined;
  let curves: Curves | undefined;
  let refreshes = 0;
  let polling = true;
  let modelShown = false;

  function showBanner(text: string): void {
    banner.textContent = text;
    banner.hidden = !text;
  }

  function drawStages(run: Run, now: Date): void {
    for (const stage of run.stages) {
      const row = doc.querySelector<HTMLElement>(`.run-stage[data-stage="${stage.name}"]`);
      if (!row) continue;
      const percent = stagePercent(stage);
      row.dataset["state"] = stage.state;
      row.dataset["done"] = String(stage.done);
      row.dataset["total"] = String(stage.total);
      const bar = row.querySelector<HTMLElement>(".stage-bar");
      const fill = row.querySelector<HTMLElement>(".stage-fill");
      if (bar && fill) {
        bar.classList.toggle("indeterminate", percent === null);
        bar.setAttribute("aria-valuenow", String(Math.round(percent ?? 0)));
        fill.style.width = `${percent ?? 100}%`;
      }
      const caption = row.querySelector<HTMLElement>(".stage-caption");
      if (caption) caption.textContent = stageCaption(stage, now);
    }
  }

  function draw(run: Run): void {
    const now = new Date();
    current = run;
    status.textContent = statusText(run);
    status.dataset["state"] = run.state;
    doc.body.dataset["runStatus"] = run.status;
    drawStages(run, now);
    eta.textContent = runEtaText(run, now);
    boxes.textContent = boxesText(run.boxes);
    curves = curveData(run.history as Record<string, unknown>[]);
    chart.update(curves);
    curvesCaption.textContent = curves.epochs.length
      ? `${curves.epochs.length} epoch${curves.epochs.length === 1 ? "" : "s"}` +
        (curves.restarts
          ? ` (training restarted ${curves.restarts} time${curves.restarts === 1 ? "" : "s"}: its health check failed; the latest attempt is shown)`
          : "") +
        (isActive(run) && trainingSteps(run) ? "; more appear as each epoch ends." : ".")
      : run.mode === "predict"
        ? "Nothing is trained: this run segments with a registered model."
        : isActive(run)
          ? "The losses appear as each epoch ends."
          : "No epoch of training was recorded.";
    const rows = evaluationRows(run.metrics);
    evaluation.hidden = rows.length === 0;
    evaluation.tBodies[0]!.replaceChildren(
      ...rows.map((r) => {
        const tr = el("tr", {}, [
          el("th", { textContent: r.label, scope: "row" }),
          ...r.cells.map((c) => el("td", { textContent: c })),
        ]);
        tr.dataset["variant"] = r.name;
        return tr;
      }),
    );
    evaluationCaption.textContent = rows.length
      ? "Objects matched at IoU ≥ 0.5 in the boxes held out from training."
      : run.boxes.length === 0
        ? "No campaign's boxes go with this run: nothing to evaluate it on."
        : !run.boxes.some((b) => b["held_out"] === true)
          ? "No box was held out (two or more approved boxes are needed): nothing to evaluate."
          : isActive(run)
            ? "Measured once the run has segmented the image."
            : "The run ended before its evaluation.";
    failure.hidden = run.status !== "failed";
    failure.textContent =
      run.status === "failed" ? `The run failed: ${run.error || "see the worker's log."}` : "";
    warnings.hidden = run.warnings.length === 0;
    warnings.replaceChildren(...warningItems(run.warnings));
    if (log.textContent !== (run.log || "–")) {
      const atEnd = log.scrollTop + log.clientHeight >= log.scrollHeight - 4;
      log.textContent = run.log || "–";
      if (atEnd) log.scrollTop = log.scrollHeight; // follow the log unless scrolled back
    }
    open.hidden = !run.result_layer;
    if (run.result_layer) open.href = viewerLink(config.viewerUrl, run.result_layer);
    if (cancel) cancel.hidden = !(config.canCancel && isActive(run));
    if (run.model !== null && !modelShown) {
      modelShown = true;
      void showModel(run);
    }
  }

  async function showModel(run: Run): Promise<void> {
    try {
      const models = await api.get("/api/v1/models/", { query: { dataset: config.dataset } });
      const model = models.results.find((m) => m.run === run.id);
      if (!model) return;
      const link = el("a", {
        href: `/api/v1/models/${model.id}/download/`,
        textContent: `Model v${model.number} (download)`,
      });
      link.id = "run-model-download";
      const parts: (Node | string)[] = [link];
      const registry = (run.metrics as { registry?: Record<string, unknown> }).registry;
      if (model.current) {
        parts.push(" · the current model");
      } else if (registry && registry["current"] === false) {
        parts.push(
          registry["why"]
            ? ` · not made current: ${String(registry["why"])}`
            : ` · not made current: held-out F1 ${Number(registry["f1"]).toFixed(3)} below ` +
                `v${String(registry["previous"])}'s ${Number(registry["previous_f1"]).toFixed(3)}`,
        );
      }
      if (config.canManage) {
        const proofread = el("button", { type: "button", textContent: "Proofread this version" });
        proofread.id = "run-proofread";
        proofread.addEventListener("click", () => {
          proofread.disabled = true;
          api.post("/api/v1/models/{id}/proofreading/", { path: { id: model.id } }).then(
            (campaign) => win.location.assign(campaign.url),
            (e: unknown) => {
              showBanner(`No proofreading campaign: ${message(e)}`);
              proofread.disabled = false;
            },
          );
        });
        parts.push(" ", proofread);
      }
      modelSpan.replaceChildren(...parts);
    } catch {
      modelSpan.textContent = `Model v${run.model}`;
    }
  }

  async function refresh(): Promise<void> {
    try {
      const run = await api.get("/api/v1/runs/{id}/", { path });
      draw(run);
      refreshes++;
      showBanner("");
      polling = isActive(run);
      updated.textContent = polling
        ? `Updated ${new Date().toLocaleTimeString()} (every ${config.pollMs / 1000} s)`
        : `Ended ${run.finished ? formatWhen(run.finished) : ""}`.trim();
      updated.dataset["refreshes"] = String(refreshes);
    } catch (error) {
      showBanner(`The run could not be loaded: ${message(error)}`);
      // Not there any more (deleted, access withdrawn): stop asking.
      if (error instanceof ApiError && (error.status === 404 || error.status === 403)) {
        polling = false;
      }
      throw error;
    }
  }

  function schedule(): void {
    if (!polling) return;
    win.setTimeout(() => {
      refresh()
        .catch(() => {})
        .finally(schedule);
    }, config.pollMs);
  }

  cancel?.addEventListener("click", () => {
    cancel.disabled = true;
    api
      .post("/api/v1/runs/{id}/cancel/", { path })
      .then(
        (run) => draw(run),
        (error: unknown) =>
          showBanner(
            error instanceof ApiError && error.status === 403
              ? `You may not cancel this run: ${error.message}`
              : message(error),
          ),
      )
      .finally(() => {
        cancel.disabled = false;
      });
  });

  const ready = refresh().finally(schedule);
  return {
    ready,
    refresh,
    run: () => current,
    refreshes: () => refreshes,
    polling: () => polling,
    curves: () => curves,
    chart,
  };
}
