// The annotation campaign's dashboard (annotation/dashboard.html): boxes and slots by state,
// approvals over time and per-annotator figures as uPlot bar charts (plots/bars.ts), and a table.
// A painted campaign has no point agreement (those plots stay hidden); its label agreement is
// plotted instead: object F1 per box and voxel Dice per annotator pair.
// Refreshed by polling the dashboard endpoint every few seconds (no page reload); a failed poll
// shows a banner and polling goes on.

import { api, type Schemas } from "../lib/api";
import { byId, el, jsonScript } from "../lib/dom";
import { type Bar, type BarChart, barChart } from "../plots/bars";
import { formatPercent } from "../plots/dashboard_page";
import { livePoll } from "../plots/live_poll";

interface Config {
  campaignId: number;
  pollMs: number;
  redundancy: number;
  csvUrl: string;
}
type Dashboard = Schemas["AnnotationDashboard"];

export interface AnnotationDashboardHooks {
  ready: Promise<void>;
  /** How many refreshes have been drawn. */
  refreshes(): number;
  last(): Dashboard | undefined;
  refresh(): Promise<void>;
  charts: Record<string, BarChart>;
}

const BOX_COLOURS: Record<string, string> = {
  todo: "#9aa5b8",
  in_progress: "#e0a526",
  in_review: "#8a63d2",
  complete: "#2f9e44",
  flagged: "#d9480f",
};
const SLOT_COLOURS: Record<string, string> = {
  todo: "#9aa5b8",
  in_progress: "#e0a526",
  submitted: "#8a63d2",
  approved: "#2f9e44",
  rejected: "#d9480f",
};
const ANNOTATOR_COLOUR = "#2f6fdb";

function fixed(value: number | null | undefined, scale: number, digits: number): string {
  return value === null || value === undefined ? "–" : (value / scale).toFixed(digits);
}

/** The x label of a timeline point in the reader's locale, as the pages write dates: "Mar 4"
 * per day (the server's UTC day), "Mar 4, 5 PM" per hour (the reader's time zone). */
export function timelineLabel(
  start: string,
  bucket: string,
  locale?: string,
  timeZone?: string,
): string {
  const date = new Date(start);
  if (Number.isNaN(date.getTime())) return start;
  if (bucket === "hour")
    return date.toLocaleString(locale, {
      month: "short",
      day: "numeric",
      hour: "numeric",
      timeZone,
    });
  return date.toLocaleDateString(locale, { month: "short", day: "numeric", timeZone: "UTC" });
}

/** Bars of the F1 histogram: "0.0–0.1" ... "0.9–1.0", red to green. */
export function agreementBins(bins: readonly number[]): Bar[] {
  return bins.map((value, k) => ({
    label: `${(k / bins.length).toFixed(1)}–${((k + 1) / bins.length).toFixed(1)}`,
    value,
    colour: `hsl(${Math.round((120 * k) / Math.max(bins.length - 1, 1))}, 60%, 45%)`,
  }));
}

/** Bars of the painted agreement (pure: unit-tested): F1 per box, Dice per annotator pair. */
export function labelBoxBars(
  boxes: readonly { name: string; mean_f1: number | null }[],
  colour = ANNOTATOR_COLOUR,
): Bar[] {
  return boxes.map((b) => ({ label: b.name, value: b.mean_f1, colour }));
}

export function labelPairBars(
  pairs: readonly { reference: string; other: string; dice: number | null }[],
  colour = ANNOTATOR_COLOUR,
): Bar[] {
  return pairs.map((p) => ({ label: `${p.reference} / ${p.other}`, value: p.dice, colour }));
}

const figureText = (v: number | null | undefined): string => (v == null ? "–" : v.toFixed(2));

/** The rows of the painted agreement's per-pair table: the pair, boxes, matched objects,
 * precision, recall, F1, voxel Dice and the mean IoU of matched objects. */
