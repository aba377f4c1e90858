"""Merging vs replay on the demo (#33, BENCHMARKS.md "Merging after CPT").

Two demo runs of SmolLM2-135M on Python docs, equal steps: the shipped one (1:1 domain and
Wikipedia replay: 50% replay) and one with 5% replay (``data.domain_share=0.95``). Each is
merged back towards its base with ``steep models merge`` (alphas 0 to 1), which traces a
curve of (general regression, domain gain) from the base to the run. At the 50% run's
general regression, the 5% run's curve says how much domain gain interpolation keeps: is
the alpha dial a better trade-off than a replay share, or not?

    STEEP_HOME=/tmp/m33home .venv/bin/python benchmarks/merge_vs_replay.py DEMO_RUN_DIR \
        [--out DIR]
"""

from __future__ import annotations

import argparse
import json
import shutil
import time
from pathlib import Path

ALPHAS = [0.0, 0.25, 0.5, 0.625, 0.75, 0.875, 1.0]


def gain_at(curve: list[dict], regression: float) -> float | None:
    """The curve's domain gain at ``regression``, linear between neighbouring alphas; None
    outside its range."""
    pts = sorted((p["general_regression"], p["domain_gain"]) for p in curve)
    for (x0, y0), (x1, y1) in zip(pts, pts[1:], strict=False):
        if x0 <= regression <= x1:
            return y0 if x1 == x0 else y0 + (y1 - y0) * (regression - x0) / (x1 - x0)
    return None


def low_replay_run(demo_model: Path, out: Path) -> Path:
    """The demo's config with 5% replay, trained by steep's own ``train()`` (cached)."""
    from steep.artifacts.lineage import read_lineage
    from steep.config import parse_config
    from steep.train.loop import train

    if (out / "model" / "config.json").is_file():
        return out
    shutil.rmtree(out, ignore_errors=True)
    raw = read_lineage(demo_model).config
    raw["run"] = {**raw["run"], "name": "demo-replay5", "out_dir": str(out)}
    raw["data"]["domain_share"] = 0.95
    raw["checkpoint"] = {**raw["checkpoint"], "every_steps": raw["train"]["steps"]}
    started = time.perf_counter()
    train(parse_config(raw))
    print(f"5% replay run: {time.perf_counter() - started:.0f} s")
    shutil.rmtree(out / "checkpoints", ignore_errors=True)
    return out


def curve_of(model: Path, out: Path) -> tuple[dict, float]:
    from steep.eval.merge_save import run_merge
    from steep.eval.merge_spec import MergeSpec

    shutil.rmtree(out, ignore_errors=True)
    started = time.perf_counter()
    result = run_merge(MergeSpec(model, alphas=ALPHAS), out)
    return result, time.perf_counter() - started


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("run", type=Path, help="a finished `steep demo` run folder (50% replay)")
    p.add_argument("--out", type=Path, default=Path("/tmp/m33-merge-vs-replay"))
    args = p.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    low = low_replay_run(args.run / "model", args.out / "demo-replay5")
    curves = {}
    for label, run in (("50% replay", args.run), ("5% replay", low)):
        result, wall = curve_of(run / "model", args.out / f"curve-{label[:-7].strip('%')}")
        ends = [abs(result["base_losses"][k] - v) for k, v in result["logged"]["step0"].items()]
        ends += [abs(result["curve"][-1]["sets"][k]["loss"] - v)
                 for k, v in result["logged"]["final"].items()]  # fmt: skip
        curves[label] = result
        print(
            f"{label}: {len(ALPHAS)} alphas in {wall:.0f} s; ends vs the run's own: {max(ends):.1e}"
        )
    rows = ["| point | " + " | ".join(curves["50% replay"]["base_losses"])
            + " | general regression | domain gain |", "|---|" + "---:|" * 5]  # fmt: skip
    for label, result in curves.items():
        for pt in result["curve"]:
            name = f"{label}, alpha {pt['alpha']:g}" + (" (the run)" if pt["alpha"] == 1 else "")
            rows.append(f"| {name} | " + " | ".join(f"{s['loss']:.4f}" for s in pt["sets"].values())
                        + f" | {100 * pt['general_regression']:+.2f}% | {100 * pt['domain_gain']:+.2f}% |")  # fmt: skip
    hi = curves["50% replay"]["curve"][-1]
    at = gain_at(curves["5% replay"]["curve"], hi["general_regression"])
    rows += ["", f"50% replay run: general regression {100 * hi['general_regression']:+.2f}%, "
             f"domain gain {100 * hi['domain_gain']:+.2f}%; the 5% run's merge curve at that "
             f"general regression: " + ("outside its range" if at is None else f"{100 * at:+.2f}%")]  # fmt: skip
    text = "\n".join(rows) + "\n"
    print(text)
    (args.out / "merge_vs_replay.md").write_text(text, encoding="utf-8")
    (args.out / "merge_vs_replay.json").write_text(json.dumps(curves, indent=2) + "\n")
    plot(curves, args.out / "merge_vs_replay.png")


def plot(curves: dict[str, dict], path: Path) -> None:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(7, 4.5), dpi=110)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    for i, (label, result) in enumerate(curves.items()):
        xs = [100 * pt["general_regression"] for pt in result["curve"]]
        ys = [100 * pt["domain_gain"] for pt in result["curve"]]
        ax.plot(xs, ys, marker="o", color=f"C{i}", label=f"merge of the {label} run (alpha 0..1)")
        ax.scatter(xs[-1:], ys[-1:], s=140, marker="s", color=f"C{i}", zorder=3)
        for pt, x, y in zip(result["curve"], xs, ys, strict=True):
            ax.annotate(f"{pt['alpha']:g}", (x, y), textcoords="offset points", xytext=(4, -10),
                        fontsize="x-small")  # fmt: skip
    ax.set(title="Demo: merging vs replay (squares: the runs themselves)",
           xlabel="general regression (%; right = more forgetting)",
           ylabel="domain gain (%; up = better)")  # fmt: skip
    ax.grid(alpha=0.3)
    ax.legend(fontsize="small")
    fig.tight_layout()
    fig.savefig(path)


if __name__ == "__main__":
    main()
