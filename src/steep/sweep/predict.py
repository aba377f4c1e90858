"""Predict the big run from the small sweep: fit the law (``law``) on every eval of every
point (``observe``), then predict each grid point, and mixes between grid values, at a
target token count, with intervals, and recommend one within the regression budget.

Intervals: a bootstrap over points (a resampled set of points, refitted from the full fit)
plus a resampled residual of the fit, so they hold both the law's uncertainty and the
scatter of a single eval; 90% (5th to 95th percentile).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from steep.artifacts.atomic import write_text
from steep.artifacts.scores import loss_headline
from steep.config import ConfigError, RunConfig, load_config
from steep.sweep.holdout import holdout, model_error, span, stack
from steep.sweep.law import LAW_NAME, Areas, fit, law, r_squared
from steep.sweep.observe import Observations, Observed, curve, observe
from steep.sweep.pareto import pct
from steep.sweep.plan import Axis, point_ids
from steep.sweep.size import Sizes, base_at, drop_size_keys, point_params, sizes_of
from steep.sweep.state import POINTS_DIR, SWEEP_FILE, SweepError, read_sweep
from steep.workspace import CONFIG_FILE

FIT_FILE = "prediction-fit.json"  # the fitted parameters and bootstrap draws (steep plan)
N_BOOT = 60
MAX_FACTOR = 16.0  # beyond this many times the sweep's tokens: refuse without --force
WEAK_FACTOR = 4.0  # beyond this: say the prediction is weak
MIN_POINTS = 4
MIN_EVALS = 3
LR_KEY = "train.lr_fraction"


@dataclass
class SetFit:
    """One eval set's law: its best parameters, the bootstrap draws and the residuals."""

    role: str
    theta: np.ndarray
    draws: np.ndarray  # (n_boot, n_params)
    residuals: np.ndarray
    scale: float
    size_ref: float = 0.0  # parameters the law's sizes are relative to (0: one size)
    extrap: np.ndarray = field(default_factory=lambda: np.zeros(0))  # held-out last evals
    span: float = 0.0  # the token factor those errors span (``holdout.span``)
    budget: int = 0  # the sweep's tokens (the target's factor is against them)


def _fit_set(obs: list[Observed], s: str, role: str, scale: float, sizes: Sizes, boot):
    n_boot, seed = boot
    loss, base, a, idx = stack(obs, s, role, sizes)
    fixed = sizes.fixed()
    best = fit(loss, base, a, scale, fixed=fixed)
    rng = np.random.default_rng(seed)
    draws = []
    for _ in range(n_boot):
        pick = rng.integers(0, len(obs), len(obs))
        rows = np.concatenate([np.flatnonzero(idx == i) for i in pick])
        sub = a.rows(rows)
        draws.append(fit(loss[rows], base[rows], sub, scale, best.theta, fixed).theta)
    pred = law(best.theta, base, a, scale)
    ref = sizes.ref if sizes.fitted else 0.0
    return (
        SetFit(role, best.theta, np.array(draws), best.residuals, scale, ref),
        loss / base,
        pred / base,
    )


@dataclass
class Fitted:
    obs: Observations
    sets: dict[str, SetFit]
    r2: float | None
    r2_by_set: dict[str, float | None]
    holdout: dict[str, dict[str, float]]
    budget_tokens: int
    sizes: Sizes

    @property
    def base(self) -> dict[str, float]:
        """Each set's step-0 loss (the same base model under every point: their mean)."""
        return self.base_at(None)

    def base_at(self, params: int | None) -> dict[str, float]:
        """Each set's step-0 loss for a model of ``params`` parameters (``size.base_at``)."""
        pts = self.obs.points
        return base_at([o.base for o in pts], [o.params for o in pts], params)

    @property
    def holdout_error(self) -> float:
        errs = [abs(e) for d in self.holdout.values() for e in d.values()]
        return float(np.median(errs)) if errs else math.nan

    def model_error(self, factor: float) -> float | None:
        """The median size of the law's own error the intervals add at ``factor``."""
        got = [f for f in self.sets.values() if len(f.extrap)]
        if not got or factor <= 1 or got[0].span <= 1:
            return None
        grow = math.log(factor) / math.log(got[0].span)
        return float(np.median(np.abs(np.concatenate([f.extrap for f in got])))) * grow