export function labelPairRows(pairs: readonly Schemas["DashboardLabelPair"][]): string[][] {
  return pairs.map((p) => [
    `${p.reference} / ${p.other}`,
    String(p.boxes),
    String(p.matched),
    figureText(p.precision),
    figureText(p.recall),
    figureText(p.f1),
    figureText(p.dice),
    figureText(p.mean_matched_iou),
  ]);
}

/** The rows of the per-box table: the box, its pairs' mean F1 and mean voxel Dice. */
export function labelBoxRows(
  boxes: readonly { name: string; mean_f1: number | null; mean_dice: number | null }[],
): string[][] {
  return boxes.map((b) => [b.name, figureText(b.mean_f1), figureText(b.mean_dice)]);
}

export function mountAnnotationDashboard(doc: Document = document): AnnotationDashboardHooks {
  const config = jsonScript<Config>("dashboard-config", doc);
  const path = { campaign_id: config.campaignId };
  const banner = byId("dashboard-error", HTMLDivElement, doc);
  const updated = byId("dashboard-updated", HTMLElement, doc);
  const plot = (id: string): HTMLDivElement => byId(id, HTMLDivElement, doc);
  const charts: Record<string, BarChart> = {
    boxes: barChart(plot("plot-boxes"), { integer: true }),
    slots: barChart(plot("plot-slots"), { integer: true }),
    timeline: barChart(plot("plot-timeline"), { integer: true }),
    approved: barChart(plot("plot-approved"), { integer: true }),
    minutes: barChart(plot("plot-minutes")),
    rejections: barChart(plot("plot-rejections"), {
      format: (v) => `${Math.round(v * 100)} %`,
    }),
    agreement: barChart(plot("plot-agreement"), { integer: true }),
    agreementPeople: barChart(plot("plot-agreement-annotators"), {
      format: (v) => v.toFixed(2),
    }),
    labelF1: barChart(plot("plot-label-f1"), { format: (v) => v.toFixed(2) }),
    labelDice: barChart(plot("plot-label-dice"), { format: (v) => v.toFixed(2) }),
  };

  function draw(data: Dashboard): void {
    byId("progress-text", HTMLElement, doc).textContent =
      `${data.boxes_complete} of ${data.boxes_total} boxes complete (${formatPercent(data.progress)}); ` +
      `${data.slots["approved"] ?? 0} of ${Object.values(data.slots).reduce((a, b) => a + b, 0)} tasks approved`;
    const bar = byId("progress-bar", HTMLElement, doc);
    bar.setAttribute("aria-valuenow", String(Math.round((data.progress ?? 0) * 100)));
    byId("progress-fill", HTMLElement, doc).style.width = `${(data.progress ?? 0) * 100}%`;
    const counts = (values: Record<string, number>, colours: Record<string, string>): Bar[] =>
      Object.keys(colours).map((k) => ({
        label: k.replace("_", " "),
        value: values[k] ?? 0,
        colour: colours[k]!,
      }));
    charts.boxes!.update(counts(data.boxes, BOX_COLOURS));
    charts.slots!.update(counts(data.slots, SLOT_COLOURS));
    const { bucket, points } = data.timeline;
    byId("timeline-bucket", HTMLElement, doc).textContent = bucket;
    charts.timeline!.update(
      points.map((p) => ({
        label: timelineLabel(p.start, bucket),
        value: p.approved,
        colour: "#2f9e44",
      })),
    );
    const people = data.annotators;
    const per = (value: (r: (typeof people)[number]) => number | null): Bar[] =>
      people.map((r) => ({ label: r.annotator, value: value(r), colour: ANNOTATOR_COLOUR }));
    charts.approved!.update(per((r) => r.by_state["approved"] ?? 0));
    charts.minutes!.update(
      per((r) => (r.median_seconds_per_task == null ? null : r.median_seconds_per_task / 60)),
    );
    charts.rejections!.update(per((r) => r.rejection_rate ?? null));
    drawAgreement(data.agreement);
    drawLabelAgreement(data.painted_agreement);
    const body = byId("annotator-table", HTMLTableElement, doc).tBodies[0]!;
    body.replaceChildren(
      ...people.map((r) => {
        const row = el(
          "tr",
          {},
          [
            r.annotator,
            String(r.tasks),
            String(r.by_state["in_progress"] ?? 0),
            String(r.by_state["submitted"] ?? 0),
            String(r.by_state["approved"] ?? 0),
            String(r.by_state["rejected"] ?? 0),
            String(r.objects),
            fixed(r.median_seconds_per_task, 60, 1),
            fixed(r.median_seconds_per_object, 1, 1),
            `${formatPercent(r.rejection_rate)} (${r.rejections} of ${r.reviews})`,
          ].map((text) => el("td", { textContent: text })),
        );
        row.dataset["annotator"] = r.annotator;
        return row;
      }),
    );
  }

  function drawAgreement(agreement: Dashboard["agreement"]): void {
    // Until two annotators have handed in one box there is nothing to plot: the figures stay
    // hidden and the note (from the template) says when they will appear.
    for (const id of ["plot-agreement", "plot-agreement-annotators"]) {
      const figure = plot(id).closest("figure");
      if (figure) figure.hidden = !agreement || agreement.boxes_compared === 0;
    }
    if (!agreement) {
      charts.agreement!.update([]);
      charts.agreementPeople!.update([]);
      return;
    }
    byId("agreement-text", HTMLElement, doc).textContent =
      `Point agreement over ${agreement.boxes_compared} box${agreement.boxes_compared === 1 ? "" : "es"} ` +
      `(matched within ${agreement.tolerance_um} µm): mean F1 ${agreement.mean_f1 == null ? "–" : agreement.mean_f1.toFixed(2)}.`;
    charts.agreement!.update(agreementBins(agreement.f1_bins));
    charts.agreementPeople!.update(
      agreement.annotators.map((a) => ({
        label: a.annotator,
        value: a.mean_f1 ?? null,
        colour: ANNOTATOR_COLOUR,
      })),
    );
  }

  function drawLabelAgreement(painted: Dashboard["painted_agreement"]): void {
    for (const id of ["plot-label-f1", "plot-label-dice"]) {
      const figure = plot(id).closest("figure");
      if (figure) figure.hidden = !painted;
    }
    byId("label-agreement", HTMLElement, doc).hidden = !painted;
    if (!painted) {
      charts.labelF1!.update([]);
      charts.labelDice!.update([]);
      return;
    }
    byId("agreement-text", HTMLElement, doc).textContent =
      `Painted agreement over ${painted.boxes_compared} box${painted.boxes_compared === 1 ? "" : "es"} ` +
      `(objects matched at IoU ≥ 0.5): mean F1 ${painted.mean_f1 == null ? "–" : painted.mean_f1.toFixed(2)}, ` +
      `mean Dice ${painted.mean_dice == null ? "–" : painted.mean_dice.toFixed(2)}.`;
    charts.labelF1!.update(labelBoxBars(painted.boxes));
    charts.labelDice!.update(labelPairBars(painted.pairs));
    fillTable("label-pairs", labelPairRows(painted.pairs));
    fillTable("label-boxes", labelBoxRows(painted.boxes));
  }

  function fillTable(id: string, rows: string[][]): void {
    const body = byId(id, HTMLTableElement, doc).tBodies[0]!;
    body.replaceChildren(
      ...rows.map((cells) =>
        el(
          "tr",
          {},
          cells.map((c) => el("td", { textContent: c })),
        ),
      ),
    );
  }

  const poll = livePoll(
    () => api.get("/api/v1/annotation/campaigns/{campaign_id}/dashboard/", { path }),
    draw,
    { banner, updated, pollMs: config.pollMs },
  );
  return { ...poll, charts };
}
