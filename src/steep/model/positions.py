"""Loss by position: mean next-token loss per position bucket over long held-out windows.

Every window is ``seq_len + 1`` consecutive tokens of one document, read alone, so the
token at position p has exactly p tokens of context. A loss that keeps falling with
position means the model uses the far context; one that flattens (or rises) past the
base's old length means the new positions are not used. Buckets double (1, 2-3, 4-7, ...)
so the short positions, where the curve moves most, are not drowned by the long ones.

The loss is training's (next-token cross-entropy on fp32 logits, as
``steep.train.forward.lm_loss``), kept per position instead of summed.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from contextlib import AbstractContextManager, nullcontext

import numpy as np
import torch
import torch.nn.functional as F
from transformers import PreTrainedTokenizerBase

from steep.data.doclength import shard_lengths, spread
from steep.data.tokensource import TokenStream
from steep.errors import DataError
from steep.model.scoring import prefix_token_id


def bucket_edges(seq_len: int) -> list[int]:
    """[0, 1, 2, 4, ..., seq_len]: bucket i holds positions edges[i] .. edges[i+1] - 1."""
    edges = [0, 1]
    while edges[-1] * 2 < seq_len:
        edges.append(edges[-1] * 2)
    return [*edges, seq_len]


def bucket_label(lo: int, hi: int) -> str:
    return str(lo) if hi - lo == 1 else f"{lo}-{hi - 1}"


def document_windows(
    documents: Iterable[Sequence[int] | np.ndarray], seq_len: int, max_windows: int
) -> np.ndarray:
    """Whole windows of ``seq_len + 1`` tokens cut from single documents, at most
    ``max_windows`` (a document gives as many as fit; the rest of it is left out)."""
    out: list[np.ndarray] = []
    for doc in documents:
        arr = np.asarray(doc, dtype=np.int64)
        for start in range(0, len(arr) - seq_len, seq_len + 1):
            out.append(arr[start : start + seq_len + 1])
            if len(out) >= max_windows:
                return np.stack(out)
    if not out:
        return np.zeros((0, seq_len + 1), dtype=np.int64)
    return np.stack(out)


def long_documents(stream: TokenStream, min_tokens: int) -> Iterable[np.ndarray]:
    """The documents of a token stream with at least ``min_tokens`` tokens, in order,
    found from each shard's offsets (short ones are never read)."""
    for first, lengths in shard_lengths(stream):
        starts = first + np.concatenate([[0], np.cumsum(lengths)[:-1]]).astype(np.int64)
        for j in np.flatnonzero(lengths >= min_tokens):
            yield stream.read(int(starts[j]), int(starts[j] + lengths[j]))


def text_windows(
    name: str,
    texts: Sequence[str],
    tokenizer: PreTrainedTokenizerBase,
    seq_len: int,
    max_windows: int,
) -> np.ndarray:
    """Windows of an eval set's documents, each after the prefix token (as ``steep eval``
    reads a document); refused with the length distribution when none is long enough."""
    prefix = prefix_token_id(tokenizer)
    docs = [[prefix, *ids] for ids in tokenizer(list(texts), add_special_tokens=False)["input_ids"]]
    windows = document_windows(docs, seq_len, max_windows)
    if not len(windows):
        raise too_short(name, np.asarray([len(d) for d in docs]), seq_len)
    return windows


def too_short(name: str, lengths: np.ndarray, seq_len: int) -> DataError:
    """No document fills a window: say so with the lengths there are."""
    return DataError(
        f"'{name}': no document has the {seq_len + 1} tokens a loss-by-position window of "
        f"{seq_len} needs ({spread(lengths)}): give longer held-out text or a shorter length"
    )


@torch.no_grad()
def loss_by_position(
    model: torch.nn.Module,
    windows: np.ndarray,
    batch_size: int,
    device: torch.device,
    autocast: AbstractContextManager | None = None,
) -> np.ndarray:
    """Mean loss (nats) at each of the ``seq_len`` predicted positions, over the windows."""
    was_training = model.training
    model.eval()
    total = np.zeros(windows.shape[1] - 1, dtype=np.float64)
    for i in range(0, len(windows), batch_size):
        batch = torch.from_numpy(windows[i : i + batch_size]).to(device)
        with autocast or nullcontext():
            logits = model(input_ids=batch[:, :-1], use_cache=False).logits
        per_token = F.cross_entropy(  # fp32, as training's loss
            logits.float().transpose(1, 2), batch[:, 1:], reduction="none"
        )
        total += per_token.double().sum(0).cpu().numpy()
    model.train(was_training)
    return total / len(windows)


def bucketed(per_position: np.ndarray, windows: int) -> dict[str, object]:
    """The per-position curve in doubling buckets (JSON-ready)."""
    edges = bucket_edges(len(per_position))
    buckets = [
        {"positions": bucket_label(lo, hi), "start": lo, "loss": float(per_position[lo:hi].mean())}
        for lo, hi in zip(edges[:-1], edges[1:], strict=True)
    ]
    return {"seq_len": len(per_position), "windows": windows, "buckets": buckets}


def position_loss(
    model: torch.nn.Module,
    windows: np.ndarray,
    batch_size: int,
    device: torch.device,
    autocast: AbstractContextManager | None = None,
) -> dict[str, object]:
    return bucketed(loss_by_position(model, windows, batch_size, device, autocast), len(windows))
