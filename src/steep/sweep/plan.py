"""What a sweep runs: the grid (axes), the spec that defines a sweep, and its points.

``plan`` validates the whole grid before the first run: every key and value as ``--set``
would, then every point with steep's one preflight (base peak LR, schedule, data; the same
check ``steep validate`` runs) and that it can be scored. A typo in a grid key stops the
sweep in a second, not after hours of runs.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from steep.config import ConfigError, RunConfig, eval_set_roles, load_config
from steep.train.preflight import PreflightError, preflight

_UNSAFE = re.compile(r"[^A-Za-z0-9._+=,-]")


@dataclass
class Axis:
    key: str  # dotted config key, as for --set
    values: list[str]  # raw strings, read as YAML like --set values


@dataclass
class Spec:
    """What defines a sweep; a rerun into the same directory must match it."""

    config: str  # absolute path of the base config
    grid: list[Axis]
    sets: list[str] = field(default_factory=list)  # overrides shared by every point
    budget_tokens: int | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "config": self.config,
            "set": self.sets,
            "grid": [asdict(a) for a in self.grid],
            "budget_tokens": self.budget_tokens,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Spec:
        grid = [Axis(a["key"], [str(v) for v in a["values"]]) for a in data["grid"]]
        return cls(data["config"], grid, list(data.get("set", [])), data.get("budget_tokens"))


@dataclass
class Point:
    id: str
    values: dict[str, str]  # grid key -> raw value
    overrides: list[str]  # every --set the point's run gets (shared + grid + steps)
    steps: int
    roles: dict[str, str | None]  # eval set -> domain / general / None (not scored)


def parse_grid(items: Sequence[str]) -> list[Axis]:
    """``KEY=V1,V2,...`` per item -> axes; values are read as YAML, like ``--set``."""
    axes: list[Axis] = []
    for item in items:
        key, sep, raw = item.partition("=")
        key = key.strip()
        values = [v.strip() for v in raw.split(",")] if sep else []
        if not key or not values or any(not v for v in values):
            raise ConfigError(
                f"--grid {item!r}: expected KEY=V1,V2,..., e.g. --grid train.lr_fraction=0.03,0.1"
            )
        if key in {a.key for a in axes}:
            raise ConfigError(f"--grid {key} is given twice: list all its values in one --grid")
        if len(set(values)) != len(values):
            raise ConfigError(f"--grid {item!r}: a value is repeated")
        if key == "run.out_dir" or key.startswith("run.out_dir."):
            raise ConfigError("--grid run.out_dir: the sweep sets each point's run directory")
        axes.append(Axis(key, values))
    if not axes:
        raise ConfigError("steep sweep needs at least one --grid KEY=V1,V2,...")
    return axes


def point_ids(axes: Sequence[Axis], combos: Sequence[Sequence[str]]) -> list[str]:
    """Stable, readable ids: ``lr_fraction=0.1,domain_share=0.5`` (the last part of each key,
    or the whole key where two axes share a last part), safe as a directory name."""
    short = [a.key.rsplit(".", 1)[-1] for a in axes]
    names = short if len(set(short)) == len(short) else [a.key for a in axes]
    ids = [
        _UNSAFE.sub("_", ",".join(f"{n}={v}" for n, v in zip(names, combo, strict=True)))
        for combo in combos
    ]
    if len(set(ids)) != len(ids):  # values that differ only in unsafe characters
        ids = [f"{i:03d}-{x}" for i, x in enumerate(ids)]
    return ids


def _check(config_path: Path, overrides: list[str], what: str) -> RunConfig:
    try:
        return load_config(config_path, overrides)
    except ConfigError as exc:
        raise ConfigError(f"{what}: {exc}") from None


def plan(spec: Spec) -> list[Point]:
    """Validate the base, every grid key and every point; return the points in grid order.

    Runs before any training, so a bad key or value fails the sweep at once and names the
    valid keys (from the config's own error messages).
    """
    path = Path(spec.config)
    _check(path, list(spec.sets), "base config")
    for axis in spec.grid:  # each key alone first: the error is about that key, not a point
        for value in axis.values:
            _check(path, [*spec.sets, f"{axis.key}={value}"], f"--grid {axis.key}={value}")
    if spec.budget_tokens is not None and any(a.key == "train.steps" for a in spec.grid):
        raise ConfigError("--budget-tokens sets train.steps: do not also put it in the grid")
    if spec.budget_tokens is not None and spec.budget_tokens < 1:
        raise ConfigError(f"--budget-tokens must be positive, got {spec.budget_tokens}")
    combos = list(itertools.product(*(a.values for a in spec.grid)))
    points = []
    data_checked: set[str] = set()  # the data a point reads, once per distinct set of sources
    for pid, combo in zip(point_ids(spec.grid, combos), combos, strict=True):
        grid_sets = [f"{a.key}={v}" for a, v in zip(spec.grid, combo, strict=True)]
        overrides = [*spec.sets, *grid_sets]
        cfg = _check(path, overrides, f"point {pid}")
        if spec.budget_tokens is not None:
            steps = spec.budget_tokens // cfg.train.global_batch_tokens
            if steps < 1:
                raise ConfigError(
                    f"--budget-tokens {spec.budget_tokens:,} is less than one step of "
                    f"train.global_batch_tokens={cfg.train.global_batch_tokens:,} (point {pid})"
                )
            overrides.append(f"train.steps={steps}")
            cfg = _check(path, overrides, f"point {pid}")
        data = _data_key(cfg)
        _preflight(cfg, pid, check_data=data not in data_checked, budget=spec.budget_tokens)
        data_checked.add(data)
        _check_scorable(cfg, pid)
        values = {a.key: v for a, v in zip(spec.grid, combo, strict=True)}
        points.append(Point(pid, values, overrides, cfg.train.steps, eval_set_roles(cfg)))
    return points


def _data_key(cfg: RunConfig) -> str:
    """What the data check depends on: the sources' paths and datasets, the eval files."""
    sources = [(s.paths, s.dataset) for s in cfg.data.sources]
    return repr((sources, sorted(cfg.data.eval_sets.items())))


def _preflight(cfg: RunConfig, pid: str, *, check_data: bool, budget: int | None) -> None:
    """The check ``steep validate`` runs, for the point as it will train (one device)."""
    try:
        preflight(cfg, check_data=check_data)
    except PreflightError as exc:
        hint = " (the points' train.steps come from --budget-tokens)" if budget else ""
        raise ConfigError(
            "\n".join(
                f"point {pid}: {p}{hint if p.startswith('train.warmup') else ''}"
                for p in exc.problems
            )
        ) from None


def _check_scorable(cfg: RunConfig, pid: str) -> None:
    """A point must have held-out data of both roles, or it cannot be scored."""
    roles = eval_set_roles(cfg)
    for role in ("domain", "general"):
        if role not in roles.values():
            raise ConfigError(
                f"point {pid}: no {role} eval set to score it on. Held-out splits take their "
                f"source's role (set heldout_fraction > 0 on a {role} source), extra "
                "data.eval_sets take theirs from data.eval_roles. Eval sets now: "
                + (", ".join(f"{k} ({v or 'not scored'})" for k, v in roles.items()) or "none")
            )
