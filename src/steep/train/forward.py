"""One forward pass to a next-token loss, shared by training and evaluation.

Windows hold ``seq_len + 1`` tokens: the model reads the first ``seq_len`` and predicts the
last ``seq_len``. Documents are packed back to back with a separator; with document
masking on, positions restart after every separator, and transformers turns restarting
``position_ids`` into a block-diagonal causal mask (flash-attention's varlen path, flex or a
masked SDPA), so a document never attends to the one before it.

The loss can be taken from the decoder's last hidden states a chunk of positions at a time
(``chunk``): each chunk's logits are made, scored and dropped, and remade in backward
(activation checkpointing of the head alone), so memory never holds seq x vocabulary
logits: 4 GB of fp32 per sequence for Llama 3's 128k vocabulary at 8192, and as much
again for their gradient. The result equals the whole-logits path up to float summation
order. Under FSDP2 the same code runs as a forward method of the root model
(``CHUNKED_LOSS``, registered by ``steep.train.parallel.shard_model``), so the root's hooks
gather its embeddings, final norm and head before it and reduce their gradients after.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch.utils.checkpoint import checkpoint

from steep.config.schema import RunConfig, chunk_positions
from steep.train.runtime import Runtime


def document_positions(input_ids: torch.Tensor, separator_id: int) -> torch.Tensor:
    """Position ids that restart at 0 on the token after each separator, per row."""
    n = input_ids.shape[1]
    idx = torch.arange(n, device=input_ids.device).expand_as(input_ids)
    starts = torch.zeros_like(input_ids, dtype=torch.bool)
    starts[:, 0] = True
    starts[:, 1:] = input_ids[:, :-1] == separator_id
    last_start = torch.where(starts, idx, torch.zeros_like(idx)).cummax(dim=1).values
    return idx - last_start


def inner_model(model: torch.nn.Module) -> torch.nn.Module:
    """The HF causal LM inside a peft wrapper (LoRA), or the model itself."""
    get_base = getattr(model, "get_base_model", None)
    return get_base() if callable(get_base) else model


def embedding_weights(model: torch.nn.Module) -> list[torch.nn.Parameter]:
    """The input embedding and, when not tied to it, the output head's weight."""
    weights = [model.get_input_embeddings().weight]  # type: ignore[operator]
    out = model.get_output_embeddings()  # type: ignore[operator]
    if out is not None and out.weight is not weights[0]:
        weights.append(out.weight)
    return weights


def decoder_and_head(model: torch.nn.Module) -> tuple[torch.nn.Module, torch.nn.Linear] | None:
    """The decoder stack and the output head of an HF causal LM, when its logits are just
    ``head(hidden)``; None for a model that post-processes them (soft-capping, scaling)."""
    model = inner_model(model)
    decoder = getattr(model, "model", None)
    head = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    cfg = getattr(model, "config", None)
    altered = any(getattr(cfg, k, None) for k in ("final_logit_softcapping", "logit_scale"))
    if decoder is None or not isinstance(head, torch.nn.Linear) or altered:
        return None
    return decoder, head


def _chunk_loss(
    hidden: torch.Tensor, targets: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None
) -> torch.Tensor:
    logits = F.linear(hidden, weight, bias)  # under the caller's autocast, as the model's head
    with torch.autocast(logits.device.type, enabled=False):
        return F.cross_entropy(logits.float(), targets, reduction="sum")


CHUNKED_LOSS = "steep_chunked_loss"  # the root's forward method under FSDP2


def chunked_loss(
    model: torch.nn.Module,
    inputs: torch.Tensor,
    targets: torch.Tensor,
    size: int,
    reduction: str,
    **kwargs: object,
) -> torch.Tensor:
    """The loss from the decoder's hidden states ``size`` positions at a time; ``model``'s
    logits must be ``head(hidden)`` (``decoder_and_head``)."""
    decoder, head = decoder_and_head(model)  # type: ignore[misc]
    hidden = decoder(input_ids=inputs, **kwargs).last_hidden_state.flatten(0, 1)
    flat_targets = targets.flatten()
    total = hidden.new_zeros((), dtype=torch.float32)
    for i in range(0, hidden.shape[0], size):
        end = i + size
        part = (hidden[i:end], flat_targets[i:end], head.weight, head.bias)
        total = total + checkpoint(_chunk_loss, *part, use_reentrant=False)
    return total / flat_targets.numel() if reduction == "mean" else total


def loss_positions(model: torch.nn.Module, chunk: int | str | None) -> int | None:
    """Positions whose logits ``lm_loss`` makes at once with ``chunk``; None: the whole
    logits (no chunk, or a model that post-processes its logits)."""
    parts = decoder_and_head(model) if chunk else None
    return None if parts is None else chunk_positions(chunk, parts[1].out_features) or 1


def loss_line(model: torch.nn.Module, chunk: int | str | None) -> str:
    """The run log's line on the loss path ``lm_loss`` takes with ``chunk``."""
    size = loss_positions(model, chunk)
    if size is not None:
        return f"loss: logits {size:,} positions at a time (train.loss_chunk {chunk})"
    why = "train.loss_chunk null" if not chunk else "the model post-processes its logits"
    return f"loss: whole logits ({why})"


def lm_loss(
    model: torch.nn.Module,
    windows: torch.Tensor,
    separator_id: int | None = None,
    reduction: str = "mean",
    chunk: int | str | None = None,
) -> torch.Tensor:
    """Cross-entropy of ``windows[:, 1:]`` given ``windows[:, :-1]``, in fp32.

    ``separator_id`` switches document masking on. The logits are upcast before the loss
    because bf16 log-softmax over a 50k vocabulary loses the small differences CPT makes.
    ``chunk`` (positions) computes the loss from the hidden states chunk by chunk, never
    holding every logit; a model whose head is not a plain linear layer uses the whole
    logits anyway.
    """
    inputs, targets = windows[:, :-1], windows[:, 1:]
    kwargs = {"use_cache": False}  # a KV cache is for generation; it also disables packing
    if separator_id is not None:
        kwargs["position_ids"] = document_positions(inputs, separator_id)
    size = loss_positions(model, chunk)
    if size is None:
        logits = model(input_ids=inputs, **kwargs).logits
        with torch.autocast(logits.device.type, enabled=False):
            flat = logits.float().flatten(0, 1)
            return F.cross_entropy(flat, targets.flatten(), reduction=reduction)
    sharded = getattr(model, CHUNKED_LOSS, None)  # FSDP2: through the root's hooks
    if sharded is not None:
        return sharded(inputs, targets, size, reduction, **kwargs)
    return chunked_loss(model, inputs, targets, size, reduction, **kwargs)


def use_document_mask(config: RunConfig, runtime: Runtime) -> bool:
    """``auto`` masks across documents only where a kernel makes it cheap."""
    if config.train.document_mask != "auto":
        return config.train.document_mask == "on"
    fast = {"flash_attention_2", "flash_attention_3", "flex_attention"}
    return runtime.device.type == "cuda" and config.model.attention in fast
