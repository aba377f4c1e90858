"""Machinery shared by the corpus dedup steps (``dedup_exact``, ``minhash``).

A document is named by a 64-bit key, ``shard << 32 | row``, so sorting keys sorts
documents in corpus order; ids go to per-shard logs and are read back only for the drops;
hashes spill to partitioned files on disk. The design is in ``steep.datahub.steps.dedup``.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

from steep.data.executor import Executor
from steep.datahub.steps.base import read_docs
from steep.datahub.steps.drops import ROW_BITS, ROW_MASK, U64


def _key_base(shard: int) -> int:
    return shard << ROW_BITS


def _check_rows(n_rows: int, path: Path) -> None:
    if n_rows > ROW_MASK:
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


class _Spill:
    """Append-only raw ``uint64`` files, one per (bucket, shard): ``b##/s#####.u64``.

    ``finish_shard`` sorts each of a shard's files by its first column and records where
    each of ``ranges`` equal slices of the 64-bit hash space starts (``.idx.npy``), so
    stage 2 can load one range of one bucket from every shard: memory is 1/``ranges`` of
    the bucket, and a run of equal hashes is never split across ranges.
    """

    def __init__(self, folder: Path, n_buckets: int, width: int) -> None:
        self.folder, self.n_buckets, self.width = folder, n_buckets, width
        for b in range(n_buckets):
            (folder / f"b{b:02d}").mkdir(parents=True, exist_ok=True)

    def path(self, bucket: int, shard: int) -> Path:
        return self.folder / f"b{bucket:02d}" / f"s{shard:05d}.u64"

    def open_shard(self, shard: int) -> list[BinaryIO]:
        return [open(self.path(b, shard), "wb") for b in range(self.n_buckets)]

    def finish_shard(self, shard: int, ranges: int) -> None:
        """Sort the shard's files by hash (stable: keys stay ascending) and index ranges."""
        cuts = np.array([(r << 64) // ranges for r in range(1, ranges)], dtype=U64)
        for b in range(self.n_buckets):
            path = self.path(b, shard)
            rows = np.fromfile(path, dtype=U64).reshape(-1, self.width)
            rows = rows[np.argsort(rows[:, 0], kind="stable")]
            tmp = path.with_name(f".{path.name}.tmp")
            rows.tofile(tmp)
            tmp.replace(path)
            starts = np.searchsorted(rows[:, 0], cuts, side="left")
            np.save(path.with_suffix(".idx.npy"), np.concatenate([[0], starts, [len(rows)]]))

    def load(self, bucket: int, n_shards: int, part: int | None = None) -> np.ndarray:
        """Rows of one bucket (or of one hash range of it), shard order kept (so keys are
        ascending within equal hashes)."""
        parts = []
        for s in range(n_shards):
            path = self.path(bucket, s)
            if part is None:
                parts.append(np.fromfile(path, dtype=U64))
                continue
            idx = np.load(path.with_suffix(".idx.npy"))
            lo, hi = int(idx[part]), int(idx[part + 1])
            count, offset = (hi - lo) * self.width, lo * self.width * U64.itemsize
            parts.append(np.fromfile(path, dtype=U64, count=count, offset=offset))
        flat = np.concatenate(parts) if parts else np.empty(0, dtype=U64)
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


@dataclass(frozen=True)
class SpillTask:
    """Stage 1 for one shard: hash its documents into the step's spill files."""

    step: Any  # the dedup step, pickled with its parameters; has ``spill_shard``
    shard: int
    path: str
    root: str


def run_spill(task: SpillTask) -> int:
    """Runs in a worker; a retried task rewrites the same per-shard files."""
    return task.step.spill_shard(task.shard, Path(task.path), Path(task.root))


def spill_all(step: Any, shards: list[Path], root: Path, executor: Executor | None) -> None:
    """Stage 1 over every shard: here one after another, or as the executor's tasks (the
    expensive part: a MinHash signature per document)."""
    tasks = [SpillTask(step, s, str(p), str(root)) for s, p in enumerate(shards)]
    if executor is None or len(tasks) < 2:
        for task in tasks:
            run_spill(task)
        return
    for _ in executor.run(run_spill, tasks, f"{step.kind}: hash shards", lambda n: n):
        pass