def fit_sweep(sweep_dir: Path, n_boot: int = N_BOOT, seed: int = 0) -> Fitted:
    """The law fitted on every usable point of the sweep in ``sweep_dir``."""
    data = read_sweep(sweep_dir)
    obs = observe(sweep_dir, data["points"])
    pts = obs.points
    if sum(len(o.steps) for o in pts) < 8:
        raise SweepError(
            f"{sweep_dir}: {sum(len(o.steps) for o in pts)} evals after step 0 in all; the law "
            "has 6 parameters per eval set and needs at least 8 (more points, or a smaller "
            "train.eval_every)"
        )
    scale = max(float(o.curve.lrs.sum() * o.curve.stride) for o in pts)
    sizes = sizes_of([o.params for o in pts])
    sets, rel_obs, rel_pred, r2s = {}, [], [], {}
    for k, s in enumerate(obs.sets):
        role = pts[0].roles[s]
        sf, ro, rp = _fit_set(pts, s, role, scale, sizes, (n_boot, seed + k))
        sets[s] = sf
        rel_obs.append(ro)
        rel_pred.append(rp)
        r2s[s] = r_squared(ro, rp)
    r2 = r_squared(np.concatenate(rel_obs), np.concatenate(rel_pred))
    budget = max(max(o.tokens) for o in pts)
    held = holdout(pts, obs.sets, scale, sizes)
    for s, f in sets.items():
        f.budget, f.span = budget, span(pts)
        f.extrap = np.array([d[s] for d in held.values() if s in d])
    return Fitted(obs, sets, r2, r2s, held, budget, sizes)


def _interval(values: np.ndarray, best: float) -> dict[str, float]:
    """5th to 95th percentile of the draws, widened to hold the best fit's own value."""
    lo, hi = np.percentile(values, [5, 95])
    return {"lo": min(float(lo), best), "hi": max(float(hi), best)}


def predict_config(
    sets: dict[str, SetFit],
    base: dict[str, float],
    cfg: RunConfig,
    seed: int = 0,
    params: int | None = None,
) -> dict[str, Any]:
    """Domain and general loss, gain and regression of ``cfg`` trained as configured
    (its steps, LR fraction and mix), each with a 90% interval; ``base``: step-0 losses;
    ``params``: the model's parameter count where the law has a size term."""
    c = curve(cfg)
    roles = {s: f.role for s, f in sets.items()}
    rng = np.random.default_rng(seed)
    best: dict[str, float] = {}
    draws: dict[str, np.ndarray] = {}
    for s, f in sets.items():
        a = c.areas(f.role, [c.steps])
        if f.size_ref and params:
            a = Areas(a.own, a.other, a.anneal, params / f.size_ref)
        b = np.array([base[s]])
        best[s] = float(law(f.theta, b, a, f.scale)[0])
        per = np.array([law(t, b, a, f.scale)[0] for t in f.draws])
        noise = rng.choice(f.residuals, size=len(per)) * base[s]
        factor = c.steps * _batch(cfg) / f.budget if f.budget else 1.0
        draws[s] = per + noise + model_error(f.extrap, f.span, factor, len(per), rng) * best[s]
    n = len(next(iter(draws.values())))
    heads = [loss_headline(base, {s: draws[s][i] for s in draws}, roles) for i in range(n)]
    head = loss_headline(base, best, roles)
    out: dict[str, Any] = {"domain_share": c.mean_share, "tokens": c.steps * _batch(cfg)}
    for role in ("domain", "general"):
        names = [s for s in best if roles[s] == role]
        mean = np.mean([draws[s] for s in names], axis=0)
        loss = float(np.mean([best[s] for s in names]))
        out[role] = {"loss": loss, **_interval(mean, loss)}
    gains = np.array([h.domain_gain for h in heads], dtype=float)
    regs = np.array([h.general_regression for h in heads], dtype=float)
    out["domain_gain"] = head.domain_gain
    out["general_regression"] = head.general_regression
    out["intervals"] = {
        "domain_gain": _interval(gains, float(head.domain_gain or 0.0)),
        "general_regression": _interval(regs, float(head.general_regression or 0.0)),
    }
    return out


