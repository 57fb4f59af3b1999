// goldmine console: the two things a plain form cannot do. No framework, nothing fetched from elsewhere.
"use strict";

// Upload: the chosen file goes as the request body (streamed to disk by the server, like POST /v1/datasets),
// with the session's CSRF token in a header. Problems come back as "file:line: reason" and are listed.
function setUpUpload(form) {
  const status = document.getElementById("upload-status");
  const issues = document.getElementById("upload-issues");
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const file = document.getElementById("upload-file").files[0];
    if (!file) { status.textContent = "Choose a file first."; return; }
    issues.replaceChildren();
    status.textContent = `Uploading ${file.name}…`;
    const url = `${form.dataset.upload}?name=${encodeURIComponent(file.name)}`;
    try {
      const response = await fetch(url, {method: "POST", body: file, credentials: "same-origin",
                                         headers: {"X-CSRF-Token": form.dataset.csrf, "Content-Type": "application/octet-stream"}});
      const data = await response.json();
      if (response.ok) { window.location.assign(data.url); return; }
      status.textContent = data.error || `Upload failed (${response.status})`;
      for (const issue of data.issues || []) {
        const item = document.createElement("li");
        item.textContent = issue;  // text, never HTML
        issues.append(item);
      }
    } catch (error) {
      status.textContent = `Upload failed: ${error}`;
    }
  });
}

// Live job view: re-fetch the server-rendered progress part every second until the job has ended.
function setUpLive(container) {
  const tick = async () => {
    if (container.querySelector("[data-terminal='1']")) { return; }
    try {
      const response = await fetch(container.dataset.live, {credentials: "same-origin"});
      if (response.ok) {
        const html = await response.text();  // rendered and escaped by the server's templates
        const part = new DOMParser().parseFromString(html, "text/html").querySelector(".live-part");
        if (part) { container.replaceChildren(document.adoptNode(part)); }
        if (part && part.dataset.terminal === "1") {
          // the job ended: reload once so the page shows its result and drops the cancel button
          window.location.reload();
          return;
        }
      }
    } catch (error) { /* a missed tick: try again */ }
    window.setTimeout(tick, 1000);
  };
  window.setTimeout(tick, 1000);
}

document.addEventListener("DOMContentLoaded", () => {
  const form = document.getElementById("upload-form");
  if (form) { setUpUpload(form); }
  const live = document.getElementById("live");
  if (live && live.dataset.terminal !== "1") { setUpLive(live); }
});
