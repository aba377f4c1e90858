"""Documents by length: a source's stream with short documents left out or long ones read
more often (``data.sources[].length``), and tokens by document-length bucket.

A ``LengthView`` is a token stream (``path``, ``meta``, ``num_tokens``, ``read``) over a
chosen list of documents of the source's own stream: the kept documents in stream order,
then ``upsample_times - 1`` more passes over the long ones. ``Windows`` cut it as they cut
any stream, so packing, document masking, the mixture and its resume work unchanged; the
list is fixed by the config and the data, so a resume rebuilds the same view. It costs 16
bytes per kept document (its start and length): a view is built only for a source that
has a ``length`` section.

Lengths are read from each shard's offsets (``index.npy``), never from its tokens, and
count the document's separator, as the windows do.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from steep.config.lengths import LengthSection
from steep.data.tokensource import TokenStream

FIRST_EDGE = 256  # bucket edges double from here: <256, 256-511, ..., 64K-128K, 128K+
LAST_EDGE = 131072
SAMPLE = 1_000_000  # lengths a rule-less source keeps for its spread (every k-th document)


def bucket_edges() -> list[int]:
    edges, n = [0], FIRST_EDGE
    while n <= LAST_EDGE:
        edges.append(n)
        n *= 2
    return edges


def _short(n: int) -> str:
    return f"{n // 1024}K" if n >= 1024 and n % 1024 == 0 else str(n)


def bucket_labels() -> list[str]:
    edges = bucket_edges()
    labels = [f"<{_short(edges[1])}"]
    labels += [f"{_short(lo)}-{_short(hi)}" for lo, hi in zip(edges[1:-1], edges[2:], strict=True)]
    return [*labels, f"{_short(edges[-1])}+"]


def shard_lengths(stream: TokenStream) -> Iterator[tuple[int, np.ndarray]]:
    """(the shard's first token in the stream, its documents' lengths), shard by shard."""
    for i in range(stream.shards):
        offsets = np.asarray(stream._shard(i).offsets, dtype=np.int64)
        yield int(stream.starts[i]), np.diff(offsets)


def histogram(lengths: np.ndarray, weights: np.ndarray | None = None) -> dict[str, dict[str, int]]:
    """Documents and tokens per length bucket (empty buckets left out); ``weights``: how
    often each document is read."""
    idx = np.searchsorted(np.asarray(bucket_edges()), lengths, side="right") - 1
    w = np.ones_like(lengths) if weights is None else weights
    out = {}
    for b, label in enumerate(bucket_labels()):
        sel = idx == b
        if sel.any():
            out[label] = {
                "documents": int(w[sel].sum()),
                "tokens": int((lengths[sel] * w[sel]).sum()),
            }
    return out


def spread(lengths: np.ndarray) -> str:
    """The length distribution in one phrase (warnings)."""
    if not len(lengths):
        return "no documents"
    q = np.percentile(lengths, [50, 90, 99]).astype(int)
    return (
        f"{len(lengths):,} documents, median {q[0]:,}, p90 {q[1]:,}, p99 {q[2]:,}, "
        f"longest {int(lengths.max()):,} tokens"
    )


class LengthView:
    """The documents of ``stream`` that ``rule`` reads, as one token stream."""

    def __init__(self, stream: TokenStream, rule: LengthSection | None, upsample: bool = True):
        self.stream, self.rule = stream, rule
        self.path: Path = stream.path
        self.meta: dict[str, Any] = stream.meta
        starts, lengths = [], []
        for first, lens in shard_lengths(stream):
            offsets = first + np.concatenate([[0], np.cumsum(lens)[:-1]]) if len(lens) else lens
            keep = lens >= (rule.min_tokens or 0) if rule else np.ones(len(lens), dtype=bool)
            starts.append(offsets[keep])
            lengths.append(lens[keep])
        self.doc_starts = np.concatenate(starts) if starts else np.zeros(0, dtype=np.int64)
        self.doc_lengths = np.concatenate(lengths) if lengths else np.zeros(0, dtype=np.int64)
        self.repeats = np.ones(len(self.doc_lengths), dtype=np.int64)
        piece_starts, piece_lengths = [self.doc_starts], [self.doc_lengths]
        if upsample and rule and rule.upsample_tokens:
            long = self.doc_lengths >= rule.upsample_tokens
            self.repeats[long] = rule.upsample_times
            for _ in range(rule.upsample_times - 1):  # whole extra passes: no copy is adjacent
                piece_starts.append(self.doc_starts[long])
                piece_lengths.append(self.doc_lengths[long])
        self.piece_starts = np.concatenate(piece_starts)
        self.piece_lengths = np.concatenate(piece_lengths)
        self.view_starts = np.concatenate([[0], np.cumsum(self.piece_lengths)]).astype(np.int64)

    @property
    def num_tokens(self) -> int:
        return int(self.view_starts[-1])

    def __len__(self) -> int:
        """Documents read per epoch, repeats counted."""
        return len(self.piece_lengths)

    def describe(self) -> str:
        return self.rule.describe() if self.rule else "every document"

    def buckets(self) -> dict[str, dict[str, int]]:
        """Tokens and documents per length bucket as the view reads them (repeats counted)."""
        return histogram(self.doc_lengths, self.repeats)

    def read(self, start: int, stop: int) -> np.ndarray:
        """Tokens [start, stop) of the view: pieces of the documents it reads, in order."""
        if not 0 <= start <= stop <= self.num_tokens:
            raise IndexError(f"tokens {start}:{stop} outside 0..{self.num_tokens} of {self.path}")
        parts = []
        i = int(np.searchsorted(self.view_starts, start, side="right")) - 1
        while start < stop:
            base, end = int(self.view_starts[i]), min(stop, int(self.view_starts[i + 1]))
            first = int(self.piece_starts[i]) + start - base
            parts.append(self.stream.read(first, first + end - start))
            start, i = end, i + 1
        if not parts:
            return np.zeros(0, dtype=np.int64)
        return parts[0] if len(parts) == 1 else np.concatenate(parts)


def window_problem(name: str, lengths: SourceLengths, seq_len: int) -> str | None:
    """A warning when no document the source reads fills a window of ``seq_len``: the
    long-context run would learn long positions only across document edges."""
    if lengths.longest > seq_len:
        return None
    return (
        f"warning: source '{name}' has no document of {seq_len + 1}+ tokens to fill a window "
        f"of data.seq_len={seq_len} ({lengths.spread()}): its windows join short "
        "documents, so the new positions are trained only across document edges. Add long "
        "documents, or give another source length.upsample_tokens"
    )


class SourceLengths:
    """A source's training stream as the run reads it, and its documents by length.

    Without a rule the stream is read as it is and its lengths are counted shard by shard;
    ``lengths`` keeps at most ``SAMPLE`` of them (every k-th document of a large source)
    for the spread a warning quotes, so a billion-document source costs no table."""

    def __init__(self, stream: TokenStream, rule: LengthSection | None):
        self.rule = rule
        if rule is not None:
            view = LengthView(stream, rule)
            self.stream: TokenStream | LengthView = view
            self.lengths, self.buckets = view.doc_lengths, view.buckets()
            self.longest = int(view.doc_lengths.max()) if len(view.doc_lengths) else 0
            return
        self.stream, self.buckets, self.longest = stream, {}, 0
        stride, kept = max(1, -(-len(stream) // SAMPLE)), []
        for _, lens in shard_lengths(stream):
            for label, b in histogram(lens).items():
                into = self.buckets.setdefault(label, {"documents": 0, "tokens": 0})
                into["documents"] += b["documents"]
                into["tokens"] += b["tokens"]
            self.longest = max(self.longest, int(lens.max()) if len(lens) else 0)
            kept.append(lens[::stride])
        self.lengths = np.concatenate(kept) if kept else np.zeros(0, dtype=np.int64)
        order = bucket_labels()
        self.buckets = {k: self.buckets[k] for k in order if k in self.buckets}

    def describe(self) -> str:
        return self.rule.describe() if self.rule else "every document"

    def spread(self) -> str:
        return spread(self.lengths)

    def record(self) -> dict[str, Any]:
        """What steep.json, metrics.jsonl and report.md keep: the rule, the buckets."""
        return {
            "rule": self.describe(),
            "longest": self.longest,
            "buckets": self.buckets,
        }


def heldout_view(stream: TokenStream, rule: LengthSection | None) -> TokenStream | LengthView:
    """A held-out split under the source's length filter (never upsampled: each held-out
    document counts once)."""
    return (
        stream if rule is None or not rule.min_tokens else LengthView(stream, rule, upsample=False)
    )
