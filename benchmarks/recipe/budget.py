"""A forgetting budget against fixed replay shares, and a domain anneal against a flat mix.

(a) Fixed replay r = 0 / 5 / 25 / 50 / 75% (a grid sweep over the mix) against two
budgeted runs that start at 5% replay with ``train.forgetting_budget`` (2% on the old
data): one raises the replay share when over budget, one lowers the LR. Each point is
scored as steep's sweeps score it (domain gain, general regression vs the base), and the
table says where the budgeted runs land against the grid's Pareto front.

(b) At equal tokens and a WSD schedule: a flat 25% replay mix, against the same mix whose
final 20% of steps (the WSD decay) is annealed on the new data only (``data.phases``).

    .venv/bin/python benchmarks/recipe/budget.py [--steps N] [--out DIR] [--root DIR]
"""

from __future__ import annotations

import time
from typing import Any

import common
from common import (
    NEW,
    OLD,
    Run,
    cpt_model,
    finish,
    markdown_table,
    new_figure,
    parse_args,
    prepare_corpora,
    pretrained_base,
    run_config,
    save_figure,
    source,
    train_run,
)

from steep.artifacts.metrics import read_events
from steep.sweep.pareto import Scored, pareto_front
from steep.train.runtime import native_bf16

GRID = (0.0, 0.05, 0.25, 0.5, 0.75)
START = 0.05  # the budgeted runs start here, as a 5% replay run would
BUDGET = 0.02
LR_FRACTION = 0.1
DEFAULT_STEPS = 200


def _sources(corpora: Any, replay: float) -> list[dict[str, Any]]:
    out = [source("domain", corpora.new_train, 1.0 - replay)]
    if replay > 0:  # a weight must be > 0: no replay means no general source at all
        out.append(source("general", corpora.old_train, replay))
    return out


def _score(run: Run) -> Scored:
    old0, new0 = run.loss(OLD, 0), run.loss(NEW, 0)
    return Scored(run.name, (new0 - run.loss(NEW)) / new0, (run.loss(OLD) - old0) / old0)


def _actions(run: Run) -> str:
    acts = [
        e for e in read_events(run.run_dir / "metrics.jsonl") if e["event"] == "forgetting_budget"
    ]
    if not acts:
        return "none"
    first, last = acts[0], acts[-1]
    return f"{len(acts)} ({first['action']} at step {first['step']} ... {last['action']} at {last['step']})"


def _realised_replay(run: Run) -> float:
    from steep.train.report import read_metrics

    train, _ = read_metrics(run.run_dir / "metrics.jsonl")
    by = train[-1]["tokens_by_source"]
    return by.get("general", 0) / max(1, sum(by.values()))


