"""Predicting the big run from the small sweep, at a scale a 2-core CPU can afford (#32).

A smaller base than the other recipe experiments (``SMALL_LLAMA``, pretrained here on the
old data), then a real ``steep sweep`` of ``train.lr_fraction`` x ``data.domain_share``
(2 x 4) at a budget of B tokens, the law fitted on every eval and asked for 4B, then a few
points actually trained at 4B: the recommended one, the sweep's own pick at B (the naive
rule) and the point with the most gain at B. Table: predicted vs actual domain and
general loss, whether the actual lies in the 90% interval, and the regret of each pick
among the points trained at 4B.

    .venv/bin/python benchmarks/recipe/predict.py [--steps B_STEPS] [--root /tmp/steep-recipe]
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import (  # noqa: E402 - the folder's shared setup, as the other scripts
    NEW,
    OLD,
    markdown_table,
    parse_args,
    prepare_corpora,
    read_run,
    run_config,
    source,
    train_run,
)
from common import finish as write_result  # noqa: E402

SMALL_LLAMA: dict[str, Any] = {
    "model_type": "llama",
    "hidden_size": 48,
    "intermediate_size": 128,
    "num_hidden_layers": 2,
    "num_attention_heads": 2,
    "num_key_value_heads": 1,
    "max_position_embeddings": 128,
    "tie_word_embeddings": True,
}
SEQ, MICRO = 64, 8  # 512 tokens a step
PRETRAIN_STEPS = 300
LRS = ["0.3", "1.0"]
SHARES = ["0.3", "0.5", "0.7", "0.9"]
MAX_REGRESSION = 0.02
FACTOR = 4


def _small(config: dict[str, Any], eval_every: int) -> dict[str, Any]:
    """The recipe config at this experiment's scale: short windows, small batches."""
    config["data"]["seq_len"] = SEQ
    config["train"].update(global_batch_tokens=SEQ * MICRO, micro_batch_size=MICRO)
    config["train"]["precision"] = "fp32"
    config["train"]["threads"] = 2
    config["eval"] = {"every_steps": eval_every, "max_windows": 24}
    return config


