// The thresholds page (proofreading/thresholds.html): volume (log axis) against sphericity of a
// campaign's decided detections, coloured by final verdict, with the filter's thresholds as
// lines dragged with the mouse. Precision and recall against the verdicts are recomputed in
// the browser on every move (threshold_math.ts); "Fit" asks the server to run
// pipeline/thresholds.py's search, "Save" stores the bounds as the layer's filter.
//
// uPlot draws the axes (log x), the grid and sizes the canvas; the points are drawn in its
// draw hook (one fillRect each, by class), and the threshold lines are elements over the
// plotting area, so dragging moves an element and never redraws 100,000 points.

import uPlot from "uplot";
import { ApiError, api, setCsrfToken, type Schemas } from "../lib/api";
import { byId, el, jsonScript } from "../lib/dom";
import {
  type Bounds,
  type Scores,
  type VerdictKind,
  filterScores,
  formatScore,
  labelsOf,
  logAxisLabels,
  logRange,
  logTicks,
  sphericityRange,
} from "./threshold_math";
import { formatWhen, sizeMeasure } from "../lib/format";

interface Config {
  campaignId: number;
  csrfToken: string;
  canSave: boolean;
  minRecall: number;
  nFolds: number;
  /** The layer is a 2D image's: the volume column holds areas (µm²). */
  planar?: boolean;
}

type Data = Schemas["ThresholdData"];
type LineName = "volumeMin" | "volumeMax" | "sphericityMin";

export interface ThresholdHooks {
  ready: Promise<void>;
  bounds(): Bounds;
  scores(): Scores | undefined;
  /** Drawn (uPlot finished a draw with the points) since the page loaded. */
  draws(): number;
}

// Points are drawn larger when there are few of them (a campaign's first verdicts).
const POINT_PX = 3;
const FEW_POINTS = 2000;
const FEW_POINT_PX = 6;

function swatch(colour: string): HTMLSpanElement {
  const span = el("span", { className: "legend-swatch" });
  span.style.background = colour;
  return span;
}

/** Draw order: uncertain under the rest, negatives on top (the ones a filter must reject). */
function drawOrder(kinds: readonly VerdictKind[]): number[] {
  const rank = { uncertain: 0, positive: 1, negative: 2 } as const;
  return kinds.map((_, i) => i).sort((a, b) => rank[kinds[a]!] - rank[kinds[b]!]);
}

