// Viewer page, owners only: the "Share" panel lists the dataset's active share links and creates
// and revokes them through /api/v1/datasets/<slug>/share-links/ (session auth + CSRF token).
(function () {
  "use strict";

  const toggle = document.getElementById("share-toggle");
  const panel = document.getElementById("share-panel");
  if (!toggle || !panel) return;
  const form = document.getElementById("share-form");
  const list = document.getElementById("share-list");
  const errorBox = document.getElementById("share-error");
  const statusBox = document.getElementById("share-status");
  const csrfToken = JSON.parse(document.getElementById("viewer-config").textContent).csrfToken;
  const listUrl = panel.dataset.url;

  function showError(message) {
    errorBox.textContent = message;
    errorBox.hidden = !message;
  }

  async function api(url, body) {
    const options = { credentials: "same-origin", headers: { Accept: "application/json" } };
    if (body !== undefined) {
      options.method = "POST";
      options.headers["Content-Type"] = "application/json";
      options.headers["X-CSRFToken"] = csrfToken;
      options.body = JSON.stringify(body);
    }
    const response = await fetch(url, options);
    let data = null;
    try {
      data = await response.json();
    } catch (e) {
      data = null;
    }
    if (!response.ok) {
      const message = data && data.message;
      throw new Error(message || "The request failed (HTTP " + response.status + ").");
    }
    return data;
  }

  function when(iso) {
    return new Date(iso).toLocaleString(undefined, { dateStyle: "medium", timeStyle: "short" });
  }

  function el(tag, props, children) {
    const node = Object.assign(document.createElement(tag), props || {});
    for (const child of children || []) node.append(child);
    return node;
  }

  async function copy(anchor, button) {
    const text = anchor.href;
    const range = document.createRange();
    range.selectNodeContents(anchor);
    window.getSelection().removeAllRanges();
    window.getSelection().addRange(range);
    let copied = false;
    if (navigator.clipboard && window.isSecureContext) {
      try {
        await navigator.clipboard.writeText(text);
        copied = true;
      } catch (e) {
        copied = false;
      }
    }
    if (!copied) copied = document.execCommand && document.execCommand("copy");
    button.textContent = copied ? "Copied" : "Press Ctrl+C";
    setTimeout(() => (button.textContent = "Copy"), 2000);
  }

  function item(link) {
    const url = el("a", { href: link.viewer_url, textContent: link.viewer_url, target: "_blank" });
    url.className = "share-url";
    url.rel = "noopener";
    const copyButton = el("button", { type: "button", textContent: "Copy" });
    copyButton.className = "share-copy";
    copyButton.addEventListener("click", () => copy(url, copyButton));
    const revoke = el("button", {
      type: "button",
      textContent: "Revoke",
      className: "share-revoke",
    });
    revoke.addEventListener("click", () => revokeLink(link, revoke));
    const expiry = link.expires_at ? "expires " + when(link.expires_at) : "never expires";
    return el("li", { className: "share-item" }, [
      el("div", { className: "share-meta" }, [
        el("strong", { className: "share-label", textContent: link.label || "Untitled link" }),
        el("small", { textContent: "created " + when(link.created) + " · " + expiry }),
      ]),
      el("div", { className: "share-row" }, [url, copyButton, revoke]),
    ]);
  }

  async function refresh() {
    const links = (await api(listUrl)).filter((link) => link.active);
    list.replaceChildren(...links.map(item));
    if (!links.length) {
      list.append(el("li", { className: "share-empty", textContent: "No active links." }));
    }
    return links;
  }

  async function revokeLink(link, button) {
    if (!window.confirm("Revoke this link? Anyone using it loses access at once.")) return;
    button.disabled = true;
    showError("");
    try {
      await api(listUrl + link.id + "/revoke/", {});
      statusBox.textContent = "Link revoked.";
      await refresh();
    } catch (e) {
      showError(e.message);
      button.disabled = false;
    }
  }

  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const submit = form.querySelector("button[type=submit]");
    const days = form.elements.days.value.trim();
    submit.disabled = true;
    showError("");
    statusBox.textContent = "Creating…";
    try {
      const expires = days === "" ? null : new Date(Date.now() + Number(days) * 86400000);
      if (expires && isNaN(expires.getTime())) {
        throw new Error("Give the expiry as a number of days.");
      }
      const label = form.elements.label.value.trim();
      await api(listUrl, { label, expires_at: expires && expires.toISOString() });
      form.reset();
      statusBox.textContent = "Link created.";
      await refresh();
    } catch (e) {
      statusBox.textContent = "";
      showError(e.message);
    } finally {
      submit.disabled = false;
    }
  });

  function setOpen(open) {
    panel.hidden = !open;
    toggle.setAttribute("aria-expanded", String(open));
    if (open) {
      showError("");
      statusBox.textContent = "";
      refresh().catch((e) => showError(e.message));
      form.elements.label.focus();
    }
  }

  toggle.addEventListener("click", () => setOpen(panel.hidden));
  document.getElementById("share-close").addEventListener("click", () => setOpen(false));
  panel.addEventListener("keydown", (event) => {
    if (event.key === "Escape") {
      setOpen(false);
      toggle.focus();
    }
  });
})();