def pretrain(root: Path, corpora, steps: int = PRETRAIN_STEPS) -> Path:
    out = root / f"predict-pretrain{_suffix(steps)}"
    if (out / "model" / "steep.json").exists():
        return out / "model"
    cfg = run_config(
        "predict-pretrain",
        out,
        {"random_init": SMALL_LLAMA, "tokenizer": "bytes"},
        [source("general", corpora.old_train)],
        corpora,
        steps=steps,
        lr_fraction=1.0,
        warmup_steps=max(15, steps // 20),
        eval_every=100,
    )
    train_run(root, _small(cfg, 100))
    return out / "model"


def _suffix(pretrain_steps: int) -> str:
    """Folder suffix of a base pretrained longer than the first one (whose folders keep
    their names, so cached runs are read back)."""
    return "" if pretrain_steps == PRETRAIN_STEPS else f"-p{pretrain_steps}"


def _options(p) -> None:
    p.add_argument("--pretrain-steps", type=int, default=PRETRAIN_STEPS, help="the base's")
    p.add_argument("--factors", default=str(FACTOR), help="targets, x B: e.g. 4,8")
    p.add_argument("--sweep-only", action="store_true", help="stop after the sweep and fits")


def main() -> None:
    args = parse_args(__doc__.splitlines()[0], default_steps=24, extra=_options)
    started = time.perf_counter()
    corpora = prepare_corpora(args.root)
    t0 = time.perf_counter()
    base = pretrain(args.root, corpora, args.pretrain_steps)
    pretrain_s = time.perf_counter() - t0
    sources = [source("domain", corpora.new_train), source("general", corpora.old_train)]
    cfg = run_config(
        "predict", args.root / "unused", {"base": str(base)}, sources, corpora,
        steps=args.steps, lr_fraction=1.0, warmup_steps=2,
    )  # fmt: skip
    cfg = _small(cfg, max(1, args.steps // 6))
    del cfg["run"]["out_dir"]
    cfg["checkpoint"] = {"every_steps": 10_000, "keep_last": 1}
    suffix = _suffix(args.pretrain_steps)
    cfg_path = args.root / f"predict-base{suffix}.yaml"
    cfg_path.write_text(yaml.safe_dump(cfg))

    from steep.sweep import Spec, parse_grid, run_sweep

    budget = args.steps * SEQ * MICRO
    grid = parse_grid(
        [f"train.lr_fraction={','.join(LRS)}", f"data.domain_share={','.join(SHARES)}"]
    )
    sweep_dir = args.root / f"predict-sweep-{args.steps}{suffix}"
    result = run_sweep(Spec(str(cfg_path), grid, budget_tokens=budget), sweep_dir, MAX_REGRESSION)
    sweep_s = time.perf_counter() - t0 - pretrain_s
    texts = []
    for k, factor in enumerate(int(f) for f in args.factors.split(",")):
        texts.append(
            at_factor(args, result.sweep_dir, budget, factor, suffix, first=k == 0, sweep_s=sweep_s)
        )
    stem = f"predict-{args.steps}{suffix}" + ("-fit" if args.sweep_only else "")
    write_result(args.out, stem, "\n\n".join(texts), started, pretrain_s)


def at_factor(args, sweep_dir: Path, budget: int, factor: int, suffix: str, first: bool,
              sweep_s: float) -> str:  # fmt: skip
    """Fit, predict at ``factor`` x B, train the picks there (unless --sweep-only): the
    law's pick and the naive pick always; at the first factor also the most gain at B and
    grid points up to three in all."""
    from steep.sweep.predreport import run_prediction

    target = factor * budget
    t1 = time.perf_counter()
    pred = run_prediction(sweep_dir, target, MAX_REGRESSION, force=False)
    fit_s = time.perf_counter() - t1
    by_id = {p["id"]: p for p in pred["points"]}
    data = json.loads((sweep_dir / "sweep.json").read_text())
    at_b = {p["id"]: p for p in data["points"] if p.get("domain_gain") is not None}
    naive = data["recommendation"]["id"]
    rec = (pred["recommended"] or {}).get("id")
    most = max(at_b, key=lambda i: at_b[i]["domain_gain"])
    check = list(dict.fromkeys(x for x in (rec, naive, most if first else None) if x in by_id))
    for extra in (i for i, p in by_id.items() if p["grid_point"] and first):
        if len(check) >= 3:
            break
        if extra not in check:
            check.append(extra)
    if args.sweep_only:
        check = [pid for pid in check if _done(args.root, pid, factor, args.steps, suffix)]
    actual = {
        pid: validate(args.root, sweep_dir, by_id[pid], target, args.steps, factor, suffix)
        for pid in check
    }
    return report(pred, by_id, actual, rec, naive, budget, target, sweep_s, fit_s, factor)


def _validate_dir(root: Path, pid: str, factor: int, b: int, suffix: str) -> Path:
    x = "" if factor == FACTOR else f"-x{factor}"
    return root / f"predict-validate-{b}{suffix}{x}" / pid.replace(",", "_")


def _done(root: Path, pid: str, factor: int, b: int, suffix: str) -> bool:
    return (_validate_dir(root, pid, factor, b, suffix) / "model" / "steep.json").exists()


def validate(
    root: Path, sweep_dir: Path, p: dict, tokens: int, b: int, factor: int, suffix: str
) -> dict[str, float]:
    """Train the point ``p`` at ``tokens`` (its config, more steps; a mix between grid
    values takes a grid point's config with that mix); its final role losses. A finished
    validation run is read back, not trained again."""
    pid = p["id"]
    data = json.loads((sweep_dir / "sweep.json").read_text())
    keys = [a["key"] for a in data["spec"]["grid"]]
    near = min(
        data["points"],
        key=lambda q: sum(abs(float(q["values"][k]) - float(p["overrides"][k])) for k in keys),
    )
    raw = yaml.safe_load((sweep_dir / near["run_dir"] / "config.yaml").read_text())
    raw["train"]["lr_fraction"] = float(
        p["overrides"].get("train.lr_fraction", raw["train"]["lr_fraction"])
    )
    if "data.domain_share" in p["overrides"]:
        raw["data"]["domain_share"] = float(p["overrides"]["data.domain_share"])
    raw["train"]["steps"] = tokens // raw["train"]["global_batch_tokens"]
    raw["run"]["out_dir"] = str(_validate_dir(root, pid, factor, b, suffix))
    raw["eval"]["every_steps"] = raw["train"]["steps"]
    raw["checkpoint"] = {"every_steps": raw["train"]["steps"], "keep_last": 1}
    out = Path(raw["run"]["out_dir"])
    if (out / "model" / "steep.json").exists():
        run = read_run(pid, out, 0.0)
    else:
        run = train_run(root, raw)
    base, final = run.evals[0][1], run.evals[-1][1]
    return {
        "domain": final[NEW],
        "general": final[OLD],
        "domain_gain": (base[NEW] - final[NEW]) / base[NEW],
        "general_regression": (final[OLD] - base[OLD]) / base[OLD],
    }


def report(pred, by_id, actual, rec, naive, budget, target, sweep_s, fit_s, factor) -> str:
    rows, errs, inside, n = [], [], 0, 0
    for pid, got in actual.items():
        p = by_id[pid]
        row = [pid]
        for role in ("domain", "general"):
            err = (p[role]["loss"] - got[role]) / got[role]
            ok = p[role]["lo"] <= got[role] <= p[role]["hi"]
            errs.append(abs(err))
            inside += ok
            n += 1
            row += [f"{p[role]['loss']:.4f} [{p[role]['lo']:.4f}, {p[role]['hi']:.4f}]",
                    f"{got[role]:.4f}", f"{100 * err:+.2f}%{'' if ok else ' (outside)'}"]  # fmt: skip
        row += [f"{100 * p['domain_gain']:+.1f}% / {100 * got['domain_gain']:+.1f}%",
                f"{100 * p['general_regression']:+.2f}% / {100 * got['general_regression']:+.2f}%"]  # fmt: skip
        rows.append(row)
    ok = {k: v for k, v in actual.items() if v["general_regression"] <= MAX_REGRESSION}
    best = max(ok.values(), key=lambda v: v["domain_gain"])["domain_gain"] if ok else None

    def regret(pid: str | None) -> str:
        if pid not in actual or best is None:
            return "n/a"
        v = actual[pid]
        over = "" if v["general_regression"] <= MAX_REGRESSION else " (over the bound)"
        return f"{100 * (best - v['domain_gain']):.2f} points{over}"

    errs.sort()
    median = float("nan")
    if errs:
        half = len(errs) // 2
        median = errs[half] if len(errs) % 2 else sum(errs[half - 1 : half + 1]) / 2
    fit = pred["fit"]
    head = ["point", "domain pred [90%]", "domain actual", "err", "general pred [90%]",
            "general actual", "err", "gain pred / actual", "regression pred / actual"]  # fmt: skip
    lines = [
        f"### Predicting the big run: B = {budget:,} tokens, target {target:,} ({factor}x)",
        "",
        f"Fit: R^2 {fit['r2']:.4f} on {fit['evals']} evals of {fit['points']} points; last "
        f"eval held out: median error {100 * fit['holdout_error']:.2f}%.",
        f"Law: {pred['law']}.",
        "",
        markdown_table(head, rows),
        "",
        f"- median relative loss error at {factor}x: {100 * median:.2f}% ({len(errs)} losses)",
        f"- actuals inside the 90% interval: {inside} of {n}",
        f"- law's pick at {factor}x: {rec}, regret {regret(rec)}; naive pick (the sweep's "
        f"at B): {naive}, regret {regret(naive)} (regret against the best of the "
        f"{len(actual)} points trained at {factor}x within {100 * MAX_REGRESSION:g}% regression)",
        *(f"- warning from the fit: {w}" for w in pred["warnings"]),
        f"- sweep {sweep_s:.0f} s, fit + bootstrap + prediction {fit_s:.0f} s",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
