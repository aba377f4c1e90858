"""Replay: mixing 0/5/25/50% old data into CPT, against Ibrahim et al. 2024's table.

Ibrahim et al. (405M, Pile -> German, re-warmed to the pretraining peak) saw old-data loss
fall 3.56 / 2.57 / 2.33 / 2.24 and new-data loss rise 1.11 / 1.12 / 1.16 / 1.22 as replay
went 0 / 5 / 25 / 50%: most of the protection comes from the first few percent, and it
costs a little adaptation. Here the same four runs on the tiny base: sources domain (Python
docs) and general (Wikipedia) with weights 1-r and r, equal steps (equal compute, so more
replay means fewer new tokens, as in the paper), lr_fraction 1.0 as in the paper.

    .venv/bin/python benchmarks/recipe/replay.py [--steps N] [--lr-fraction F] [--out DIR]
"""

from __future__ import annotations

import time

from common import (
    NEW,
    OLD,
    Run,
    cpt_model,
    finish,
    markdown_table,
    parse_args,
    pct,
    plot_old_and_new,
    prepare_corpora,
    pretrained_base,
    replay_sources,
    run_config,
    train_run,
)

SHARES = (0.0, 0.05, 0.25, 0.5)
IBRAHIM = {0.0: (3.56, 1.11), 0.05: (2.57, 1.12), 0.25: (2.33, 1.16), 0.5: (2.24, 1.22)}
DEFAULT_STEPS = 300
LR_FRACTION = 1.0


def main() -> None:
    args = parse_args(__doc__.splitlines()[0], DEFAULT_STEPS)
    started = time.perf_counter()
    corpora = prepare_corpora(args.root)
    base, _, pretrain_s = pretrained_base(args.root, corpora)
    runs: dict[float, Run] = {}
    for share in SHARES:
        sources = replay_sources(corpora, share)
        config = run_config(
            f"replay-{share:g}",
            args.root / "runs" / "replay" / f"replay-{share:g}",
            cpt_model(base),
            sources,
            corpora,
            steps=args.steps,
            lr_fraction=LR_FRACTION,
            warmup_steps=max(1, args.steps // 50),
            eval_every=max(1, args.steps // 10),
        )
        runs[share] = train_run(args.root, config)

    first = next(iter(runs.values()))
    old0, new0 = first.loss(OLD, 0), first.loss(NEW, 0)
    rows: list[list[object]] = [["base (step 0)", old0, "", new0, "", "", "", ""]]
    for share, run in runs.items():
        old1, new1 = run.loss(OLD), run.loss(NEW)
        paper_old, paper_new = IBRAHIM[share]
        row = [f"{share:.0%}", old1, pct(old1, old0), new1, pct(new1, new0)]
        rows.append(row + [paper_old, paper_new, f"{run.wall_s:.0f}"])
    headers = [
        "replay",
        f"old ({OLD})",
        "vs base",
        f"new ({NEW})",
        "vs base",
        "Ibrahim old",
        "Ibrahim new",
        "run s",
    ]
    gains = []
    for a, b in zip(SHARES[:-1], SHARES[1:], strict=True):
        per_point = (runs[a].loss(OLD) - runs[b].loss(OLD)) / (100 * (b - a))
        gains.append(f"{a:.0%}->{b:.0%}: {per_point:+.4f}")
    text = (
        f"### replay: {args.steps} CPT steps, lr_fraction {LR_FRACTION:g}, "
        f"weights domain 1-r, general r\n\n"
        + markdown_table(headers, rows)
        + "\n\nold-data loss removed per replay percentage point: "
        + ", ".join(gains)
    )
    finish(args.out, "replay", text, started, pretrain_s)

    labelled = {f"replay {share:.0%}": run for share, run in runs.items()}
    plot_old_and_new(labelled, "old data", args.out / "replay.png")


if __name__ == "__main__":
    main()
