"""Forgetting vs adaptation as the CPT peak LR grows: 1%, 10% and 100% of the pretraining peak.

Ibrahim et al. 2024 (and the reason e-Llama stopped at 10%): a higher re-warmed peak LR
learns the new data faster and forgets more of the old. Three CPT runs from the same tiny
base on Python docs, no replay, same steps and same data order; only
``train.lr_fraction`` differs.

    .venv/bin/python benchmarks/recipe/lr_fraction.py [--steps N] [--out DIR]
"""

from __future__ import annotations

import time

from common import (
    NEW,
    OLD,
    PEAK_LR,
    Run,
    cpt_model,
    finish,
    markdown_table,
    parse_args,
    pct,
    plot_old_and_new,
    prepare_corpora,
    pretrained_base,
    run_config,
    source,
    train_run,
)

FRACTIONS = (0.01, 0.1, 1.0)
DEFAULT_STEPS = 300


def main() -> None:
    args = parse_args(__doc__.splitlines()[0], DEFAULT_STEPS)
    started = time.perf_counter()
    corpora = prepare_corpora(args.root)
    base, _, pretrain_s = pretrained_base(args.root, corpora)
    runs: dict[float, Run] = {}
    for frac in FRACTIONS:
        config = run_config(
            f"lr-{frac:g}",
            args.root / "runs" / "lr_fraction" / f"lr-{frac:g}",
            cpt_model(base),
            [source("domain", corpora.new_train)],
            corpora,
            steps=args.steps,
            lr_fraction=frac,
            warmup_steps=max(1, args.steps // 50),  # ~2%: Ibrahim et al. found 0.5-2% alike
            eval_every=max(1, args.steps // 12),
        )
        runs[frac] = train_run(args.root, config)

    rows = []
    for frac, run in runs.items():
        old0, old1 = run.loss(OLD, 0), run.loss(OLD)
        new0, new1 = run.loss(NEW, 0), run.loss(NEW)
        rows.append(
            [
                f"{frac:g}",
                f"{frac * PEAK_LR:.0e}",
                old0,
                old1,
                pct(old1, old0),
                new1,
                pct(new1, new0),
            ]
        )
        rows[-1] += [f"{run.wall_s:.0f}"]
    headers = [
        "lr_fraction",
        "max LR",
        f"old ({OLD}) base",
        f"old ({OLD}) end",
        "forgetting",
        f"new ({NEW}) end",
        "adaptation",
        "run s",
    ]
    first = next(iter(runs.values()))
    text = (
        f"### lr_fraction: {args.steps} CPT steps on {NEW}, no replay, cosine to 10%\n\n"
        f"base loss on {NEW}: {first.loss(NEW, 0):.3f} (nats/byte)\n\n"
        + markdown_table(headers, rows)
    )
    finish(args.out, "lr_fraction", text, started, pretrain_s)

    labelled = {f"lr_fraction {frac:g}": run for frac, run in runs.items()}
    plot_old_and_new(labelled, "old data (forgetting)", args.out / "lr_fraction.png")


if __name__ == "__main__":
    main()
