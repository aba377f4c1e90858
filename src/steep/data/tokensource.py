"""A tokenized source: many token shards per split, read as one token stream.

A source is tokenized in parallel, one work unit (a byte range of a jsonl file, a run of
parquet row groups, a whole small file) per task, each writing its own shard. Training
reads a split as the concatenation of its shards in unit order, so a source tokenized in
one unit or in a thousand gives the same stream, the same windows and the same run.

``source.json`` (``steep-token-source`` v2) lists every shard with its token count, so
the stream knows where each shard starts without opening it; shards are opened on first
read and only a few stay open (a 4 TB corpus is tens of thousands of shards, more than a
process may hold open). Caches written before v2 hold one shard per split (``train/``,
``heldout/`` are themselves shards) and are read as one-shard streams.
"""

from __future__ import annotations

import json
from collections import OrderedDict
from pathlib import Path
from typing import Any

import numpy as np

from steep.data.shards import Shard, ShardError

SOURCE_FORMAT = "steep-token-source"
SOURCE_VERSION = 2
OPEN_SHARDS = 32  # memory maps a stream keeps open at once


class TokenStream:
    """One split of a source: its shards' tokens back to back, read by global position."""

    def __init__(self, root: Path, entries: list[dict[str, Any]], meta: dict[str, Any]):
        self.path = Path(root)
        self.meta = meta  # the first shard's meta.json: every shard has the same tokenizer
        self.entries = [e for e in entries if e["tokens"] > 0]
        self.starts = np.cumsum([0] + [int(e["tokens"]) for e in self.entries], dtype=np.int64)
        self.doc_starts = np.cumsum(
            [0] + [int(e["documents"]) for e in self.entries], dtype=np.int64
        )
        self._open: OrderedDict[int, Shard] = OrderedDict()

    @classmethod
    def of_shard(cls, shard: Shard) -> TokenStream:
        """A one-shard stream (a cache from before v2, an eval set)."""
        entry = {"path": ".", "tokens": len(shard.tokens), "documents": len(shard)}
        stream = cls(shard.path, [entry], shard.meta)
        if len(stream.entries):
            stream._open[0] = shard
        return stream

    @property
    def num_tokens(self) -> int:
        return int(self.starts[-1])

    @property
    def shards(self) -> int:
        return len(self.entries)

    def __len__(self) -> int:
        """Documents, as for a shard."""
        return int(self.doc_starts[-1])

    def document(self, i: int) -> np.ndarray:
        """Document i of the split (its separator included)."""
        s = int(np.searchsorted(self.doc_starts, i, side="right")) - 1
        return self._shard(s).document(i - int(self.doc_starts[s]))

    def _shard(self, i: int) -> Shard:
        shard = self._open.get(i)
        if shard is None:
            entry = self.entries[i]
            shard = Shard.open(self.path / entry["path"])
            if len(shard.tokens) != entry["tokens"]:
                raise ShardError(
                    f"{shard.path} has {len(shard.tokens)} tokens, source.json promises "
                    f"{entry['tokens']}: the tokenized source is damaged; delete it to re-tokenize"
                )
            self._open[i] = shard
            if len(self._open) > OPEN_SHARDS:
                self._open.popitem(last=False)
        else:
            self._open.move_to_end(i)
        return shard

    def read(self, start: int, stop: int) -> np.ndarray:
        """Tokens [start, stop) of the stream, across shard edges where needed."""
        if not 0 <= start <= stop <= self.num_tokens:
            raise IndexError(f"tokens {start}:{stop} outside 0..{self.num_tokens} of {self.path}")
        parts = []
        i = int(np.searchsorted(self.starts, start, side="right")) - 1
        while start < stop:
            base = int(self.starts[i])
            end = min(stop, int(self.starts[i + 1]))
            parts.append(np.asarray(self._shard(i).tokens[start - base : end - base]))
            start, i = end, i + 1
        if not parts:
            return np.zeros(0, dtype=np.int64)
        return parts[0] if len(parts) == 1 else np.concatenate(parts)

    def check_tokenizer(self, fingerprint: str, model_desc: str) -> None:
        """Refuse a source made by another tokenizer: its ids would mean other strings."""
        made_by = self.meta["tokenizer"]
        if made_by["sha256"] != fingerprint:
            raise ShardError(
                f"{self.path} was tokenized with '{made_by.get('name')}' "
                f"(vocab {made_by.get('vocab_size')}, sha256 {made_by['sha256'][:12]}), but the "
                f"model uses {model_desc} (sha256 {fingerprint[:12]}): re-tokenize the data "
                "with the model's tokenizer"
            )


def read_source_info(out: Path) -> dict[str, Any]:
    info = json.loads((Path(out) / "source.json").read_text())
    version = info.get("version", 1)  # v1 source.json had no format or version
    if version > SOURCE_VERSION:
        raise ShardError(
            f"{out}: tokenized source v{version}, this steep reads up to v{SOURCE_VERSION}"
        )
    return info


def open_split(out: Path, info: dict[str, Any], split: str) -> TokenStream | None:
    """The split's stream, or None when it holds no tokens (no held-out set)."""
    out = Path(out)
    if info.get("version", 1) < 2:  # one shard per split, the folder itself
        stream = TokenStream.of_shard(Shard.open(out / split))
    else:
        entries = info["splits"][split]["shards"]
        if not entries:
            return None
        meta = json.loads((out / entries[0]["path"] / "meta.json").read_text())
        stream = TokenStream(out, entries, meta)
    return stream if stream.num_tokens else None


class Windows:
    """Fixed-length training windows over a split's token stream.

    Window j covers tokens[j*L : j*L + L + 1] (inputs and next-token targets), so windows
    tile the stream without overlap and documents run across window edges, as in GPT-style
    packing; the EOS separators tell the model where one document ends. Windows run across
    shard edges too: the stream, not the shard, is what is cut.
    """

    def __init__(self, stream: TokenStream, seq_len: int):
        self.stream = stream
        self.seq_len = seq_len
        self.count = max(0, (stream.num_tokens - 1) // seq_len)

    def __len__(self) -> int:
        return self.count

    def get(self, j: int) -> np.ndarray:
        if not 0 <= j < self.count:
            raise IndexError(f"window {j} outside 0..{self.count - 1} of {self.stream.path}")
        start = j * self.seq_len
        return self.stream.read(start, start + self.seq_len + 1).astype(np.int64)
