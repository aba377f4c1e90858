"""Merging vs replay (#33, BENCHMARKS.md "Merging after CPT"): the alpha dial against replay.

The recipe's tiny base (pretrained by steep on Wikipedia, ``common.py``) is continued on
Python docs at ``lr_fraction`` 1.0 with replay shares 0 / 5 / 25 / 50% (sources domain and
general, equal steps, as ``replay.py``). Each run is merged back towards the base with
``steep models merge``'s own code (``run_merge``: alphas 0 to 1, scored on the run's eval
sets under training's rule), so every run gives a curve of (general regression, domain
gain) from the base (alpha 0) to itself (alpha 1). The question: at a replay run's general
regression, does the no-replay run's merge curve keep more or less domain gain than that
replay share does? Both are scored against the same base on the same fixed windows.

    nice -n 10 .venv/bin/python benchmarks/recipe/merge_vs_replay.py \
        [--pretrain-steps 300] [--steps 100] [--out DIR]

``--pretrain-steps`` below common.py's 700 gets its own cached base (the cache key holds
the config), so a shorter base is never mistaken for the full one.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import time
from pathlib import Path

import common
from common import NEW, OLD, Run, cpt_model, finish, prepare_corpora, replay_sources, run_config

SHARES = (0.0, 0.05, 0.25, 0.5)
ALPHAS = [0.0, 0.125, 0.25, 0.375, 0.5, 0.625, 0.75, 0.875, 1.0]  # the no-replay run's dial
ENDS = [0.0, 0.5, 1.0]  # the replay runs: their ends and a midpoint (the CPU is shared)
TIES_ALPHAS = [0.0, 0.25, 0.5, 0.75, 1.0]  # --ties: the no-replay run through mergekit
LR_FRACTION = 1.0


def gain_at(curve: list[dict], regression: float) -> float | None:
    """The curve's domain gain at ``regression``, linear between neighbouring alphas (in
    alpha order, so a curve that turns back is read along its path); None outside it."""
    pts = [(p["general_regression"], p["domain_gain"]) for p in curve]
    found = []
    for (x0, y0), (x1, y1) in zip(pts, pts[1:], strict=False):
        lo, hi = min(x0, x1), max(x0, x1)
        if lo <= regression <= hi:
            found.append(y0 if x1 == x0 else y0 + (y1 - y0) * (regression - x0) / (x1 - x0))
    return max(found) if found else None


def cpu_s() -> float:
    """CPU seconds of this process and its finished children (mergekit runs as one)."""
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


def curve_of(
    model: Path, out: Path, alphas: list[float], method: str = "linear"
) -> tuple[dict, float]:
    """``steep models merge MODEL --alphas ... [--method M]``'s result, through its own
    function, and the CPU seconds it took."""
    from steep.eval.merge_save import run_merge
    from steep.eval.merge_spec import MergeSpec

    shutil.rmtree(out, ignore_errors=True)
    started = cpu_s()
    result = run_merge(MergeSpec(model, alphas=alphas, method=method), out)
    return result, cpu_s() - started


def arms(args, corpora, base: Path) -> dict[float, Run]:
    runs: dict[float, Run] = {}
    # replay.py's arms (warmup 2%, lr_fraction 1.0), evaluated at their ends only
    schedule = {"steps": args.steps, "lr_fraction": LR_FRACTION, "eval_every": args.steps}
    schedule["warmup_steps"] = max(1, args.steps // 50)
    for share in args.shares:
        name = f"replay-{share:g}"
        out_dir = args.root / "runs" / f"merge-vs-replay-{args.key}" / name
        done = out_dir / "done.json"
        if done.is_file():  # cached: the same base, steps and share
            runs[share] = common.read_run(name, out_dir, json.loads(done.read_text())["wall_s"])
            continue
        sources = replay_sources(corpora, share)
        config = run_config(name, out_dir, cpt_model(base), sources, corpora, **schedule)
        runs[share] = common.train_run(args.root, config)
        done.write_text(json.dumps({"wall_s": runs[share].wall_s}) + "\n")
        print(f"{name}: {runs[share].wall_s:.0f} s")
    return runs


def table(curves: dict[float, dict]) -> list[str]:
    rows = [
        f"| run, alpha | {OLD} | {NEW} | general regression | domain gain |",
        "|---|---:|---:|---:|---:|",
    ]
    for share, result in curves.items():
        for pt in result["curve"]:
            name = f"{share:.0%} replay, alpha {pt['alpha']:g}"
            name += " (the run)" if pt["alpha"] == 1 else " (the base)" if pt["alpha"] == 0 else ""
            rows.append(
                f"| {name} | {pt['sets'][OLD]['loss']:.4f} | {pt['sets'][NEW]['loss']:.4f} | "
                f"{100 * pt['general_regression']:+.2f}% | {100 * pt['domain_gain']:+.2f}% |"
            )
    return rows


def verdict(curves: dict[float, dict], dial: list[dict], label: str) -> list[str]:
    """At each replay run's general regression: the no-replay run's merge curve's gain."""
    lines = [
        "",
        "| replay run | its general regression | its domain gain | "
        f"0% run, {label}, at that regression | difference |",
        "|---|---:|---:|---:|---:|",
    ]
    for share, result in curves.items():
        if share == 0.0:
            continue
        end = result["curve"][-1]
        at = gain_at(dial, end["general_regression"])
        shown = "outside the curve" if at is None else f"{100 * at:+.2f}%"
        diff = "-" if at is None else f"{100 * (at - end['domain_gain']):+.2f} points"
        lines.append(
            f"| {share:.0%} | {100 * end['general_regression']:+.2f}% | "
            f"{100 * end['domain_gain']:+.2f}% | {shown} | {diff} |"
        )
    return lines


