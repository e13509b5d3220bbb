// Import page: upload with a progress bar (XHR), then poll the job and show its live progress.
(function () {
  "use strict";

  const form = document.getElementById("import-form");
  if (!form) return;

  const POLL_MS = 700;
  const apiUrl = form.dataset.apiUrl;
  const jobsUrl = form.dataset.jobsUrl;
  const maxBytes = Number(form.dataset.maxBytes || 0);
  const el = (id) => document.getElementById(id);
  const submit = el("import-submit");
  const cancel = el("import-cancel");
  const statusLine = el("import-status");
  const uploadBlock = el("upload-block");
  const uploadBar = el("upload-progress");
  const uploadCaption = el("upload-caption");
  const jobBlock = el("job-block");
  const jobBar = el("job-progress");
  const jobCaption = el("job-caption");
  const labelRows = el("label-rows");
  const labelTemplate = el("label-row-template");

  let xhr = null;
  let jobId = null;
  let pollTimer = null;

  function csrfToken() {
    const input = form.querySelector("input[name=csrfmiddlewaretoken]");
    if (input && input.value) return input.value;
    const match = document.cookie.match(/(?:^|;\s*)csrftoken=([^;]+)/);
    return match ? decodeURIComponent(match[1]) : "";
  }

  function formatBytes(n) {
    const units = ["B", "KB", "MB", "GB", "TB"];
    let i = 0;
    while (n >= 1024 && i < units.length - 1) { n /= 1024; i += 1; }
    return `${n.toFixed(i ? 1 : 0)} ${units[i]}`;
  }

  function showStatus(text, isError) {
    statusLine.textContent = text;
    statusLine.classList.toggle("error", Boolean(isError));
  }

  function setBusy(busy) {
    submit.disabled = busy;
    cancel.hidden = !busy;
    for (const input of form.querySelectorAll("input, select, textarea, #add-label, .remove-label")) {
      if (input.name !== "csrfmiddlewaretoken") input.disabled = busy;
    }
  }

  function messageOf(xhrOrBody, fallback) {
    try {
      const body = typeof xhrOrBody === "string" ? JSON.parse(xhrOrBody) : xhrOrBody;
      if (body && body.message) return body.message;
    } catch (e) { /* not JSON */ }
    return fallback;
  }

  // --- label rows ---------------------------------------------------------------------------
  el("add-label").addEventListener("click", () => {
    const row = labelTemplate.content.firstElementChild.cloneNode(true);
    const nameInput = row.querySelector("input[type=text]");
    const fileInput = row.querySelector("input[type=file]");
    fileInput.addEventListener("change", () => {
      if (!nameInput.value && fileInput.files.length) {
        nameInput.value = fileInput.files[0].name.split(".")[0].replace(/[^A-Za-z0-9_-]+/g, "_");
      }
    });
    row.querySelector(".remove-label").addEventListener("click", () => row.remove());
    labelRows.appendChild(row);
  });

  el("import-file").addEventListener("change", (event) => {
    const nameInput = el("import-name");
    const files = event.target.files;
    if (files.length && !nameInput.value) {
      nameInput.value = files[0].name.replace(/\.(ome\.)?(tiff?|npy|zip|zarr)$/i, "");
    }
  });

  // --- building the request -----------------------------------------------------------------
  function buildFormData() {
    const data = new FormData();
    const file = el("import-file").files[0];
    if (!file) throw new Error("Choose a volume file to import.");
    const name = el("import-name").value.trim();
    if (!name) throw new Error("Give the dataset a name.");
    data.append("file", file);
    data.append("name", name);
    data.append("description", el("import-description").value);
    data.append("visibility", el("import-visibility").value);

    const voxel = ["voxel_z", "voxel_y", "voxel_x"].map((n) => form.elements[n].value.trim());
    const given = voxel.filter((v) => v !== "");
    if (given.length) {
      if (given.length !== 3 || voxel.some((v) => !(Number(v) > 0))) {
        throw new Error("Give all three voxel sizes (z, y, x) as positive numbers, or none.");
      }
      data.append("voxel_size", voxel.join(","));
      data.append("unit", form.elements.unit.value);
    }

    let total = file.size;
    for (const row of labelRows.querySelectorAll(".label-row")) {
      const labelFile = row.querySelector("input[type=file]").files[0];
      if (!labelFile) continue;
      const labelName = row.querySelector("input[type=text]").value.trim();
      if (!labelName) throw new Error(`Name the label image ${labelFile.name}.`);
      data.append("labels", labelFile);
      data.append("label_names", labelName);
      total += labelFile.size;
    }
    if (maxBytes && total > maxBytes) {
      throw new Error(`The files (${formatBytes(total)}) exceed the upload limit of ${formatBytes(maxBytes)}.`);
    }
    return data;
  }

  // --- upload ------------------------------------------------------------------------------
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    let data;
    try {
      data = buildFormData();
    } catch (err) {
      showStatus(err.message, true);
      return;
    }
    showStatus("", false);
    jobBlock.hidden = true;
    uploadBlock.hidden = false;
    uploadBar.value = 0;
    uploadCaption.textContent = "Uploading…";
    setBusy(true);

    xhr = new XMLHttpRequest();
    xhr.open("POST", apiUrl);
    xhr.setRequestHeader("X-CSRFToken", csrfToken());
    xhr.setRequestHeader("Accept", "application/json");
    xhr.upload.addEventListener("progress", (e) => {
      if (!e.lengthComputable) return;
      const pct = (100 * e.loaded) / e.total;
      uploadBar.value = pct;
      uploadCaption.textContent = `Uploading… ${pct.toFixed(0)} % (${formatBytes(e.loaded)} of ${formatBytes(e.total)})`;
    });
    xhr.addEventListener("load", () => {
      const request = xhr;
      xhr = null;
      if (request.status === 202) {
        uploadBar.value = 100;
        uploadCaption.textContent = "Upload complete.";
        const job = JSON.parse(request.responseText);
        startPolling(job);
        return;
      }
      setBusy(false);
      uploadBlock.hidden = true;
      const fallback = request.status === 413 ? "The upload is too large."
        : `The upload failed (HTTP ${request.status}).`;
      showStatus(messageOf(request.responseText, fallback), true);
    });
    xhr.addEventListener("error", () => {
      xhr = null;
      setBusy(false);
      showStatus("The upload failed: the connection was interrupted.", true);
    });
    xhr.addEventListener("abort", () => {
      xhr = null;
      setBusy(false);
      uploadBlock.hidden = true;
      showStatus("Upload cancelled.", false);
    });
    xhr.send(data);
  });

  // --- job progress --------------------------------------------------------------------------
  function startPolling(job) {
    jobId = job.id;
    jobBlock.hidden = false;
    renderJob(job);
    pollTimer = setTimeout(poll, POLL_MS);
  }

  function poll() {
    fetch(`${jobsUrl}${jobId}/`, { headers: { Accept: "application/json" }, credentials: "same-origin" })
      .then((response) => response.json().then((body) => ({ response, body })))
      .then(({ response, body }) => {
        if (!response.ok) throw new Error(messageOf(body, `HTTP ${response.status}`));
        if (renderJob(body)) pollTimer = setTimeout(poll, POLL_MS);
      })
      .catch((err) => {
        showStatus(`Could not read the job's progress (${err.message}); retrying…`, true);
        pollTimer = setTimeout(poll, POLL_MS * 3);
      });
  }

  // Returns true while the job is still going.
  function renderJob(job) {
    const pct = Math.round(100 * (job.progress || 0));
    if (job.status === "queued") {
      jobBar.removeAttribute("value");
      jobCaption.textContent = "Queued: waiting for a worker…";
      showStatus("", false);
      return true;
    }
    if (job.state === "retrying") {
      // Its worker stopped (crash, restart): the job is redelivered and starts over.
      jobBar.removeAttribute("value");
      jobCaption.textContent = "Retrying: the worker stopped, the import starts over…";
      showStatus("", false);
      return true;
    }
    if (job.status === "running") {
      if (job.total > 0) jobBar.value = pct; else jobBar.removeAttribute("value");
      const counts = job.total > 0 ? ` — ${pct} % (${job.done} of ${job.total})` : "";
      jobCaption.textContent = `${job.stage || "Working"}${counts}`;
      showStatus("", false);
      return true;
    }
    setBusy(false);
    jobId = null;
    if (job.status === "succeeded") {
      jobBar.value = 100;
      jobCaption.textContent = "Done.";
      statusLine.classList.remove("error");
      statusLine.textContent = "";
      const link = document.createElement("a");
      link.href = job.viewer_url;
      link.textContent = `Open ${job.name || job.dataset} in the viewer`;
      link.className = "button";
      statusLine.append("Import finished. ", link);
    } else if (job.status === "cancelled") {
      jobCaption.textContent = "Cancelled.";
      showStatus("The import was cancelled; nothing was kept.", false);
    } else {
      jobCaption.textContent = "Failed.";
      showStatus(job.error || "The import failed.", true);
    }
    return false;
  }

  cancel.addEventListener("click", () => {
    if (xhr) { xhr.abort(); return; }
    if (jobId === null) return;
    fetch(`${jobsUrl}${jobId}/cancel/`, {
      method: "POST",
      headers: { "X-CSRFToken": csrfToken(), Accept: "application/json" },
      credentials: "same-origin",
    }).then((response) => response.json().then((body) => {
      if (!response.ok) showStatus(messageOf(body, "Could not cancel the import."), true);
    }));
  });
})();
