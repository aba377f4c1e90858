"""AdamW step time: torch's fused kernel against foreach and the per-tensor loop.

The optimizer step is a fixed cost per training step that no batch size hides; on a
2-core CPU it is a visible share of a 135M-parameter step. This times ``optimizer.step()``
alone on tensors shaped like SmolLM2-135M's (random gradients, fp32), the way steep's loop
builds its parameter groups (decay on matrices, none on 1-D tensors).

    .venv/bin/python benchmarks/optimizer_step.py [--repeats 5]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from transformers import LlamaConfig, LlamaForCausalLM

SMOLLM2_135M = {
    "vocab_size": 49152,
    "hidden_size": 576,
    "intermediate_size": 1536,
    "num_hidden_layers": 30,
    "num_attention_heads": 9,
    "num_key_value_heads": 3,
    "tie_word_embeddings": True,
}


def time_step(model: torch.nn.Module, impl: str, repeats: int) -> list[float]:
    """Seconds per ``step()`` after one untimed step that allocates the moment buffers."""
    params = [p for p in model.parameters() if p.requires_grad]
    groups = [
        {"params": [p for p in params if p.ndim >= 2], "weight_decay": 0.1},
        {"params": [p for p in params if p.ndim < 2], "weight_decay": 0.0},
    ]
    flags = {"fused": {"fused": True}, "foreach": {"foreach": True}, "for-loop": {"foreach": False}}
    opt = torch.optim.AdamW(groups, lr=3e-4, **flags[impl])
    for p in params:
        p.grad = torch.randn_like(p) * 1e-3
    opt.step()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        opt.step()
        times.append(time.perf_counter() - start)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    torch.manual_seed(0)
    model = LlamaForCausalLM(LlamaConfig(**SMOLLM2_135M))
    n = sum(p.numel() for p in model.parameters())
    print(
        f"{n / 1e6:.1f}M parameters, torch {torch.__version__}, {torch.get_num_threads()} threads"
    )
    print("| AdamW | s per step (median) | vs fused |")
    print("|---|---:|---:|")
    results = {
        impl: statistics.median(time_step(model, impl, args.repeats))
        for impl in ("fused", "foreach", "for-loop")
    }
    for impl, s in results.items():
        print(f"| {impl} | {s:.2f} | {s / results['fused']:.2f}x |")


if __name__ == "__main__":
    main()
