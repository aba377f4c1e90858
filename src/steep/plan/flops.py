"""Model FLOPs per token and MFU, torch-free: one formula for ``steep plan`` (its step time)
and for training (the ``mfu`` of every train record, the benchmarks' MFU column).

Model FLOPs count the work the model needs, not what the hardware did (activation
recomputation does not raise them), as in the PaLM paper's appendix B: a matmul costs 2 x
its parameters per token forward and 4 backward (to its input and to its weight), so 6 x
the trained matmul parameters and 4 x the frozen ones (no weight gradient: LoRA's base),
plus 12 x layers x query width x seq_len for attention scores and their weighted sum.
"""

from __future__ import annotations


def model_flops_per_token(
    trained_matmul: float, frozen_matmul: float, layers: int, q_dim: int, seq_len: int
) -> float:
    """Training FLOPs per token (forward + backward) of a decoder: see the module docstring."""
    return 6.0 * trained_matmul + 4.0 * frozen_matmul + 12.0 * layers * q_dim * seq_len


def mfu(
    tokens_per_s: float, flops_per_token: float, peak: float | None, devices: int = 1
) -> float | None:
    """Model FLOPs utilisation: the model FLOP/s achieved over ``devices`` x their dense
    bf16 ``peak`` (FLOP/s, ``steep.plan.devices.peak_flops``); None where it is unknown."""
    return tokens_per_s * flops_per_token / (devices * peak) if peak else None


def step_seconds(flops: float, devices: int, peak: float, assumed_mfu: float) -> float:
    """``mfu`` solved for the time: a step of ``flops`` on ``devices`` of ``peak`` FLOP/s."""
    return flops / (devices * peak * assumed_mfu)
