"""What a sweep's law is fitted on: every eval of every finished point, with its schedule.

Each point's run folder holds the config it trained with (``config.yaml``) and its
``metrics.jsonl`` (the step-0 baseline and every eval, with tokens). The LR at every step
and the domain share of every step come from that config through steep's own schedule
(``steep.train.schedule``) and mix (``steep.config.phase_weights``), so the areas a fit sees
are the ones a run with that config trains on, and a prediction for a longer run uses the
same functions with more steps.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from steep.artifacts.metrics import read_metrics
from steep.config import RunConfig, load_config
from steep.config.schema import phase_weights, source_role
from steep.errors import ConfigError
from steep.sweep.law import Areas, areas
from steep.sweep.size import point_params
from steep.sweep.state import SweepError
from steep.train.schedule import schedule_for
from steep.workspace import CONFIG_FILE, METRICS_FILE

MAX_SAMPLES = 50_000  # a long target's schedule is summed in at most this many strides


@dataclass
class Curve:
    """A schedule sampled every ``stride`` steps: the LR and the domain share there."""

    lrs: np.ndarray
    domain_share: np.ndarray
    stride: int
    steps: int

    def areas(self, role: str, at_steps: list[int] | np.ndarray) -> Areas:
        shares = self.domain_share if role == "domain" else 1.0 - self.domain_share
        at = np.asarray(at_steps, dtype=float) / self.stride
        a = areas(self.lrs, shares, np.floor(at).astype(int), decay_steps=self.stride)
        return Areas(a.own * self.stride, a.other * self.stride, a.anneal * self.stride)

    @property
    def mean_share(self) -> float:
        return float(self.domain_share.mean())


def curve(cfg: RunConfig, steps: int | None = None) -> Curve:
    """The LR (in units of the base's peak: ``lr_fraction`` x the schedule's shape) and the
    domain share of each step of ``cfg`` trained for ``steps`` (default its own)."""
    if steps is not None and steps != cfg.train.steps:
        cfg = cfg.model_copy(update={"train": cfg.train.model_copy(update={"steps": steps})})
    total = cfg.train.steps
    sched = schedule_for(cfg.train, cfg.train.lr_fraction)
    stride = max(1, math.ceil(total / MAX_SAMPLES))
    at = np.arange(0, total, stride)
    lrs = np.array([sched.lr(int(min(total - 1, s + stride // 2))) for s in at])
    domain = [source_role(s) == "domain" for s in cfg.data.sources]
    share = np.zeros(len(at))
    for _, first, weights in phase_weights(cfg):  # later phases overwrite from their start
        total_w = sum(weights)
        dom = sum(w for w, d in zip(weights, domain, strict=True) if d)
        share[at >= first] = dom / total_w if total_w > 0 else 0.0
    return Curve(lrs, share, stride, total)


@dataclass
class Observed:
    """One finished point as the fit sees it."""

    id: str
    values: dict[str, str]
    cfg: RunConfig
    roles: dict[str, str | None]
    base: dict[str, float]  # set -> step-0 loss
    steps: list[int]  # eval steps after 0
    tokens: list[int]
    losses: dict[str, list[float]]  # set -> loss at each of ``steps``
    params: int | None = None  # the model's parameter count (``steep.sweep.size``)
    curve: Curve = field(init=False)

    def __post_init__(self) -> None:
        self.curve = curve(self.cfg)


@dataclass
class Observations:
    points: list[Observed]
    left_out: dict[str, str]  # point id -> why
    sets: list[str]  # the scored eval sets, the same for every point


def _observe(sweep_dir: Path, p: dict[str, Any]) -> Observed | str:
    """The point's evals, or why it cannot be used."""
    if p.get("status") != "finished":
        return f"status {p.get('status')}"
    run = sweep_dir / p["run_dir"]
    try:
        cfg = load_config(run / CONFIG_FILE)
        _, evals = read_metrics(run / METRICS_FILE)
    except (OSError, ConfigError) as exc:
        return f"unreadable run folder: {exc}"
    roles = {k: v for k, v in (p.get("roles") or {}).items() if v in ("domain", "general")}
    if not evals or evals[0]["step"] != 0:
        return "no step-0 baseline eval"
    base = {s: v["loss"] for s, v in evals[0]["sets"].items() if s in roles}
    later = [e for e in evals if e["step"] > 0]
    if not later:
        return "no eval after step 0"
    losses = {s: [e["sets"].get(s, {}).get("loss", math.nan) for e in later] for s in base}
    bad = sorted(s for s in base if not _finite_all(base, losses, s))
    if bad:
        return f"non-finite loss on {', '.join(bad)}"
    return Observed(
        p["id"],
        dict(p.get("values") or {}),
        cfg,
        {s: roles[s] for s in base},
        base,
        [e["step"] for e in later],
        [int(e.get("tokens") or e["step"] * cfg.train.global_batch_tokens) for e in later],
        losses,
        point_params(cfg),
    )


def _finite_all(base: dict[str, float], losses: dict[str, list[float]], s: str) -> bool:
    vals = [base[s], *losses[s]]
    return all(isinstance(v, (int, float)) and math.isfinite(v) and v > 0 for v in vals)


def observe(sweep_dir: Path, points: list[dict[str, Any]]) -> Observations:
    """Every usable point; failed or non-finite ones are left out with the reason. Points
    scored on different eval sets cannot share one fit: SweepError names them."""
    used: list[Observed] = []
    left: dict[str, str] = {}
    for p in points:
        got = _observe(sweep_dir, p)
        if isinstance(got, str):
            left[p["id"]] = got
        else:
            used.append(got)
    if not used:
        raise SweepError(
            f"{sweep_dir}: no finished point with evals to fit a law on"
            + (f" (left out: {'; '.join(f'{k}: {v}' for k, v in left.items())})" if left else "")
        )
    first = used[0]
    for o in used[1:]:
        if sorted(o.base) != sorted(first.base) or o.roles != first.roles:
            raise SweepError(
                f"{sweep_dir}: points were scored on different eval sets, one law cannot fit "
                f"them: {first.id} has {_sets(first)}, {o.id} has {_sets(o)}"
            )
    for role in ("domain", "general"):
        if role not in first.roles.values():
            raise SweepError(f"{sweep_dir}: no {role} eval set to fit a law on")
    return Observations(used, left, sorted(first.base))


def _sets(o: Observed) -> str:
    return ", ".join(f"{s} ({o.roles[s]})" for s in sorted(o.base)) or "none"
