"""Model FLOPs per token and the device's peak: the two halves of MFU.

MFU = achieved model FLOPs / the device's dense bf16 peak (``steep.plan.flops.mfu``). Here
the model's parameters are counted; the formula (PaLM's appendix B) is
``steep.plan.flops.model_flops_per_token``, which ``steep plan`` uses too, and the peak
comes from ``steep.plan.devices``, the table ``steep plan`` reads.
"""

from __future__ import annotations

import torch

from steep.plan.devices import peak_flops
from steep.plan.flops import model_flops_per_token


def flops_per_token(model: torch.nn.Module, seq_len: int, frozen: bool = False) -> float:
    """Training FLOPs per token (forward + backward) of a decoder-only HF model.

    ``frozen`` (LoRA): the base's weights get no gradient, so a matmul costs 4 x its
    parameters (forward, and backward to its input), not 6; attention still costs 12.
    """
    cfg = model.config
    embed = model.get_input_embeddings().weight
    matmul_params = sum(p.numel() for p in model.parameters() if p is not embed)
    output = model.get_output_embeddings()
    if output is not None and output.weight is embed:  # tied: the head matmul still runs
        matmul_params += embed.numel()
    head_dim = getattr(cfg, "head_dim", None) or cfg.hidden_size // cfg.num_attention_heads
    trained, held = (0, matmul_params) if frozen else (matmul_params, 0)
    q_dim = cfg.num_attention_heads * head_dim
    return model_flops_per_token(trained, held, cfg.num_hidden_layers, q_dim, seq_len)


def device_peak_flops(device: torch.device, override_tflops: float | None = None) -> float | None:
    """The device's bf16 peak in FLOP/s, or None where it is unknown (CPUs, unlisted GPUs)."""
    if override_tflops is not None:
        return override_tflops * 1e12
    if device.type != "cuda":
        return None
    return peak_flops(torch.cuda.get_device_name(device))  # steep.plan.devices: one table
