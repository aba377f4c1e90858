// steep studio: the Compare page's trade-off plot (#33). Each compared run (or sweep point)
// is a square at (general regression, domain gain), the numbers the table shows; each merge
// curve of a compared run's model (routes/compare.py's "merges", steep.studio.merge_points)
// is a dashed line of its alphas in the run's colour, a saved merge drawn large and named.
// Both come from the server's one scorer (steep.artifacts.scores), against the run's step 0.
// Drawn as SVG through the DOM (no inline script under the CSP); names go in as text.
"use strict";

const tradeoff = (() => {
  const NS = "http://www.w3.org/2000/svg";
  const W = 640, H = 360, M = { l: 64, r: 20, t: 14, b: 46 };

  function svg(tag, attrs, text) {
    const node = document.createElementNS(NS, tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v !== null && v !== undefined) node.setAttribute(k, String(v));
    }
    if (text !== undefined) node.textContent = text;
    return node;
  }

  // about n round ticks over [lo, hi]
  function ticks(lo, hi, n) {
    const raw = (hi - lo) / n;
    const mag = 10 ** Math.floor(Math.log10(raw));
    const step = [1, 2, 5, 10].map((m) => m * mag).find((s) => s >= raw) || raw;
    const out = [];
    for (let v = Math.ceil(lo / step) * step; v <= hi + 1e-9; v += step) out.push(+v.toFixed(10));
    return out;
  }

  const finite = (v) => typeof v === "number" && Number.isFinite(v);
  const pctText = (v) => (v >= 0 ? "+" : "") + v.toFixed(2) + "%";

  // every point the plot shows: runs first, then each merge curve's alphas
  function points(runs, merges) {
    const pts = runs.filter((r) => finite(r.general_regression) && finite(r.domain_gain))
      .map((r) => ({ kind: "run", run: r.name, x: 100 * r.general_regression, y: 100 * r.domain_gain }));
    const curves = (merges || []).map((m) => m.points
      .filter((p) => finite(p.general_regression) && finite(p.domain_gain))
      .map((p) => ({ kind: "merge", run: m.run, method: m.method, key: m.key, alpha: p.x,
        saved: p.saved || [], x: 100 * p.general_regression, y: 100 * p.domain_gain })));
    return { pts, curves };
  }

  function draw(runs, colors, merges) {
    const fig = document.getElementById("tradeoff");
    const box = document.getElementById("tradeoff-plot");
    if (!fig || !box) return;
    const color = new Map(runs.map((r, i) => [r.name, colors[i]]));
    const { pts, curves } = points(runs, merges);
    const all = [...pts, ...curves.flat()];
    if (!all.length) { fig.hidden = true; return; }
    const xs = [0, ...all.map((p) => p.x)], ys = [0, ...all.map((p) => p.y)];
    const pad = (lo, hi) => { const d = (hi - lo) || 1; return [lo - 0.08 * d, hi + 0.08 * d]; };
    const [x0, x1] = pad(Math.min(...xs), Math.max(...xs));
    const [y0, y1] = pad(Math.min(...ys), Math.max(...ys));
    const px = (x) => M.l + ((x - x0) / (x1 - x0)) * (W - M.l - M.r);
    const py = (y) => H - M.b - ((y - y0) / (y1 - y0)) * (H - M.t - M.b);
    const root = svg("svg", { viewBox: `0 0 ${W} ${H}`, width: "100%", role: "img",
      "aria-label": "domain gain against general regression" });
    for (const t of ticks(x0, x1, 6)) {
      root.append(svg("line", { x1: px(t), x2: px(t), y1: M.t, y2: H - M.b, stroke: t === 0 ? "#999" : "#eee" }),
        svg("text", { x: px(t), y: H - M.b + 14, "text-anchor": "middle", "font-size": 10 }, pctText(t)));
    }
    for (const t of ticks(y0, y1, 5)) {
      root.append(svg("line", { x1: M.l, x2: W - M.r, y1: py(t), y2: py(t), stroke: t === 0 ? "#999" : "#eee" }),
        svg("text", { x: M.l - 4, y: py(t) + 3, "text-anchor": "end", "font-size": 10 }, pctText(t)));
    }
    root.append(svg("text", { x: (M.l + W - M.r) / 2, y: H - 8, "text-anchor": "middle", "font-size": 11 },
      "general regression (%; right = more forgetting)"),
    svg("text", { x: 14, y: (M.t + H - M.b) / 2, "text-anchor": "middle", "font-size": 11,
      transform: `rotate(-90 14 ${(M.t + H - M.b) / 2})` }, "domain gain (%; up = better)"));
    for (const curve of curves) {
      if (!curve.length) continue;
      const c = color.get(curve[0].run) || "#555";
      root.append(svg("polyline", { points: curve.map((p) => `${px(p.x)},${py(p.y)}`).join(" "),
        fill: "none", stroke: c, "stroke-width": 1.5, "stroke-dasharray": "4 3" }));
      for (const p of curve) {
        const saved = p.saved.length > 0;
        const dot = svg("circle", { cx: px(p.x), cy: py(p.y), r: saved ? 7 : 4, fill: saved ? c : "#fff",
          stroke: c, "stroke-width": 1.5, "data-kind": "merge", "data-run": p.run, "data-method": p.method,
          "data-alpha": p.alpha, "data-saved": saved ? p.saved.join(",") : null,
          "data-x": p.x.toFixed(4), "data-y": p.y.toFixed(4) });
        dot.append(svg("title", {}, `${p.run}: ${p.method} ${p.key} ${p.alpha}` +
          (saved ? ` (saved as ${p.saved.join(", ")})` : "") + `: domain gain ${pctText(p.y)}, general regression ${pctText(p.x)}`));
        root.append(dot, svg("text", { x: px(p.x) + 6, y: py(p.y) - 6, "font-size": 9, fill: c },
          `${p.key === "weight" ? "w" : "α"}=${p.alpha}` + (saved ? ` ${p.saved.join(", ")}` : "")));
      }
    }
    for (const p of pts) {
      const c = color.get(p.run) || "#555";
      const sq = svg("rect", { x: px(p.x) - 5, y: py(p.y) - 5, width: 10, height: 10, fill: c,
        "data-kind": "run", "data-run": p.run, "data-x": p.x.toFixed(4), "data-y": p.y.toFixed(4) });
      sq.append(svg("title", {}, `${p.run}: domain gain ${pctText(p.y)}, general regression ${pctText(p.x)}`));
      root.append(sq, svg("text", { x: px(p.x) + 7, y: py(p.y) + 12, "font-size": 10 }, p.run));
    }
    box.replaceChildren(root);
    fig.hidden = false;
  }

  return { draw, points };
})();
