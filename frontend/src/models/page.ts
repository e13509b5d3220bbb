// The model comparison page (runs/models.html): the server renders a row per model version
// with its figures and a checkbox; this draws the ticked versions' held-out scores per box as
// grouped bars (score and variant chosen above the plot) and their overall F1, and points
// "Compare in viewer" at the dataset's viewer with their layers shown together. The latest
// two versions are ticked at first. Tests read `window.annotome`.

import { byId, jsonScript } from "../lib/dom";
import { type GroupedChart, groupedBarChart } from "./grouped_bars";
import {
  type Grouped,
  METRIC_LABELS,
  type Metric,
  VARIANT_PHRASES,
  type Variant,
  type Version,
  chosenVersions,
  compareViewerLink,
  defaultChosen,
  overallGroups,
  perBoxGroups,
  versionList,
} from "./logic";

export interface ModelsConfig {
  dataset: string;
  viewerUrl: string;
  versions: Version[];
}

export interface ModelsHooks {
  ready: Promise<void>;
  /** Ids of the ticked versions, oldest first. */
  chosen(): number[];
  /** Tick exactly these versions (by id) and redraw. */
  choose(ids: number[]): void;
  metric(): Metric;
  variant(): Variant;
  perBox(): Grouped;
  overall(): Grouped;
  compareUrl(): string | null;
  perBoxChart: GroupedChart;
  overallChart: GroupedChart;
}

export function mountModelsPage(doc: Document = document): ModelsHooks {
  const config = jsonScript<ModelsConfig>("models-config", doc);
  const boxes = [...doc.querySelectorAll<HTMLInputElement>("input.model-choose")];
  const metricSelect = byId("models-metric", HTMLSelectElement, doc);
  const variantSelect = byId("models-variant", HTMLSelectElement, doc);
  const compare = byId("models-compare-viewer", HTMLAnchorElement, doc);
  const chosenText = byId("models-chosen", HTMLElement, doc);
  const perBoxCaption = byId("per-box-caption", HTMLElement, doc);
  const overallCaption = byId("overall-caption", HTMLElement, doc);
  const metricName = (): Metric => metricSelect.value as Metric;
  const variantName = (): Variant => variantSelect.value as Variant;
  const perBoxChart = groupedBarChart(byId("models-per-box", HTMLDivElement, doc), {
    yLabel: METRIC_LABELS[metricName()],
  });
  const overallChart = groupedBarChart(byId("models-overall", HTMLDivElement, doc), {
    height: 200,
    yLabel: "F1",
  });
  let perBox: Grouped = { categories: [], series: [] };
  let overall: Grouped = { categories: [], series: [] };
  let compareUrl: string | null = null;

  function ticked(): Version[] {
    const ids = boxes.filter((b) => b.checked).map((b) => Number(b.value));
    return chosenVersions(config.versions, ids);
  }

  function draw(): void {
    const versions = ticked();
    const metric = metricName();
    const variant = variantName();
    perBox = perBoxGroups(versions, metric, variant);
    perBoxChart.update(perBox);
    overall = overallGroups(versions, "f1");
    overallChart.update(overall);
    compareUrl = compareViewerLink(config.viewerUrl, versions);
    compare.hidden = compareUrl === null;
    if (compareUrl !== null) compare.href = compareUrl;
    chosenText.textContent = versions.length
      ? `Comparing ${versionList(versions)}.`
      : "Tick one or more versions to compare them.";
    const unevaluated = versions.filter((v) => !v.perBox[variant].length);
    perBoxCaption.textContent = !versions.length
      ? ""
      : [
          perBox.categories.length
            ? `${METRIC_LABELS[metric]} of ${VARIANT_PHRASES[variant]} in each of ` +
              `${perBox.categories.length} held-out box${perBox.categories.length === 1 ? "" : "es"}` +
              " (a box held out by some runs only has bars for those)."
            : "",
          unevaluated.length
            ? `No per-box scores for ${versionList(unevaluated)} (no box held out, or published before they were kept).`
            : "",
        ]
          .filter(Boolean)
          .join(" ");
    overallCaption.textContent = versions.length
      ? "Objects of all held-out boxes pooled, matched at IoU ≥ 0.5."
      : "";
  }

  function choose(ids: number[]): void {
    const wanted = new Set(ids);
    for (const box of boxes) box.checked = wanted.has(Number(box.value));
    draw();
  }

  for (const box of boxes) box.addEventListener("change", draw);
  metricSelect.addEventListener("change", () => {
    perBoxChart.setYLabel(METRIC_LABELS[metricName()]);
    draw();
  });
  variantSelect.addEventListener("change", draw);
  choose(defaultChosen(config.versions));

  return {
    ready: Promise.resolve(),
    chosen: () => ticked().map((v) => v.id),
    choose,
    metric: metricName,
    variant: variantName,
    perBox: () => perBox,
    overall: () => overall,
    compareUrl: () => compareUrl,
    perBoxChart,
    overallChart,
  };
}
