"""A sweep's results: each point's two numbers, the table, results.md, pareto.png, the pick.

A point is scored from its own ``metrics.jsonl`` with steep's one definition of the
headline (``steep.artifacts.scores``): domain gain and general regression against the base
model (step 0), at the final eval. A set whose baseline cannot divide has no number and is
left out of its role's mean; a role with no number leaves the point unscored.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from steep.artifacts.atomic import write_text
from steep.artifacts.fmt import MISSING, cell, text_table
from steep.artifacts.metrics import read_metrics
from steep.artifacts.scores import loss_headline
from steep.config import load_config
from steep.errors import SteepError
from steep.sweep.pareto import Recommendation, Scored, pct, plot_pareto
from steep.sweep.pareto import recommend as pick
from steep.sweep.state import State
from steep.train.preflight import forgetting_warning
from steep.train.report import eval_table
from steep.workspace import METRICS_FILE

RESULTS_FILE = "results.md"
PLOT_FILE = "pareto.png"


@dataclass
class SweepResult:
    sweep_dir: Path
    recommendation: Recommendation
    finished: int
    failed: list[str]


def score_point(run_dir: Path, roles: dict[str, str | None]) -> dict[str, Any]:
    """Per-set change vs step 0 at the final eval, and the point's two numbers."""
    _, evals = read_metrics(run_dir / METRICS_FILE)
    rows = eval_table(evals)
    sets = {
        r["set"]: {
            "role": roles.get(r["set"]),
            "base_loss": r["base_loss"],
            "final_loss": r["final_loss"],
            "rel_change": r["rel_change"],  # None when the baseline cannot divide
            "step": r["final_step"],
        }
        for r in rows
    }
    head = loss_headline(
        {r["set"]: r["base_loss"] for r in rows}, {r["set"]: r["final_loss"] for r in rows}, roles
    )
    return {
        "sets": sets,
        "domain_gain": head.domain_gain,
        "general_regression": head.general_regression,
    }


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
                pct(gain) if gain is not None else MISSING,
                pct(reg) if reg is not None else MISSING,
                ", ".join(notes),
            ]
        )
    return rows


def _markdown(state: State, rec: Recommendation, plot: Path | None, caveats: list[str]) -> str:
    spec = state.data["spec"]
    rows = [[cell(c) for c in r] for r in results_table(state, rec)]
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
        *(f"- **warning**: {w}" for w in caveats),
        "",
        "Domain gain is the fall of the domain-role eval losses against the base model (step 0), "
        "general regression the rise of the general-role ones (mean relative change over the "
        "sets of each role, at the final eval).",
        "",
        "| " + " | ".join(rows[0]) + " |",
        "|" + "|".join("---" for _ in rows[0]) + "|",
        *("| " + " | ".join(r) + " |" for r in rows[1:]),
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


def _caveats(spec: dict[str, Any]) -> list[str]:
    """What makes the table's general regression mislead (read from the sweep's config)."""
    try:
        warning = forgetting_warning(load_config(Path(spec["config"]), spec["set"]))
    except SteepError:  # the config moved or broke since: the table stands on its own
        return []
    return [warning] if warning else []


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
    caveats = _caveats(state.data["spec"])
    write_text(state.root / RESULTS_FILE, _markdown(state, rec, plot, caveats))
    failed = [p["id"] for p in state.points if p["status"] != "finished"]
    print(text_table(results_table(state, rec), rule=True))
    print(("recommended: " if rec.id else "") + rec.reason)
    for warning in caveats:
        print(f"warning: {warning}")
    if failed:
        print(
            f"{len(failed)} point(s) did not finish: {', '.join(failed)}; rerun with "
            f"`steep sweep --resume {state.root}` to retry them"
        )
    print(f"sweep: {state.root / RESULTS_FILE}")
    return SweepResult(state.root, rec, len(scored), failed)
