"""Model FLOPs per token and the device's peak: the two halves of MFU.

MFU = achieved model FLOPs / the device's dense bf16 peak (``steep.plan.flops.mfu``). Here
the model's parameters are counted; the formula (PaLM's appendix B) is
``steep.plan.flops.model_flops_per_token``, which ``steep plan`` uses too, and the peak
comes from ``steep.plan.devices``, the table ``steep plan`` reads.
"""

from __future__ import annotations

import math

import torch

from steep.plan.devices import peak_flops
from steep.plan.flops import model_flops_per_token


def flops_per_token(model: torch.nn.Module, seq_len: int) -> float:
    """Training FLOPs per token (forward + backward) of a decoder-only HF model as it will
    train: a weight with a gradient costs 6 x its parameters, a frozen one 4 x (LoRA's
    base: forward, and backward to its input only), as ``steep plan`` counts them. The input
    embedding is a lookup; a tied head's matmul still runs."""
    cfg = model.config
    embed = model.get_input_embeddings().weight
    counts = {True: 0, False: 0}  # requires_grad -> parameters
    for p in model.parameters():
        if p is not embed:
            counts[p.requires_grad] += parameter_count(p)
    output = model.get_output_embeddings()
    if output is not None and output.weight is embed:  # tied: the head matmul still runs
        counts[embed.requires_grad] += embed.numel()
    head_dim = getattr(cfg, "head_dim", None) or cfg.hidden_size // cfg.num_attention_heads
    q_dim = cfg.num_attention_heads * head_dim
    return model_flops_per_token(counts[True], counts[False], cfg.num_hidden_layers, q_dim, seq_len)


def parameter_count(p: torch.Tensor) -> int:
    """Parameters a weight holds: a 4-bit (QLoRA) weight packs two in a byte, and its
    quantization state keeps the real shape."""
    shape = getattr(getattr(p, "quant_state", None), "shape", None)
    return math.prod(shape) if shape is not None else p.numel()


def device_peak_flops(device: torch.device, override_tflops: float | None = None) -> float | None:
    """The device's bf16 peak in FLOP/s, or None where it is unknown (CPUs, unlisted GPUs)."""
    if override_tflops is not None:
        return override_tflops * 1e12
    if device.type != "cuda":
        return None
    return peak_flops(torch.cuda.get_device_name(device))  # steep.plan.devices: one table
