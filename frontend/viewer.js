// Viewer page: loads the server-built state into the Neuroglancer iframe, reports layers that
// failed to load, and saves the current view for "Copy link".
// Tests use window.annotome: `ready` (resolves to {viewer, errors}), `viewer()`, `saveState()`.
(function () {
  "use strict";

  const initialState = JSON.parse(document.getElementById("viewer-state").textContent);
  const config = JSON.parse(document.getElementById("viewer-config").textContent);
  const iframe = document.getElementById("neuroglancer");
  const banner = document.getElementById("viewer-error");
  const copyButton = document.getElementById("copy-link");
  const copyField = document.getElementById("copy-link-url");
  const copyStatus = document.getElementById("copy-link-status");

  function sleep(ms) {
    return new Promise((resolve) => setTimeout(resolve, ms));
  }

  async function waitFor(test, timeoutMs, what) {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      let value;
      try {
        value = test();
      } catch (e) {
        value = undefined;
      }
      if (value) return value;
      if (Date.now() > deadline) throw new Error("Timed out waiting for " + what);
      await sleep(50);
    }
  }

  function currentViewer() {
    const win = iframe.contentWindow;
    return win && win.viewer ? win.viewer : undefined;
  }

  function showError(message) {
    banner.textContent = banner.textContent ? banner.textContent + " " + message : message;
    banner.hidden = false;
  }

  // One entry per layer of the state: its name and the error of each data source, if any.
  function layerReport(viewer) {
    const managed = viewer.layerManager.managedLayers;
    const wanted = (initialState.layers || []).map((l) => l.name);
    const report = [];
    for (const name of wanted) {
      const m = managed.find((x) => x.name === name);
      if (!m || !m.layer) {
        report.push({ name, loaded: true, errors: ["layer was not created"] });
        continue;
      }
      const sources = m.layer.dataSources || [];
      const errors = [];
      let loaded = sources.length > 0;
      for (const ds of sources) {
        const s = ds.loadState;
        if (s === undefined) loaded = false;
        else if (s.error) errors.push(String(s.error.message || s.error));
      }
      report.push({ name, loaded: loaded || errors.length > 0, errors });
    }
    return report;
  }

  async function load() {
    const viewer = await waitFor(currentViewer, 60000, "the Neuroglancer viewer");
    viewer.state.restoreState(initialState);
    let report;
    try {
      report = await waitFor(
        () => {
          const r = layerReport(viewer);
          return r.every((entry) => entry.loaded) ? r : undefined;
        },
        30000,
        "layer data sources",
      );
    } catch (e) {
      report = layerReport(viewer);
      for (const entry of report) {
        if (!entry.loaded) entry.errors.push("data source still loading after 30 s");
      }
    }
    const failed = report.filter((entry) => entry.errors.length > 0);
    if (failed.length) {
      showError(
        "Some layers failed to load: " +
          failed.map((f) => f.name + " (" + f.errors.join("; ") + ")").join(", "),
      );
    }
    return { viewer, errors: failed };
  }

  async function saveState() {
    const viewer = currentViewer();
    if (!viewer) throw new Error("The viewer is not ready yet.");
    const response = await fetch(config.saveUrl, {
      method: "POST",
      credentials: "same-origin",
      headers: { "Content-Type": "application/json", "X-CSRFToken": config.csrfToken },
      body: JSON.stringify({ state: viewer.state.toJSON(), share_token: config.shareToken }),
    });
    let body = {};
    try {
      body = await response.json();
    } catch (e) {
      body = {};
    }
    if (!response.ok) {
      throw new Error(body.message || "Saving the view failed (HTTP " + response.status + ").");
    }
    return { key: body.key, url: new URL(body.url, window.location.origin).toString() };
  }

  async function copyLink() {
    copyButton.disabled = true;
    copyStatus.textContent = "Saving…";
    try {
      const saved = await saveState();
      copyField.value = saved.url;
      copyField.hidden = false;
      copyField.select();
      let copied = false;
      if (navigator.clipboard && window.isSecureContext) {
        try {
          await navigator.clipboard.writeText(saved.url);
          copied = true;
        } catch (e) {
          copied = false;
        }
      }
      copyStatus.textContent = copied ? "Link copied." : "Copy the link above.";
      return saved;
    } catch (e) {
      copyStatus.textContent = "";
      showError(e.message);
      throw e;
    } finally {
      copyButton.disabled = false;
    }
  }

  const ready = load().catch((e) => {
    showError(e.message);
    throw e;
  });
  copyButton.addEventListener("click", () => {
    copyLink().catch(() => {});
  });

  window.annotome = {
    ready,
    state: initialState,
    config,
    viewer: currentViewer,
    layerReport: () => layerReport(currentViewer()),
    saveState,
    copyLink,
  };
})();
