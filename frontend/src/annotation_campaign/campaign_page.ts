// The campaign page (annotation/campaign.html): members (managers add and remove them), the
// boxes table (paged; managers clear flags and, with N >= 2, accept a box's consensus as its
// ground truth; in a painted campaign "Choose ground truth…": the consensus volume at a quorum or
// one approved annotator's volume), the four ways to add boxes, and the coverage map.

import { ApiError, api, setCsrfToken, type Schemas } from "../lib/api";
import { BOXES_CHANGED, byId, el, jsonScript } from "../lib/dom";
import { type Coverage, type StateStyle, drawCoverage } from "./coverage";

export interface CampaignConfig {
  campaignId: number;
  campaignUrl: string;
  manager: boolean;
  redundancy: number;
  /** Approved annotators a consensus point needs by default (a strict majority of N). */
  quorum: number;
  /** Objects are painted: the ground truth is a label volume chosen per box. */
  painted: boolean;
  states: Record<string, StateStyle>;
  maxDrawn: number;
}

export interface CampaignHooks {
  ready: Promise<void>;
  /** Reloads the boxes table and the coverage map. */
  refresh(): Promise<void>;
  coverage(): Coverage | undefined;
}

const PAGE = 50;
const BOXES = "/api/v1/annotation/campaigns/{campaign_id}/boxes/" as const;

type BoxesBody = Parameters<typeof api.post<typeof BOXES>>[1]["body"];
type Box = Schemas["Box"];
type LabelWork = Schemas["LabelWork"];

/** What a manager may choose as a painted box's ground truth (pure: unit-tested): the consensus
 * of the handed-in volumes (two or more, all approved) at a quorum (default a strict majority),
 * or one approved volume. */
export interface TruthChoices {
  consensus: { available: boolean; quorum: number; max: number; reason: string };
  volumes: { assignment: number; label: string }[];
}

export function truthChoices(annotators: readonly LabelWork[]): TruthChoices {
  const n = annotators.length;
  const pending = annotators.filter((a) => a.state !== "approved").map((a) => a.annotator);
  const reason =
    n < 2
      ? "a consensus needs two or more handed-in volumes"
      : pending.length
        ? `review ${pending.join(", ")} first`
        : "";
  return {
    consensus: { available: !reason, quorum: Math.floor(n / 2) + 1, max: Math.max(n, 1), reason },
    volumes: annotators
      .filter((a) => a.state === "approved")
      .map((a) => ({
        assignment: a.assignment,
        label: `${a.annotator}'s volume (${a.n_objects} object${a.n_objects === 1 ? "" : "s"})`,
      })),
  };
}

/** What the ground truth cell says of a painted box (pure: unit-tested). */
export function labelTruthText(box: Pick<Box, "label_truth" | "n_approved">): string {
  if (box.label_truth) return box.label_truth;
  return box.n_approved > 0 ? "first approved volume" : "–";
}

/** What the ground truth cell says of a box (pure: unit-tested). */
export function groundTruthText(box: Pick<Box, "consensus_points" | "n_approved">): string {
  if (box.consensus_points !== null && box.consensus_points !== undefined) {
    return `consensus, ${box.consensus_points} point${box.consensus_points === 1 ? "" : "s"}`;
  }
  return box.n_approved > 0 ? "approved work" : "–";
}

/** Whether a manager may accept the box's consensus now (enough approved annotators). */
export function mayAcceptConsensus(
  box: Pick<Box, "n_approved">,
  config: Pick<CampaignConfig, "manager" | "redundancy" | "quorum">,
): boolean {
  return config.manager && config.redundancy >= 2 && box.n_approved >= config.quorum;
}

