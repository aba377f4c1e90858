"""Optional fused kernels: Liger's Triton RMSNorm, SwiGLU and RoPE, where they can run.

They replace modules in place and leave the loss computation to steep, so the loss is the
same function of the weights with or without them (within bf16 rounding). Liger ships
Triton kernels, so they need a CUDA device and the ``liger-kernel`` package; anywhere else
steep says so before training instead of silently running the plain path.
"""

from __future__ import annotations

import torch

from steep.errors import SteepError


class KernelError(SteepError):
    """Fused kernels were asked for where they cannot run; says what is missing."""


def apply_liger(model: torch.nn.Module, device: torch.device) -> None:
    if device.type != "cuda":
        raise KernelError(
            "train.fused_kernels=liger needs a CUDA device (Liger's kernels are Triton); "
            f"this run is on {device.type}: set train.fused_kernels=none"
        )
    try:
        # optional: liger-kernel, CUDA only
        from liger_kernel.transformers import _apply_liger_kernel_to_instance
    except ImportError:
        raise KernelError(
            "train.fused_kernels=liger needs the liger-kernel package: "
            "pip install liger-kernel (into steep's environment)"
        ) from None
    # The fused linear cross-entropy patches the model's own loss path, which steep does
    # not use (it computes the loss from logits in lm_loss); the others are drop-in modules.
    _apply_liger_kernel_to_instance(
        model=model,
        rope=True,
        rms_norm=True,
        swiglu=True,
        cross_entropy=False,
        fused_linear_cross_entropy=False,
    )
