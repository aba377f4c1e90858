"""One forward pass to a next-token loss, shared by training and evaluation.

Windows hold ``seq_len + 1`` tokens: the model reads the first ``seq_len`` and predicts the
last ``seq_len``. Documents are packed back to back with a separator; with document
masking on, positions restart after every separator, and transformers turns restarting
``position_ids`` into a block-diagonal causal mask (flash-attention's varlen path, flex or a
masked SDPA), so a document never attends to the one before it.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def document_positions(input_ids: torch.Tensor, separator_id: int) -> torch.Tensor:
    """Position ids that restart at 0 on the token after each separator, per row."""
    n = input_ids.shape[1]
    idx = torch.arange(n, device=input_ids.device).expand_as(input_ids)
    starts = torch.zeros_like(input_ids, dtype=torch.bool)
    starts[:, 0] = True
    starts[:, 1:] = input_ids[:, :-1] == separator_id
    last_start = torch.where(starts, idx, torch.zeros_like(idx)).cummax(dim=1).values
    return idx - last_start


def lm_loss(
    model: torch.nn.Module,
    windows: torch.Tensor,
    separator_id: int | None = None,
    reduction: str = "mean",
) -> torch.Tensor:
    """Cross-entropy of ``windows[:, 1:]`` given ``windows[:, :-1]``, in fp32.

    ``separator_id`` switches document masking on. The logits are upcast before the loss
    because bf16 log-softmax over a 50k vocabulary loses the small differences CPT makes.
    """
    inputs, targets = windows[:, :-1], windows[:, 1:]
    kwargs = {"use_cache": False}  # a KV cache is for generation; it also disables packing
    if separator_id is not None:
        kwargs["position_ids"] = document_positions(inputs, separator_id)
    logits = model(input_ids=inputs, **kwargs).logits
    with torch.autocast(logits.device.type, enabled=False):
        return F.cross_entropy(logits.float().flatten(0, 1), targets.flatten(), reduction=reduction)
