// steep studio: the model page's merge (routes/models.py, action "merge"). Its own file
// beside models.js, whose job table it starts its jobs through (modelPage.start): the
// form runs `steep models merge MODEL --alphas ... --out out` as a job; a finished job's
// curve (merge.json, read by the server) is drawn as a table with its plot, and Save on
// a row runs the same command with that one alpha and --save NAME. Server text goes into
// the page as text.
"use strict";

const mergePanel = (() => {
  const { api, el } = studio;  // studio.js's, loaded first (base.html)
  const pct = (v) => (v === null || v === undefined ? "–" : (v >= 0 ? "+" : "") + (100 * v).toFixed(2) + "%");

  function draw(job) {
    const m = job.merge;
    if (!m || !m.curve.length) return;
    const key = m.method === "chat-vector" ? "weight" : "alpha";
    const head = el("tr", {}, el("th", {}, key), ...m.sets.map((s) => el("th", { class: "num" }, s)),
      el("th", { class: "num" }, "domain gain"), el("th", { class: "num" }, "general regression"), el("th"));
    const rows = m.curve.map((p) => {
      const save = el("button", { type: "button", "data-alpha": p[key] }, "Save");
      save.addEventListener("click", () => {
        const name = document.getElementById("merge-save-name").value.trim();
        modelPage.start("merge", { alphas: String(p[key]), save: name, method: m.method });
      });
      return el("tr", { class: p[key] === m.picked ? "picked" : "", "data-alpha": p[key] },
        el("td", {}, String(p[key]) + (p[key] === m.picked ? " *" : "")),
        ...m.sets.map((s) => el("td", { class: "num" }, p.sets[s].loss.toFixed(4))),
        el("td", { class: "num" }, pct(p.domain_gain)),
        el("td", { class: "num" }, pct(p.general_regression)),
        el("td", {}, m.method === "chat-vector" ? "" : save));
    });
    document.getElementById("merge-table").replaceChildren(head, ...rows);
    let note = m.vocab || "";
    if (m.max_regression !== null && m.max_regression !== undefined) {
      note += `; largest ${key} within ${pct(m.max_regression)} general regression: ${m.picked === null ? "none" : m.picked + " (*)"}`;
    }
    if (m.saved) note += `; saved as ${m.saved}`;
    document.getElementById("merge-note").textContent = note;
    document.getElementById("merge-plot").src = `/api/model-jobs/${job.id}/merge.png`;
    document.getElementById("merge-curve").hidden = false;
  }

  function page() {
    const form = document.getElementById("merge-form");
    const box = document.getElementById("model-actions");
    if (!form || !box) return;
    form.addEventListener("submit", (e) => {
      e.preventDefault();
      modelPage.start("merge", Object.fromEntries(new FormData(form).entries()));
    });
    document.addEventListener("model-job-ended", (e) => {
      if (e.detail.action === "merge" && e.detail.status === "done") draw(e.detail);
    });
    api("GET", `/api/models/${encodeURIComponent(box.dataset.model)}/jobs`).then((r) => {
      const done = r.ok ? r.data.find((j) => j.action === "merge" && j.merge) : null;
      if (done) draw(done);
    });
  }

  return { page };
})();

document.addEventListener("DOMContentLoaded", () => {
  if (document.body.dataset.page === "model") mergePanel.page();
});
