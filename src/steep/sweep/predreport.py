"""The prediction in words and a picture: results.md's "Prediction" section, prediction.png.

``steep sweep --predict-at`` and ``steep sweep --predict DIR --at`` both end here, so a
refit replaces the section (everything from its heading on) and the plot.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from steep.artifacts.atomic import write_text
from steep.sweep.law import law
from steep.sweep.observe import curve
from steep.sweep.pareto import pct
from steep.sweep.predict import WEAK_FACTOR, Fitted, predict_sweep, target_config
from steep.sweep.report import RESULTS_FILE

PREDICTION_PLOT = "prediction.png"
HEADING = "## Prediction"


def _iv(x: dict[str, float], key: str | None = None) -> str:
    if key is None:
        return f"{x['loss']:.4f} [{x['lo']:.4f}, {x['hi']:.4f}]"
    v, lo, hi = x[key], x["intervals"][key]["lo"], x["intervals"][key]["hi"]
    return f"{pct(v)} [{pct(lo)}, {pct(hi)}]"


def lines(pred: dict[str, Any]) -> list[str]:
    """The prediction as text: target, law, fit quality, the pick, warnings."""
    fit, rec = pred["fit"], pred["recommended"]
    r2 = "n/a" if fit["r2"] is None else f"{fit['r2']:.4f}"
    err = fit["holdout_error"]
    held = "n/a" if err is None or err != err else pct(err, signed=False)  # NaN: none held out
    out = [
        f"- target: {pred['target_tokens']:,} tokens, {pred['extrapolation_factor']:.2f}x the "
        f"sweep's {pred['budget_tokens']:,}",
        f"- law: {pred['law']}",
        f"- fit: R^2 {r2} on {fit['evals']} evals of {fit['points']} points; each point's last "
        f"eval held out and predicted: median error {held}",
        f"- intervals: 90%, bootstrap over points ({fit['bootstrap']} refits) plus residuals"
        + _model_error(fit),
    ]
    if rec is None:
        out.append(
            "- **no recommendation**: no candidate keeps the upper bound of general "
            f"regression within {pct(pred['max_regression'], signed=False)}"
        )
    else:
        sets = ", ".join(f"{k}={v}" for k, v in rec["overrides"].items())
        out.append(
            f"- **recommended at the target: {sets}**: domain gain {_iv(rec, 'domain_gain')}, "
            f"general regression {_iv(rec, 'general_regression')} "
            f"({'upper bound' if rec.get('bound', 'upper') == 'upper' else 'predicted value'} "
            f"within {pct(pred['max_regression'], signed=False)})"
        )
    out += [f"- **warning**: {w}" for w in pred["warnings"]]
    out += [f"- note: {n}" for n in pred["notes"]]
    return out


def _model_error(fit: dict[str, Any]) -> str:
    err = fit.get("model_error")
    if err is None:
        return ""
    return (
        f" plus the law's own error: the held-out last evals' error, grown by log(target "
        f"factor) / log({fit['holdout_span']:.2f}) (the held-out eval's factor): "
        f"{pct(err, signed=False)} (median) at the target, either sign"
    )


def markdown(pred: dict[str, Any], plot: Path | None) -> str:
    rows = [
        "| point | domain share | domain loss | general loss | domain gain | general regr. |",
        "|---|---|---|---|---|---|",
    ]
    for p in pred["points"]:
        name = p["id"] + ("" if p["grid_point"] else " (between grid values)")
        rows.append(
            f"| {name} | {p['domain_share']:.3g} | {_iv(p['domain'])} | {_iv(p['general'])} | "
            f"{_iv(p, 'domain_gain')} | {_iv(p, 'general_regression')} |"
        )
    text = [HEADING, "", *lines(pred), "", *rows]
    if plot is not None:
        text += ["", f"![Prediction]({plot.name})"]
    return "\n".join(text) + "\n"


def write_section(sweep_dir: Path, pred: dict[str, Any], plot: Path | None) -> None:
    """Replace results.md's Prediction section (or add it)."""
    path = sweep_dir / RESULTS_FILE
    old = path.read_text(encoding="utf-8") if path.exists() else "# steep sweep\n"
    head = old.split("\n" + HEADING, 1)[0].rstrip("\n")
    write_text(path, head + "\n\n" + markdown(pred, plot))


