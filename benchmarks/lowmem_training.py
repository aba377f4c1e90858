"""What LoRA and 8-bit AdamW save, measured on tensors rather than estimated.

For a SmolLM2-135M-shaped random model (fp32, as steep trains under bf16-autocast): the
bytes of the trainable weights, their gradients and the optimizer state after one real
step, for full training with AdamW and with torchao's AdamW8bit, and for LoRA (rank 16 on
every linear layer, embeddings trained) with AdamW. Also the step time of each on this CPU.
Bytes are summed over every tensor's storage (an 8-bit state counts its codes and scales).

    .venv/bin/python -m benchmarks.lowmem_training [--rank 16] [--seq 256]
"""

from __future__ import annotations

import argparse
import time

import torch
from transformers import LlamaConfig, LlamaForCausalLM

import steep  # noqa: F401  # mutes torchao's CPU-wheel import noise
from benchmarks.optimizer_step import SMOLLM2_135M


def tensor_bytes(t: torch.Tensor) -> int:
    """Storage bytes of a tensor, or of the plain tensors inside a tensor subclass."""
    flatten = getattr(t, "__tensor_flatten__", None)
    if (
        flatten is not None
        and type(t) is not torch.Tensor
        and not isinstance(t, torch.nn.Parameter)
    ):
        names, _ = flatten()
        return sum(tensor_bytes(getattr(t, n)) for n in names)
    return t.numel() * t.element_size()


def measure(kind: str, rank: int, seq: int) -> dict[str, float]:
    torch.manual_seed(0)
    model = LlamaForCausalLM(LlamaConfig(**SMOLLM2_135M))
    if kind == "lora":
        from peft import LoraConfig, get_peft_model  # deferred: the optional peft

        model = get_peft_model(
            model, LoraConfig(r=rank, lora_alpha=2 * rank, target_modules="all-linear")
        )
        model.get_input_embeddings().weight.requires_grad_(True)
    params = [p for p in model.parameters() if p.requires_grad]
    if kind == "full-adamw8bit":
        from torchao.optim import AdamW8bit  # deferred: the optional torchao

        opt: torch.optim.Optimizer = AdamW8bit(params, lr=1e-4)
    else:
        opt = torch.optim.AdamW(params, lr=1e-4, fused=True)
    ids = torch.randint(0, SMOLLM2_135M["vocab_size"], (1, seq))
    times = []
    for _ in range(3):  # the first step allocates (and for torchao compiles): not timed
        started = time.perf_counter()
        loss = model(input_ids=ids, labels=ids).loss
        loss.backward()
        opt.step()
        times.append(time.perf_counter() - started)
        grads = sum(tensor_bytes(p.grad) for p in params if p.grad is not None)
        opt.zero_grad(set_to_none=True)
    state = sum(
        tensor_bytes(v) for s in opt.state.values() for v in s.values() if torch.is_tensor(v)
    )
    total = sum(p.numel() for p in model.parameters())
    return {
        "params": total,
        "trainable": sum(p.numel() for p in params),
        "weights_mib": sum(tensor_bytes(p) for p in model.parameters()) / 2**20,
        "grads_mib": grads / 2**20,
        "state_mib": state / 2**20,
        "step_s": min(times[1:]),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rank", type=int, default=16)
    ap.add_argument("--seq", type=int, default=256)
    args = ap.parse_args()
    print(
        "| training | trainable params | weights MiB | gradients MiB | optimizer state MiB "
        "| state bytes / trainable param | step s |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|")
    for kind in ("full-adamw", "full-adamw8bit", "lora"):
        m = measure(kind, args.rank, args.seq)
        per = m["state_mib"] * 2**20 / m["trainable"]
        print(
            f"| {kind} | {m['trainable']:,} of {m['params']:,} | {m['weights_mib']:,.0f} | "
            f"{m['grads_mib']:,.0f} | {m['state_mib']:,.1f} | {per:.2f} | {m['step_s']:.2f} |"
        )


if __name__ == "__main__":
    main()
