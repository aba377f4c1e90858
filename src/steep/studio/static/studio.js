// steep studio: page behaviour. Plain browser JavaScript, no build step; charts by uPlot
// (vendored in static/vendor, MIT). Every change request carries X-Steep-Request, which a
// cross-site form cannot send: the server refuses changes without it.
"use strict";

const studio = (() => {
  async function api(method, url, body, rawBody) {
    const opts = { method, headers: { "X-Steep-Request": "1" } };
    if (rawBody !== undefined) {
      opts.body = rawBody;
    } else if (body !== undefined) {
      opts.headers["Content-Type"] = "application/json";
      opts.body = JSON.stringify(body);
    }
    const resp = await fetch(url, opts);
    let data = null;
    try { data = await resp.json(); } catch (e) { data = { error: resp.statusText }; }
    if (!resp.ok && data && !data.error && !data.errors) data.error = resp.statusText;
    return { ok: resp.ok, status: resp.status, data };
  }

  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === null || v === undefined || v === false) continue;
      if (k === "class") node.className = v; else node.setAttribute(k, v === true ? "" : v);
    }
    for (const c of children.flat()) {
      if (c === null || c === undefined) continue;
      node.append(c instanceof Node ? c : document.createTextNode(String(c)));
    }
    return node;
  }

  const num = (v, d = 3) => (v === null || v === undefined ? "–" : Number(v).toFixed(d));
  const pct = (v) => (v === null || v === undefined ? "–" : (v >= 0 ? "+" : "") + (100 * v).toFixed(1) + "%");

  // --- Data Hub --------------------------------------------------------------------------

  function datasetsPage() {
    const form = document.getElementById("upload-form");
    const status = document.getElementById("upload-status");
    const say = (text, cls) => { status.textContent = text; status.className = "status " + (cls || ""); };
    form.addEventListener("submit", async (ev) => {
      ev.preventDefault();
      const name = document.getElementById("ds-name").value.trim();
      const files = Array.from(document.getElementById("ds-files").files);
      if (!files.length) return say("choose at least one file", "bad");
      document.getElementById("ds-submit").disabled = true;
      try {
        const up = await api("POST", "/api/uploads");
        if (!up.ok) return say(up.data.error, "bad");
        for (const f of files) {
          say(`uploading ${f.name}...`);  // its size: the Data Hub's list, by fmt.data_size
          const put = await api("PUT", `/api/uploads/${up.data.id}/${encodeURIComponent(f.name)}`, undefined, f);
          if (!put.ok) return say(`${f.name}: ${put.data.error}`, "bad");
        }
        say("ingesting (language ID, checks)...");
        const add = await api("POST", "/api/datasets", {
          name, upload: up.data.id,
          text_field: document.getElementById("ds-text-field").value || "text",
          template: document.getElementById("ds-template").value || null,
          langid: document.getElementById("ds-langid").checked,
        });
        if (!add.ok) return say(add.data.error, "bad");
        say(`added ${add.data.ref}: ${add.data.documents} documents`, "good");
        setTimeout(() => location.reload(), 600);
      } finally {
        document.getElementById("ds-submit").disabled = false;
      }
    });
  }

  // --- New run: static/new_run.js ------------------------------------------------------

  // --- Runs list -------------------------------------------------------------------------

  function runsPage() {
    const jobsBody = document.querySelector("#jobs tbody");
    const otherBody = document.querySelector("#other-runs tbody");
    const filter = { state: document.getElementById("f-state"), q: document.getElementById("f-name") };
    const pageInfo = document.getElementById("page-info");
    const picked = new Set();
    let offset = 0, total = 0;
    const LIMIT = 50;

    function compareLink() {
      const a = document.getElementById("compare-link");
      a.hidden = picked.size < 2;
      a.href = "/compare?runs=" + [...picked].map(encodeURIComponent).join(",");
      a.textContent = `Compare ${picked.size} runs`;
    }
    const pick = (name) => name ? el("input", { type: "checkbox", class: "pick", "data-run": name, checked: picked.has(name) }) : "";

    async function act(method, url, what) {
      if (!confirm(what)) return;
      const res = await api(method, url);
      if (!res.ok) alert(res.data.error);
      refresh();
    }
    function actions(name, status, resumable) {
      if (!name || status === "running" || status === "queued" || status === "starting") return "";
      return el("span", { class: "actions" },
        resumable && ["cancelled", "failed"].includes(status)
          ? el("button", { class: "resume", "data-run": name }, "Resume") : "",
        el("button", { class: "archive secondary", "data-run": name }, "Archive"),
        el("button", { class: "delete danger", "data-run": name, title: "delete the run and its model for good" }, "Delete"));
    }

    async function refresh() {
      const q = new URLSearchParams({ limit: LIMIT, offset });
      if (filter.state.value) q.set("state", filter.state.value);
      if (filter.q.value.trim()) q.set("q", filter.q.value.trim());
      const res = await api("GET", "/api/runs?" + q);
      if (!res.ok) return;
      const { jobs, runs } = res.data;
      total = Math.max(res.data.total_jobs, res.data.total_runs);
      pageInfo.textContent = total > LIMIT ? `${offset + 1}-${Math.min(offset + LIMIT, total)} of ${total}` : "";
      document.getElementById("prev").hidden = offset === 0;
      document.getElementById("next").hidden = offset + LIMIT >= total;
      document.getElementById("no-jobs").hidden = jobs.length > 0;
      jobsBody.replaceChildren(...jobs.map((j) => el("tr", { "data-job": j.id, "data-status": j.status },
        el("td", {}, pick(j.run)),
        el("td", {}, el("a", { href: `/runs/${j.id}` }, `#${j.id}`)),
        el("td", {}, el("a", { href: `/runs/${j.id}` }, j.name), j.resume ? " (resumed)" : ""),
        el("td", {}, el("span", { class: `badge ${j.status}` }, j.status)),
        el("td", { class: "num" }, j.step != null && j.steps ? `${j.step} / ${j.steps}` : ""),
        el("td", { class: "num" }, num(j.loss)),
        el("td", {}, j.cuda_visible_devices === "" ? "CPU" : (j.cuda_visible_devices || `${j.nproc}`)),
        el("td", { class: "when" }, j.created_text),  // fmt.timestamp, as every page writes it
        el("td", {}, j.model ? el("a", { href: `/models/${j.model}` }, j.model) : ""),
        el("td", {}, actions(j.run, j.status, j.resumable)),
        el("td", { class: "bad" }, j.error || ""),
      )));
      document.getElementById("other-runs").hidden = runs.length === 0;
      document.getElementById("no-other-runs").hidden = runs.length > 0;
      otherBody.replaceChildren(...runs.map((r) => el("tr", { "data-run": r.name, "data-status": r.status },
        el("td", {}, pick(r.name)),
        el("td", {}, el("a", { href: `/runs/r/${encodeURIComponent(r.name)}` }, r.name)),
        el("td", {}, el("span", { class: `badge ${r.status}` }, r.status)),
        el("td", { class: "num" }, (r.metrics || {}).step ?? ""),
        el("td", { class: "num" }, num((r.metrics || {}).loss)),
        el("td", { class: "path" }, r.base || ""),
        el("td", { class: "when" }, r.created_text),
        el("td", {}, r.model ? el("a", { href: `/models/${r.model}` }, r.model) : ""),
        el("td", {}, actions(r.name, r.status, r.resumable)),
      )));
    }

    document.addEventListener("change", (ev) => {
      const box = ev.target.closest("input.pick");
      if (!box) return;
      if (box.checked) picked.add(box.dataset.run); else picked.delete(box.dataset.run);
      compareLink();
    });
    document.addEventListener("click", (ev) => {
      const b = ev.target.closest("button[data-run]");
      if (!b) return;
      const name = b.dataset.run, url = `/api/runs/${encodeURIComponent(name)}`;
      if (b.classList.contains("resume")) act("POST", url + "/resume", `Resume ${name} from its newest checkpoint?`);
      if (b.classList.contains("archive")) act("POST", url + "/archive", `Archive ${name} (moved to archive/runs, out of the lists)?`);
      if (b.classList.contains("delete")) act("DELETE", url, `Delete ${name} and its model for good?`);
    });
    for (const f of Object.values(filter)) f.addEventListener("input", () => { offset = 0; refresh(); });
    document.getElementById("filters").addEventListener("submit", (e) => { e.preventDefault(); offset = 0; refresh(); });
    document.getElementById("prev").addEventListener("click", () => { offset = Math.max(0, offset - LIMIT); refresh(); });
    document.getElementById("next").addEventListener("click", () => { offset += LIMIT; refresh(); });
    refresh();
    setInterval(refresh, 2000);
  }

  // --- One run: live charts --------------------------------------------------------------

  const chart = (divId, yFormat) => watch.chart(divId, yFormat);  // watch.js

  function runPage({ metricsUrl, jobId }) {
    const train = { step: [], loss: [], lr: [], tps: [], time: [], tokens: [] };
    const ev = { step: [], tokens: [], sets: {}, rel: {} };
    let events = [];  // kind "event": phases, mix changes on resume, budget actions
    let checkpoints = [];  // steps of the checkpoints on disk: markers on the charts
    const charts = {
      loss: chart("chart-loss"),
      ev: chart("chart-eval"),
      lr: chart("chart-lr", (v) => v.toExponential(1)),
      tps: chart("chart-tps", (v) => v.toFixed(0)),
    };
    let offset = 0, inode = null, finished = false, logOffset = 0;

    function reset() {
      for (const k of Object.keys(train)) train[k] = [];
      ev.step = []; ev.tokens = []; ev.sets = {}; ev.rel = {}; events = [];
    }

    function eventText(e) {
      if (e.event === "phase") return `step ${e.step}: phase ${e.phase} began`;
      if (e.event === "mixture_change") return `step ${e.step}: mix changed on resume: ${(e.changed || []).join("; ")}`;
      if (e.event === "forgetting_budget") return `step ${e.step}: budget ${e.action}: ${e.reason}`;
      return `step ${e.step}: ${e.event}`;
    }

    function drawEvents() {
      const box = document.getElementById("events");
      if (!box) return;
      box.hidden = events.length === 0;
      document.getElementById("event-list").replaceChildren(...events.map((e) =>
        el("li", { "data-event": e.event, class: e.event === "forgetting_budget" ? "bad" : "" }, eventText(e))));
    }

    function add(rec) {
      if (rec.kind === "train") {
        train.step.push(rec.step); train.loss.push(rec.loss);
        train.lr.push(rec.lr); train.tps.push(rec.tokens_per_s ?? null);
        train.time.push(rec.time ?? null); train.tokens.push(rec.tokens ?? null);
      } else if (rec.kind === "event") {
        events.push(rec);
      } else if (rec.kind === "eval") {
        const i = ev.step.length;
        ev.step.push(rec.step); ev.tokens.push(rec.tokens ?? null);
        for (const [name, m] of Object.entries(rec.sets || {})) {
          if (!ev.sets[name]) { ev.sets[name] = Array(i).fill(null); ev.rel[name] = Array(i).fill(null); }
        }
        for (const name of Object.keys(ev.sets)) {
          const m = (rec.sets || {})[name];
          ev.sets[name].push(m ? m.loss : null);
          ev.rel[name].push(m ? m.rel_change : null);
        }
      }
    }

    function draw() {
      watch.draw(charts, train, ev, events, checkpoints);  // markers, smoothing, x axis, log y
      const names = Object.keys(ev.sets);
      showProgress();
      drawEvents();
      const body = document.querySelector("#eval-table tbody");
      body.replaceChildren(...names.map((n) => {
        const losses = ev.sets[n], rels = ev.rel[n];
        const last = losses.length - 1;
        const rel = rels[last];
        return el("tr", { "data-set": n }, el("td", {}, n), el("td", { class: "num" }, num(losses[0], 4)),
          el("td", { class: "num" }, num(losses[last], 4)),
          el("td", { class: "num " + (rel < 0 ? "good" : rel > 0 ? "bad" : "") }, pct(rel)));
      }));
    }

    let steps = null;
    const ago = (sec) => sec < 90 ? `${Math.round(sec)}s` : sec < 5400 ? `${Math.round(sec / 60)}m` : `${(sec / 3600).toFixed(1)}h`;
    let phaseSize = null;  // the server's fmt.data_size of the phase's total, as the CLI writes it

    function showPhase(ph) {
      const line = document.getElementById("phase");
      if (!ph) { line.hidden = true; return; }
      let text = ph.what;
      if (ph.total) {
        text += `: ${(100 * ph.done / ph.total).toFixed(0)}% of ${phaseSize || ph.total}`;
        const spent = ph.time - ph.started;
        if (ph.done > 0 && spent > 0) text += `, ETA ${ago((ph.total - ph.done) * spent / ph.done)}`;
      }
      line.textContent = text; line.hidden = false;
    }

    function showProgress() {
      const n = train.step.length;
      if (!n) return;
      const step = train.step[n - 1];
      let text = `step ${step}` + (steps ? ` of ${steps}` : "");
      const t = train.time, k = Math.min(n - 1, 20);
      if (steps && k > 0 && t[n - 1] != null && t[n - 1 - k] != null && step < steps) {
        const per = (t[n - 1] - t[n - 1 - k]) / (train.step[n - 1] - train.step[n - 1 - k]);
        if (per > 0) text += `, ETA ${ago((steps - step) * per)}`;
      }
      if (train.tokens[n - 1] != null) text += ` · ${Number(train.tokens[n - 1]).toLocaleString()} tokens`;
      document.getElementById("progress").textContent = text;
    }

    const showFiles = (files) => watch.files(files, metricsUrl);  // watch.js

    function setStatus(status) {
      const badge = document.getElementById("status");
      badge.textContent = status; badge.className = `badge ${status}`;
      const cancel = document.getElementById("cancel");
      if (cancel && ["done", "failed", "cancelled"].includes(status)) cancel.hidden = true;
    }

    async function pollMetrics() {
      const q = `?offset=${offset}` + (inode !== null ? `&inode=${inode}` : "");
      const res = await api("GET", metricsUrl + q);
      if (res.ok) {
        const d = res.data;
        if (d.reset) reset();
        d.records.forEach(add);
        offset = d.offset; inode = d.inode;
        if (d.steps) steps = d.steps;
        phaseSize = d.phase_size;
        const marked = JSON.stringify(d.checkpoints || []) !== JSON.stringify(checkpoints);
        checkpoints = d.checkpoints || [];
        if (d.records.length || d.reset || marked) draw();
        setStatus(d.status);
        showPhase(d.phase);
        showFiles(d.files);
        if (d.finished && !finished) {
          finished = true;
          if (jobId !== null) {
            const job = await api("GET", `/api/jobs/${jobId}`);
            if (job.ok) {
              document.getElementById("error").textContent = job.data.error || "";
              if (job.data.model) {
                document.getElementById("model-link").replaceChildren(
                  el("a", { href: `/models/${job.data.model}` }, `model ${job.data.model}`));
              }
            }
          }
          setTimeout(pollMetrics, 500);  // one last read for the final records
          return;
        }
      }
      if (!finished) setTimeout(pollMetrics, 1000);
    }

    let logText = "";
    // progress bars redraw a line with \r: show each line as a terminal would, its last state
    const asTerminal = (text) => text.split("\n").map((l) => l.split("\r").filter(Boolean).pop() || "").join("\n");

    async function pollLog() {
      const res = await api("GET", `/api/jobs/${jobId}/log?offset=${logOffset}`);
      if (res.ok) {
        const pre = document.getElementById("log");
        const atEnd = pre.scrollTop + pre.clientHeight >= pre.scrollHeight - 4;
        if (res.data.offset < logOffset) logText = "";
        logText += res.data.text;
        if (res.data.text) pre.textContent = asTerminal(logText);
        logOffset = res.data.offset;
        if (atEnd) pre.scrollTop = pre.scrollHeight;
        if (["done", "failed", "cancelled"].includes(res.data.status) && !res.data.text) return;
      }
      setTimeout(pollLog, 1500);
    }

    watch.controls(draw, metricsUrl);
    if (jobId !== null) {
      pollLog();
      const cancel = document.getElementById("cancel");
      cancel.addEventListener("click", async () => {
        if (!confirm("Cancel this job?")) return;
        const res = await api("POST", `/api/jobs/${jobId}/cancel`);
        if (!res.ok) alert(res.data.error);
        cancel.disabled = true;
      });
    }
    pollMetrics();
  }

  // Each page starts once: from the dispatcher below (the CSP allows no inline script)
  const started = new Set();
  const once = (name, fn) => (...args) => {
    if (started.has(name)) return undefined;
    started.add(name);
    return fn(...args);
  };

  return {
    api,
    el,
    num,
    pct,
    datasetsPage: once("datasets", datasetsPage),
    runsPage: once("runs", runsPage),
    runPage: once("run", runPage),
  };
})();

// The page's script, named by <body data-page> (base.html); the run page's arguments too.
document.addEventListener("DOMContentLoaded", () => {
  const d = document.body.dataset;
  const pages = {
    datasets: () => studio.datasetsPage(),
    runs: () => studio.runsPage(),
    run: () => studio.runPage({ metricsUrl: d.metricsUrl, jobId: d.jobId ? Number(d.jobId) : null }),
  };
  if (pages[d.page]) pages[d.page]();
});
