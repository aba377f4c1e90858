// steep studio: the run page's charts (studio.js's runPage feeds them). Markers for what
// happened at a step (evals, checkpoints, phase starts, forgetting-budget actions, a mix
// change), smoothing, step or tokens on the x axis, a log y axis, integer step ticks.
// Loaded before studio.js (base.html); uPlot is vendored. Everything shown is text.
"use strict";

const watch = (() => {
  const COLORS = ["#2563eb", "#dc2626", "#059669", "#d97706", "#7c3aed", "#0891b2", "#be185d"];
  // metrics.jsonl's event kinds (steep.artifacts.metrics), plus evals and checkpoints
  const MARKS = {
    eval: { color: "#94a3b8", dash: [2, 3], label: "eval" },
    checkpoint: { color: "#059669", dash: [6, 3], label: "checkpoint" },
    phase: { color: "#7c3aed", dash: [], label: "phase start" },
    forgetting_budget: { color: "#dc2626", dash: [], label: "forgetting budget" },
    mixture_change: { color: "#d97706", dash: [], label: "mix change" },
  };
  // tick spacings for counts (steps, tokens): whole numbers only, never 2.5 or 7.5
  const INT_INCRS = [];
  for (let e = 0; e < 16; e++) for (const m of [1, 2, 5]) INT_INCRS.push(m * 10 ** e);
  const count = (v) => (Math.abs(v) >= 1e9 ? `${+(v / 1e9).toFixed(2)}G` : Math.abs(v) >= 1e6
    ? `${+(v / 1e6).toFixed(2)}M` : Math.abs(v) >= 1e4 ? `${+(v / 1e3).toFixed(1)}k` : String(v));

  // an x axis of steps or tokens: whole-number ticks, written short (the ticks shown are
  // kept in data-x-ticks, for a look from outside)
  function countAxis(div, label) {
    return { label, incrs: INT_INCRS, values: (u, vals) => { div.dataset.xTicks = vals.join(" "); return vals.map(count); } };
  }

  // the marker lines, drawn last (over the grid, which would hide a line at a tick)
  function markerPlugin(get) {
    return { hooks: { draw: [(u) => {
      const { left, top, width, height } = u.bbox;
      const ctx = u.ctx;
      for (const m of get()) {
        const style = MARKS[m.kind] || MARKS.phase;
        const px = u.valToPos(m.x, "x", true);
        if (!(px >= left && px <= left + width)) continue;
        ctx.save();
        ctx.strokeStyle = style.color; ctx.lineWidth = Math.max(1, devicePixelRatio);
        ctx.setLineDash(style.dash.map((d) => d * devicePixelRatio));
        ctx.beginPath(); ctx.moveTo(px, top); ctx.lineTo(px, top + height); ctx.stroke();
        ctx.restore();
      }
    }],
    // the pointer on a marker line: what happened there, as the chart's tooltip
    setCursor: [(u) => {
      const left = u.cursor.left;
      const near = left == null || left < 0 ? [] : get().filter((m) => Math.abs(u.valToPos(m.x, "x") - left) <= 4);
      u.root.parentElement.title = near.map((m) => `${(MARKS[m.kind] || { label: m.kind }).label} at ${m.at}`).join("\n");
    }] } };
  }

  function chart(divId, yFormat) {
    const div = document.getElementById(divId);
    let plot = null, key = "", current = [], markers = [];
    return {
      // opts: xLabel, logY, markers [{kind, x}], styles [{stroke, width}] per series
      update(x, series, labels, valueFmt, opts = {}) {
        current = series;
        markers = opts.markers || [];
        div.dataset.points = String(x.length);
        div.dataset.series = String(labels.length);
        div.dataset.x = opts.xLabel || "step";
        div.dataset.logY = opts.logY ? "1" : "0";
        if (!x.length) return;
        const k = [labels.join("\u0000"), opts.xLabel, !!opts.logY].join("\u0001");
        if (plot && k === key) {
          plot.setData([x, ...series]);
        } else {
          if (plot) plot.destroy();
          key = k;
          const axis = { stroke: "#555", grid: { stroke: "#eee" } };
          plot = new uPlot({
            width: Math.max(div.clientWidth, 300),
            height: 220,
            scales: { x: { time: false }, y: opts.logY ? { distr: 3 } : {} },
            legend: { live: true },
            plugins: [markerPlugin(() => markers)],
            axes: [{ ...axis, ...countAxis(div, opts.xLabel || "step") },
              { ...axis, size: 64, values: yFormat ? (u, vals) => vals.map(yFormat) : undefined }],
            series: [{ label: opts.xLabel || "step" }, ...labels.map((l, i) => ({
              label: l, width: 2, spanGaps: true, stroke: COLORS[i % COLORS.length],
              ...((opts.styles || [])[i] || {}),
              points: { show: x.length < 60 },
              // off the plot (a reloaded, finished run) uPlot passes no index: show the last
              value: (u, v, si, idx) => {
                const j = idx ?? x.length - 1;
                const val = v ?? (current[i] || [])[j];
                return valueFmt ? valueFmt(val, i, j) : (val == null ? "–" : Number(val).toPrecision(4));
              },
            }))],
          }, [x, ...series], div);
        }
        if (plot.cursor.left == null || plot.cursor.left < 0) plot.setLegend({ idx: x.length - 1 });
      },
    };
  }

  // exponential moving average, debiased as TensorBoard's: the start is not pulled to 0
  function smooth(ys, w) {
    let acc = 0, n = 0;
    return ys.map((v) => {
      if (v == null || !Number.isFinite(v)) return null;
      acc = w * acc + (1 - w) * v; n += 1;
      return acc / (1 - w ** n);
    });
  }

  const control = (id) => document.getElementById(id);
  function settings() {
    const s = control("smooth");
    return {
      tokens: control("x-axis") ? control("x-axis").value === "tokens" : false,
      smooth: s ? Number(s.value) : 0,
      logY: control("log-y") ? control("log-y").checked : false,
    };
  }

  // What happened at a step, for the charts: evals, checkpoints and the run's events
  function markersOf(evalSteps, checkpoints, events) {
    return [
      ...evalSteps.map((step) => ({ kind: "eval", step })),
      ...(checkpoints || []).map((step) => ({ kind: "checkpoint", step })),
      ...events.map((e) => ({ kind: e.event, step: e.step, what: e.phase || e.reason || "" })),
    ];
  }

  function legend(marks) {
    const box = control("markers");
    if (!box) return;
    const counts = {};
    for (const m of marks) counts[m.kind] = (counts[m.kind] || 0) + 1;
    box.replaceChildren(...Object.keys(MARKS).filter((k) => counts[k]).map((k) =>
      studio.el("span", { class: "mark", "data-kind": k, style: `--mark:${MARKS[k].color}` },
        `${MARKS[k].label} ×${counts[k]}`)));
  }

  // The run page's four charts from what it has read: train = {step, loss, lr, tps,
  // tokens}, ev = {step, tokens, sets, rel}, events (kind "event"), checkpoint steps
  function draw(charts, train, ev, events, checkpoints) {
    const opt = settings();
    const tokenAt = new Map(train.step.map((s, i) => [s, train.tokens[i]]));
    ev.step.forEach((s, i) => { if (!tokenAt.has(s)) tokenAt.set(s, ev.tokens[i]); });
    const useTokens = opt.tokens && train.tokens.length > 0 && train.tokens.every((t) => t != null);
    const xOf = (step) => (useTokens ? tokenAt.get(step) ?? null : step);
    const xLabel = useTokens ? "tokens" : "step";
    const marks = markersOf(ev.step, checkpoints, events);
    const markers = marks.map((m) => ({ kind: m.kind, x: xOf(m.step), at: `step ${m.step}` + (m.what ? `: ${m.what}` : "") }))
      .filter((m) => m.x != null);
    legend(marks);
    const tx = train.step.map(xOf), ex = ev.step.map(xOf);
    const base = { xLabel, markers };
    const fmt = (d) => (v) => (v == null ? "–" : d(v));
    if (opt.smooth > 0) {
      charts.loss.update(tx, [train.loss, smooth(train.loss, opt.smooth)], ["train loss", "smoothed"],
        undefined, { ...base, logY: opt.logY, styles: [{ stroke: "#93c5fd", width: 1 }, { stroke: COLORS[0], width: 2 }] });
    } else {
      charts.loss.update(tx, [train.loss], ["train loss"], undefined, { ...base, logY: opt.logY });
    }
    charts.lr.update(tx, [train.lr], ["lr"], fmt((v) => v.toExponential(2)), base);
    charts.tps.update(tx, [train.tps], ["tokens/s"], fmt((v) => v.toFixed(0)), base);
    const names = Object.keys(ev.sets);
    charts.ev.update(ex, names.map((n) => ev.sets[n]), names, (v, i, idx) => {
      if (v == null) return "–";
      const rel = ev.rel[names[i]][idx ?? ev.step.length - 1];
      return `${v.toFixed(3)} (${studio.pct(rel)} vs step 0)`;
    }, { ...base, logY: opt.logY });
  }

  // The run's files: the rendered report, plots, the CSV, the TensorBoard command to copy
  function files(f, metricsUrl) {
    const box = control("files");
    if (!box || !f) return;
    const base = metricsUrl.replace(/\/metrics$/, "/files/");
    const links = [];
    if (f.report) links.push(studio.el("a", { id: "report-link", href: location.pathname.replace(/\/$/, "") + "/report" }, "report"));
    for (const p of f.plots || []) links.push(studio.el("a", { href: base + "plots/" + encodeURIComponent(p) }, p));
    box.replaceChildren(...links.flatMap((a) => [" · ", a]));
    const tb = control("tensorboard");
    if (tb && f.tensorboard_command && tb.dataset.command !== f.tensorboard_command) {
      tb.dataset.command = f.tensorboard_command;
      control("tensorboard-command").textContent = f.tensorboard_command;
      tb.hidden = false;
    }
  }

  function controls(redraw, metricsUrl) {
    const csv = control("csv");
    if (csv) csv.href = metricsUrl + ".csv";
    for (const id of ["x-axis", "smooth", "log-y"]) {
      const c = control(id);
      const changed = () => {
        if (id === "smooth") control("smooth-value").textContent = c.value;
        redraw();
      };
      if (c) for (const ev of ["input", "change"]) c.addEventListener(ev, changed);
    }
    const copy = control("copy-tensorboard");
    if (copy) copy.addEventListener("click", async () => {
      const text = control("tensorboard-command").textContent;
      try { await navigator.clipboard.writeText(text); copy.textContent = "copied"; } catch (e) {
        const range = document.createRange();  // no clipboard (plain http): select it instead
        range.selectNodeContents(control("tensorboard-command"));
        getSelection().removeAllRanges(); getSelection().addRange(range);
        copy.textContent = "selected: press Ctrl+C";
      }
    });
  }

  return { chart, draw, files, controls, smooth, countAxis, MARKS };
})();
