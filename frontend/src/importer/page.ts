// Import page: uploads with a progress bar, then polls the job and shows its live progress.

import { ApiError, UploadAborted, type Job, type Upload, api, uploadForm } from "../lib/api";
import { byId } from "../lib/dom";
import { type ImportInput, buildImportForm, nameFromLabelFile, nameFromVolumeFile } from "./form";
import { type BarView, jobView, uploadProgress } from "./progress";

export const POLL_MS = 700;

function setBar(bar: HTMLProgressElement, caption: HTMLElement, view: BarView): void {
  if (view.value === null) bar.removeAttribute("value");
  else if (view.value !== undefined) bar.value = view.value;
  caption.textContent = view.caption;
}

function fileOf(input: HTMLInputElement | null): File | undefined {
  return input?.files?.[0] ?? undefined;
}

export function mountImportPage(form: HTMLFormElement, doc: Document = document): void {
  const maxBytes = Number(form.dataset.maxBytes || 0);
  const get = <T extends HTMLElement>(id: string, type: abstract new () => T): T =>
    byId(id, type, doc);
  const submit = get("import-submit", HTMLButtonElement);
  const cancel = get("import-cancel", HTMLButtonElement);
  const statusLine = get("import-status", HTMLElement);
  const uploadBlock = get("upload-block", HTMLElement);
  const uploadBar = get("upload-progress", HTMLProgressElement);
  const uploadCaption = get("upload-caption", HTMLElement);
  const jobBlock = get("job-block", HTMLElement);
  const jobBar = get("job-progress", HTMLProgressElement);
  const jobCaption = get("job-caption", HTMLElement);
  const labelRows = get("label-rows", HTMLElement);
  const labelTemplate = get("label-row-template", HTMLTemplateElement);
  const fileInput = get("import-file", HTMLInputElement);
  const nameInput = get("import-name", HTMLInputElement);

  let upload: Upload<Job> | null = null;
  let jobId: number | null = null;

  function showStatus(text: string, isError: boolean): void {
    statusLine.textContent = text;
    statusLine.classList.toggle("error", isError);
  }

  function setBusy(busy: boolean): void {
    submit.disabled = busy;
    cancel.hidden = !busy;
    const controls = form.querySelectorAll<HTMLInputElement | HTMLButtonElement>(
      "input, select, textarea, #add-label, .remove-label",
    );
    for (const control of controls) {
      if (control.name !== "csrfmiddlewaretoken") control.disabled = busy;
    }
  }

  // --- label rows -------------------------------------------------------------------------
  get("add-label", HTMLButtonElement).addEventListener("click", () => {
    const row = labelTemplate.content.firstElementChild?.cloneNode(true);
    if (!(row instanceof HTMLElement)) return;
    const labelName = row.querySelector<HTMLInputElement>("input[type=text]");
    const labelFile = row.querySelector<HTMLInputElement>("input[type=file]");
    labelFile?.addEventListener("change", () => {
      const file = fileOf(labelFile);
      if (labelName && !labelName.value && file) labelName.value = nameFromLabelFile(file.name);
    });
    row.querySelector(".remove-label")?.addEventListener("click", () => row.remove());
    labelRows.appendChild(row);
  });

  fileInput.addEventListener("change", () => {
    const file = fileOf(fileInput);
    if (file && !nameInput.value) nameInput.value = nameFromVolumeFile(file.name);
  });

  function readForm(): ImportInput {
    const value = (name: string): string => {
      const field = form.elements.namedItem(name);
      return field instanceof HTMLInputElement ||
        field instanceof HTMLSelectElement ||
        field instanceof HTMLTextAreaElement
        ? field.value
        : "";
    };
    return {
      file: fileOf(fileInput),
      name: nameInput.value,
      description: get("import-description", HTMLTextAreaElement).value,
      visibility: get("import-visibility", HTMLSelectElement).value,
      voxel: [value("voxel_z"), value("voxel_y"), value("voxel_x")],
      unit: value("unit"),
      labels: [...labelRows.querySelectorAll(".label-row")].map((row) => ({
        file: fileOf(row.querySelector<HTMLInputElement>("input[type=file]")),
        name: row.querySelector<HTMLInputElement>("input[type=text]")?.value ?? "",
      })),
      maxBytes,
    };
  }

  // --- upload -----------------------------------------------------------------------------
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    let data: FormData;
    try {
      data = buildImportForm(readForm());
    } catch (error) {
      showStatus(error instanceof Error ? error.message : String(error), true);
      return;
    }
    showStatus("", false);
    jobBlock.hidden = true;
    uploadBlock.hidden = false;
    uploadBar.value = 0;
    uploadCaption.textContent = "Uploading…";
    setBusy(true);

    upload = uploadForm("/api/v1/imports/", {
      form: data,
      onProgress: (loaded, total) =>
        setBar(uploadBar, uploadCaption, uploadProgress(loaded, total)),
      fallback: (status) =>
        status === 413 ? "The upload is too large." : `The upload failed (HTTP ${status}).`,
      networkError: "The upload failed: the connection was interrupted.",
    });
    upload.result.then(
      (job) => {
        upload = null;
        setBar(uploadBar, uploadCaption, { value: 100, caption: "Upload complete." });
        startPolling(job);
      },
      (error: unknown) => {
        upload = null;
        setBusy(false);
        if (error instanceof UploadAborted) {
          uploadBlock.hidden = true;
          showStatus(error.message, false);
          return;
        }
        if (error instanceof ApiError && error.status !== 0) uploadBlock.hidden = true;
        showStatus(error instanceof Error ? error.message : String(error), true);
      },
    );
  });

  // --- job progress -----------------------------------------------------------------------
  function startPolling(job: Job): void {
    jobId = job.id;
    jobBlock.hidden = false;
    if (renderJob(job)) setTimeout(poll, POLL_MS);
  }

  function poll(): void {
    if (jobId === null) return;
    api
      .get("/api/v1/jobs/{id}/", { path: { id: jobId }, fallback: (status) => `HTTP ${status}` })
      .then(
        (job) => {
          if (renderJob(job)) setTimeout(poll, POLL_MS);
        },
        (error: unknown) => {
          const detail = error instanceof Error ? error.message : String(error);
          showStatus(`Could not read the job's progress (${detail}); retrying…`, true);
          setTimeout(poll, POLL_MS * 3);
        },
      );
  }

  /** Shows one poll's answer; true while the job is still going. */
  function renderJob(job: Job): boolean {
    const view = jobView(job);
    setBar(jobBar, jobCaption, view);
    const outcome = view.outcome;
    if (outcome === null) {
      showStatus("", false);
      return true;
    }
    setBusy(false);
    jobId = null;
    if (outcome.kind === "succeeded") {
      showStatus("", false);
      statusLine.append("Import finished. ");
      if (outcome.viewerUrl) {
        const link = doc.createElement("a");
        link.href = outcome.viewerUrl;
        link.textContent = `Open ${outcome.name} in the viewer`;
        link.className = "button";
        statusLine.append(link);
      }
    } else {
      showStatus(outcome.message, outcome.kind === "failed");
    }
    return false;
  }

  cancel.addEventListener("click", () => {
    if (upload) {
      upload.abort();
      return;
    }
    if (jobId === null) return;
    api
      .post("/api/v1/jobs/{id}/cancel/", {
        path: { id: jobId },
        fallback: () => "Could not cancel the import.",
      })
      .catch((error: unknown) => {
        showStatus(error instanceof Error ? error.message : String(error), true);
      });
  });
}
