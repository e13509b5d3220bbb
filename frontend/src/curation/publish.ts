// Campaign list, managers only: "Publish curated layer" starts a background job that makes a new
// segmentation layer of the campaign's accepted objects (/api/v1/curation/campaigns/<id>/publish/)
// and shows its stages live (progress bar, cancel), then links to the dataset's viewer.

import { type Schemas, api } from "../lib/api";

export type CurationJob = Schemas["CurationJob"];

const ACTIVE = new Set(["queued", "running", "retrying"]);
export const POLL_MS = 500;

/** The words under the bar for a job as it stands. */
export function jobCaption(job: CurationJob): string {
  switch (job.state) {
    case "queued":
      return "Waiting for a worker…";
    case "running":
    case "retrying": {
      const stage = job.stage || "starting";
      const count = job.total ? ` ${job.done}/${job.total}` : "";
      return `${job.state === "retrying" ? "Retrying: " : ""}${stage}${count}`;
    }
    case "succeeded":
      return `Published layer ${job.result_layer ?? job.name} (${job.kept ?? "?"} objects).`;
    case "cancelled":
      return "Cancelled.";
    default:
      return `Failed: ${job.error || "see the job log"}`;
  }
}

export function mountPublish(root: HTMLElement, doc: Document = document): void {
  const campaignId = Number(root.dataset.campaign);
  const button = root.querySelector<HTMLButtonElement>("button.curate-start");
  const cancel = root.querySelector<HTMLButtonElement>("button.curate-cancel");
  const bar = root.querySelector<HTMLProgressElement>("progress");
  const caption = root.querySelector<HTMLElement>(".curate-status");
  const link = root.querySelector<HTMLAnchorElement>("a.curate-open");
  if (!button || !cancel || !bar || !caption || !link || !campaignId) return;
  const win = doc.defaultView ?? window;
  let current: CurationJob | undefined;

  function show(job: CurationJob | undefined, message = ""): void {
    current = job;
    const active = job !== undefined && ACTIVE.has(job.state);
    button!.disabled = active;
    cancel!.hidden = !active;
    bar!.hidden = !active;
    if (job && active) {
      bar!.max = 1;
      bar!.value = job.state === "queued" ? 0 : job.progress;
    }
    caption!.textContent = message || (job ? jobCaption(job) : "");
    link!.hidden = !(job && job.state === "succeeded" && job.viewer_url);
    if (job?.viewer_url) link!.href = job.viewer_url;
    root.dataset.state = job?.state ?? "";
  }

  async function follow(job: CurationJob): Promise<void> {
    show(job);
    while (current && current.id === job.id && ACTIVE.has(current.state)) {
      await new Promise((resolve) => win.setTimeout(resolve, POLL_MS));
      try {
        show(await api.get("/api/v1/curation/jobs/{id}/", { path: { id: job.id } }));
      } catch (error) {
        show(current, error instanceof Error ? error.message : String(error));
        return;
      }
    }
  }

  button.addEventListener("click", () => {
    button.disabled = true;
    void api
      .post("/api/v1/curation/campaigns/{campaign_id}/publish/", {
        path: { campaign_id: campaignId },
        body: {},
      })
      .then(follow)
      .catch((error: unknown) => {
        button.disabled = false;
        caption.textContent = error instanceof Error ? error.message : String(error);
      });
  });

  cancel.addEventListener("click", () => {
    if (!current) return;
    void api
      .post("/api/v1/curation/jobs/{id}/cancel/", { path: { id: current.id } })
      .then((job) => show(job))
      .catch((error: unknown) => {
        caption.textContent = error instanceof Error ? error.message : String(error);
      });
  });

  // A publication started earlier (or in another tab) shows where it stands.
  void api
    .get("/api/v1/curation/campaigns/{campaign_id}/publish/", {
      path: { campaign_id: campaignId },
    })
    .then((jobs) => {
      const latest = jobs[0];
      if (latest) void follow(latest);
    })
    .catch(() => undefined);
}