function message(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

function numberOf(id: string, doc: Document): number {
  return Number(byId(id, HTMLInputElement, doc).value);
}

function region(prefix: string, doc: Document): BoxesBody["region"] | undefined {
  if (!byId(`${prefix}-region-on`, HTMLInputElement, doc).checked) return undefined;
  const triple = (what: string) =>
    ["z", "y", "x"].map((a) => numberOf(`${prefix}-${what}-${a}`, doc));
  return { start: triple("start"), size: triple("size") };
}

export function mountCampaignPage(doc: Document = document): CampaignHooks {
  const config = jsonScript<CampaignConfig>("annotation-config", doc);
  const input = doc.querySelector<HTMLInputElement>("input[name=csrfmiddlewaretoken]");
  setCsrfToken(input?.value);
  const path = { campaign_id: config.campaignId };
  const table = byId("boxes-table", HTMLTableElement, doc);
  const tbody = table.tBodies[0] ?? table.createTBody();
  const pageLabel = byId("boxes-page", HTMLElement, doc);
  const prev = byId("boxes-prev", HTMLButtonElement, doc);
  const next = byId("boxes-next", HTMLButtonElement, doc);
  const countLabel = byId("boxes-count", HTMLElement, doc);
  const svg = doc.getElementById("coverage-svg") as SVGSVGElement | null;
  const image = byId("coverage-image", HTMLImageElement, doc);
  const coverageStatus = byId("coverage-status", HTMLElement, doc);
  const boxesStatus = byId("boxes-status", HTMLElement, doc);
  const boxesError = byId("boxes-error", HTMLElement, doc);
  function showBoxesError(text: string): void {
    boxesError.textContent = text;
    boxesError.hidden = !text;
  }
  let offset = 0;
  let total = 0;
  let coverage: Coverage | undefined;

  async function loadBoxes(): Promise<void> {
    const body = await api.get(BOXES, { path, query: { limit: PAGE, offset } });
    total = body.count;
    const rows = body.results.map((box) => {
      const flag = el("td", { className: "box-flag" });
      if (box.flagged) {
        flag.append(el("span", { className: "flag-reason", textContent: box.flag_reason }));
        if (config.manager) {
          const clear = el("button", {
            type: "button",
            className: "link-button flag-clear",
            textContent: "Clear",
          });
          clear.addEventListener("click", () => void clearFlag(box.id));
          flag.append(" ", clear);
        }
      }
      const row = el("tr", {}, [
        el("td", { textContent: box.name }),
        el("td", { textContent: box.start.join(" ") }),
        el("td", { textContent: box.size.join(" ") }),
        el("td", { textContent: String(box.priority) }),
        el("td", {
          textContent: box.source_ref ? `${box.source} (${box.source_ref})` : box.source,
        }),
        flag,
        el("td", { textContent: `${box.n_taken} / ${config.redundancy}` }),
        el("td", { textContent: String(box.n_submitted) }),
        el("td", { textContent: String(box.n_approved) }),
        truthCell(box),
      ]);
      row.dataset["box"] = String(box.id);
      return row;
    });
    tbody.replaceChildren(...rows);
    table.dataset["count"] = String(total);
    countLabel.textContent = `(${total.toLocaleString()})`;
    const last = Math.min(offset + PAGE, total);
    pageLabel.textContent = total
      ? `${offset + 1}–${last} of ${total.toLocaleString()}`
      : "none yet";
    prev.disabled = offset === 0;
    next.disabled = offset + PAGE >= total;
  }

  function truthCell(box: Box): HTMLTableCellElement {
    if (config.painted) return labelTruthCell(box);
    const cell = el("td", { className: "box-truth" }, [
      el("span", { textContent: groundTruthText(box) }),
    ]);
    if (mayAcceptConsensus(box, config)) {
      const accept = el("button", {
        type: "button",
        className: "link-button consensus-accept",
        textContent: box.consensus_points === null ? "Accept consensus" : "Accept again",
      });
      accept.dataset["box"] = String(box.id);
      accept.addEventListener("click", () => void acceptConsensus(box, accept));
      cell.append(" ", accept);
    }
    return cell;
  }

  async function acceptConsensus(box: Box, button: HTMLButtonElement): Promise<void> {
    button.disabled = true;
    showBoxesError("");
    try {
      const result = await api.post(
        "/api/v1/annotation/campaigns/{campaign_id}/boxes/{box_id}/consensus/",
        { path: { ...path, box_id: box.id }, body: {} },
      );
      boxesStatus.textContent =
        `Accepted the consensus of box ${box.name} as its ground truth: ` +
        `${result.accepted?.count ?? result.points.length} point(s) found by at least ` +
        `${result.quorum} of ${result.annotators.join(", ")} within ${result.tolerance_um} µm.`;
      boxesStatus.dataset["accepted"] = String(box.id);
      await loadBoxes();
    } catch (error) {
      showBoxesError(message(error));
      button.disabled = false;
    }
  }

  function labelTruthCell(box: Box): HTMLTableCellElement {
    const cell = el("td", { className: "box-truth" }, [
      el("span", { textContent: labelTruthText(box) }),
    ]);
    if (config.manager && box.n_approved > 0) {
      const choose = el("button", {
        type: "button",
        className: "link-button truth-choose",
        textContent: "Choose ground truth…",
      });
      choose.dataset["box"] = String(box.id);
      choose.addEventListener("click", () => void openChooser(box, cell));
      cell.append(" ", choose);
    }
    return cell;
  }

  /** The chooser of a painted box's ground truth, opened under its cell. */
  async function openChooser(box: Box, cell: HTMLTableCellElement): Promise<void> {
    showBoxesError("");
    for (const old of doc.querySelectorAll("form.truth-chooser")) old.remove();
    try {
      const found = await api.get(
        "/api/v1/annotation/campaigns/{campaign_id}/boxes/{box_id}/label-agreement/",
        { path: { ...path, box_id: box.id } },
      );
      const choices = truthChoices(found.annotators);
      const form = el("form", { className: "truth-chooser" });
      form.dataset["box"] = String(box.id);
      const option = (value: string, label: string, disabled: boolean): HTMLLabelElement => {
        const radio = el("input", { type: "radio", name: "truth", value, disabled });
        return el("label", { className: "inline" }, [radio, ` ${label}`]);
      };
      const quorum = el("input", {
        type: "number",
        name: "quorum",
        min: "1",
        max: String(choices.consensus.max),
        value: String(choices.consensus.quorum),
        className: "truth-quorum",
      });
      quorum.setAttribute("aria-label", "Quorum");
      const consensusLabel = option(
        "consensus",
        `Consensus of ${found.annotators.length} volumes at a quorum of`,
        !choices.consensus.available,
      );
      consensusLabel.append(" ", quorum);
      if (choices.consensus.reason) consensusLabel.append(` (${choices.consensus.reason})`);
      const accept = el("button", { type: "submit", textContent: "Accept as ground truth" });
      const cancel = el("button", { type: "button", textContent: "Cancel" });
      cancel.addEventListener("click", () => form.remove());
      form.append(
        consensusLabel,
        ...choices.volumes.map((v) => option(`assignment:${v.assignment}`, v.label, false)),
        accept,
        " ",
        cancel,
      );
      form.addEventListener("submit", (event) => {
        event.preventDefault();
        const picked = form.querySelector<HTMLInputElement>("input[name=truth]:checked");
        if (!picked) {
          showBoxesError("Choose the consensus or one annotator's volume first.");
          return;
        }
        accept.disabled = true;
        void acceptTruth(box, picked.value, Number(quorum.value)).finally(() => {
          accept.disabled = false;
        });
      });
      cell.append(form);
    } catch (error) {
      showBoxesError(message(error));
    }
  }

  async function acceptTruth(box: Box, picked: string, quorum: number): Promise<void> {
    showBoxesError("");
    const body = picked.startsWith("assignment:")
      ? { source: "assignment" as const, assignment: Number(picked.slice("assignment:".length)) }
      : { source: "consensus" as const, quorum };
    try {
      const result = await api.post(
        "/api/v1/annotation/campaigns/{campaign_id}/boxes/{box_id}/label-truth/",
        { path: { ...path, box_id: box.id }, body },
      );
      const truth = result.accepted;
      boxesStatus.textContent = truth
        ? `Accepted ${truth.source === "consensus" ? `the consensus (quorum ${truth.quorum ?? "?"})` : `${truth.members[0]?.annotator ?? "?"}'s volume`} as the ground truth of box ${box.name}: ${truth.objects} object(s).`
        : "";
      boxesStatus.dataset["accepted"] = String(box.id);
      await loadBoxes();
    } catch (error) {
      showBoxesError(message(error));
    }
  }

  async function loadCoverage(): Promise<void> {
    coverage = await api.get("/api/v1/annotation/campaigns/{campaign_id}/coverage/", { path });
    if (svg) drawCoverage(svg, image, coverage, config.states);
    for (const node of doc.querySelectorAll<HTMLElement>("#coverage-legend .count[data-state]")) {
      node.textContent = String(coverage.counts[node.dataset["state"] ?? ""] ?? 0);
    }
    const suggested = coverage.boxes.filter((b) => b.suggested != null).length;
    const suggestedItem = doc.getElementById("coverage-suggested");
    if (suggestedItem) suggestedItem.hidden = suggested === 0;
    const suggestedCount = doc.getElementById("coverage-suggested-count");
    if (suggestedCount) suggestedCount.textContent = String(suggested);
    coverageStatus.textContent = coverage.truncated
      ? `The first ${coverage.boxes.length.toLocaleString()} of ${coverage.total.toLocaleString()} boxes are drawn.`
      : coverage.thumbnail_url
        ? ""
        : "This dataset has no thumbnail: the boxes are drawn on a blank plane.";
  }

  async function refresh(): Promise<void> {
    await Promise.all([loadBoxes(), loadCoverage()]);
  }

  async function clearFlag(boxId: number): Promise<void> {
    try {
      await api.delete("/api/v1/annotation/campaigns/{campaign_id}/boxes/{box_id}/flag/", {
        path: { ...path, box_id: boxId },
      });
      await refresh();
    } catch (error) {
      showAddError(message(error));
    }
  }

  prev.addEventListener("click", () => {
    offset = Math.max(0, offset - PAGE);
    void loadBoxes();
  });
  next.addEventListener("click", () => {
    offset += PAGE;
    void loadBoxes();
  });

  // --- managers: add boxes ---------------------------------------------------------------
  const addStatus = doc.getElementById("add-status");
  const addError = doc.getElementById("add-error");
  function showAddError(text: string): void {
    if (!addError) return;
    addError.textContent = text;
    addError.hidden = !text;
  }

  async function addBoxes(body: BoxesBody, button: HTMLButtonElement): Promise<void> {
    button.disabled = true;
    showAddError("");
    if (addStatus) addStatus.textContent = "Adding boxes…";
    try {
      const result = await api.post(BOXES, { path, body });
      if (addStatus) {
        addStatus.textContent = `Added ${result.created.toLocaleString()} box${result.created === 1 ? "" : "es"}.`;
        addStatus.dataset["added"] = String(result.created);
      }
      offset = 0;
      await refresh();
    } catch (error) {
      if (addStatus) addStatus.textContent = "";
      showAddError(message(error));
    } finally {
      button.disabled = false;
    }
  }

  function onSubmit(id: string, build: () => Promise<BoxesBody | undefined>): void {
    const form = doc.getElementById(id);
    if (!(form instanceof HTMLFormElement)) return;
    const button = form.querySelector<HTMLButtonElement>("button[type=submit]");
    form.addEventListener("submit", (event) => {
      event.preventDefault();
      if (!button) return;
      build().then(
        (body) => (body ? addBoxes(body, button) : undefined),
        (error: unknown) => showAddError(message(error)),
      );
    });
  }

  for (const prefix of ["tile", "sample"]) {
    const toggle = doc.getElementById(`${prefix}-region-on`);
    const fields = doc.getElementById(`${prefix}-region`);
    if (toggle instanceof HTMLInputElement && fields) {
      toggle.addEventListener("change", () => {
        fields.hidden = !toggle.checked;
      });
    }
  }

  if (config.manager) {
    onSubmit("add-tile", async () => {
      const r = region("tile", doc);
      return {
        source: "tile",
        seed: 0,
        min_inside: 0.5,
        priority: numberOf("tile-priority", doc),
        ...(r ? { region: r } : {}),
      };
    });
    onSubmit("add-sample", async () => {
      const r = region("sample", doc);
      const mask = byId("sample-mask", HTMLSelectElement, doc).value;
      return {
        source: "sample",
        count: numberOf("sample-count", doc),
        seed: numberOf("sample-seed", doc),
        min_inside: numberOf("sample-min-inside", doc),
        priority: numberOf("sample-priority", doc),
        ...(mask ? { mask_layer: mask } : {}),
        ...(r ? { region: r } : {}),
      };
    });
    onSubmit("add-csv", async () => {
      const file = byId("csv-file", HTMLInputElement, doc).files?.[0];
      if (!file) throw new Error("Choose a CSV file first.");
      return {
        source: "csv",
        csv: await file.text(),
        seed: 0,
        min_inside: 0.5,
        priority: numberOf("csv-priority", doc),
      };
    });
    onSubmit("add-missed", async () => ({
      source: "missed",
      proofreading_campaign: Number(byId("missed-campaign", HTMLSelectElement, doc).value),
      seed: 0,
      min_inside: 0.5,
      priority: numberOf("missed-priority", doc),
    }));
    mountMembers(doc, path);
  }

  // Boxes added or moved up elsewhere on the page (the Retrain panel's "Suggest next boxes").
  doc.addEventListener(BOXES_CHANGED, () => void refresh().catch(() => undefined));
  const ready = refresh().catch((error: unknown) => {
    coverageStatus.textContent = `The boxes could not be loaded: ${message(error)}`;
    throw error;
  });
  return { ready, refresh, coverage: () => coverage };
}

function mountMembers(doc: Document, path: { campaign_id: number }): void {
  const form = doc.getElementById("member-form");
  const error = doc.getElementById("member-error");
  const show = (text: string): void => {
    if (!error) return;
    error.textContent = text;
    error.hidden = !text;
  };
  if (form instanceof HTMLFormElement) {
    form.addEventListener("submit", (event) => {
      event.preventDefault();
      const username = byId("member-username", HTMLInputElement, doc).value.trim();
      const role = byId("member-role", HTMLSelectElement, doc).value as "annotator";
      api
        .post("/api/v1/annotation/campaigns/{campaign_id}/members/", {
          path,
          body: { username, role },
        })
        .then(
          () => doc.defaultView?.location.reload(),
          (e: unknown) => show(message(e)),
        );
    });
  }
  for (const button of doc.querySelectorAll<HTMLButtonElement>("button.member-remove")) {
    button.addEventListener("click", () => {
      const memberId = Number(button.dataset["member"]);
      api
        .delete("/api/v1/annotation/campaigns/{campaign_id}/members/{member_id}/", {
          path: { ...path, member_id: memberId },
        })
        .then(
          () => doc.defaultView?.location.reload(),
          (e: unknown) => show(e instanceof ApiError ? e.message : message(e)),
        );
    });
  }
}
