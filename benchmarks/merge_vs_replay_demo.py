"""Merging vs replay on the demo model (#33, BENCHMARKS.md "Merging after CPT").

The same question as ``benchmarks/recipe/merge_vs_replay.py``, at the demo's scale
(SmolLM2-135M, Python docs, 48 steps): does the no-replay run's alpha dial keep more or
less domain gain than a replay share does at equal general regression? The runs and curves
come from steep's own commands; this script only reads their ``merge.json`` files:

    export STEEP_HOME=/tmp/m33d
    steep demo --set run.name=mvr-r0 --set data.sources.1.weight=0.001    # ~0% replay
    steep demo --set run.name=mvr-r25 --set data.sources.0.weight=3       # 25% replay
    steep demo --set run.name=mvr-r50                                     # 50% (the demo)
    steep models merge RUN_R0 --alphas 0,0.25,0.5,0.75,1 --out CURVES/0
    steep models merge RUN_R25 --alphas 0.5,1 --out CURVES/0.25   (and RUN_R50 -> CURVES/0.5)
    python benchmarks/merge_vs_replay_demo.py CURVES --out docs/img/merge-vs-replay-demo.png

A weight must be above 0, so "no replay" is 0.1% of the tokens (about 100 of the run's
98,304): no Wikipedia text to speak of, while the general held-out set stays the same.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent / "recipe"))
from merge_vs_replay import plot, verdict  # noqa: E402  (the recipe benchmark's own)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("curves", type=Path, help="a folder of merge outputs, one per replay share")
    p.add_argument("--out", type=Path, required=True, help="the plot (.png)")
    args = p.parse_args()
    curves = {float(d.name): json.loads((d / "merge.json").read_text())
              for d in args.curves.iterdir() if (d / "merge.json").is_file()}  # fmt: skip
    curves = dict(sorted(curves.items()))
    sets = list(curves[0.0]["curve"][0]["sets"])
    print(f"| run, alpha | {' | '.join(sets)} | general regression | domain gain |")
    print("|---|" + "---:|" * (len(sets) + 2))
    for share, result in curves.items():
        for pt in result["curve"]:
            losses = " | ".join(f"{pt['sets'][s]['loss']:.4f}" for s in sets)
            print(f"| {share:.0%} replay, alpha {pt['alpha']:g} | {losses} | "
                  f"{100 * pt['general_regression']:+.2f}% | {100 * pt['domain_gain']:+.2f}% |")  # fmt: skip
    print("\n".join(verdict(curves, curves[0.0]["curve"], "linear merge")))
    plot(
        curves,
        args.out,
        title="SmolLM2-135M demo: the alpha dial vs replay shares (squares: the runs)",
    )


if __name__ == "__main__":
    main()
