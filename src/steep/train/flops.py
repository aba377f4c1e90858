"""Model FLOPs per token and device peaks: the two halves of MFU.

MFU = achieved model FLOPs / the device's dense bf16 peak. Model FLOPs count the work the
model needs, not what the hardware did (activation recomputation does not raise it), as in
the PaLM paper's appendix B: 6 x (matmul parameters) per token for forward and backward,
plus 12 x layers x hidden x seq_len for attention scores and their weighted sum.
"""

from __future__ import annotations

import torch

# Dense (no sparsity) bf16 tensor-core peaks from the vendors' data sheets, FLOP/s.
PEAK_BF16 = {
    "H200": 989.4e12,
    "H100 PCIe": 756.0e12,
    "H100": 989.4e12,  # SXM; also H100 NVL per GPU is close (835): use train.peak_tflops there
    "A100": 312.0e12,
    "L40S": 362.05e12,
    "L4": 121.0e12,
}


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
    attention = 12 * cfg.num_hidden_layers * cfg.num_attention_heads * head_dim * seq_len
    return (4.0 if frozen else 6.0) * matmul_params + attention


def device_peak_flops(device: torch.device, override_tflops: float | None = None) -> float | None:
    """The device's bf16 peak in FLOP/s, or None where it is unknown (CPUs, unlisted GPUs)."""
    if override_tflops is not None:
        return override_tflops * 1e12
    if device.type != "cuda":
        return None
    name = torch.cuda.get_device_name(device)
    return peak_for_name(name)


def peak_for_name(name: str) -> float | None:
    for key, peak in PEAK_BF16.items():  # ordered: "H100 PCIe" is matched before "H100"
        if key in name:
            return peak
    return None
