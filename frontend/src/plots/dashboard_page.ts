// The managers' dashboard (proofreading/dashboard.html): progress by status, verdict and round,
// and per-reviewer decisions, median seconds and agreement with the consensus, as uPlot bar
// charts; Fleiss' kappa from the agreement report. Refreshed by polling the two report
// endpoints every few seconds (no page reload); a failed poll shows a banner and polling goes on.

import { api, type Schemas } from "../lib/api";
import { livePoll } from "./live_poll";
import { byId, el, jsonScript } from "../lib/dom";
import { type Bar, type BarChart, barChart } from "./bars";

interface VerdictClass {
  name: string;
  label: string;
  colour: string;
}
interface Config {
  campaignId: number;
  pollMs: number;
  verdictSet: VerdictClass[];
}
type Dashboard = Schemas["Dashboard"];
type Agreement = Schemas["Agreement"];

export interface DashboardHooks {
  ready: Promise<void>;
  /** How many refreshes have been drawn. */
  refreshes(): number;
  last(): Dashboard | undefined;
  refresh(): Promise<void>;
  charts: Record<string, BarChart>;
}

const STATUS_COLOURS: Record<string, string> = {
  pending: "#9aa5b8",
  second_round: "#e0a526",
  decided: "#2f6fdb",
};
const REVIEWER_COLOUR = "#2f6fdb";

export function formatPercent(value: number | null | undefined): string {
  return value === null || value === undefined ? "–" : `${(value * 100).toFixed(1)} %`;
}

export function mountDashboardPage(doc: Document = document): DashboardHooks {
  const config = jsonScript<Config>("dashboard-config", doc);
  const path = { campaign_id: config.campaignId };
  const banner = byId("dashboard-error", HTMLDivElement, doc);
  const updated = byId("dashboard-updated", HTMLElement, doc);
  const charts: Record<string, BarChart> = {
    status: barChart(byId("plot-status", HTMLDivElement, doc), { integer: true }),
    verdict: barChart(byId("plot-verdict", HTMLDivElement, doc), { integer: true }),
    round: barChart(byId("plot-round", HTMLDivElement, doc), { integer: true }),
    decisions: barChart(byId("plot-decisions", HTMLDivElement, doc), { integer: true }),
    seconds: barChart(byId("plot-seconds", HTMLDivElement, doc)),
    agreement: barChart(byId("plot-agreement", HTMLDivElement, doc), {
      format: (v) => `${Math.round(v * 100)} %`,
    }),
  };
  function draw(data: Dashboard, agreement: Agreement): void {
    byId("progress-text", HTMLElement, doc).textContent =
      `${data.decided} of ${data.total} decided (${formatPercent(data.progress)})`;
    const bar = byId("progress-bar", HTMLElement, doc);
    bar.setAttribute("aria-valuenow", String(Math.round((data.progress ?? 0) * 100)));
    byId("progress-fill", HTMLElement, doc).style.width = `${(data.progress ?? 0) * 100}%`;
    const kappa = agreement.fleiss.kappa;
    byId("fleiss-text", HTMLElement, doc).textContent =
      `Fleiss' kappa: ${kappa === null || kappa === undefined ? "– (not enough items with N verdicts)" : kappa.toFixed(3)}` +
      ` over ${agreement.fleiss.n_detections} items; pairwise agreement ` +
      `${formatPercent(agreement.percent_agreement.pairwise)}; missed objects ${data.missed_objects}.`;
    charts.status!.update(
      Object.entries(data.status_counts).map(([k, v]) => ({
        label: k.replace("_", " "),
        value: v,
        colour: STATUS_COLOURS[k] ?? "#888",
      })),
    );
    charts.verdict!.update(
      config.verdictSet.map((c) => ({
        label: c.label,
        value: data.by_verdict[c.name] ?? 0,
        colour: c.colour,
      })),
    );
    charts.round!.update([
      { label: "round 1", value: data.by_round["1"] ?? 0, colour: "#2f6fdb" },
      { label: "round 2", value: data.by_round["2"] ?? 0, colour: "#e0a526" },
    ]);
    const reviewers = data.reviewers.filter((r) => r.decisions > 0 || r.roles.includes("reviewer"));
    const per = (value: (r: (typeof reviewers)[number]) => number | null): Bar[] =>
      reviewers.map((r) => ({ label: r.reviewer, value: value(r), colour: REVIEWER_COLOUR }));
    charts.decisions!.update(per((r) => r.decisions));
    charts.seconds!.update(per((r) => r.median_seconds ?? null));
    charts.agreement!.update(per((r) => r.agreement_with_consensus ?? null));
    const body = byId("reviewer-table", HTMLTableElement, doc).tBodies[0]!;
    body.replaceChildren(
      ...data.reviewers.map((r) =>
        el(
          "tr",
          {},
          [
            r.reviewer,
            r.roles.join(", "),
            String(r.decisions),
            String(r.decisions_round1),
            String(r.decisions_round2),
            r.median_seconds === null || r.median_seconds === undefined
              ? "–"
              : r.median_seconds.toFixed(1),
            `${formatPercent(r.agreement_with_consensus)} (${r.n_with_consensus})`,
            String(r.skips),
            String(r.flags),
          ].map((text) => el("td", { textContent: text })),
        ),
      ),
    );
  }

  const poll = livePoll(
    () =>
      Promise.all([
        api.get("/api/v1/proofreading/campaigns/{campaign_id}/dashboard/", { path }),
        api.get("/api/v1/proofreading/campaigns/{campaign_id}/agreement/", { path }),
      ]),
    ([data, agreement]) => draw(data, agreement),
    { banner, updated, pollMs: config.pollMs },
  );
  return {
    ready: poll.ready,
    refreshes: poll.refreshes,
    last: () => poll.last()?.[0],
    refresh: poll.refresh,
    charts,
  };
}
