"""Re-warming on the same data: a transient loss spike that a constant LR does not show.

Gupta et al. 2023 and Ibrahim et al. 2024: taking a converged model's LR back up to its
peak raises the loss even when the data does not change, and the loss only comes back as
the LR decays again. Two runs continue the tiny base on its own pretraining corpus
(Wikipedia, another order): (a) warmup + cosine to lr_fraction 1.0 (re-warm to the
pretraining peak), (b) constant at the LR pretraining ended with (min_lr_ratio x peak),
no warmup. Eval every few steps so the spike is seen, not missed between evals.

    .venv/bin/python benchmarks/recipe/rewarm.py [--steps N] [--out DIR]
"""

from __future__ import annotations

import time

from common import (
    OLD,
    PEAK_LR,
    PRETRAIN_MIN_RATIO,
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

DEFAULT_STEPS = 200
EVAL_EVERY = 2


def main() -> None:
    args = parse_args(__doc__.splitlines()[0], DEFAULT_STEPS)
    started = time.perf_counter()
    corpora = prepare_corpora(args.root)
    base, _, pretrain_s = pretrained_base(args.root, corpora)
    warmup = max(1, args.steps // 20)
    arms = {
        "re-warm (cosine to 1.0 x peak)": dict(schedule="cosine", lr_fraction=1.0, warmup=warmup),
        "constant (pretraining's final LR)": dict(
            schedule="constant", lr_fraction=PRETRAIN_MIN_RATIO, warmup=0
        ),
    }
    runs: dict[str, Run] = {}
    for label, arm in arms.items():
        config = run_config(
            f"rewarm-{arm['schedule']}",
            args.root / "runs" / "rewarm" / str(arm["schedule"]),
            cpt_model(base),
            [source("general", corpora.old_train)],
            corpora,
            steps=args.steps,
            lr_fraction=float(arm["lr_fraction"]),
            schedule=str(arm["schedule"]),
            warmup_steps=int(arm["warmup"]),
            eval_every=EVAL_EVERY,
            eval_sets=(OLD,),
            seed=1,  # another order than pretraining's (seed 0): same data, not a rerun
        )
        runs[label] = train_run(args.root, config)

    rows = []
    for label, run in runs.items():
        steps, losses = run.series(OLD)
        start = losses[0]
        peak_i = max(range(len(losses)), key=losses.__getitem__)
        rise = losses[peak_i] - start
        after = [s for s, v in zip(steps, losses, strict=True) if s > steps[peak_i] and v <= start]
        back = "no rise" if rise <= 0 else str(after[0]) if after else "never"
        max_lr = max(lr for _, lr in run.lrs)
        rows.append(
            [
                label,
                f"{max_lr:.0e}",
                start,
                f"{losses[peak_i]:.3f} (step {steps[peak_i]})",
                f"{rise:+.3f} ({100 * rise / start:+.1f}%)",
                back,
                losses[-1],
                f"{run.wall_s:.0f}",
            ]
        )
    headers = [
        "schedule",
        "max LR",
        f"{OLD} loss at start",
        "highest loss",
        "max increase",
        "back to start at step",
        "final",
        "run s",
    ]
    text = (
        f"### re-warming: {args.steps} steps on the pretraining corpus ({OLD}), "
        f"eval every {EVAL_EVERY} steps; pretraining peak {PEAK_LR:g}, ended at "
        f"{PRETRAIN_MIN_RATIO * PEAK_LR:g}\n\n" + markdown_table(headers, rows)
    )
    finish(args.out, "rewarm", text, started, pretrain_s)

    fig, (ax, ax_lr) = new_figure(2)
    for label, run in runs.items():
        ax.plot(*run.series(OLD), marker="o", ms=2, label=label)
        ax_lr.plot([s for s, _ in run.lrs], [lr for _, lr in run.lrs], label=label)
    ax.set(title=f"held-out {OLD} loss", xlabel="step", ylabel="loss (nats/byte)")
    ax_lr.set(title="learning rate", xlabel="step", ylabel="LR")
    for a in (ax, ax_lr):
        a.grid(alpha=0.3)
        a.legend()
    save_figure(fig, args.out / "rewarm.png")


if __name__ == "__main__":
    main()
