"""Context extension (#35): a tiny Llama that knows 256 tokens, taken to 1,024 by YaRN,
linear and no RoPE scaling at equal tokens; passkey by length x depth, loss by position,
short-context regression.

The base is pretrained here by steep's own ``train()`` at ``seq_len`` 256 (byte tokenizer,
hidden 64, 4 layers) on the demo's Wikipedia articles plus 20% synthetic passkey
documents of 256 bytes, so it can retrieve a key within the context it knows. Each arm
then continues it at ``seq_len`` 1,024 for the same steps and tokens on Wikipedia plus 20%
passkey documents of 256 to 1,024 bytes:

- ``none``: RoPE unchanged; the base's config.json says 1,024 positions (steep refuses
  ``seq_len`` past the base's context otherwise, and this arm is the reason it does);
- ``linear``: ``model.rope_scaling: {rope_type: linear, factor: 4}``;
- ``yarn``: ``model.rope_scaling: {rope_type: yarn, factor: 4, original_max_position_embeddings: 256}``.

Every model is measured with steep's own evals (``steep.model.passkey``, ``.positions``,
``.heldout``): at step 0 (the base as the arm loads it) and at the end.

    nice -n 10 .venv/bin/python benchmarks/context_extension.py   # ~15-25 min on 2 cores
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent / "recipe"))
from common import (  # noqa: E402  (the recipe's corpora and helpers)
    PEAK_LR,
    machine,
    markdown_table,
    prepare_corpora,
    train_run,
)

OLD_LEN, NEW_LEN = 256, 1024
LENGTHS = [256, 512, 1024]
DEPTHS = [0.0, 0.25, 0.5, 0.75, 1.0]
TRIALS = 4
POSITION_WINDOWS = 24
SHORT_WINDOWS = 48  # rolling windows of 256 read at the old length
TINY: dict[str, Any] = {
    "model_type": "llama",
    "hidden_size": 64,
    "intermediate_size": 256,
    "num_hidden_layers": 4,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "max_position_embeddings": OLD_LEN,
    "tie_word_embeddings": True,
}
ARMS: dict[str, dict[str, Any] | None] = {
    "none": None,
    "linear": {"rope_type": "linear", "factor": 4.0},
    "yarn": {"rope_type": "yarn", "factor": 4.0, "original_max_position_embeddings": OLD_LEN},
}
BATCH_TOKENS = 2048


def passkey_docs(path: Path, n: int, lengths: tuple[int, int], seed: int) -> Path:
    """Training documents that teach the task: prompts with their answers, keys drawn from
    another seed than the eval's."""
    from steep.model.io import byte_tokenizer
    from steep.model.passkey import passkey_text

    tok, rng = byte_tokenizer(), np.random.default_rng(seed)
    with open(path, "w", encoding="utf-8") as f:
        for _ in range(n):
            length = int(rng.integers(lengths[0], lengths[1] + 1))
            key = str(int(rng.integers(10_000, 100_000)))
            text = passkey_text(tok, length, float(rng.random()), key)
            f.write(json.dumps({"text": text}) + "\n")
    return path


