"""Loss, perplexity and bits per byte of whole documents, each model with its own tokenizer.

Loss per token depends on the tokenizer: a model with an extended vocabulary predicts
fewer, harder tokens for the same text. Bits per byte divides the same total surprise by
the UTF-8 bytes of the text instead, so it compares any two models on the same documents.

Each document is read as ``[prefix] + tokens`` (see ``scoring.prefix_token_id``), so every
one of its tokens is predicted and the predicted tokens spell exactly the document's
bytes. Long documents are cut into consecutive windows of at most ``seq_len`` predicted
tokens; each window starts from the last token of the one before (lm-evaluation-harness's
rolling log-likelihood with a one-token context), so no token is scored twice or skipped.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from transformers import PreTrainedTokenizerBase

from steep.data.documents import SkipLog, read_documents
from steep.errors import SteepError
from steep.model.scoring import Request, prefix_token_id, score_requests


class EvalSetError(SteepError, ValueError):
    """An eval set that cannot give a meaningful number: missing, empty or too short."""


@dataclass
class TextSet:
    """The documents of one eval set: the same texts for every model compared."""

    name: str
    paths: list[str]
    texts: list[str]
    skipped: int

    @property
    def bytes(self) -> int:
        return sum(len(t.encode("utf-8")) for t in self.texts)


@dataclass
class TokenizedSet:
    name: str
    requests: list[Request]
    tokens: int  # predicted tokens
    bytes: int  # UTF-8 bytes of the documents those tokens spell
    documents: int


def document_rule(seq_len: int, dtype: str) -> str:
    """How ``steep eval`` reads a held-out set, in words (eval.json, eval.md)."""
    return (
        f"each document alone, after a BOS (else EOS); every token predicted, in rolling "
        f"windows of up to {seq_len} tokens; loss per token and bits per UTF-8 byte; {dtype}"
    )


def read_set(name: str, paths: Sequence[str], text_field: str = "text") -> TextSet:
    """Read an eval set with steep's document readers; refuse one with no usable document."""
    skips = SkipLog()
    try:
        texts = [d.text for d in read_documents(paths, skips, text_field)]
    except FileNotFoundError as exc:
        raise EvalSetError(f"eval set '{name}': {exc}") from None
    if not texts:
        where = ", ".join(map(str, paths))
        detail = "; ".join(
            f"{s.path}{f':{s.line}' if s.line else ''}: {s.reason}" for s in skips.skips[:3]
        )
        raise EvalSetError(
            f"eval set '{name}' ({where}) has no documents"
            + (f" ({skips.summary()}: {detail})" if skips.skips else "")
        )
    return TextSet(name, [str(p) for p in paths], texts, len(skips.skips))


def tokenize_set(
    text_set: TextSet, tokenizer: PreTrainedTokenizerBase, seq_len: int
) -> TokenizedSet:
    """Cut every document into scoring windows; refuse a set shorter than one window."""
    prefix = prefix_token_id(tokenizer)
    encoded = tokenizer(text_set.texts, add_special_tokens=False)["input_ids"]
    requests: list[Request] = []
    tokens = 0
    for ids in encoded:
        seq = [prefix, *ids]
        for start in range(0, len(ids), seq_len):
            window = seq[start : start + seq_len + 1]
            requests.append(Request(window, len(window) - 1))
        tokens += len(ids)
    if tokens < seq_len:
        raise EvalSetError(
            f"eval set '{text_set.name}' ({', '.join(text_set.paths)}) has {tokens} tokens, "
            f"fewer than one window of seq_len = {seq_len}: add text or lower --seq-len"
        )
    return TokenizedSet(text_set.name, requests, tokens, text_set.bytes, len(text_set.texts))


def set_metrics(nats: float, tokens: int, n_bytes: int, documents: int) -> dict[str, float]:
    """loss (nats/token), perplexity, and bits per byte from the total surprise of a set."""
    loss = nats / tokens
    return {
        "loss": loss,
        "ppl": math.exp(min(loss, 50.0)),
        "bpb": nats / (math.log(2) * n_bytes),
        "tokens": tokens,
        "bytes": n_bytes,
        "documents": documents,
    }


def evaluate_set(
    model: torch.nn.Module, tset: TokenizedSet, batch_size: int, device: torch.device
) -> dict[str, float]:
    scores = score_requests(model, tset.requests, batch_size, device, desc=f"set {tset.name}")
    nats = -math.fsum(s.logprob for s in scores)
    return set_metrics(nats, tset.tokens, tset.bytes, tset.documents)
