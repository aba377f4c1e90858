// steep studio: the Compare page (routes/compare.py). Its own file beside studio.js, started
// the same way (base.html's <body data-page>, no inline script under the CSP); it uses
// studio.api, el and num from studio.js and uPlot (vendored). Run names are the user's: every one goes
// into the page as text (textContent, uPlot's legend does the same), never as HTML.
"use strict";

const compare = (() => {
  const COLORS = ["#2563eb", "#dc2626", "#059669", "#d97706", "#7c3aed", "#0891b2",
    "#be185d", "#4d7c0f", "#9333ea", "#ea580c", "#0f766e", "#475569"];
  const REFRESH_MS = 5000;  // while a compared run is still running

  const { el, num } = studio;  // studio.js's, loaded first (base.html)
  const pct = (v) => (v === null || v === undefined ? "–" : (v >= 0 ? "+" : "") + (100 * v).toFixed(2) + "%");

  // ?runs=a,b for the page's own URL; ?run=NAME (one each) when a name holds a comma
  function compareUrl(names) {
    if (names.some((n) => n.includes(","))) {
      return "/compare?" + names.map((n) => "run=" + encodeURIComponent(n)).join("&");
    }
    return "/compare?runs=" + names.map(encodeURIComponent).join(",");
  }

  // One x axis (the union of the steps) and each run's values on it, null where it has none
  function align(list) {
    const steps = [...new Set(list.flatMap((s) => s.x))].sort((a, b) => a - b);
    const at = new Map(steps.map((s, i) => [s, i]));
    const ys = list.map((s) => {
      const y = Array(steps.length).fill(null);
      s.x.forEach((step, i) => { y[at.get(step)] = s.y[i]; });
      return y;
    });
    return { x: steps, ys };
  }

  const plots = new Map();  // div id -> {plot, key}: same series, new data: setData
  const evalCharts = new Map();  // eval set -> its chart's div id
  let chartSeq = 0;

  function lineChart(div, x, ys, labels, colors, opts) {
    div.dataset.points = String(x.length);
    const key = labels.join("\u0000");
    const old = plots.get(div.id);
    const latest = (u) => { if (u.cursor.left == null || u.cursor.left < 0) u.setLegend({ idx: x.length - 1 }); };
    if (old && old.key === key && x.length) { old.plot.setData([x, ...ys]); latest(old.plot); return; }
    if (old) old.plot.destroy();
    if (!x.length) { plots.delete(div.id); return; }
    const axis = { stroke: "#555", grid: { stroke: "#eee" } };
    const plot = new uPlot({
      width: Math.max(div.clientWidth, 300),
      height: 240,
      scales: { x: { time: false } },
      legend: { live: true },
      axes: [{ ...axis, ...watch.countAxis(div, "step") },  // whole steps (watch.js)
        { ...axis, size: 70, label: opts.yLabel, values: opts.tick ? (u, vals) => vals.map(opts.tick) : undefined }],
      series: [{ label: "step" }, ...labels.map((l, i) => ({
        label: l, stroke: colors[i], width: 2, spanGaps: true,
        points: { show: x.length < 60 },
        value: (u, v) => (v == null ? "–" : opts.value(v)),
      }))],
    }, [x, ...ys], div);
    plots.set(div.id, { plot, key });
    latest(plot);  // each run's last value in the legend until the cursor moves
  }

  function drawCharts(runs, colors) {
    const train = align(runs.map((r) => ({ x: r.train.step, y: r.train.loss })));
    lineChart(document.getElementById("chart-train"), train.x, train.ys, runs.map((r) => r.name),
      colors, { yLabel: "loss", value: (v) => v.toFixed(4) });
    // eval charts by role (domain, general): each run's mean change over its sets of that
    // role, so runs whose sets are named differently overlay; a set with no role by name
    const groups = new Map();
    for (const role of ["domain", "general"]) {
      const have = runs.map((r, j) => ({ r, j, s: (r.by_role || {})[role] })).filter((h) => h.s);
      if (have.length) groups.set(`role:${role}`, { caption: `eval, ${role} role`, have });
    }
    for (const set of new Set(runs.flatMap((r) => Object.keys(r.eval)))) {
      const have = runs.map((r, j) => ({ r, j, s: r.eval[set] }))
        .filter((h) => h.s && !(h.r.final[set] || {}).role);
      if (have.length) groups.set(`set:${set}`, { caption: `eval ${set}`, have });
    }
    const box = document.getElementById("compare-charts");
    for (const [key, id] of evalCharts) {  // a group no compared run has any more
      if (groups.has(key)) continue;
      const old = plots.get(id);
      if (old) old.plot.destroy();
      plots.delete(id);
      document.getElementById(id).closest("figure").remove();
      evalCharts.delete(key);
    }
    for (const [key, { caption, have }] of groups) {
      let id = evalCharts.get(key);
      if (!id) {
        id = `chart-eval-${chartSeq++}`;
        evalCharts.set(key, id);
        const [kind, name] = [key.slice(0, key.indexOf(":")), key.slice(key.indexOf(":") + 1)];
        box.append(el("figure", { [kind === "role" ? "data-role" : "data-set"]: name },
          el("figcaption", {}, `${caption}: change of loss vs step 0 (%, below 0 is better)`),
          el("div", { id, class: "chart", "data-points": "0" })));
      }
      const aligned = align(have.map(({ s }) => ({
        x: s.step, y: s.rel_change.map((v) => (v == null ? null : 100 * v)),
      })));
      const label = ({ r, s }) => (s.sets ? `${r.name} (${s.sets.join(", ")})` : r.name);
      lineChart(document.getElementById(id), aligned.x, aligned.ys, have.map(label),
        have.map(({ j }) => colors[j]),
        { yLabel: "% vs step 0", tick: (v) => v.toFixed(1) + "%",
          value: (v) => (v >= 0 ? "+" : "") + v.toFixed(2) + "%" });
    }
  }

  // Every config field that differs between the compared runs (the server's diff)
  function drawDiff(runs, colors, diff) {
    const keys = Object.keys(diff || {});
    const table = document.getElementById("config-diff");
    table.hidden = keys.length === 0;
    const show = (v) => (v === null || v === undefined ? "–" : typeof v === "object" ? JSON.stringify(v) : String(v));
    table.querySelector("thead tr").replaceChildren(el("th", {}, "config field"),
      ...runs.map((r, i) => el("th", {}, el("span", { class: "swatch", style: `background:${colors[i]}` }), " ", r.name)));
    table.querySelector("tbody").replaceChildren(...keys.map((k) => el("tr", { "data-key": k },
      el("td", {}, el("code", {}, k)), ...diff[k].map((v) => el("td", {}, show(v))))));
  }

  function signed(v, goodAbove) {
    const cls = v == null || v === 0 ? "" : (v > 0) === goodAbove ? "good" : "bad";
    return el("td", { class: `num ${cls}` }, pct(v));
  }

  function drawTable(runs, colors, sweep) {
    const sets = [...new Set(runs.flatMap((r) => Object.keys(r.final)))];
    const head = document.getElementById("compare-head");
    head.replaceChildren(
      el("th", {}, sweep ? "point" : "run"), el("th", {}, "status"),
      el("th", { class: "num" }, "steps"), el("th", { class: "num" }, "domain gain"),
      el("th", { class: "num" }, "general regr."),
      ...sets.map((s) => el("th", { class: "num", "data-set": s }, `${s} final loss`)));
    const best = sweep && sweep.recommended;
    const front = new Set((sweep && sweep.pareto_front) || []);
    document.querySelector("#compare-table tbody").replaceChildren(...runs.map((r, i) => {
      const name = r.url ? el("a", { href: r.url }, r.name) : el("span", {}, r.name);
      const notes = [];
      if (best === r.name) notes.push("recommended");
      if (front.has(r.name)) notes.push("pareto");
      const values = Object.entries(r.values || {}).map(([k, v]) => `${k.split(".").pop()}=${v}`).join(" ");
      const progress = r.last_step != null ? `${r.last_step}` + (r.steps ? ` / ${r.steps}` : "") : (r.steps ?? "");
      return el("tr", { "data-run": r.name },
        el("td", {}, el("span", { class: "swatch", style: `background:${colors[i]}` }), " ", name,
          values ? el("div", { class: "hint" }, values) : null,
          notes.length ? el("div", { class: "tag" }, notes.join(", ")) : null),
        el("td", {}, el("span", { class: `badge ${r.status}` }, r.status)),
        el("td", { class: "num" }, progress),
        signed(r.domain_gain, true),
        signed(r.general_regression, false),
        ...sets.map((s) => {
          const f = r.final[s];
          if (!f) return el("td", { class: "num" }, "–");
          const rel = f.rel_change;
          return el("td", { class: "num", "data-set": s, title: f.role ? `${f.role} set` : "no role: not scored" },
            num(f.final_loss, 4), " ",
            el("span", { class: rel < 0 ? "good" : rel > 0 ? "bad" : "" }, `(${pct(rel)})`));
        }));
    }));
  }

  function drawSweep(sweep, shown) {
    const parts = [`${sweep.points} point(s)`];
    if (shown < sweep.points) parts.push(`the first ${shown} shown`);
    if (sweep.grid.length) parts.push(`grid ${sweep.grid.join(", ")}`);
    if (sweep.max_regression != null) parts.push(`general regression budget ${(100 * sweep.max_regression).toFixed(2)}%`);
    const summary = document.getElementById("sweep-summary");
    summary.replaceChildren(el("span", {}, parts.join(" · ")),
      sweep.reason ? el("div", {}, el("strong", {}, sweep.recommended ? "Recommended: " : "No recommendation: "), sweep.reason) : null);
    const fig = document.getElementById("pareto");
    if (sweep.pareto_url) {
      const img = document.getElementById("pareto-img");
      if (img.getAttribute("src") !== sweep.pareto_url) img.src = sweep.pareto_url;
      fig.hidden = false;
    }
  }

  function picker() {
    const form = document.getElementById("picker-form");
    if (!form) return;
    const status = document.getElementById("picker-status");
    const max = Number(document.getElementById("compare").dataset.maxRuns || 12);
    form.addEventListener("submit", (ev) => {
      ev.preventDefault();
      const names = Array.from(form.querySelectorAll("input[name=run]:checked")).map((c) => c.value);
      if (!names.length) { status.textContent = "pick at least one run"; status.className = "status bad"; return; }
      if (names.length > max) { status.textContent = `at most ${max} runs at a time`; status.className = "status bad"; return; }
      location.href = compareUrl(names);
    });
  }

  function page() {
    picker();
    const root = document.getElementById("compare");
    const apiUrl = root.dataset.api;
    if (!apiUrl) return;
    const error = document.getElementById("compare-error");
    async function refresh() {
      const res = await studio.api("GET", apiUrl);
      if (!res.ok) {
        error.textContent = res.data.error || `error ${res.status}`;
        error.hidden = false;
        return;
      }
      error.hidden = true;
      const { runs, sweep } = res.data;
      const colors = runs.map((_, i) => COLORS[i % COLORS.length]);
      document.getElementById("compare-results").hidden = false;
      document.getElementById("compare-empty").hidden = runs.length > 0;
      drawTable(runs, colors, sweep);
      drawCharts(runs, colors);
      drawDiff(runs, colors, res.data.config_diff);
      tradeoff.draw(runs, colors, res.data.merges);  // tradeoff.js
      if (sweep) drawSweep(sweep, runs.length);
      if (runs.some((r) => r.status === "running")) setTimeout(refresh, REFRESH_MS);
    }
    refresh();
  }

  return { page, compareUrl, align };
})();

document.addEventListener("DOMContentLoaded", () => {
  if (document.body.dataset.page === "compare") compare.page();
});