def main() -> None:
    args = parse_args(__doc__.splitlines()[0], DEFAULT_STEPS)
    if not native_bf16():  # emulated bf16: 13x slower than fp32 on such a CPU (BENCHMARKS.md)
        common.PRECISION = "fp32"
        print("this CPU has no AVX512-BF16: every run in fp32 (its own pretrained base)")
    started = time.perf_counter()
    corpora = prepare_corpora(args.root)
    base, _, pretrain_s = pretrained_base(args.root, corpora)
    steps, every = args.steps, max(1, args.steps // 10)
    runs_dir = args.root / "runs" / "budget"

    def config(name: str, replay: float, **train: Any) -> dict[str, Any]:
        cfg = run_config(
            name, runs_dir / name, cpt_model(base), _sources(corpora, replay), corpora,
            steps=steps, lr_fraction=LR_FRACTION, warmup_steps=max(1, steps // 50),
            eval_every=every,
        )  # fmt: skip
        cfg["train"].update(train)
        return cfg

    # (a) the grid and the budgeted runs
    grid = {r: train_run(args.root, config(f"replay-{r:g}", r)) for r in GRID}
    budget = {"max_regression": BUDGET, "sets": [OLD], "replay_step": 0.1}
    budgeted = {
        "budget-replay": train_run(
            args.root, config("budget-replay", START, forgetting_budget=budget)
        ),
        "budget-lr": train_run(
            args.root,
            config("budget-lr", START, forgetting_budget={**budget, "action": "lr"}),
        ),
    }
    points = [_score(r) for r in grid.values()] + [_score(r) for r in budgeted.values()]
    front = pareto_front([_score(r) for r in grid.values()])
    front_all = pareto_front(points)
    rows: list[list[object]] = []
    for run in [*grid.values(), *budgeted.values()]:
        s = _score(run)
        where = "grid front" if s.id in front else ""
        if run.name.startswith("budget"):
            where = "on the front" if s.id in front_all else "dominated by the grid"
        rows.append([
            run.name, f"{_realised_replay(run):.1%}", f"{100 * s.domain_gain:+.1f}%",
            f"{100 * s.general_regression:+.1f}%",
            "yes" if s.general_regression <= BUDGET else "no",
            _actions(run) if run.name.startswith("budget") else "", where,
            f"{run.wall_s:.0f}",
        ])  # fmt: skip
    headers = ["run", "replay (realised)", "domain gain", "general regression",
               f"within {BUDGET:.0%}", "budget actions", "Pareto", "run s"]  # fmt: skip
    text = (
        f"### (a) forgetting budget {BUDGET:.0%} vs fixed replay: {steps} steps, lr_fraction "
        f"{LR_FRACTION:g}, eval every {every}\n\n" + markdown_table(headers, rows)
    )

    # (b) a domain anneal in the WSD decay against a flat mix, equal tokens
    flat = train_run(args.root, config("wsd-flat-25", 0.25, schedule="wsd", decay_fraction=0.2))
    phased_cfg = config("wsd-anneal", 0.25, schedule="wsd", decay_fraction=0.2)
    phased_cfg["data"]["phases"] = [
        {"name": "mix", "until_fraction": 0.8},
        {"name": "anneal", "weights": {"general": 0}},
    ]
    phased = train_run(args.root, phased_cfg)
    rows = []
    for run in (flat, phased):
        s = _score(run)
        rows.append([
            run.name, f"{_realised_replay(run):.1%}", run.loss(NEW), f"{100 * s.domain_gain:+.1f}%",
            run.loss(OLD), f"{100 * s.general_regression:+.1f}%", f"{run.wall_s:.0f}",
        ])  # fmt: skip
    text += (
        f"\n\n### (b) final 20% annealed on the domain vs a flat 25% replay mix (WSD, {steps} "
        "steps, equal tokens)\n\n"
        + markdown_table(
            [
                "run",
                "replay (realised)",
                f"new ({NEW})",
                "domain gain",
                f"old ({OLD})",
                "general regression",
                "run s",
            ],  # fmt: skip
            rows,
        )
    )
    finish(args.out, "budget", text, started, pretrain_s)
    _plot([_score(r) for r in grid.values()], [_score(r) for r in budgeted.values()], args.out)


def _plot(grid: list[Scored], budgeted: list[Scored], out: Any) -> None:
    fig, (ax,) = new_figure()
    xs = [100 * p.general_regression for p in grid]
    ys = [100 * p.domain_gain for p in grid]
    ax.plot(xs, ys, "o-", color="#4c72b0", label="fixed replay share")
    for p, x, y in zip(grid, xs, ys, strict=True):
        ax.annotate(p.id.removeprefix("replay-"), (x, y), textcoords="offset points", xytext=(4, 4))
    for p, marker in zip(budgeted, ("*", "s"), strict=True):
        ax.plot(100 * p.general_regression, 100 * p.domain_gain, marker, ms=12, label=p.id)
    ax.axvline(100 * BUDGET, color="grey", ls="--", lw=1, label=f"budget {BUDGET:.0%}")
    ax.set_xlabel("general regression vs base (%)")
    ax.set_ylabel("domain gain vs base (%)")
    ax.set_title("forgetting budget vs a grid over the replay share")
    ax.legend(loc="lower right", fontsize=8)
    save_figure(fig, out / "budget.png")


if __name__ == "__main__":
    main()
