// steep studio: the model page's actions (routes/models.py). Its own file beside studio.js,
// started by <body data-page="model">; it uses studio.api and el. Each action posts its
// form, which the server turns into the CLI command run as a job; the job table polls
// each running job's progress line, and a finished evaluation reloads the page to show
// its comparison. Everything from the server goes into the page as text.
"use strict";

const modelPage = (() => {
  const { api, el } = studio;  // studio.js's, loaded first (base.html)
  const POLL_MS = 1000;
  let starter = null;

  function page() {
    const box = document.getElementById("model-actions");
    if (!box) return;
    const name = box.dataset.model;
    const error = document.getElementById("action-error");
    const tbody = document.querySelector("#model-jobs tbody");

    function showError(text) {
      error.textContent = text || "";
      error.hidden = !text;
    }

    function showSamples(samples) {
      const out = document.getElementById("samples");
      out.replaceChildren(...samples.map((s) =>
        el("div", { class: "sample" }, el("span", { class: "hint" }, s.prompt), el("span", {}, s.text))));
    }

    function row(job) {
      let tr = tbody.querySelector(`tr[data-job="${job.id}"]`);
      if (!tr) {
        tr = el("tr", { "data-job": job.id }, el("td", {}, job.id), el("td", {}, job.action),
          el("td", { class: "status" }), el("td", { class: "progress" }, el("code")));
        tbody.prepend(tr);
      }
      tr.querySelector(".status").textContent = job.status;
      tr.querySelector(".progress code").textContent = job.error || job.progress || job.command;
      return tr;
    }

    async function follow(job) {
      row(job);
      if (job.status === "running") {
        setTimeout(async () => {
          const r = await api("GET", `/api/model-jobs/${job.id}`);
          if (r.ok) follow(r.data);
        }, POLL_MS);
        return;
      }
      if (job.status === "failed") showError(`${job.action}: ${job.error}`);
      if (job.action === "generate" && job.samples) showSamples(job.samples);
      if (job.action === "evaluate" && job.status === "done") window.location.reload();
      document.dispatchEvent(new CustomEvent("model-job-ended", { detail: job }));  // merge.js
    }

    starter = start;  // merge.js starts its jobs through the same table
    async function start(action, body) {
      showError("");
      const r = await api("POST", `/api/models/${encodeURIComponent(name)}/${action}`, body);
      if (!r.ok) { showError(r.data.error); return; }
      follow(r.data);
    }

    function formBody(form) {
      const body = Object.fromEntries(new FormData(form).entries());
      for (const box of form.querySelectorAll("input[type=checkbox]")) body[box.name] = box.checked;
      return body;
    }

    const exportForm = document.getElementById("export-form");
    const quant = exportForm.elements.quant;  // a GGUF's type: an HF folder keeps its weights
    const gguf = () => { quant.disabled = exportForm.elements.format.value !== "gguf"; };
    exportForm.elements.format.addEventListener("change", gguf);
    gguf();
    document.getElementById("evaluate").addEventListener("click", () =>
      start("evaluate", { passkey: document.getElementById("eval-passkey").value }));
    for (const action of ["export", "push", "generate"]) {
      const form = document.getElementById(`${action}-form`);
      form.addEventListener("submit", (e) => { e.preventDefault(); start(action, formBody(form)); });
    }
    api("GET", `/api/models/${encodeURIComponent(name)}/jobs`).then((r) => {
      if (r.ok) for (const job of r.data.filter((j) => j.status === "running")) follow(job);
    });
  }

  return { page, start: (action, body) => starter && starter(action, body) };
})();

document.addEventListener("DOMContentLoaded", () => {
  if (document.body.dataset.page === "model") modelPage.page();
});
