"""A run that trains past its base's context: the evals that show the new positions are
used, at step 0 and at the end, logged as ``long_context`` events for report.md.

Three measures, each on the same inputs at both steps:

- passkey retrieval at the base's old length, the run's ``seq_len`` and the doublings
  between (``steep.model.passkey``: greedy exact match and key loss);
- loss by position over whole ``seq_len`` windows of single held-out documents
  (``steep.model.positions``): falling past the old length means the far context is used;
- the run's eval sets at the old length: the first ``old + 1`` tokens of each fixed eval
  window, so the short-context ability the extension cost is read on the same text.

Every rank runs the same forwards (under FSDP each is a collective); rank 0 logs.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from steep.data.doclength import SourceLengths, window_problem
from steep.data.tokensource import TokenStream
from steep.model.passkey import passkey_block
from steep.model.passkey_spec import DEFAULT_DEPTHS, DEFAULT_TRIALS
from steep.model.positions import document_windows, long_documents, position_loss
from steep.train.evaluate import EvalSet

EVENT = "long_context"
LENGTHS_EVENT = "data_lengths"


def lengths_event(lengths: dict[str, SourceLengths], seq_len: int) -> dict[str, Any]:
    """Step 0's record of each source's documents by length, as the run reads them (its
    length rule applied, upsampled documents counted as often as they are read)."""
    return {
        "kind": "event",
        "event": LENGTHS_EVENT,
        "step": 0,
        "seq_len": seq_len,
        "sources": {name: sl.record() for name, sl in lengths.items()},
    }


def window_warnings(lengths: dict[str, SourceLengths], seq_len: int) -> list[str]:
    """A run past its base's context: each source with no document that fills a window."""
    problems = (window_problem(name, sl, seq_len) for name, sl in lengths.items())
    return [p for p in problems if p]


def old_context(model_config: Any, seq_len: int) -> int | None:
    """The base's own context when ``seq_len`` goes past it, else None: RoPE scaling's
    ``original_max_position_embeddings`` (or the positions over its factor)."""
    rope = getattr(model_config, "rope_parameters", None) or getattr(
        model_config, "rope_scaling", None
    )
    if not isinstance(rope, dict):
        return None
    factor = float(rope.get("factor") or 1.0)
    positions = getattr(model_config, "max_position_embeddings", None)
    old = rope.get("original_max_position_embeddings") or (
        int(positions / factor) if positions and factor > 1 else None
    )
    return int(old) if old and seq_len > int(old) else None


def passkey_lengths(old: int, seq_len: int) -> list[int]:
    """The old length, the doublings past it, and ``seq_len``."""
    out, n = [old], old * 2
    while n < seq_len:
        out.append(n)
        n *= 2
    return sorted({*out, seq_len})


class LongContextEval:
    """The three measures for one model at one step, as an event record."""

    def __init__(
        self,
        old: int,
        seq_len: int,
        streams: dict[str, TokenStream],
        max_windows: int,
        batch_size: int,
    ) -> None:
        self.old, self.seq_len, self.batch_size = old, seq_len, batch_size
        self.windows = {}
        for name, stream in streams.items():
            w = document_windows(long_documents(stream, seq_len + 1), seq_len, max_windows)
            if len(w):
                self.windows[name] = w
        self.skipped = sorted(set(streams) - set(self.windows))

    def __call__(
        self,
        model: torch.nn.Module,
        tokenizer: Any,
        eval_sets: list[EvalSet],
        step: int,
        device: torch.device,
        autocast: Any,
        evaluator: Any,
    ) -> dict[str, Any]:
        with autocast():
            passkey = passkey_block(
                model, tokenizer, passkey_lengths(self.old, self.seq_len), DEFAULT_DEPTHS,
                DEFAULT_TRIALS, self.seq_len, self.batch_size, device,
            )  # fmt: skip
        positions = {
            name: position_loss(model, w, self.batch_size, device, autocast())
            for name, w in self.windows.items()
        }
        short_sets = [EvalSet(s.name, np.ascontiguousarray(s.windows[:, : self.old + 1]))
                      for s in eval_sets]  # fmt: skip
        short = evaluator(short_sets) if short_sets else {}
        return {
            "kind": "event",
            "event": EVENT,
            "step": step,
            "old_len": self.old,
            "seq_len": self.seq_len,
            "passkey": passkey,
            "position_loss": positions,
            "no_long_documents": self.skipped,
            "short": short,
        }
