"""The rows a sweep's law is fitted on, and the fit checked on evals it did not see.

``holdout`` fits without each point's last eval and predicts it: the error the output
reports, and the law's own error that the prediction's intervals carry (``model_error``),
scaled to how far the target lies, so the intervals hold more than the bootstrap's scatter
(a fit can be precise and wrong: BENCHMARKS.md "Predicting the big run"). A check that
fits on the first half of each run was tried and left: without the anneal the fit cannot
place the annealing term, so it erred in the other direction than the extrapolation to 4x.
"""

from __future__ import annotations

import math

import numpy as np

from steep.sweep.law import PARAMS, Areas, fit, law
from steep.sweep.observe import Observed
from steep.sweep.size import Sizes


def stack(obs: list[Observed], s: str, role: str, sizes: Sizes, keep=None):
    """Losses, bases and areas of set ``s`` over ``obs``, and the point index of every
    row; ``keep(o)``: how many of point ``o``'s evals to use (default all)."""
    loss, base, idx, own, other, ann, size = [], [], [], [], [], [], []
    for i, o in enumerate(obs):
        n = len(o.steps) if keep is None else keep(o)
        a = o.curve.areas(role, o.steps[:n])
        loss += o.losses[s][:n]
        base += [o.base[s]] * n
        idx += [i] * n
        size += [sizes.rel(o.params)] * n
        own.append(a.own)
        other.append(a.other)
        ann.append(a.anneal)
    cat = np.concatenate
    a = Areas(cat(own), cat(other), cat(ann), np.array(size))
    return np.array(loss), np.array(base), a, np.array(idx)


def _last_errors(obs, s, role, scale, sizes, keep) -> dict[str, float] | None:
    """Fit on ``keep`` evals of every point, predict each point's last eval: relative
    errors ``(predicted - observed) / observed``; None with too few rows to fit."""
    loss, base, a, _ = stack(obs, s, role, sizes, keep)
    if len(loss) <= len(PARAMS) - len(sizes.fixed()):
        return None
    theta = fit(loss, base, a, scale, fixed=sizes.fixed()).theta
    out = {}
    for o in obs:
        last = o.curve.areas(role, o.steps[-1:])
        last = Areas(last.own, last.other, last.anneal, sizes.rel(o.params))
        got = float(law(theta, np.array([o.base[s]]), last, scale)[0])
        out[o.id] = (got - o.losses[s][-1]) / o.losses[s][-1]
    return out


def holdout(obs: list[Observed], sets: list[str], scale: float, sizes: Sizes):
    """Each point's last eval left out of the fit, then predicted: point -> set -> error."""
    out: dict[str, dict[str, float]] = {o.id: {} for o in obs}
    for s in sets:
        errs = _last_errors(obs, s, obs[0].roles[s], scale, sizes, lambda o: len(o.steps) - 1)
        if errs is None:  # too few evals left to fit without the last ones
            return {}
        for pid, e in errs.items():
            out[pid][s] = e
    return out


def span(obs: list[Observed]) -> float:
    """How far the held-out last eval lies past the fit's last one, in tokens (median over
    points: with an eval every k steps of an n-step run, n / (n - k))."""
    got = [o.steps[-1] / o.steps[-2] for o in obs if len(o.steps) > 1]
    return float(np.median(got)) if got else 0.0


def model_error(errors: np.ndarray, span: float, factor: float, n: int, rng) -> np.ndarray:
    """``n`` draws of the law's own relative error at ``factor`` x the sweep's tokens: the
    held-out last evals' errors (over a ``span`` x extrapolation), resampled with either
    sign and scaled by how much further the target lies, ``log(factor) / log(span)``;
    none at or below 1x. Either sign: the direction the law errs at the sweep's budget
    did not carry to 4x in BENCHMARKS.md."""
    if factor <= 1 or len(errors) == 0 or span <= 1:
        return np.zeros(n)
    sign = rng.choice([-1.0, 1.0], size=n)
    return sign * rng.choice(np.abs(errors), size=n) * math.log(factor) / math.log(span)
