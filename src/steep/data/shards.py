"""Token shards: the on-disk contract between data preparation and training.

A shard is a folder::

    meta.json    format, version, dtype, token and document counts, the tokenizer that made it
    tokens.bin   every document's token ids back to back, each followed by the separator (EOS)
    index.npy    int64 offsets, documents + 1 of them: document i is tokens[off[i]:off[i+1]]

``tokens.bin`` is raw little-endian uint16 when the vocabulary fits, else uint32, so it is
memory-mapped with no parsing (the same idea as Megatron's .bin/.idx and nanoGPT's .bin).
A shard is written into a temporary folder and renamed into place: it exists whole or not at all.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from steep.artifacts.atomic import aside_dir
from steep.errors import SteepError

FORMAT = "steep-token-shard"
VERSION = 1


class ShardError(SteepError):
    """A shard is missing, damaged, or was made by another tokenizer."""


def dtype_for_vocab(vocab_size: int) -> np.dtype:
    return np.dtype(np.uint16) if vocab_size <= np.iinfo(np.uint16).max + 1 else np.dtype(np.uint32)


class ShardWriter:
    """Append tokenized documents; ``close`` publishes the shard atomically."""

    def __init__(self, out_dir: Path, tokenizer_meta: dict[str, Any], extra: dict | None = None):
        self.out_dir = Path(out_dir)
        self.out_dir.parent.mkdir(parents=True, exist_ok=True)
        self.tmp = aside_dir(self.out_dir)
        self.dtype = dtype_for_vocab(int(tokenizer_meta["vocab_size"]))
        self.tokenizer_meta = tokenizer_meta
        self.extra = extra or {}
        self.separator = int(tokenizer_meta["separator_id"])
        self._bin = open(self.tmp / "tokens.bin", "wb")
        self._offsets = [0]

    def add(self, ids: list[int]) -> None:
        arr = np.empty(len(ids) + 1, dtype=self.dtype)
        arr[:-1] = ids
        arr[-1] = self.separator
        self._bin.write(arr.tobytes())
        self._offsets.append(self._offsets[-1] + len(arr))

    @property
    def tokens(self) -> int:
        return self._offsets[-1]

    @property
    def documents(self) -> int:
        return len(self._offsets) - 1

    def close(self) -> Path:
        self._bin.flush()
        os.fsync(self._bin.fileno())
        self._bin.close()
        np.save(self.tmp / "index.npy", np.asarray(self._offsets, dtype=np.int64))
        meta = {
            "format": FORMAT,
            "version": VERSION,
            "dtype": self.dtype.name,
            "tokens": self.tokens,
            "documents": self.documents,
            "tokenizer": self.tokenizer_meta,
            **self.extra,
        }
        (self.tmp / "meta.json").write_text(json.dumps(meta, indent=2) + "\n")
        if self.out_dir.exists():
            shutil.rmtree(self.out_dir)
        os.replace(self.tmp, self.out_dir)
        return self.out_dir

    def abort(self) -> None:
        self._bin.close()
        shutil.rmtree(self.tmp, ignore_errors=True)


@dataclass
class Shard:
    """A memory-mapped shard; cheap to open, reads only the pages it touches."""

    path: Path
    meta: dict[str, Any]
    tokens: np.ndarray
    offsets: np.ndarray

    @classmethod
    def open(cls, path: Path) -> Shard:
        path = Path(path)
        meta_path = path / "meta.json"
        if not meta_path.exists():
            raise ShardError(f"{path} is not a token shard (no meta.json)")
        meta = json.loads(meta_path.read_text())
        if meta.get("format") != FORMAT or meta.get("version") != VERSION:
            raise ShardError(
                f"{path}: shard format {meta.get('format')} v{meta.get('version')}, "
                f"this steep reads {FORMAT} v{VERSION}"
            )
        dtype = np.dtype(meta["dtype"])
        size = (path / "tokens.bin").stat().st_size
        if size != meta["tokens"] * dtype.itemsize:
            raise ShardError(
                f"{path}: tokens.bin has {size} bytes, meta.json promises "
                f"{meta['tokens']} tokens of {dtype.name}: the shard is damaged"
            )
        tokens = (
            np.memmap(path / "tokens.bin", dtype=dtype, mode="r")
            if size
            else np.zeros(0, dtype=dtype)
        )
        offsets = np.load(path / "index.npy", mmap_mode="r")
        return cls(path, meta, tokens, offsets)

    def __len__(self) -> int:
        return len(self.offsets) - 1

    def document(self, i: int) -> np.ndarray:
        return np.asarray(self.tokens[self.offsets[i] : self.offsets[i + 1]])