def config(
    name: str, root: Path, model: dict[str, Any], sources: list, seq_len: int, steps: int,
    lr_fraction: float, heldout: Path,
) -> dict[str, Any]:  # fmt: skip
    return {
        "run": {"name": name, "out_dir": str(root / name), "seed": 0},
        "model": {**model, "base_max_lr": PEAK_LR},
        "data": {
            "seq_len": seq_len,
            "sources": sources,
            "eval_sets": {"heldout": [str(heldout)]},
            "eval_roles": {"heldout": "general"},
        },
        "train": {
            "steps": steps,
            "global_batch_tokens": BATCH_TOKENS,
            "micro_batch_size": BATCH_TOKENS // seq_len,
            "lr_fraction": lr_fraction,
            "warmup_steps": max(1, steps // 20),
            "min_lr_ratio": 0.1,
            "precision": "bf16-autocast",
            "threads": 1,  # a shared, loaded machine: one thread wastes less on waiting
        },
        "eval": {"every_steps": max(1, steps // 2), "max_windows": 8},
        "checkpoint": {"every_steps": steps, "keep_last": 1},
    }


def src(name: str, path: Path, weight: float) -> dict[str, Any]:
    return {"name": name, "paths": [str(path)], "weight": weight, "heldout_fraction": 0.0}


def measure(model_spec: dict[str, Any], heldout: Path, label: str) -> dict[str, Any]:
    """Passkey grid, loss by position at 1,024 and bpb at the old length, one model."""
    import torch

    from steep.config import ModelSection
    from steep.model.heldout import read_set, tokenize_set
    from steep.model.io import load_base
    from steep.model.passkey import make_prompts, score_passkey, split_lengths
    from steep.model.positions import position_loss, text_windows
    from steep.model.scoring import score_requests
    from steep.workspace import steep_home

    torch.set_num_threads(1)
    started = time.process_time()
    loaded = load_base(ModelSection(**model_spec), steep_home())
    model, tok, cpu = loaded.model.eval(), loaded.tokenizer, torch.device("cpu")
    limit = int(model.config.max_position_embeddings)
    fit, skipped = split_lengths(LENGTHS, limit)
    grid = score_passkey(model, make_prompts(tok, fit, DEPTHS, TRIALS), 8, cpu)
    texts = read_set("wiki", [str(heldout)])
    out: dict[str, Any] = {"label": label, "positions": limit, "passkey": grid, "skipped": skipped}
    if limit >= NEW_LEN:
        windows = text_windows("wiki", texts.texts, tok, NEW_LEN, POSITION_WINDOWS)
        out["position_loss"] = position_loss(model, windows, 8, cpu)
    short = tokenize_set(texts, tok, OLD_LEN)
    requests = short.requests[:SHORT_WINDOWS]  # the same first windows for every model
    nats = -sum(s.logprob for s in score_requests(model, requests, 8, cpu, "short"))
    out["short_loss"] = nats / sum(r.n_scored for r in requests)  # bytes: nats per byte
    out["cpu_s"] = time.process_time() - started
    print(f"[{label}] measured in {out['cpu_s']:.0f} CPU s", flush=True)
    return out


def none_base(base: Path, root: Path) -> Path:
    """The base with 1,024 positions and its RoPE unchanged: the no-scaling arm."""
    out = root / "base-1024-unscaled"
    if out.exists():
        shutil.rmtree(out)
    shutil.copytree(base, out)
    cfg = json.loads((out / "config.json").read_text())
    cfg["max_position_embeddings"] = NEW_LEN
    (out / "config.json").write_text(json.dumps(cfg, indent=2))
    return out


def arm_model(base: Path, root: Path, arm: str) -> dict[str, Any]:
    scaling = ARMS[arm]
    if scaling is None:
        return {"base": str(none_base(base, root))}
    return {"base": str(base), "rope_scaling": scaling}


def tables(results: dict[str, dict[str, Any]]) -> str:
    """The markdown of the results (BENCHMARKS.md 'Context extension')."""
    lines = ["### Passkey: accuracy by length (mean over depths; key loss in nats/digit)", ""]
    rows = []
    for label, r in results.items():
        row = [label]
        for n in LENGTHS:
            cell = r["passkey"].get(str(n))
            if cell is None:
                row.append("past its positions")
                continue
            acc = np.mean([c["accuracy"] for c in cell.values()])
            loss = np.mean([c["key_loss"] for c in cell.values()])
            row.append(f"{acc:.0%} ({loss:.2f})")
        rows.append(row)
    lines += markdown_table(["model", *map(str, LENGTHS)], rows).splitlines()
    lines += ["", "### Passkey at 1,024 by depth (accuracy)", ""]
    rows = [
        [label, *(f"{r['passkey'][str(NEW_LEN)][f'{d:g}']['accuracy']:.0%}" for d in DEPTHS)]
        for label, r in results.items()
        if str(NEW_LEN) in r["passkey"]
    ]
    lines += markdown_table(["model", *(f"depth {d:g}" for d in DEPTHS)], rows).splitlines()
    lines += ["", "### Loss by position at 1,024 (wiki held-out, nats/byte)", ""]
    with_pos = {k: v for k, v in results.items() if "position_loss" in v}
    buckets = next(iter(with_pos.values()))["position_loss"]["buckets"] if with_pos else []
    keep = [i for i, b in enumerate(buckets) if b["start"] >= 16]
    rows = [
        [label, *(f"{r['position_loss']['buckets'][i]['loss']:.3f}" for i in keep)]
        for label, r in with_pos.items()
    ]
    lines += markdown_table(["model", *(buckets[i]["positions"] for i in keep)], rows).splitlines()
    lines += ["", "### Short context: wiki held-out read in windows of 256 (nats/byte)", ""]
    was = results["base"]["short_loss"]
    rows = [
        [label, f"{r['short_loss']:.4f}", f"{100 * (r['short_loss'] / was - 1):+.1f}%"]
        for label, r in results.items()
    ]
    lines += markdown_table(["model", "loss", "vs base"], rows).splitlines()
    return "\n".join(lines) + "\n"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--root", type=Path, default=Path("/tmp/steep-ctx"))
    p.add_argument("--pretrain-steps", type=int, default=1500)
    p.add_argument("--steps", type=int, default=150, help="continued steps per arm")
    p.add_argument("--passkey-share", type=float, default=0.2, help="of the training tokens")
    args = p.parse_args()
    root: Path = args.root
    root.mkdir(parents=True, exist_ok=True)
    started, cpu0 = time.perf_counter(), time.process_time()
    corpora = prepare_corpora(root)
    share = args.passkey_share  # documents for 1.3x the tokens the runs read of them
    n_short = int(1.3 * share * args.pretrain_steps * BATCH_TOKENS / 210)
    n_long = int(1.3 * share * args.steps * BATCH_TOKENS / 640)
    short_keys = passkey_docs(root / "passkey-256.jsonl", n_short, (160, OLD_LEN), seed=101)
    long_keys = passkey_docs(root / "passkey-1024.jsonl", n_long, (OLD_LEN, NEW_LEN), seed=202)
    heldout = corpora.old_heldout
    base_run = config(
        "pretrain", root, {"random_init": TINY, "tokenizer": "bytes"},
        [src("wiki", corpora.old_train, 1 - share), src("passkey", short_keys, share)],
        OLD_LEN, args.pretrain_steps, 1.0, heldout,
    )  # fmt: skip
    base = root / "pretrain" / "model"
    if not base.exists():
        train_run(root, base_run)
    results = {"base": measure({"base": str(base)}, heldout, "base")}
    for arm in ARMS:
        model = arm_model(base, root, arm)
        results[f"{arm}, step 0"] = measure(model, heldout, f"{arm} step 0")
        run = config(
            f"arm-{arm}", root, model,
            [src("wiki", corpora.old_train, 1 - share), src("passkey", long_keys, share)],
            NEW_LEN, args.steps, 0.3, heldout,
        )  # fmt: skip
        t0 = time.perf_counter()
        train_run(root, run)
        print(f"[{arm}] {args.steps} steps in {time.perf_counter() - t0:.0f} s", flush=True)
        results[f"{arm}, end"] = measure({"base": str(root / f"arm-{arm}" / "model")}, heldout, arm)
    text = tables(results)
    wall, cpu = time.perf_counter() - started, time.process_time() - cpu0
    text += f"\n{machine()}; wall {wall / 60:.1f} min, this process {cpu / 60:.1f} CPU min\n"
    (root / "results.json").write_text(json.dumps(results, indent=1, default=float))
    (root / "results.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
