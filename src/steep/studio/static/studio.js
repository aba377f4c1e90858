// steep studio: page behaviour. Plain browser JavaScript, no build step; charts by uPlot
// (vendored in static/vendor, MIT). Every change request carries X-Steep-Request, which a
// cross-site form cannot send: the server refuses changes without it.
"use strict";

const studio = (() => {
  const COLORS = ["#2563eb", "#dc2626", "#059669", "#d97706", "#7c3aed", "#0891b2", "#be185d"];

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
  const when = (t) => (t ? new Date(t * 1000).toLocaleString() : "");

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
          say(`uploading ${f.name} (${(f.size / 1024).toFixed(0)} KiB)...`);
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

  // --- New run ---------------------------------------------------------------------------

  function newRunPage() {
    const form = document.getElementById("run-form");
    const sources = document.getElementById("sources");
    const tpl = document.getElementById("source-row");
    const launch = document.getElementById("launch");
    let timer = null;
    let seq = 0;

    function addSource() {
      const row = tpl.content.firstElementChild.cloneNode(true);
      row.querySelector(".remove").addEventListener("click", () => { row.remove(); schedule(); });
      sources.append(row);
      schedule();
    }
    document.getElementById("add-source").addEventListener("click", addSource);
    if (tpl.content.querySelector("option")) addSource();

    function formData() {
      const get = (n) => form.elements[n].value.trim();
      const numOr = (n, dflt) => (get(n) === "" ? dflt : Number(get(n)));
      return {
        name: get("name") || "run",
        base: get("base"),
        base_max_lr: numOr("base_max_lr", null),
        sources: Array.from(sources.querySelectorAll(".source")).map((r) => ({
          dataset: r.querySelector("[name=dataset]").value,
          weight: Number(r.querySelector("[name=weight]").value || 1),
          role: r.querySelector("[name=role]").value,
        })),
        domain_share: numOr("domain_share", null),
        lr_fraction: numOr("lr_fraction", 0.1),
        steps: numOr("steps", 100),
        global_batch_tokens: numOr("global_batch_tokens", 16384),
        seq_len: numOr("seq_len", 512),
        micro_batch_size: numOr("micro_batch_size", 1),
        eval_every: numOr("eval_every", null),
        gpus: numOr("gpus", 0),
        cuda_visible_devices: get("cuda_visible_devices"),
        extra_yaml: form.elements["extra_yaml"].value,
      };
    }

    function show(res) {
      const list = (id, items) => {
        const ul = document.getElementById(id);
        ul.replaceChildren(...(items || []).map((t) => el("li", {}, t)));
      };
      list("errors", res.errors);
      list("warnings", res.warnings);
      document.getElementById("resolved").textContent = res.yaml || "";
      const s = res.summary || {};
      document.getElementById("summary").textContent = res.ok
        ? `ok · max LR ${Number(s.max_lr).toExponential(2)} (${s.max_lr_source}) · ` +
          `${Number(s.tokens).toLocaleString()} training tokens · ${res.nproc} process(es), ` +
          `${s.grad_accum} micro-batch(es) per step` + (s.plan ? ` · plan: ${s.plan}` : "")
        : `${res.errors.length} problem(s) to fix before launch`;
      launch.disabled = !res.ok;
    }

    async function resolve() {
      const mine = ++seq;
      const res = await api("POST", "/api/config/resolve", formData());
      if (mine === seq) show(res.data);  // an older answer never overwrites a newer one
    }
    function schedule() { clearTimeout(timer); timer = setTimeout(resolve, 250); }
    form.addEventListener("input", schedule);
    form.addEventListener("change", schedule);

    form.addEventListener("submit", async (ev) => {
      ev.preventDefault();
      launch.disabled = true;
      const status = document.getElementById("launch-status");
      status.textContent = "launching...";
      const res = await api("POST", "/api/jobs", formData());
      if (!res.ok) {
        status.textContent = res.data.error || "not launched: fix the errors";
        if (res.data.errors) show(res.data);
        return;
      }
      location.href = `/runs/${res.data.job.id}`;
    });
    resolve();
  }

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
        el("button", { class: "archive", "data-run": name }, "Archive"),
        el("button", { class: "delete", "data-run": name }, "Delete"));
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
        el("td", {}, when(j.created)),
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
        el("td", {}, (r.created || "").slice(0, 19)),
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
    document.getElementById("prev").addEventListener("click", () => { offset = Math.max(0, offset - LIMIT); refresh(); });
    document.getElementById("next").addEventListener("click", () => { offset += LIMIT; refresh(); });
    refresh();
    setInterval(refresh, 2000);
  }

  // --- One run: live charts --------------------------------------------------------------

  function chart(divId, yFormat) {
    const div = document.getElementById(divId);
    let plot = null;
    let names = [];
    let current = [];
    return {
      update(x, series, labels, valueFmt) {
        current = series;
        div.dataset.points = String(x.length);
        if (!x.length) return;
        const key = labels.join("\u0000");
        if (!plot || key !== names.join("\u0000")) {
          if (plot) plot.destroy();
          names = labels;
          const axis = { stroke: "#555", grid: { stroke: "#eee" } };
          plot = new uPlot({
            width: Math.max(div.clientWidth, 300),
            height: 220,
            scales: { x: { time: false } },
            legend: { live: true },
            axes: [{ ...axis, label: "step" }, { ...axis, size: 64, values: yFormat ? (u, vals) => vals.map(yFormat) : undefined }],
            series: [{ label: "step" }, ...labels.map((l, i) => ({
              label: l, stroke: COLORS[i % COLORS.length], width: 2, spanGaps: true,
              points: { show: x.length < 60 },
              // off the plot (a reloaded, finished run) uPlot passes no index: show the last
              value: (u, v, si, idx) => {
                const k = idx ?? x.length - 1;
                const val = v ?? (current[i] || [])[k];
                return valueFmt ? valueFmt(val, i, k) : (val == null ? "–" : Number(val).toPrecision(4));
              },
            }))],
          }, [x, ...series], div);
        } else {
          plot.setData([x, ...series]);
        }
        if (plot.cursor.left == null || plot.cursor.left < 0) plot.setLegend({ idx: x.length - 1 });  // latest values
      },
    };
  }

  function runPage({ metricsUrl, jobId }) {
    const train = { step: [], loss: [], lr: [], tps: [], time: [], tokens: [] };
    const ev = { step: [], sets: {}, rel: {} };
    let events = [];  // kind "event": phases, mix changes on resume, budget actions
    const charts = {
      loss: chart("chart-loss"),
      ev: chart("chart-eval"),
      lr: chart("chart-lr", (v) => v.toExponential(1)),
      tps: chart("chart-tps", (v) => v.toFixed(0)),
    };
    let offset = 0, inode = null, finished = false, logOffset = 0;

    function reset() {
      for (const k of Object.keys(train)) train[k] = [];
      ev.step = []; ev.sets = {}; ev.rel = {}; events = [];
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
        ev.step.push(rec.step);
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
      charts.loss.update(train.step, [train.loss], ["train loss"]);
      charts.lr.update(train.step, [train.lr], ["lr"], (v) => (v == null ? "–" : v.toExponential(2)));
      charts.tps.update(train.step, [train.tps], ["tokens/s"], (v) => (v == null ? "–" : v.toFixed(0)));
      const names = Object.keys(ev.sets);
      charts.ev.update(ev.step, names.map((n) => ev.sets[n]), names, (v, i, idx) => {
        if (v == null) return "–";
        const rel = ev.rel[names[i]][idx ?? ev.step.length - 1];
        return `${v.toFixed(3)} (${pct(rel)} vs step 0)`;
      });
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
    const size = (b) => b >= 1e9 ? `${(b / 1e9).toFixed(1)} GB` : b >= 1e6 ? `${(b / 1e6).toFixed(1)} MB` : `${(b / 1e3).toFixed(0)} kB`;

    function showPhase(ph) {
      const line = document.getElementById("phase");
      if (!ph) { line.hidden = true; return; }
      let text = ph.what;
      if (ph.total) {
        text += `: ${(100 * ph.done / ph.total).toFixed(0)}% of ${size(ph.total)}`;
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

    function showFiles(files) {
      if (!files) return;
      const base = metricsUrl.replace(/\/metrics$/, "/files/");
      const links = [];
      if (files.report) links.push(el("a", { href: base + "report.md" }, "report.md"));
      for (const p of files.plots || []) links.push(el("a", { href: base + "plots/" + encodeURIComponent(p) }, p));
      if (files.tensorboard) links.push(el("code", { title: "tensorboard --logdir <this folder>" }, `TensorBoard: ${files.tensorboard}`));
      document.getElementById("files").replaceChildren(...links.flatMap((a) => [" · ", a]));
    }

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
        if (d.records.length || d.reset) draw();
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
    datasetsPage: once("datasets", datasetsPage),
    newRunPage: once("new_run", newRunPage),
    runsPage: once("runs", runsPage),
    runPage: once("run", runPage),
  };
})();

// The page's script, named by <body data-page> (base.html); the run page's arguments too.
document.addEventListener("DOMContentLoaded", () => {
  const d = document.body.dataset;
  const pages = {
    datasets: () => studio.datasetsPage(),
    new_run: () => studio.newRunPage(),
    runs: () => studio.runsPage(),
    run: () => studio.runPage({ metricsUrl: d.metricsUrl, jobId: d.jobId ? Number(d.jobId) : null }),
  };
  if (pages[d.page]) pages[d.page]();
});