def plot(
    curves: dict[float, dict],
    path: Path,
    ties: dict | None = None,
    title: str = "Tiny recipe model: the alpha dial vs replay shares (squares: the runs)",
) -> None:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(7.5, 4.8), dpi=110)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    ends = [(100 * r["curve"][-1]["general_regression"], 100 * r["curve"][-1]["domain_gain"])
            for r in curves.values()]  # fmt: skip
    ax.plot(*zip(*ends, strict=True), color="k", lw=1, ls=":", zorder=1)
    for i, (share, result) in enumerate(curves.items()):
        xs = [100 * pt["general_regression"] for pt in result["curve"]]
        ys = [100 * pt["domain_gain"] for pt in result["curve"]]
        style = dict(marker="o", ms=4, color=f"C{i}", lw=1.8 if share == 0 else 0.8)
        ax.plot(xs, ys, label=f"merge of the {share:.0%}-replay run (alpha 0..1)", **style)
        ax.scatter(xs[-1:], ys[-1:], s=120, marker="s", color=f"C{i}", zorder=3)
        if share == 0.0:
            for pt, x, y in zip(result["curve"], xs, ys, strict=True):
                ax.annotate(f"{pt['alpha']:g}", (x, y), textcoords="offset points",
                            xytext=(5, -9), fontsize="x-small")  # fmt: skip
    if ties is not None:
        xs = [100 * pt["general_regression"] for pt in ties["curve"]]
        ys = [100 * pt["domain_gain"] for pt in ties["curve"]]
        ax.plot(xs, ys, marker="^", ms=5, color="k", lw=1.2, ls="--",
                label="TIES (mergekit, density 0.5) of the 0%-replay run")  # fmt: skip
    ax.set(title=title,
           xlabel="general regression (%; right = more forgetting)",
           ylabel="domain gain (%; up = better)")  # fmt: skip
    ax.grid(alpha=0.3)
    ax.legend(fontsize="small")
    fig.tight_layout()
    fig.savefig(path)


def main() -> None:
    p = common.argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--root", type=Path, default=common.DEFAULT_ROOT)
    p.add_argument("--out", type=Path, default=None)
    p.add_argument("--steps", type=int, default=100, help="CPT steps per replay arm")
    p.add_argument("--pretrain-steps", type=int, default=300)
    p.add_argument("--ties", action="store_true", help="also the 0%% run's TIES curve (mergekit)")
    p.add_argument("--shares", default=",".join(f"{x:g}" for x in SHARES),
                   help="replay shares, comma-separated; 0 (the dial's run) is always one")  # fmt: skip
    args = p.parse_args()
    args.out = args.out or args.root / "results"
    args.out.mkdir(parents=True, exist_ok=True)
    args.key = f"p{args.pretrain_steps}-s{args.steps}"
    args.shares = sorted({0.0, *(float(x) for x in args.shares.split(","))})
    common.PRETRAIN_STEPS = args.pretrain_steps  # read by pretrained_base; its cache is keyed
    started = time.perf_counter()
    corpora = prepare_corpora(args.root)
    base, _, pretrain_s = common.pretrained_base(args.root, corpora)
    runs = arms(args, corpora, base)
    common._use_home(args.root)
    curves, cpu = {}, {}
    for share, run in runs.items():
        alphas = ALPHAS if share == 0.0 else ENDS
        result, cpu[share] = curve_of(run.run_dir / "model", args.out / f"curve-{share:g}", alphas)
        ends = [abs(result["base_losses"][k] - v) for k, v in result["logged"]["step0"].items()]
        ends += [abs(result["curve"][-1]["sets"][k]["loss"] - v)
                 for k, v in result["logged"]["final"].items()]  # fmt: skip
        print(
            f"{share:.0%}: {len(alphas)} alphas, {cpu[share]:.0f} CPU s; ends vs log {max(ends):.1e}"
        )
        curves[share] = result
    rows = table(curves) + verdict(curves, curves[0.0]["curve"], "linear merge")
    ties = None
    if args.ties:
        model = runs[0.0].run_dir / "model"
        ties, ties_cpu = curve_of(model, args.out / "curve-0-ties", TIES_ALPHAS, "ties")
        rows += verdict(curves, ties["curve"], "TIES (density 0.5)")
        rows += ["", "| 0% run, TIES alpha | general regression | domain gain |", "|---|---:|---:|"]
        rows += [f"| {pt['alpha']:g} | {100 * pt['general_regression']:+.2f}% | "
                 f"{100 * pt['domain_gain']:+.2f}% |" for pt in ties["curve"]]  # fmt: skip
        rows += ["", f"TIES curve: {len(TIES_ALPHAS)} alphas, {ties_cpu:.0f} CPU s with mergekit's"]
    text = "\n".join(rows)
    text += (f"\n\nbase: {args.pretrain_steps} pretraining steps; CPT {args.steps} steps per arm "
             f"at lr_fraction {LR_FRACTION}; merge curves {sum(cpu.values()):.0f} CPU s in all")  # fmt: skip
    saved = {"replay": curves, "ties": ties}
    (args.out / "merge_vs_replay.json").write_text(json.dumps(saved, indent=2) + "\n")
    plot(curves, args.out / "merge_vs_replay.png", ties)
    finish(args.out, "merge_vs_replay", text, started, pretrain_s)


if __name__ == "__main__":
    sys.exit(main())