export function mountThresholdsPage(doc: Document = document): ThresholdHooks {
  const config = jsonScript<Config>("thresholds-config", doc);
  const size = sizeMeasure(!!config.planar); // a 2D layer's "volume" column holds areas
  setCsrfToken(config.csrfToken);
  const path = { campaign_id: config.campaignId };
  const errorBanner = byId("thresholds-error", HTMLDivElement, doc);
  const plotRoot = byId("thresholds-plot", HTMLDivElement, doc);
  const legend = byId("thresholds-legend", HTMLUListElement, doc);
  const inputs: Record<LineName, HTMLInputElement> = {
    volumeMin: byId("t-volume-min", HTMLInputElement, doc),
    volumeMax: byId("t-volume-max", HTMLInputElement, doc),
    sphericityMin: byId("t-sphericity-min", HTMLInputElement, doc),
  };
  const minRecall = byId("fit-min-recall", HTMLInputElement, doc);
  const fitButton = byId("fit-button", HTMLButtonElement, doc);
  const fitStatus = byId("fit-status", HTMLParagraphElement, doc);
  const saveStatus = byId("save-status", HTMLParagraphElement, doc);
  const saveButton = doc.getElementById("save-button") as HTMLButtonElement | null;
  minRecall.value = String(config.minRecall);

  let bounds: Bounds = { volumeMin: null, volumeMax: null, sphericityMin: null };
  let scores: Scores | undefined;
  let draws = 0;
  let plot: uPlot | undefined;
  let volume = new Float64Array(0);
  let sphericity = new Float64Array(0);
  let verdict = new Int32Array(0);
  let labels = new Int8Array(0);
  let xRange: [number, number] = [0.1, 10];
  let yRange: [number, number] = [0, 1];
  const lines = {} as Record<LineName, HTMLDivElement>;

  function showError(message: string): void {
    errorBanner.textContent = message;
    errorBanner.hidden = false;
  }

  function rescore(): void {
    scores = filterScores(volume, sphericity, labels, bounds);
    byId("score-precision", HTMLElement, doc).textContent = formatScore(scores.precision);
    byId("score-recall", HTMLElement, doc).textContent = formatScore(scores.recall);
    byId("score-f1", HTMLElement, doc).textContent = formatScore(scores.f1);
    byId("score-counts", HTMLElement, doc).textContent =
      `Kept ${scores.keptPositives} of ${scores.positives} positives and ` +
      `${scores.keptNegatives} of ${scores.negatives} negatives; ` +
      `${scores.leftOut} uncertain left out.`;
  }

  /** A bound's line position: its value, or the edge of the plot when it has none. */
  function lineValue(name: LineName): number {
    const value = bounds[name];
    if (value !== null) return value;
    return name === "volumeMin" ? xRange[0] : name === "volumeMax" ? xRange[1] : yRange[0];
  }

  function placeLines(): void {
    if (!plot) return;
    for (const name of ["volumeMin", "volumeMax", "sphericityMin"] as const) {
      const line = lines[name];
      const vertical = name !== "sphericityMin";
      const px = plot.valToPos(lineValue(name), vertical ? "x" : "y");
      if (vertical) line.style.left = `${px}px`;
      else line.style.top = `${px}px`;
      line.classList.toggle("unset", bounds[name] === null);
    }
  }

  function showBounds(): void {
    for (const name of ["volumeMin", "volumeMax", "sphericityMin"] as const) {
      const value = bounds[name];
      if (doc.activeElement !== inputs[name]) {
        inputs[name].value = value === null ? "" : String(Number(value.toPrecision(6)));
      }
    }
    placeLines();
    rescore();
  }

  function setBounds(next: Partial<Bounds>): void {
    bounds = { ...bounds, ...next };
    showBounds();
  }

  function drawPoints(u: uPlot): void {
    const ctx = u.ctx;
    const { left, top, width, height } = u.bbox;
    const size = (volume.length <= FEW_POINTS ? FEW_POINT_PX : POINT_PX) * uPlot.pxRatio;
    const half = size / 2;
    ctx.save();
    ctx.beginPath();
    ctx.rect(left, top, width, height);
    ctx.clip();
    const classes = currentClasses;
    for (const c of drawOrder(classes.map((k) => k.kind))) {
      ctx.fillStyle = classes[c]!.colour;
      ctx.globalAlpha = classes[c]!.kind === "uncertain" ? 0.5 : 0.8;
      for (let i = 0; i < verdict.length; i++) {
        if (verdict[i] !== c) continue;
        const x = u.valToPos(volume[i]!, "x", true);
        const y = u.valToPos(sphericity[i]!, "y", true);
        ctx.fillRect(x - half, y - half, size, size);
      }
    }
    ctx.restore();
    draws++;
  }

  let currentClasses: Data["classes"] = [];

  function makeLine(name: LineName, vertical: boolean, label: string): HTMLDivElement {
    const line = el("div", {
      className: `threshold-line ${vertical ? "vertical" : "horizontal"}`,
      id: `line-${name}`,
      title: `Drag: ${label}`,
    });
    line.dataset["bound"] = name;
    line.append(el("span", { className: "threshold-label", textContent: label }));
    line.addEventListener("pointerdown", (event) => {
      event.preventDefault();
      event.stopPropagation();
      line.setPointerCapture(event.pointerId);
      line.classList.add("dragging");
    });
    line.addEventListener("mousedown", (event) => event.stopPropagation());
    line.addEventListener("pointermove", (event) => {
      if (!plot || !line.hasPointerCapture(event.pointerId)) return;
      const rect = plot.over.getBoundingClientRect();
      if (vertical) {
        const px = Math.min(Math.max(event.clientX - rect.left, 0), rect.width);
        setBounds({ [name]: plot.posToVal(px, "x") });
      } else {
        const px = Math.min(Math.max(event.clientY - rect.top, 0), rect.height);
        setBounds({ [name]: plot.posToVal(px, "y") });
      }
    });
    const release = (event: PointerEvent): void => {
      if (line.hasPointerCapture(event.pointerId)) line.releasePointerCapture(event.pointerId);
      line.classList.remove("dragging");
    };
    line.addEventListener("pointerup", release);
    line.addEventListener("pointercancel", release);
    return line;
  }

  function plotSize(): { width: number; height: number } {
    const width = Math.max(320, plotRoot.clientWidth);
    return { width, height: Math.round(Math.min(560, Math.max(300, width * 0.62))) };
  }

  function buildPlot(data: Data): void {
    currentClasses = data.classes;
    volume = Float64Array.from(data.volume);
    sphericity = Float64Array.from(data.sphericity);
    verdict = Int32Array.from(data.verdict);
    labels = labelsOf(
      verdict,
      data.classes.map((c) => c.kind),
    );
    xRange = logRange(volume);
    yRange = sphericityRange(sphericity);
    const options: uPlot.Options = {
      ...plotSize(),
      scales: {
        x: { time: false, distr: 3, range: () => xRange },
        y: { range: () => yRange },
      },
      axes: [
        {
          label: `${size.label} (${size.unit}, log scale)`,
          stroke: "#1d2330",
          grid: { stroke: "#e4e7ec" },
          splits: () => logTicks(xRange[0], xRange[1]),
          // Every split labelled (uPlot's log filter would keep the decades only).
          filter: (_u: uPlot, splits: number[]) => splits,
          // uPlot passes null for ticks it leaves unlabelled (too dense).
          values: (u: uPlot, ticks: (number | null)[]) =>
            logAxisLabels(ticks, (v) => u.valToPos(v, "x")),
        },
        { label: "Sphericity", stroke: "#1d2330", grid: { stroke: "#e4e7ec" } },
      ],
      series: [{}, { label: "detections", stroke: "transparent", points: { show: false } }],
      legend: { show: false },
      cursor: { drag: { x: false, y: false }, points: { show: false } },
      // Scales are set when uPlot commits (a microtask after construction, and after every
      // resize): place the lines then, since their pixels depend on them.
      hooks: { draw: [drawPoints, () => placeLines()] },
    };
    plot = new uPlot(options, [xRange.slice(), [null, null]] as uPlot.AlignedData, plotRoot);
    lines.volumeMin = makeLine("volumeMin", true, "volume ≥");
    lines.volumeMax = makeLine("volumeMax", true, "volume ≤");
    lines.sphericityMin = makeLine("sphericityMin", false, "sphericity ≥");
    plot.over.append(lines.volumeMin, lines.volumeMax, lines.sphericityMin);
    window.addEventListener("resize", () => {
      plot?.setSize(plotSize());
      placeLines();
    });
    const counts = data.classes.map(() => 0);
    for (const v of verdict) counts[v] = (counts[v] ?? 0) + 1;
    legend.replaceChildren(
      ...data.classes.map((c, i) =>
        el("li", { className: `legend-${c.kind}` }, [
          swatch(c.colour),
          `${c.label} (${counts[i]})${c.kind === "uncertain" ? ": left out of P/R" : ""}`,
        ]),
      ),
    );
    const filter = data.filter;
    bounds = {
      volumeMin: filter.volume_min,
      volumeMax: filter.volume_max,
      sphericityMin: filter.sphericity_min,
    };
    byId("score-note", HTMLElement, doc).textContent =
      `${data.decided} of ${data.items} items decided` +
      (data.second_round
        ? ` (${data.second_round} more ${data.second_round === 1 ? "waits" : "wait"} for ` +
          "an expert: uncertain or disputed in the first round)"
        : "") +
      `; ${data.volume.length} plotted` +
      (data.left_out ? ` (${data.left_out} left out: no sphericity or detection gone)` : "") +
      ". Positive: verdicts of a positive kind (true positive, with or without shape " +
      "distortion); negative: false positive. Uncertain verdicts are left out of precision " +
      "and recall, and so are the detections not decided yet.";
    showBounds();
  }

  for (const name of ["volumeMin", "volumeMax", "sphericityMin"] as const) {
    inputs[name].addEventListener("input", () => {
      const text = inputs[name].value.trim();
      const value = Number(text);
      if (text === "") setBounds({ [name]: null });
      else if (Number.isFinite(value)) setBounds({ [name]: value });
    });
  }

  fitButton.addEventListener("click", () => {
    void (async () => {
      fitButton.disabled = true;
      fitStatus.textContent = "Fitting…";
      try {
        const fit = await api.post("/api/v1/proofreading/campaigns/{campaign_id}/thresholds/fit/", {
          path,
          body: { min_recall: Number(minRecall.value), n_folds: config.nFolds },
        });
        setBounds({
          volumeMin: fit.volume_min,
          volumeMax: null,
          sphericityMin: fit.sphericity_min,
        });
        fitStatus.textContent =
          `Fitted on ${fit.n_labelled} verdicts (${fit.n_folds} fold${fit.n_folds === 1 ? "" : "s"}, ` +
          `recall ≥ ${fit.min_recall}): precision ${formatScore(fit.precision)}, ` +
          `recall ${formatScore(fit.recall)}. Not saved yet.`;
        fitStatus.dataset["fitted"] = "1";
      } catch (error) {
        fitStatus.textContent = error instanceof ApiError ? error.message : String(error);
      } finally {
        fitButton.disabled = false;
      }
    })();
  });

  saveButton?.addEventListener("click", () => {
    void (async () => {
      saveButton.disabled = true;
      saveStatus.textContent = "Saving…";
      try {
        const saved = await api.post(
          "/api/v1/proofreading/campaigns/{campaign_id}/thresholds/filter/",
          {
            path,
            body: {
              volume_min: bounds.volumeMin,
              volume_max: bounds.volumeMax,
              sphericity_min: bounds.sphericityMin,
            },
          },
        );
        const f = saved.filter;
        saveStatus.textContent = f
          ? `Saved as the layer's filter by ${f.created_by ?? "?"} (${formatWhen(f.created)}).`
          : "Saved.";
        saveStatus.dataset["saved"] = String(f?.id ?? "");
      } catch (error) {
        saveStatus.textContent = error instanceof ApiError ? error.message : String(error);
      } finally {
        saveButton.disabled = false;
      }
    })();
  });

  const ready = (async () => {
    try {
      const data = await api.get("/api/v1/proofreading/campaigns/{campaign_id}/thresholds/", {
        path,
      });
      buildPlot(data);
    } catch (error) {
      showError(error instanceof ApiError ? error.message : String(error));
      throw error;
    }
  })();

  return { ready, bounds: () => ({ ...bounds }), scores: () => scores, draws: () => draws };
}
