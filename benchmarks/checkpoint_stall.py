"""How long training stops for a checkpoint: DCP save against DCP async_save.

A SmolLM2-135M-shaped model with its AdamW state (fp32: ~1.5 GiB of tensors) is
checkpointed the way the loop does it (``steep.train.checkpoint``), synchronously and with
``checkpoint.async_save``. The stall is the time the training thread is blocked: all of
``save_checkpoint`` for the synchronous write; for the asynchronous one the copy to host
memory (``stall_s``), with the files written in a thread while a stand-in for training
(matmuls) runs, then the wait at the next checkpoint (``wait_s``, zero when the writer
finished first).

    .venv/bin/python -m benchmarks.checkpoint_stall [--work-s 20] [--dir /tmp/ckpt-bench]
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

import torch
from transformers import LlamaConfig, LlamaForCausalLM

from benchmarks.optimizer_step import SMOLLM2_135M
from steep.train.checkpoint import save_checkpoint, start_checkpoint


def build() -> tuple[torch.nn.Module, torch.optim.Optimizer]:
    torch.manual_seed(0)
    model = LlamaForCausalLM(LlamaConfig(**SMOLLM2_135M))
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    for p in model.parameters():  # moments allocated, as after the first step
        p.grad = torch.zeros_like(p)
    opt.step()
    return model, opt


def busy(seconds: float) -> int:
    """Stand-in for training steps: matmuls for ``seconds``; returns how many ran."""
    a, n, end = torch.randn(512, 512), 0, time.perf_counter() + seconds
    while time.perf_counter() < end:
        a = torch.tanh(a @ a)
        n += 1
    return n


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--work-s", type=float, default=20.0, help="training between checkpoints")
    ap.add_argument("--dir", type=Path, default=None)
    args = ap.parse_args()
    root = args.dir or Path(tempfile.mkdtemp(prefix="ckpt-bench-"))
    model, opt = build()
    size = sum(p.numel() * 4 * 3 for p in model.parameters()) / 2**30
    started = time.perf_counter()
    path = save_checkpoint(root / "sync", 1, model, opt, {}, keep_last=1)
    sync_s = time.perf_counter() - started
    written = sum(f.stat().st_size for f in path.iterdir()) / 2**30
    alone = busy(args.work_s) / args.work_s  # matmuls a second with nothing else running
    pending = start_checkpoint(root / "async", 1, model, opt, {}, 1, background=True)
    during = busy(args.work_s) / args.work_s
    started = time.perf_counter()
    pending.wait()
    wait_s = time.perf_counter() - started
    print(f"state {size:.2f} GiB of tensors, {written:.2f} GiB on disk, into {root}")
    print("| checkpoint | training blocked, s | training speed while it writes |")
    print("|---|---:|---:|")
    print(f"| dcp.save | {sync_s:.2f} | (stopped) |")
    print(
        f"| dcp.async_save | {pending.stall_s:.2f} + {wait_s:.2f} wait | "
        f"{during / alone:.0%} of its speed alone |"
    )
    if args.dir is None:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
