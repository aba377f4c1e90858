"""Grow a model's embeddings for the new tokens and initialise their rows."""

from __future__ import annotations

from typing import Literal

import torch
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from steep.model.vocab.tokenizer import VocabError

Init = Literal["mean", "mean_resizing", "random"]
INITS: tuple[str, ...] = ("mean", "mean_resizing", "random")


def sub_token_ids(old: PreTrainedTokenizerBase, token: str) -> list[int]:
    """The old ids a new token string is cut into by the old BPE model (no pre-tokenizer:
    the string is already one byte-level word piece)."""
    return [t.id for t in old.backend_tokenizer.model.tokenize(token)]


def tied(model: PreTrainedModel) -> bool:
    out = model.get_output_embeddings()
    return out is not None and out.weight is model.get_input_embeddings().weight


def grow_embeddings(
    model: PreTrainedModel,
    old: PreTrainedTokenizerBase,
    new_tokens: dict[int, str],
    init: str,
    seed: int = 0,
) -> None:
    """Resize input and output embeddings to hold ``new_tokens`` and initialise their rows.

    ``mean``: each new row is the mean of its sub-token rows (input and, if untied, output);
    ``mean_resizing``: transformers' own, a draw around the mean of all old rows;
    ``random``: transformers' ``_init_weights`` (normal, std ``initializer_range``).
    Old rows are untouched, so logits over old ids on old-token text do not change.
    """
    if init not in INITS:
        raise VocabError(f"--init must be one of {', '.join(INITS)}, got {init!r}")
    was_tied = tied(model)
    old_rows = model.get_input_embeddings().weight.shape[0]
    rows = max(old_rows, max(new_tokens) + 1)
    torch.manual_seed(seed)
    if rows > old_rows:
        model.resize_token_embeddings(rows, mean_resizing=init == "mean_resizing")
    if was_tied and not tied(model):
        raise VocabError("resizing untied the input and output embeddings")
    weights = [model.get_input_embeddings().weight]
    if not was_tied and model.get_output_embeddings() is not None:
        weights.append(model.get_output_embeddings().weight)
    padded = [i for i in new_tokens if i < old_rows]  # rows the base kept as vocab padding
    with torch.no_grad():
        for w in weights:
            if init == "mean":
                for i, token in new_tokens.items():
                    w[i] = w[sub_token_ids(old, token)].mean(0)
            elif padded:  # resize only initialised the rows it added
                fill = w[:old_rows].mean(0) if init == "mean_resizing" else None
                for i in padded:
                    if fill is not None:
                        w[i] = fill
                    else:
                        w[i].normal_(0.0, getattr(model.config, "initializer_range", 0.02))
