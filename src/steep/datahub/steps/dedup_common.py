"""Machinery shared by the corpus dedup steps (``dedup_exact``, ``minhash``).

A document is named by a 64-bit key, ``shard << 32 | row``, so sorting keys sorts
documents in corpus order; ids go to per-shard logs and are read back only for the drops;
hashes spill to partitioned files on disk. The design is in ``steep.datahub.steps.dedup``.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

import numpy as np

from steep.datahub.steps.base import Drop, read_docs

_ROW_BITS = 32
_ROW_MASK = (1 << _ROW_BITS) - 1
_U64 = np.dtype("<u8")


def _key_base(shard: int) -> int:
    return shard << _ROW_BITS


def _check_rows(n_rows: int, path: Path) -> None:
    if n_rows > _ROW_MASK:
        raise ValueError(f"{path}: more than 2**32 rows in one shard")


class _IdLog:
    """Per-shard id lists written in stage 1, read back only for the keys asked for."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        folder.mkdir(parents=True, exist_ok=True)

    def path(self, shard: int) -> Path:
        return self.folder / f"s{shard:05d}.txt"

    def open(self, shard: int):
        return open(self.path(shard), "w", encoding="utf-8")

    def lookup(self, keys: np.ndarray) -> dict[int, str]:
        """key -> id for every key in ``keys`` (reads each needed shard's list once)."""
        out: dict[int, str] = {}
        wanted = np.unique(np.asarray(keys, dtype=_U64))
        shards = wanted >> np.uint64(_ROW_BITS)
        for shard in np.unique(shards):
            rows = set((wanted[shards == shard] & np.uint64(_ROW_MASK)).tolist())
            base = _key_base(int(shard))
            with open(self.path(int(shard)), encoding="utf-8") as f:
                for row, line in enumerate(f):
                    if row in rows:
                        out[base + row] = json.loads(line)
        return out


class _Spill:
    """Append-only raw ``uint64`` files, one per (bucket, shard): ``b##/s#####.u64``."""

    def __init__(self, folder: Path, n_buckets: int, width: int) -> None:
        self.folder, self.n_buckets, self.width = folder, n_buckets, width
        for b in range(n_buckets):
            (folder / f"b{b:02d}").mkdir(parents=True, exist_ok=True)

    def path(self, bucket: int, shard: int) -> Path:
        return self.folder / f"b{bucket:02d}" / f"s{shard:05d}.u64"

    def open_shard(self, shard: int) -> list[BinaryIO]:
        return [open(self.path(b, shard), "wb") for b in range(self.n_buckets)]

    def load(self, bucket: int, n_shards: int) -> np.ndarray:
        """All rows of one bucket, shard order kept (so keys are ascending)."""
        parts = [np.fromfile(self.path(bucket, s), dtype=_U64) for s in range(n_shards)]
        flat = np.concatenate(parts) if parts else np.empty(0, dtype=_U64)
        return flat.reshape(-1, self.width)


def _firsts_of_runs(new_run: np.ndarray, keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For sorted rows with run starts ``new_run``: (later keys, first key of their run)."""
    run = np.cumsum(new_run) - 1
    first = keys[new_run][run]
    later = ~new_run
    return keys[later], first[later]


def _components(u: np.ndarray, v: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Connected components of the graph with edges (u, v): (nodes, smallest node of each).

    Vectorised union-find: min-label propagation along edges plus pointer jumping, until
    every edge joins equal labels. Labels only decrease and are always a node of the same
    component, so the fixed point labels each component with its smallest node.
    """
    nodes, inv = np.unique(np.concatenate([u, v]), return_inverse=True)
    ui, vi = inv[: len(u)], inv[len(u) :]
    parent = np.arange(len(nodes))
    while True:
        m = np.minimum(parent[ui], parent[vi])
        np.minimum.at(parent, ui, m)
        np.minimum.at(parent, vi, m)
        while True:  # pointer jumping: parent <- parent[parent] until idempotent
            jumped = parent[parent]
            if np.array_equal(jumped, parent):
                break
            parent = jumped
        if np.array_equal(parent[ui], parent[vi]):
            return nodes, nodes[parent]


def _shard_rows(path: Path) -> Iterator[tuple[int, str, str]]:
    for row, doc in enumerate(read_docs(path)):
        yield row, doc.id, doc.text


def _drops(
    ids: _IdLog,
    later_parts: list[np.ndarray],
    first_parts: list[np.ndarray],
    reason: str,
    detail: str,
) -> dict[str, Drop]:
    if not later_parts:
        return {}
    later = np.concatenate(later_parts)
    first = np.concatenate(first_parts)
    order = np.argsort(later, kind="stable")
    later, first = later[order], first[order]
    names = ids.lookup(np.concatenate([later, first]))
    return {
        names[k]: Drop(reason, detail.format(names[f]))
        for k, f in zip(later.tolist(), first.tolist(), strict=True)
    }