def _fitted(fitted: Fitted, base, names: list[str], role: str, c, steps) -> np.ndarray:
    """The law's mean loss over the role's sets ``names`` along the schedule ``c``."""
    a = c.areas(role, steps)
    n = len(steps)
    return np.mean(
        [law(fitted.sets[s].theta, np.full(n, base[s]), a, fitted.sets[s].scale) for s in names],
        axis=0,
    )


def plot(fitted: Fitted, pred: dict[str, Any], path: Path) -> Path:
    """Per role: observed evals, the fitted law along each run and along the target's
    schedule, the target's interval, and the recommended point."""
    # deferred: matplotlib loads only when a plot is drawn
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(12, 5), dpi=110)
    FigureCanvasAgg(fig)
    target = pred["target_tokens"]
    by_id = {p["id"]: p for p in pred["points"]}
    rec = (pred["recommended"] or {}).get("id")
    for k, role in enumerate(("domain", "general")):
        ax = fig.add_subplot(1, 2, k + 1)
        ax.set_title(f"{role} loss (mean of the {role} sets)")
        ax.set_xlabel("tokens")
        ax.set_xscale("log")
        names = [s for s, f in fitted.sets.items() if f.role == role]
        for i, o in enumerate(fitted.obs.points):
            color = f"C{i % 10}"
            obs = np.mean([o.losses[s] for s in names], axis=0)
            ax.plot(o.tokens, obs, "o", color=color, ms=3)
            batch = o.cfg.train.global_batch_tokens
            for c, style in ((o.curve, "-"), (curve(target_config(o.cfg, target)), "--")):
                steps = np.unique(np.geomspace(1, c.steps, 60).astype(int))
                ax.plot(steps * batch, _fitted(fitted, o.base, names, role, c, steps), style,
                        color=color, lw=0.8)  # fmt: skip
            p = by_id.get(o.id)
            if p is not None:
                y = p[role]
                ax.errorbar(
                    [target],
                    [y["loss"]],
                    [[y["loss"] - y["lo"]], [y["hi"] - y["loss"]]],
                    fmt="_",
                    color=color,
                    capsize=3,
                )
        if rec in by_id:
            ax.plot([target], [by_id[rec][role]["loss"]], "*", ms=14, color="gold", mec="k")
        ax.axvline(pred["budget_tokens"], color="0.5", lw=0.8, ls=":")
        ax.axvline(target, color="C3", lw=0.8)
        ax.grid(True, alpha=0.3)
    fig.text(
        0.5,
        0.01,
        "dots: evals; lines: the law on each point's own schedule, dashes: on the target's; bars: 90% "
        "intervals at the target (red line); star: recommended; dotted: sweep budget",
        ha="center",
        fontsize=8,
    )
    tmp = path.with_name(f".{path.name}.tmp")
    fig.savefig(tmp, format="png")
    os.replace(tmp, path)
    return path


def run_prediction(sweep_dir: Path, *args: Any, **kwargs: Any) -> dict[str, Any]:
    """Fit, predict (``predict_sweep``'s arguments), write results.md's section,
    prediction.png and sweep.json; print it."""
    pred, fitted = predict_sweep(sweep_dir, *args, **kwargs)
    target = pred["target_tokens"]
    png = plot(fitted, pred, sweep_dir / PREDICTION_PLOT)
    write_section(sweep_dir, pred, png)
    print(f"prediction at {target:,} tokens:")
    for line in lines(pred):
        print("  " + line.removeprefix("- ").replace("**", ""))
    print(f"prediction: {sweep_dir / RESULTS_FILE}")
    return pred


def run_lines(pred: dict[str, Any]) -> list[str]:
    """``steep plan --sweep``'s lines: the run's predicted gain and regression."""
    factor = pred["extrapolation_factor"]
    weak = f" (beyond {WEAK_FACTOR:g}x: weak)" if factor > WEAK_FACTOR else ""
    return [
        f"predicted (the CPT law fitted on sweep {pred['sweep']}, 90% intervals)",
        f"  domain gain               {_iv(pred, 'domain_gain')}",
        f"  general regression        {_iv(pred, 'general_regression')}",
        f"  domain loss               {_iv(pred['domain'])}",
        f"  general loss              {_iv(pred['general'])}",
        f"  {pred['tokens']:,} tokens: {factor:.1f}x the sweep's{weak}",
    ]
