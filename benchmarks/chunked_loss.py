"""Peak memory of one forward + backward with the whole logits vs the chunked loss (#19).

    .venv/bin/python benchmarks/chunked_loss.py --vocab 128256 --seq 4096 --chunks 0 2048 512

Each setting runs in a fresh process (peak RSS is a high-water mark) on a tiny Llama with
Llama 3's vocabulary, so the logits dominate: seq x vocab x 4 bytes of fp32 logits, their
log-softmax and their gradient. Reported: peak RSS above the process's RSS once the model
and batch exist, and the step time.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time


def one(vocab: int, seq: int, chunk: int) -> dict[str, float]:
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    from steep.train.forward import lm_loss

    torch.manual_seed(0)
    cfg = LlamaConfig(
        vocab_size=vocab, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=seq + 1,
    )  # fmt: skip
    model = LlamaForCausalLM(cfg)
    windows = torch.randint(0, vocab, (1, seq + 1))
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # MiB, high-water
    began = time.perf_counter()
    loss = lm_loss(model, windows, chunk=chunk or None)
    loss.backward()
    seconds = time.perf_counter() - began
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"chunk": chunk, "loss": float(loss), "peak_mib": peak - before, "seconds": seconds}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--vocab", type=int, default=128256)
    ap.add_argument("--seq", type=int, default=4096)
    ap.add_argument("--chunks", type=int, nargs="+", default=[0, 2048, 512], help="0: whole")
    ap.add_argument("--one", type=int, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.one is not None:
        print(json.dumps(one(args.vocab, args.seq, args.one)))
        return
    print(f"vocab {args.vocab:,}, seq {args.seq:,}, batch 1, fp32\n")
    print("| loss | peak RSS above the model, MiB | forward + backward, s | loss value |")
    print("|---|---:|---:|---:|")
    for chunk in args.chunks:
        cmd = [sys.executable, __file__, "--vocab", str(args.vocab), "--seq", str(args.seq)]
        out = subprocess.run([*cmd, "--one", str(chunk)], capture_output=True, text=True)
        r = json.loads(out.stdout.strip().splitlines()[-1])
        what = "whole logits" if not chunk else f"chunks of {chunk}"
        print(f"| {what} | {r['peak_mib']:,.0f} | {r['seconds']:.1f} | {r['loss']:.6f} |")


if __name__ == "__main__":
    main()
