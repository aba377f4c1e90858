"""Training tokens/s: steep's loop against HF Trainer, same model, tokens, batch and precision.

Each variant runs in its own process (so peak memory is its own) on the same token
windows: ``--seq-len`` tokens per sequence, ``--micro`` sequences per forward,
``--accum`` micro-batches per optimizer step, bf16 autocast over fp32 weights, AdamW,
clipping at 1.0, cosine LR. Steady-state tokens/s is the mean over the steps after
``--skip`` warm-up steps (compilation happens there).

- ``steep``: ``steep train CONFIG`` as a user runs it (the real loop: mixture, eval at step
  0 and the end, final checkpoint and HF save outside the timed steps; on CPU it restarts
  itself on tcmalloc, see steep.train.allocator), tokens/s from its metrics.jsonl;
- ``steep-compile``: the same with ``train.compile: true``;
- ``hf-trainer``: ``transformers.Trainer`` with ``bf16=True``, timed by a callback around
  each optimizer step;
- ``hf-trainer-compile``: the same with ``torch_compile=True``;
- with ``--variants all`` also ``steep-system-malloc`` (steep on glibc's malloc) and
  ``hf-trainer-tcmalloc`` (HF Trainer with tcmalloc preloaded): what the malloc alone is
  worth, so the loops can be compared on equal footing too.

CPU (default base: the converted SmolLM2-135M that ``steep demo`` leaves in STEEP_HOME):

    .venv/bin/python benchmarks/train_throughput.py --steps 16 --variants all --out /tmp/tp.md

GPU, a Llama-3.2-1B-shaped random model:

    .venv/bin/python benchmarks/train_throughput.py --shape llama-1b --seq-len 2048 \\
        --micro 4 --accum 4 --steps 30 --skip 10
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
import yaml

from steep.plan.flops import mfu

VARIANTS = ["steep", "steep-compile", "hf-trainer", "hf-trainer-compile"]
# what the caching malloc alone is worth: steep without it, HF Trainer with it
MALLOC_VARIANTS = ["steep-system-malloc", "hf-trainer-tcmalloc"]
LLAMA_1B = dict(  # Llama-3.2-1B's shape (random weights: the speed does not care)
    model_type="llama",
    vocab_size=128256,
    hidden_size=2048,
    intermediate_size=8192,
    num_hidden_layers=16,
    num_attention_heads=32,
    num_key_value_heads=8,
    max_position_embeddings=8192,
    rope_theta=500000.0,
    tie_word_embeddings=True,
)


def default_base() -> str:
    from steep.workspace import steep_home

    found = sorted((steep_home() / "models" / "base").glob("SmolLM2-135M*"))
    if not found:
        sys.exit("no converted SmolLM2-135M in STEEP_HOME: run `steep demo` once, or pass --base")
    return str(found[-1])


def windows(args: argparse.Namespace, vocab: int) -> torch.Tensor:
    """The same (n, seq_len + 1) token windows for every variant: random ids, fixed seed."""
    n = args.micro * args.accum * args.steps
    g = torch.Generator().manual_seed(0)
    return torch.randint(0, vocab, (n, args.seq_len + 1), generator=g)


def _model_source(args: argparse.Namespace) -> dict:
    if args.shape == "llama-1b":
        return {"random_init": LLAMA_1B, "tokenizer": "bytes", "base_max_lr": 3e-4}
    return {"base": args.base}


def run_steep(args: argparse.Namespace, compile_layers: bool, work: Path) -> tuple[list, float]:
    """``steep train CONFIG`` as a user runs it (so on CPU it starts on the caching malloc);
    tokens/s per step and peak memory from its metrics.jsonl."""
    from steep.config import parse_config
    from steep.model.io import load_base

    model_cfg = _model_source(args)
    base = load_base(parse_config(_config(args, model_cfg, work, False)).model, work)
    data = work / "data.jsonl"
    ids = windows(args, len(base.tokenizer))
    with open(data, "w") as f:  # decode -> text -> steep re-tokenizes: same length class
        for row in ids:
            f.write(json.dumps({"text": base.tokenizer.decode(row.tolist())}) + "\n")
    del base
    config = work / "bench.yaml"
    config.write_text(yaml.safe_dump(_config(args, model_cfg, work, compile_layers, data)))
    cmd = [sys.executable, "-m", "steep", "train", str(config)]
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode:
        sys.exit(f"steep train failed:\n{done.stdout[-2000:]}\n{done.stderr[-3000:]}")
    print(next(x for x in done.stdout.splitlines() if x.startswith("device")), file=sys.stderr)
    recs = [json.loads(x) for x in (work / "run" / "metrics.jsonl").read_text().splitlines()]
    train = [r for r in recs if r["kind"] == "train"]
    return [r["tokens_per_s"] for r in train], train[-1]["peak_mem_gib"]


def _config(args, model_cfg, work: Path, compile_layers: bool, data: Path | None = None) -> dict:
    return {
        "run": {"name": "bench", "out_dir": str(work / "run")},
        "model": {**model_cfg, "base_max_lr": model_cfg.get("base_max_lr", 3e-3)},
        "data": {
            "seq_len": args.seq_len,
            "max_epochs": 100,
            "sources": [
                {"name": "d", "paths": [str(data or work / "none.jsonl")], "heldout_fraction": 0.02}
            ],
        },
        "train": {
            "steps": args.steps,
            "global_batch_tokens": args.seq_len * args.micro * args.accum,
            "micro_batch_size": args.micro,
            "warmup_steps": 1,
            "compile": compile_layers,
        },
        "eval": {"every_steps": 10**6, "max_windows": 1, "batch_size": 1},
        "checkpoint": {"every_steps": 10**6, "keep_last": 1},
    }


def run_hf(args: argparse.Namespace, compile_model: bool, work: Path) -> tuple[list, float]:
    """transformers.Trainer on the same windows (seq_len tokens in, as steep's loop)."""
    from transformers import (
        AutoConfig,
        AutoModelForCausalLM,
        Trainer,
        TrainerCallback,
        TrainingArguments,
    )

    if args.shape == "llama-1b":
        cfg = dict(LLAMA_1B)
        model = AutoModelForCausalLM.from_config(AutoConfig.for_model(**cfg), dtype=torch.float32)
    else:
        model = AutoModelForCausalLM.from_pretrained(args.base, dtype=torch.float32)
    ids = windows(args, model.config.vocab_size)[:, : args.seq_len]

    class Rows(torch.utils.data.Dataset):
        def __len__(self) -> int:
            return len(ids)

        def __getitem__(self, i: int) -> dict:
            return {"input_ids": ids[i], "labels": ids[i]}

    per_step: list[float] = []
    tokens_per_step = args.seq_len * args.micro * args.accum

    class Clock(TrainerCallback):
        def on_step_begin(self, *a, **k):
            self.t = time.perf_counter()

        def on_step_end(self, *a, **k):
            per_step.append(tokens_per_step / (time.perf_counter() - self.t))

    targs = TrainingArguments(
        output_dir=str(work / "hf"),
        per_device_train_batch_size=args.micro,
        gradient_accumulation_steps=args.accum,
        max_steps=args.steps,
        learning_rate=3e-4,
        lr_scheduler_type="cosine",
        warmup_steps=1,
        weight_decay=0.1,
        adam_beta2=0.95,
        max_grad_norm=1.0,
        bf16=True,
        use_cpu=not torch.cuda.is_available(),
        torch_compile=compile_model,
        logging_steps=10**6,
        save_strategy="no",
        report_to="none",
        dataloader_num_workers=0,
        seed=0,
    )
    Trainer(model=model, args=targs, train_dataset=Rows(), callbacks=[Clock()]).train()
    peak = (
        torch.cuda.max_memory_allocated() / 2**30
        if torch.cuda.is_available()
        else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    )
    return per_step, peak


def model_flops(args: argparse.Namespace) -> float:
    """Training FLOPs per token of the benchmarked shape (built on the meta device)."""
    from transformers import AutoConfig, AutoModelForCausalLM

    from steep.train.flops import flops_per_token

    if args.shape == "llama-1b":
        cfg = AutoConfig.for_model(**LLAMA_1B)
    else:
        cfg = AutoConfig.from_pretrained(args.base)
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(cfg)
    return flops_per_token(model, args.seq_len)


def worker(args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        if args.worker.startswith("steep"):  # steep, steep-compile, steep-system-malloc
            rates, peak = run_steep(args, args.worker == "steep-compile", work)
        else:
            rates, peak = run_hf(args, args.worker == "hf-trainer-compile", work)
    steady = rates[args.skip :]
    out = {"variant": args.worker, "per_step": rates, "tokens_per_s": statistics.mean(steady)}
    out["peak_gib"] = peak
    from steep.train.flops import device_peak_flops

    device_peak = device_peak_flops(torch.device("cuda" if torch.cuda.is_available() else "cpu"))
    out["mfu"] = mfu(out["tokens_per_s"], model_flops(args), device_peak)
    print("RESULT " + json.dumps(out), flush=True)


def variant_env(variant: str) -> dict[str, str]:
    """The environment a variant starts in: the same for all, but for the malloc variants."""
    from steep.train import allocator

    env = {k: v for k, v in os.environ.items() if k not in ("LD_PRELOAD", allocator.DONE)}
    if variant == "steep-system-malloc":
        env[allocator.ENV] = "system"
    if variant == "hf-trainer-tcmalloc":
        lib = allocator.resolve("tcmalloc")  # says how to install it when it is missing
        env = allocator.preload_env(lib, env)
    return env


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--base", default=None, help="HF model directory (default: demo's SmolLM2)")
    ap.add_argument("--shape", choices=["base", "llama-1b"], default="base")
    ap.add_argument("--seq-len", type=int, default=512)
    ap.add_argument("--micro", type=int, default=2)
    ap.add_argument("--accum", type=int, default=2)
    ap.add_argument("--steps", type=int, default=8)
    ap.add_argument("--skip", type=int, default=2, help="warm-up steps left out of the mean")
    ap.add_argument("--variants", default=",".join(VARIANTS), help="comma list, or all")
    ap.add_argument("--out", default=None, help="also write the markdown table here")
    ap.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.shape == "base" and args.base is None:
        args.base = default_base()
    if args.worker:
        return worker(args)
    if args.variants == "all":
        args.variants = ",".join(VARIANTS + MALLOC_VARIANTS)

    results = []
    for v in args.variants.split(","):
        cmd = [sys.executable, __file__, "--worker", v] + [
            a for a in sys.argv[1:] if not a.startswith("--out")
        ]
        cmd = [c for c in cmd if c != args.out]
        print(f"--- {v}", file=sys.stderr, flush=True)
        proc = subprocess.run(cmd, capture_output=True, text=True, env=variant_env(v))
        line = [x for x in proc.stdout.splitlines() if x.startswith("RESULT ")]
        if proc.returncode or not line:
            print(proc.stdout[-3000:], proc.stderr[-3000:], file=sys.stderr)
            results.append({"variant": v, "error": f"exit {proc.returncode}"})
            continue
        results.append(json.loads(line[0].removeprefix("RESULT ")))
        print(json.dumps(results[-1]), file=sys.stderr, flush=True)

    base = {r["variant"]: r for r in results if "tokens_per_s" in r}.get("hf-trainer")
    device = torch.cuda.get_device_name() if torch.cuda.is_available() else platform.processor()
    lines = [
        f"Command: `{' '.join(['python', *sys.argv])}`  ",
        f"Device: {device or platform.machine()}, torch {torch.__version__}, "
        f"{torch.get_num_threads()} threads. Model: {args.shape if args.shape != 'base' else args.base}; "
        f"seq {args.seq_len} x micro {args.micro} x accum {args.accum}; {args.steps} steps, "
        f"first {args.skip} left out.\n",
        "| variant | tokens/s | vs HF Trainer | MFU | peak memory GiB |",
        "|---|---:|---:|---:|---:|",
    ]
    for r in results:
        if "tokens_per_s" not in r:
            lines.append(f"| {r['variant']} | {r['error']} | | | |")
            continue
        ratio = f"{r['tokens_per_s'] / base['tokens_per_s']:.2f}x" if base else "-"
        mfu = f"{r['mfu']:.1%}" if r.get("mfu") else "-"
        lines.append(
            f"| {r['variant']} | {r['tokens_per_s']:,.0f} | {ratio} | {mfu} | {r['peak_gib']:.2f} |"
        )
    text = "\n".join(lines) + "\n"
    print(text)
    if args.out:
        Path(args.out).write_text(text)


if __name__ == "__main__":
    main()