def _batch(cfg: RunConfig) -> int:
    return cfg.train.global_batch_tokens


def target_config(cfg: RunConfig, tokens: int) -> RunConfig:
    steps = max(1, tokens // _batch(cfg))
    return cfg.model_copy(update={"train": cfg.train.model_copy(update={"steps": steps})})


def candidates(sweep_dir: Path, data: dict[str, Any], obs: Observations):
    """(id, grid values, config, on the grid, parameters) of every usable grid point, and
    of mixes between the grid's values of a numeric axis that changes the domain share (3
    between each pair)."""
    grid = [Axis(a["key"], [str(v) for v in a["values"]]) for a in data["spec"]["grid"]]
    out = [(o.id, dict(o.values), o.cfg, True, o.params) for o in obs.points]
    shares = {o.id: round(o.curve.mean_share, 9) for o in obs.points}
    for axis in grid:
        if axis.key == LR_KEY or not _numeric(axis.values):
            continue
        by_value = {}
        for o in obs.points:
            by_value.setdefault(o.values.get(axis.key), set()).add(shares[o.id])
        if len({min(v) for v in by_value.values()}) < 2:
            continue  # this axis does not move the mix
        vals = sorted(float(v) for v in axis.values)
        for o in obs.points:
            v0 = float(o.values[axis.key])
            higher = [v for v in vals if v > v0]
            if not higher:
                continue
            for frac in (0.25, 0.5, 0.75):
                v = v0 + frac * (higher[0] - v0)
                values = {**o.values, axis.key: f"{v:.6g}"}
                try:
                    cfg = load_config(
                        sweep_dir / POINTS_DIR / o.id / CONFIG_FILE, [f"{axis.key}={v:.6g}"]
                    )
                except ConfigError:  # a value the config refuses is no candidate
                    continue
                pid = point_ids(grid, [[values[a.key] for a in grid]])[0]
                out.append((pid, values, cfg, False, o.params))
    return out


def candidates_at(sweep_dir: Path, data: dict[str, Any], fitted: Fitted, at_size: int | None):
    """The candidates at the target model size: each at its own size when ``at_size`` is
    None or swept; else those of the largest swept size, moved to ``at_size`` (their
    values without the keys that set the model)."""
    rows = candidates(sweep_dir, data, fitted.obs)
    if at_size is None or at_size in fitted.sizes.seen:
        return [r for r in rows if at_size is None or r[4] == at_size]
    grid = [Axis(a["key"], [str(v) for v in a["values"]]) for a in data["spec"]["grid"]]
    kept = [a for a in grid if a.key in drop_size_keys({a.key: "" for a in grid})]
    out = []
    for _, values, cfg, on_grid, params in rows:
        if params != max(fitted.sizes.seen):
            continue
        rest = drop_size_keys(values)
        pid = point_ids(kept, [[rest[a.key] for a in kept]])[0] + "," if kept else ""
        out.append((f"{pid}params={at_size}", rest, cfg, on_grid, at_size))
    return out


def _numeric(values: list[str]) -> bool:
    try:
        [float(v) for v in values]
    except ValueError:
        return False
    return True


def _warnings(fitted: Fitted, factor: float, n_mix: int) -> list[str]:
    """Why the prediction may be weak, plainly."""
    pts = fitted.obs.points
    out = []
    if factor > WEAK_FACTOR:
        out.append(
            f"the target is {factor:.1f}x the sweep's tokens: beyond {WEAK_FACTOR:g}x the law "
            "extrapolates further than steep has checked it (BENCHMARKS.md)"
        )
    if len(pts) < MIN_POINTS:
        out.append(
            f"only {len(pts)} usable point(s): run {MIN_POINTS - len(pts)} more for a fit "
            "the bootstrap can judge"
        )
    few = [o.id for o in pts if len(o.steps) < MIN_EVALS]
    if few:
        out.append(
            f"{len(few)} point(s) have fewer than {MIN_EVALS} evals after step 0 "
            f"({', '.join(few)}): lower train.eval_every"
        )
    if fitted.r2 is None or fitted.r2 < 0.9:
        out.append(f"the law fits badly: R^2 {_num(fitted.r2)} (below 0.9)")
    if not math.isfinite(fitted.holdout_error):
        out.append(
            "too few evals to hold each point's last one out: the fit's error on unseen "
            "evals is unknown (lower train.eval_every)"
        )
    elif fitted.holdout_error > 0.02:
        out.append(
            f"held-out last evals are off by {pct(fitted.holdout_error, signed=False)} "
            "(median): the law does not extrapolate these curves well"
        )
    if n_mix < 2:
        out.append("the grid has one mix value: the law is fitted in tokens and LR only")
    return out


def _num(x: float | None) -> str:
    return "n/a" if x is None or not math.isfinite(x) else f"{x:.3f}"


def check_target(fitted: Fitted, target: int, force: bool) -> float:
    """The extrapolation factor; SweepError beyond ``MAX_FACTOR`` unless ``force``."""
    factor = target / fitted.budget_tokens
    if factor > MAX_FACTOR and not force:
        raise SweepError(
            f"--at {target:,} tokens is {factor:.0f}x the sweep's {fitted.budget_tokens:,}: "
            f"more than {MAX_FACTOR:g}x beyond what the fit saw; give --force to predict anyway"
        )
    return factor


def predict_sweep(
    sweep_dir: Path,
    target: int,
    max_regression: float,
    force: bool = False,
    n_boot: int = N_BOOT,
    at_size: int | None = None,
) -> tuple[dict[str, Any], Fitted]:
    """The sweep's ``prediction`` object at ``target`` tokens (and, where the sweep spans
    model sizes, at ``at_size`` parameters; also written into sweep.json) and the fit (also
    saved in ``FIT_FILE`` for ``steep plan --sweep``)."""
    data = read_sweep(sweep_dir)
    fitted = fit_sweep(sweep_dir, n_boot)
    factor = check_target(fitted, target, force)
    fitted.sizes.check_target(at_size)
    rows = []
    for pid, values, cfg, on_grid, params in candidates_at(sweep_dir, data, fitted, at_size):
        base = fitted.base_at(params if fitted.sizes.fitted else None)
        pred = predict_config(fitted.sets, base, target_config(cfg, target), params=params)
        row = {"id": pid, "overrides": values, "grid_point": on_grid, **pred}
        if fitted.sizes.fitted:
            row["params"] = params
        rows.append(row)
    n_mix = len({round(o.curve.mean_share, 6) for o in fitted.obs.points})
    rec, bound = _pick(rows, max_regression)
    notes = [fitted.sizes.note(at_size)]
    if factor < 1:
        notes.append(f"the target is below the sweep's budget ({factor:.2f}x): interpolating")
    if fitted.obs.left_out:
        notes.append(
            "left out of the fit: "
            + "; ".join(f"{k} ({v})" for k, v in fitted.obs.left_out.items())
        )
    if rec is not None:
        dom = int(rec["domain_share"] * rec["tokens"])
        notes.append(
            f"the recommended run trains on {dom:,} domain tokens: if the domain sources hold "
            "fewer, it repeats them, which the fit has not seen (no sweep point repeated "
            "more than the sweep's own budget), and the predicted gain is then optimistic"
        )
    keep = ("overrides", "domain", "general", "domain_gain", "general_regression", "intervals")
    prediction = {
        "target_tokens": target,
        "budget_tokens": fitted.budget_tokens,
        "extrapolation_factor": factor,
        "law": LAW_NAME,
        "max_regression": max_regression,
        "fit": {
            "r2": fitted.r2,
            "r2_by_set": fitted.r2_by_set,
            "holdout_error": fitted.holdout_error,
            "holdout": fitted.holdout,
            "holdout_span": span(fitted.obs.points),
            "model_error": fitted.model_error(factor),
            "points": len(fitted.obs.points),
            "evals": sum(len(o.steps) for o in fitted.obs.points),
            "bootstrap": n_boot,
        },
        "points": rows,
        "recommended": None
        if rec is None
        else {"id": rec["id"], "bound": bound, **{k: rec[k] for k in keep}},
        "size": fitted.sizes.dump(at_size),
        "warnings": _warnings(fitted, factor, n_mix) + _pick_warning(bound, max_regression),
        "notes": notes,
        "left_out": fitted.obs.left_out,
    }
    data["prediction"] = prediction
    write_text(sweep_dir / SWEEP_FILE, json.dumps(data, indent=2) + "\n")
    write_text(sweep_dir / FIT_FILE, json.dumps(fit_json(fitted), indent=2) + "\n")
    return prediction, fitted


def _pick(rows: list[dict[str, Any]], max_regression: float):
    """The most predicted domain gain whose regression interval's upper bound is within
    ``max_regression`` ("upper"); when none is, the most gain whose predicted regression
    is ("central": the intervals, the law's own error included, cannot promise it)."""
    for bound, key in (("upper", lambda r: r["intervals"]["general_regression"]["hi"]),
                       ("central", lambda r: r["general_regression"])):  # fmt: skip
        within = [r for r in rows if key(r) is not None and key(r) <= max_regression]
        if within:
            return max(within, key=lambda r: r["domain_gain"]), bound
    return None, None


def _pick_warning(bound: str | None, max_regression: float) -> list[str]:
    if bound != "central":
        return []
    return [
        "no candidate's general-regression interval stays within "
        f"{pct(max_regression, signed=False)}: the pick keeps only its predicted regression "
        "within it (the interval, wide from the law's own error at this factor, does not)"
    ]


def fit_json(fitted: Fitted) -> dict[str, Any]:
    """The fit as ``steep plan --sweep`` reads it back (``load_fit``)."""
    return {
        "law": LAW_NAME,
        "budget_tokens": fitted.budget_tokens,
        "r2": fitted.r2,
        "holdout_error": fitted.holdout_error,
        "base": fitted.base,
        "base_by_point": [{"params": o.params, "base": o.base} for o in fitted.obs.points],
        "sets": {
            s: {
                "role": f.role,
                "scale": f.scale,
                "theta": f.theta.tolist(),
                "draws": f.draws.tolist(),
                "residuals": f.residuals.tolist(),
                "size_ref": f.size_ref,
                "extrap": f.extrap.tolist(),
                "span": f.span,
                "budget": f.budget,
            }
            for s, f in fitted.sets.items()
        },
    }


def load_fit(sweep_dir: Path) -> tuple[dict[str, SetFit], dict[str, float], dict[str, Any]]:
    """The fit ``predict_sweep`` saved: (sets, base losses, the whole file)."""
    path = sweep_dir / FIT_FILE
    if not path.exists():
        raise SweepError(
            f"{sweep_dir} has no fitted law ({FIT_FILE}): run `steep sweep --predict "
            f"{sweep_dir} --at TOKENS` first"
        )
    raw = json.loads(path.read_text(encoding="utf-8"))
    sets = {
        s: SetFit(
            f["role"],
            np.array(f["theta"]),
            np.array(f["draws"]).reshape(-1, len(f["theta"])),
            np.array(f["residuals"]),
            float(f["scale"]),
            float(f.get("size_ref", 0.0)),
            np.array(f.get("extrap", [])),
            float(f.get("span", 0.0)),
            int(f.get("budget", 0)),
        )
        for s, f in raw["sets"].items()
    }
    return sets, {s: float(v) for s, v in raw["base"].items()}, raw


def predict_run(sweep_dir: Path, cfg: RunConfig) -> dict[str, Any]:
    """What the sweep's saved law predicts for the run ``cfg`` as configured (its steps,
    LR fraction, mix): ``steep plan --sweep``. Says the extrapolation factor, refuses none."""
    sets, base, raw = load_fit(sweep_dir)
    params = point_params(cfg) if any(f.size_ref for f in sets.values()) else None
    if params is not None:  # the step-0 loss at the run's size, as the sweep's fit has it
        pts = raw["base_by_point"]
        base = base_at([p["base"] for p in pts], [p["params"] for p in pts], params)
    pred = predict_config(sets, base, cfg, params=params)
    pred["extrapolation_factor"] = pred["tokens"] / raw["budget_tokens"]
    pred["law"] = raw["law"]
    pred["sweep"] = str(sweep_dir)
    return pred
