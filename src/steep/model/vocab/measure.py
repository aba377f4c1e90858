"""What an extension gains: fertility, use of the new tokens, initial bits per byte."""

from __future__ import annotations

import random
from collections.abc import Sequence

import torch
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from steep.model.heldout import EvalSetError, TextSet, evaluate_set, tokenize_set
from steep.model.vocab.tokenizer import Extension


def fertility(tokenizer: PreTrainedTokenizerBase, texts: Sequence[str]) -> dict[str, float]:
    """Tokens per character and per whitespace word (lower is better) on ``texts``."""
    ids = tokenizer(list(texts), add_special_tokens=False)["input_ids"]
    tokens = sum(len(x) for x in ids)
    chars = sum(len(t) for t in texts)
    words = sum(len(t.split()) for t in texts)
    return {
        "tokens": tokens,
        "characters": chars,
        "words": words,
        "tokens_per_char": tokens / max(chars, 1),
        "tokens_per_word": tokens / max(words, 1),
        "chars_per_token": chars / max(tokens, 1),
    }


def new_token_usage(ext: Extension, texts: Sequence[str]) -> dict[str, float]:
    """How much of the held-out text the new tokens cover, and how many of them appear."""
    ids = ext.tokenizer(list(texts), add_special_tokens=False)["input_ids"]
    flat = [i for x in ids for i in x]
    first = ext.first_new_id
    used = {i for i in flat if i >= first}
    return {
        "new_token_share": sum(1 for i in flat if i >= first) / max(len(flat), 1),
        "new_tokens_seen": len(used),
        "new_tokens": len(ext.new_tokens),
    }


def initial_bpb(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    texts: Sequence[str],
    seq_len: int = 512,
    batch_size: int = 4,
) -> float:
    """Bits per byte of ``texts`` under ``model``: comparable across tokenizers."""
    tset = tokenize_set(TextSet("heldout", [], list(texts), 0), tokenizer, seq_len)
    return evaluate_set(model, tset, batch_size, torch.device("cpu"))["bpb"]


def _safe_bpb(
    model: PreTrainedModel, tok: PreTrainedTokenizerBase, texts: list[str], seq_len: int
) -> float:
    try:
        return initial_bpb(model, tok, texts, seq_len)
    except EvalSetError:
        return initial_bpb(model, tok, texts, seq_len=64)  # short held-out text: small windows


def _first_chars(texts: Sequence[str], limit: int) -> list[str]:
    """Whole documents, spread over the set, until ``limit`` characters (at least one)."""
    order = list(range(len(texts)))
    random.Random(0).shuffle(order)
    out: list[str] = []
    total = 0
    for i in order:
        if out and total + len(texts[i]) > limit:
            continue
        out.append(texts[i][: max(limit, 1)])
        total += len(out[-1])
        if total >= limit:
            break
    return out
