"""``steep sweep``: short runs over a grid of settings, then the point to pick and why.

Every point is a normal ``steep train`` run in its own subprocess (so a crash or an
out-of-memory in one point cannot take the sweep down) with the point's ``--set``
overrides, in ``SWEEP_DIR/points/<id>/``. The whole grid is validated before the first
run: a typo in a grid key stops the sweep in a second, not after hours of runs.

The sweep resumes: rerun the same command with ``--out SWEEP_DIR`` (or ``steep sweep
--resume SWEEP_DIR``) and points with a saved model are skipped, points with a checkpoint
continue from it (``steep train --resume``), and the rest start again. ``sweep.json`` is
rewritten atomically after every point, so it always says where the sweep stands.

On CPU the points run one after another (each already uses every core); with several
CUDA GPUs visible, one point per GPU runs at a time (``CUDA_VISIBLE_DEVICES``). A thread
pool of subprocesses is enough for that; Ray Tune or Optuna would add a scheduler, a
database and their own result format for what is a fixed grid of a dozen runs.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import math
import os
import queue
import re
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from steep.artifacts.atomic import write_text
from steep.config import ConfigError, RunConfig, eval_set_roles, load_config
from steep.errors import SteepError
from steep.sweep.pareto import DEFAULT_MAX_REGRESSION, Recommendation, Scored, pct, plot_pareto
from steep.sweep.pareto import recommend as pick
from steep.workspace import steep_home

FORMAT = "steep-sweep"
VERSION = 1
SWEEP_FILE = "sweep.json"
RESULTS_FILE = "results.md"
PLOT_FILE = "pareto.png"
MODEL_MARKER = Path("model") / "steep.json"  # a point is done once its model is saved
_UNSAFE = re.compile(r"[^A-Za-z0-9._+=,-]")


class SweepError(SteepError, ValueError):
    """A sweep that cannot start or continue; the message says why and what to do."""


# --------------------------------------------------------------------------- the plan


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
    base = _check(path, list(spec.sets), "base config")
    for axis in spec.grid:  # each key alone first: the error is about that key, not a point
        for value in axis.values:
            _check(path, [*spec.sets, f"{axis.key}={value}"], f"--grid {axis.key}={value}")
    if spec.budget_tokens is not None and any(a.key == "train.steps" for a in spec.grid):
        raise ConfigError("--budget-tokens sets train.steps: do not also put it in the grid")
    if spec.budget_tokens is not None and spec.budget_tokens < 1:
        raise ConfigError(f"--budget-tokens must be positive, got {spec.budget_tokens}")
    combos = list(itertools.product(*(a.values for a in spec.grid)))
    points = []
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
        _check_schedule(cfg, pid)
        _check_scorable(cfg, pid)
        values = {a.key: v for a, v in zip(spec.grid, combo, strict=True)}
        points.append(Point(pid, values, overrides, cfg.train.steps, eval_set_roles(cfg)))
    _check_base_lr(base)
    return points


def _check_schedule(cfg: RunConfig, pid: str) -> None:
    """The schedule the loop will build must fit the point's (often short) run."""
    from steep.train.schedule import Schedule, warmup_steps_for

    t = cfg.train
    try:
        Schedule(
            kind=t.schedule,
            max_lr=1.0,
            total_steps=t.steps,
            warmup_steps=warmup_steps_for(t.steps, t.warmup_steps, t.warmup_fraction),
            min_lr_ratio=t.min_lr_ratio,
            decay_fraction=t.decay_fraction,
        )
    except ValueError as exc:
        raise ConfigError(
            f"point {pid}: {exc}; lower train.warmup_steps (e.g. --set train.warmup_steps=1) "
            "or give each point more steps (--budget-tokens)"
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


def _check_base_lr(cfg: RunConfig) -> None:
    """Refuse an unknown base peak LR here, not once per point."""
    from steep.train.loop import resolve_max_lr

    try:
        resolve_max_lr(cfg)
    except ValueError as exc:  # UnknownBaseLR is one
        raise ConfigError(f"base config: {exc}") from None


# --------------------------------------------------------------------------- the state


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


class State:
    """sweep.json in memory; every change is written through, atomically, under a lock."""

    def __init__(self, root: Path, data: dict[str, Any]):
        self.root = root
        self.data = data
        self._lock = threading.Lock()

    @property
    def points(self) -> list[dict[str, Any]]:
        return self.data["points"]

    def point(self, pid: str) -> dict[str, Any]:
        return next(p for p in self.points if p["id"] == pid)

    def update(self, pid: str | None = None, **fields: Any) -> None:
        with self._lock:
            target = self.point(pid) if pid is not None else self.data
            target.update(fields)
            self.data["updated"] = _now()
            write_text(self.root / SWEEP_FILE, json.dumps(self.data, indent=2) + "\n")


def open_sweep(spec: Spec, points: list[Point], out: Path | None, max_regression: float) -> State:
    """Create the sweep directory, or reopen it when it holds this same sweep."""
    cfg_path = Path(spec.config)
    if out is None:
        name = load_config(cfg_path, spec.sets).run.name
        out = steep_home() / "sweeps" / f"{name}-{datetime.now().strftime('%Y%m%d-%H%M%S')}"
    out = out.resolve()
    old = None
    if (out / SWEEP_FILE).exists():
        old = json.loads((out / SWEEP_FILE).read_text(encoding="utf-8"))
        if Spec.from_json(old["spec"]).to_json() != spec.to_json():
            raise SweepError(
                f"{out} holds another sweep ({old['spec']['config']}, grid "
                f"{[a['key'] for a in old['spec']['grid']]}); use another --out, or "
                f"`steep sweep --resume {out}` to continue that one"
            )
        if old.get("config_sha256") != _sha256(cfg_path):
            print(
                f"warning: {cfg_path} changed since this sweep started; finished points "
                "keep the results of the old config",
                file=sys.stderr,
            )
    elif out.exists() and any(out.iterdir()):
        raise SweepError(f"{out} exists and is not a sweep directory: choose another --out")
    (out / "points").mkdir(parents=True, exist_ok=True)
    (out / "logs").mkdir(exist_ok=True)
    previous = {p["id"]: p for p in (old or {}).get("points", [])}
    data = {
        "format": FORMAT,
        "version": VERSION,
        "created": (old or {}).get("created", _now()),
        "updated": _now(),
        "spec": spec.to_json(),
        "config_sha256": _sha256(cfg_path),
        "max_regression": max_regression,
        "points": [
            {
                **previous.get(p.id, {}),
                "id": p.id,
                "values": p.values,
                "overrides": p.overrides,
                "steps": p.steps,
                "roles": p.roles,
                "run_dir": f"points/{p.id}",
                "log": f"logs/{p.id}.log",
                "status": previous.get(p.id, {}).get("status", "pending"),
            }
            for p in points
        ],
        "recommendation": None,
    }
    state = State(out, data)
    state.update()
    return state


def load_spec(sweep_dir: Path) -> Spec:
    path = sweep_dir / SWEEP_FILE
    if not path.exists():
        raise SweepError(f"{sweep_dir} is not a sweep directory (no {SWEEP_FILE})")
    data = json.loads(path.read_text(encoding="utf-8"))
    if data.get("format") != FORMAT:
        raise SweepError(f"{path} is not a steep sweep file")
    return Spec.from_json(data["spec"])


# --------------------------------------------------------------------------- running


def _devices(cfg: RunConfig) -> list[str | None]:
    """GPU ids to run points on, one point each; [None] = one at a time, devices as they are."""
    if cfg.train.device == "cpu":
        return [None]
    import torch

    n = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if n < 2:
        return [None]
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    ids = [v.strip() for v in visible.split(",")] if visible else [str(i) for i in range(n)]
    return list(ids[:n])


def _yaml_quote(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _command(config: str, point: dict[str, Any], run_dir: Path, resume: bool) -> list[str]:
    base = [sys.executable, "-m", "steep", "train"]
    if resume:
        return [*base, "--resume", str(run_dir)]
    sets = [*point["overrides"], f"run.out_dir={_yaml_quote(str(run_dir))}"]
    return [*base, config, *(a for s in sets for a in ("--set", s)), "--out", str(run_dir)]


def _prepare(run_dir: Path) -> str:
    """'done', 'resume' (a checkpoint to continue from) or 'fresh' (any partial run cleared)."""
    if (run_dir / MODEL_MARKER).exists():
        return "done"
    if run_dir.exists():
        from steep.train.checkpoint import latest_checkpoint

        if latest_checkpoint(run_dir / "checkpoints") is not None:
            return "resume"
        shutil.rmtree(run_dir)  # died before its first checkpoint: nothing worth keeping
    return "fresh"


def score_point(run_dir: Path, roles: dict[str, str | None]) -> dict[str, Any]:
    """Per-set change vs step 0 at the final eval, and the point's two numbers."""
    from steep.train.report import eval_table, read_metrics

    _, evals = read_metrics(run_dir / "metrics.jsonl")
    sets = {
        r["set"]: {
            "role": roles.get(r["set"]),
            "base_loss": r["base_loss"],
            "final_loss": r["final_loss"],
            "rel_change": r["rel_change"],
            "step": r["final_step"],
        }
        for r in eval_table(evals)
    }

    def mean_change(role: str) -> float | None:
        vals = [s["rel_change"] for s in sets.values() if s["role"] == role]
        vals = [v for v in vals if math.isfinite(v)]
        return sum(vals) / len(vals) if vals else None

    domain, general = mean_change("domain"), mean_change("general")
    return {
        "sets": sets,
        "domain_gain": -domain if domain is not None else None,
        "general_regression": general,
    }


def _tail(path: Path, lines: int = 5) -> str:
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return ""
    shown = [ln for ln in text.splitlines() if ln.strip()]  # also splits progress-bar \r
    return "\n".join("    " + ln for ln in shown[-lines:])


def _run_point(state: State, pid: str, device: str | None, counter: _Counter) -> None:
    point = state.point(pid)
    run_dir = state.root / point["run_dir"]
    log_path = state.root / point["log"]
    mode = _prepare(run_dir)
    n = counter.next()
    total = counter.total
    if mode == "done":
        state.update(pid, status="finished", **score_point(run_dir, point["roles"]))
        _progress(state, pid, f"[{n}/{total}] {pid}: already finished, skipped")
        return
    where = f" on GPU {device}" if device is not None else ""
    verb = "resuming" if mode == "resume" else "running"
    print(f"[{n}/{total}] {pid}: {verb} ({point['steps']} steps){where}", flush=True)
    state.update(pid, status="running", device=device, started=_now())
    cmd = _command(state.data["spec"]["config"], point, run_dir, resume=mode == "resume")
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    if device is not None:
        env["CUDA_VISIBLE_DEVICES"] = device
    started = time.perf_counter()
    with open(log_path, "a", encoding="utf-8") as log:
        log.write(f"# {_now()} steep sweep {verb}: {' '.join(cmd)}\n")
        log.flush()
        rc = subprocess.run(cmd, stdout=log, stderr=subprocess.STDOUT, env=env).returncode
    seconds = round(time.perf_counter() - started, 1)
    if rc == 0 and (run_dir / MODEL_MARKER).exists():
        scores = score_point(run_dir, point["roles"])
        state.update(pid, status="finished", returncode=rc, seconds=seconds, **scores)
        _progress(state, pid, f"[{n}/{total}] {pid}: finished in {seconds:.0f}s")
    else:
        state.update(pid, status="failed", returncode=rc, seconds=seconds)
        print(
            f"[{n}/{total}] {pid}: FAILED (exit {rc}) after {seconds:.0f}s; log {log_path}\n"
            + _tail(log_path),
            flush=True,
        )


def _progress(state: State, pid: str, head: str) -> None:
    p = state.point(pid)
    gain, reg = p.get("domain_gain"), p.get("general_regression")
    if gain is not None and reg is not None:
        head += f": domain {pct(-gain)}, general {pct(reg)}"
    print(head, flush=True)


class _Counter:
    def __init__(self, total: int):
        self.total, self._n, self._lock = total, 0, threading.Lock()

    def next(self) -> int:
        with self._lock:
            self._n += 1
            return self._n


def _run_all(state: State, devices: list[str | None]) -> None:
    ids = [p["id"] for p in state.points]
    counter = _Counter(len(ids))
    if len(devices) == 1:
        for pid in ids:
            _run_point(state, pid, devices[0], counter)
        return
    # the first point to train runs alone so it fills the shared token and base caches
    # once, instead of several points tokenizing the same sources at the same time
    first = next((i for i in ids if not _done(state, i)), None)
    rest = list(ids)
    if first is not None:
        rest.remove(first)
        _run_point(state, first, devices[0], counter)
    free: queue.Queue[str | None] = queue.Queue()
    for d in devices:
        free.put(d)

    def job(pid: str) -> None:
        device = free.get()
        try:
            _run_point(state, pid, device, counter)
        finally:
            free.put(device)

    with ThreadPoolExecutor(max_workers=len(devices)) as pool:
        list(pool.map(job, rest))


def _done(state: State, pid: str) -> bool:
    return (state.root / state.point(pid)["run_dir"] / MODEL_MARKER).exists()


# --------------------------------------------------------------------------- results


@dataclass
class SweepResult:
    sweep_dir: Path
    recommendation: Recommendation
    finished: int
    failed: list[str]


def _scored(state: State) -> list[Scored]:
    out = []
    for p in state.points:
        gain, reg = p.get("domain_gain"), p.get("general_regression")
        if p["status"] == "finished" and gain is not None and reg is not None:
            out.append(Scored(p["id"], float(gain), float(reg)))
    return out


def results_table(state: State, rec: Recommendation) -> list[list[str]]:
    """Header + one row per point: grid values, status, the two numbers, a note."""
    keys = [a["key"] for a in state.data["spec"]["grid"]]
    names = [k.rsplit(".", 1)[-1] for k in keys]
    header = ["#", *names, "status", "domain gain", "general regr.", ""]
    rows = [header]
    front = set(rec.front)
    for n, p in enumerate(state.points, start=1):  # n: the point's number on pareto.png
        gain, reg = p.get("domain_gain"), p.get("general_regression")
        notes = []
        if p["id"] == rec.id:
            notes.append("<- recommended")
        if p["id"] in front:
            notes.append("pareto")
        if p["id"] in rec.over:
            notes.append("over budget")
        if p["status"] == "failed":
            notes.append(f"see {p['log']}")
        rows.append(
            [
                str(n),
                *(p["values"][k] for k in keys),
                p["status"],
                pct(gain) if gain is not None else "-",
                pct(reg) if reg is not None else "-",
                ", ".join(notes),
            ]
        )
    return rows


def format_text_table(rows: list[list[str]]) -> str:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def _markdown(state: State, rec: Recommendation, plot: Path | None) -> str:
    spec = state.data["spec"]
    rows = results_table(state, rec)
    cell = [[c.replace("|", "\\|") for c in r] for r in rows]
    budget = pct(state.data["max_regression"], signed=False)
    lines = [
        "# steep sweep",
        "",
        f"- config: `{spec['config']}`"
        + (f" with `{' '.join(spec['set'])}`" if spec["set"] else ""),
        *(f"- grid: `{a['key']}` = {', '.join(a['values'])}" for a in spec["grid"]),
        f"- points: {len(state.points)}"
        + (f", {spec['budget_tokens']:,} tokens each" if spec["budget_tokens"] else ""),
        f"- general regression budget: {budget}",
        "",
        "Domain gain is the fall of the domain-role eval losses against the base model (step 0), "
        "general regression the rise of the general-role ones (mean relative change over the "
        "sets of each role, at the final eval).",
        "",
        "| " + " | ".join(cell[0]) + " |",
        "|" + "|".join("---" for _ in cell[0]) + "|",
        *("| " + " | ".join(r) + " |" for r in cell[1:]),
        "",
        "## Recommendation",
        "",
        f"**Recommended: {rec.id}**" if rec.id else "**No recommendation**",
        "",
        rec.reason,
    ]
    if plot is not None:
        lines += ["", f"![Pareto plot]({plot.name})"]
    return "\n".join(lines) + "\n"


def finish(state: State) -> SweepResult:
    """Recommendation, results.md and pareto.png from the points' scores."""
    max_reg = float(state.data["max_regression"])
    scored = _scored(state)
    rec = pick(scored, max_reg)
    numbers = {p["id"]: n for n, p in enumerate(state.points, start=1)}
    plot = None
    if scored:
        plot = plot_pareto(scored, rec, max_reg, state.root / PLOT_FILE, numbers)
    state.update(recommendation=rec.to_json())
    write_text(state.root / RESULTS_FILE, _markdown(state, rec, plot))
    failed = [p["id"] for p in state.points if p["status"] != "finished"]
    print(format_text_table(results_table(state, rec)))
    print(("recommended: " if rec.id else "") + rec.reason)
    if failed:
        print(
            f"{len(failed)} point(s) did not finish: {', '.join(failed)}; rerun with "
            f"`steep sweep --resume {state.root}` to retry them"
        )
    print(f"sweep: {state.root / RESULTS_FILE}")
    return SweepResult(state.root, rec, len(scored), failed)


def run_sweep(
    spec: Spec, out: Path | None = None, max_regression: float = DEFAULT_MAX_REGRESSION
) -> SweepResult:
    """Validate the whole grid, then run (or skip, or resume) every point, then pick."""
    spec = Spec(str(Path(spec.config).resolve()), spec.grid, list(spec.sets), spec.budget_tokens)
    points = plan(spec)
    base = load_config(Path(spec.config), spec.sets)
    devices = _devices(base)
    state = open_sweep(spec, points, out, max_regression)
    run_on = "cpu/one device, one point at a time" if devices == [None] else f"GPUs {devices}"
    print(
        f"sweep {state.root}: {len(points)} points ({' x '.join(str(len(a.values)) for a in spec.grid)}), "
        f"{run_on}",
        flush=True,
    )
    _run_all(state, devices)
    return finish(state)
