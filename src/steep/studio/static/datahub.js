// steep studio: the Data Hub's dataset page (routes/datasets.py) and its uploads list. Its
// own file beside studio.js, started the same way (base.html's <body data-page>, no inline
// script under the CSP); it uses studio.api from studio.js. Job output and names go into
// the page as text, never as HTML.
"use strict";

const datahub = (() => {
  const POLL_MS = 1000;
  const { api } = studio;  // studio.js's, loaded first (base.html)

  function say(node, text, cls) {
    node.textContent = text;
    node.className = "status " + (cls || "");
  }

  // Follow a prepare job until it ends; done: open the new version (the page shows its funnel)
  async function follow(jobId, status) {
    for (;;) {
      const res = await api("GET", `/api/prepare/${encodeURIComponent(jobId)}`);
      if (!res.ok) return say(status, res.data.error, "bad");
      const job = res.data;
      if (job.status === "running") {
        say(status, `preparing ${job.ref} with ${job.recipe}: ${job.progress || "starting"}`);
      } else if (job.status === "done") {
        say(status, `done: ${job.result}`, "good");
        // a new query string loads the page again, now listing the new version first
        location.assign(`${location.pathname}?prepared=${encodeURIComponent(jobId)}#${encodeURIComponent(job.result)}`);
        return;
      } else {
        return say(status, `prepare failed: ${job.error}`, "bad");
      }
      await new Promise((r) => setTimeout(r, POLL_MS));
    }
  }

  function datasetPage() {
    const box = document.getElementById("prepare");
    const form = document.getElementById("prepare-form");
    const status = document.getElementById("prepare-status");
    const button = document.getElementById("prepare-submit");
    form.addEventListener("submit", async (ev) => {
      ev.preventDefault();
      button.disabled = true;
      const res = await api("POST", `/api/datasets/${encodeURIComponent(box.dataset.dataset)}/prepare`, {
        version: document.getElementById("prepare-version").value,
        recipe: document.getElementById("prepare-recipe").value,
      });
      if (!res.ok) {
        button.disabled = false;
        return say(status, res.data.error, "bad");
      }
      await follow(res.data.id, status);
      button.disabled = false;
    });
    const running = document.querySelector('#prepare-jobs tr[data-status="running"]');
    if (running) follow(running.dataset.job, status);  // a job started before this page
  }

  function uploadsList() {
    const status = document.getElementById("uploads-status");
    for (const button of document.querySelectorAll("#uploads-table .delete-upload")) {
      button.addEventListener("click", async () => {
        const row = button.closest("tr");
        button.disabled = true;
        const res = await api("DELETE", `/api/uploads/${encodeURIComponent(row.dataset.upload)}`);
        if (!res.ok) {
          button.disabled = false;
          return say(status, res.data.error, "bad");
        }
        row.remove();
        say(status, `deleted upload ${row.dataset.upload}`, "good");
      });
    }
  }

  return { datasetPage, uploadsList };
})();

document.addEventListener("DOMContentLoaded", () => {
  const page = document.body.dataset.page;
  if (page === "dataset") datahub.datasetPage();
  if (page === "datasets" && document.getElementById("uploads-table")) datahub.uploadsList();
});
