// The dataset owner's actions on the model comparison page (runs/models.html): make a version
// the dataset's current model, open a proofreading campaign on a version's segmentation (then
// go to it), and segment the dataset with a registered model of any dataset they may see (then
// go to the run). Errors show in the page's banners, never as a silent failure.

import { api, setCsrfToken } from "../lib/api";
import { byId } from "../lib/dom";
import { flashNext } from "../lib/flash";

export interface ModelActionsHooks {
  /** The last action's promise (tests wait on it). */
  last(): Promise<void>;
}

function message(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

export function mountModelActions(doc: Document = document): ModelActionsHooks {
  const input = doc.querySelector<HTMLInputElement>("input[name=csrfmiddlewaretoken]");
  setCsrfToken(input?.value);
  const win = doc.defaultView ?? window;
  const banner = doc.getElementById("models-error");
  const status = doc.getElementById("models-status");
  let last: Promise<void> = Promise.resolve();

  function showError(text: string, where: HTMLElement | null = banner): void {
    if (!where) return;
    where.textContent = text;
    where.hidden = !text;
  }

  function act(button: HTMLButtonElement, work: (id: number) => Promise<void>): void {
    button.addEventListener("click", () => {
      const id = Number(button.dataset["model"]);
      button.disabled = true;
      showError("");
      last = work(id).catch((e: unknown) => {
        showError(message(e));
        button.disabled = false;
      });
    });
  }

  // Back from the page an action went to: the browser may restore this one as it was left,
  // its button disabled while the action ran.
  win.addEventListener("pageshow", (event) => {
    if (!event.persisted) return;
    for (const button of doc.querySelectorAll<HTMLButtonElement>(
      "button[data-model], #apply-start",
    ))
      button.disabled = false;
  });

  for (const button of doc.querySelectorAll<HTMLButtonElement>("button.model-make-current")) {
    act(button, async (id) => {
      const version = await api.post("/api/v1/models/{id}/current/", { path: { id } });
      if (status) status.textContent = `v${version.number} is now the current model.`;
      win.location.reload();
    });
  }
  for (const button of doc.querySelectorAll<HTMLButtonElement>("button.model-proofread")) {
    act(button, async (id) => {
      const campaign = await api.post("/api/v1/models/{id}/proofreading/", { path: { id } });
      const text = campaign.created
        ? `${campaign.name}: a new proofreading campaign of ${campaign.items} detections.`
        : `${campaign.name} was already open: here it is (no second campaign was made).`;
      if (status) status.textContent = text;
      flashNext(text); // shown by the campaign's page
      win.location.assign(campaign.url);
    });
  }

  const form = doc.getElementById("apply-form");
  if (form) {
    const select = byId("apply-model", HTMLSelectElement, doc);
    const start = byId("apply-start", HTMLButtonElement, doc);
    const error = byId("apply-error", HTMLElement, doc);
    const dataset = form.dataset["dataset"] ?? "";
    form.addEventListener("submit", (event) => {
      event.preventDefault();
      start.disabled = true;
      showError("", error);
      last = api
        .post("/api/v1/runs/", {
          body: { dataset, model: Number(select.value), preset: "standard" },
        })
        .then((run) => {
          win.location.assign(`/runs/${run.id}/`);
        })
        .catch((e: unknown) => {
          showError(message(e), error);
          start.disabled = false;
        });
    });
  }
  return { last: () => last };
}
