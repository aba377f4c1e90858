"""A corpus step's decision, written per shard with memory bounded by the shard.

Dedup finds pairs (dropped document, the document it repeats) as 64-bit keys
(``shard << 32 | row``, ``dedup_common``). A dict of every drop by id would cost ~250 bytes
per dropped document in the driver, and every shard task would load all of it: tens of GB
for a web crawl of a billion documents. Instead the pairs go through two disk-backed
passes, each holding one shard's worth at a time:

1. pairs are spilled by the shard of the document they repeat; per such shard, its id log
   gives those documents' names, and (dropped key, "same as NAME") goes to a spill by the
   shard of the dropped document;
2. per shard, its id log names the dropped rows and ``drops/s#####.parquet`` is written
   (``id``, ``reason``, ``detail``): the only file that shard's task reads.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

ROW_BITS = 32
ROW_MASK = (1 << ROW_BITS) - 1
U64 = np.dtype("<u8")
DONE = "done"  # marker: every shard's drop file is written
SCHEMA = pa.schema([("id", pa.string()), ("reason", pa.string()), ("detail", pa.string())])


def drop_file(out: Path, shard: int) -> Path:
    return Path(out) / f"s{shard:05d}.parquet"


def _append_by_shard(folder: Path, keys: np.ndarray, rows: np.ndarray) -> None:
    """Append ``rows`` (u64, one per key) to ``folder/s#####.u64`` by the shard of ``keys``."""
    shard = keys >> np.uint64(ROW_BITS)
    order = np.argsort(shard, kind="stable")
    shard, rows = shard[order], rows[order]
    cuts = np.flatnonzero(np.diff(shard)) + 1
    for part in np.split(np.arange(len(shard)), cuts):
        if len(part):
            with open(folder / f"s{int(shard[part[0]]):05d}.u64", "ab") as f:
                rows[part].tofile(f)


def _rows_of(id_log: Path, wanted: set[int]) -> dict[int, str]:
    """row -> id for the wanted rows of one shard's id log (one pass over it)."""
    out: dict[int, str] = {}
    if not wanted:
        return out
    with open(id_log, encoding="utf-8") as f:
        for row, line in enumerate(f):
            if row in wanted:
                out[row] = json.loads(line)
    return out


def write_drops(
    pairs: list[tuple[np.ndarray, np.ndarray]],
    id_log: Callable[[int], Path],
    n_shards: int,
    reason: str,
    detail: str,
    out: Path,
) -> None:
    """Write one drop file per shard from (dropped keys, kept keys) arrays.

    ``detail`` is formatted with the kept document's id; ``id_log(shard)`` is the shard's
    id list (one JSON string per row, stage 1 of the dedup steps).
    """
    out = Path(out)
    shutil.rmtree(out, ignore_errors=True)
    by_kept, by_dropped = out / ".by_kept", out / ".by_dropped"
    by_kept.mkdir(parents=True)
    by_dropped.mkdir()
    for later, first in pairs:
        if len(later):
            first = np.asarray(first, U64)
            _append_by_shard(by_kept, first, np.stack([np.asarray(later, U64), first], axis=1))
    for shard in range(n_shards):  # pass 1: name the kept documents
        spill = by_kept / f"s{shard:05d}.u64"
        if not spill.exists():
            continue
        rows = np.fromfile(spill, dtype=U64).reshape(-1, 2)
        names = _rows_of(id_log(shard), set((rows[:, 1] & np.uint64(ROW_MASK)).tolist()))
        groups: dict[int, list[str]] = {}
        for later, first in rows.tolist():
            line = json.dumps([later & ROW_MASK, detail.format(names[first & ROW_MASK])])
            groups.setdefault(later >> ROW_BITS, []).append(line + "\n")
        for s, lines in groups.items():
            with open(by_dropped / f"s{s:05d}.jsonl", "a", encoding="utf-8") as f:
                f.writelines(lines)
        spill.unlink()
    for shard in range(n_shards):  # pass 2: name the dropped rows, one file per shard
        spill = by_dropped / f"s{shard:05d}.jsonl"
        found: dict[int, str] = {}
        if spill.exists():
            with open(spill, encoding="utf-8") as f:
                found = dict(json.loads(line) for line in f)
        names = _rows_of(id_log(shard), set(found))
        rows = sorted(found)
        ids = [names[r] for r in rows]
        _write_table(out, shard, ids, [reason] * len(rows), [found[r] for r in rows])
    shutil.rmtree(by_kept, ignore_errors=True)
    shutil.rmtree(by_dropped, ignore_errors=True)
    (out / DONE).write_text("")


def _write_table(out: Path, shard: int, ids: list[str], reasons: list[str], details: list[str]):
    table = pa.table({"id": ids, "reason": reasons, "detail": details}, schema=SCHEMA)
    tmp = out / f".s{shard:05d}.parquet.tmp"
    pq.write_table(table, tmp)
    tmp.replace(drop_file(out, shard))


def write_by_id(drops: dict[str, tuple[str, str]], shards: list[Path], out: Path) -> None:
    """Split an id -> (reason, detail) dict into per-shard files (a step that decides in
    one dict: its own memory, not the tasks')."""
    out = Path(out)
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    for s, path in enumerate(shards):
        ids = [i for i in pq.read_table(path, columns=["id"]).column(0).to_pylist() if i in drops]
        _write_table(out, s, ids, [drops[i][0] for i in ids], [drops[i][1] for i in ids])
    (out / DONE).write_text("")


def load_drops(path: Path) -> dict[str, tuple[str, str]]:
    """One shard's drops: id -> (reason, detail)."""
    t = pq.read_table(path)
    ids, reasons, details = (t.column(c).to_pylist() for c in ("id", "reason", "detail"))
    return {i: (r, d) for i, r, d in zip(ids, reasons, details, strict=True)}


def read_all(out: Path, n_shards: int) -> dict[str, tuple[str, str]]:
    """Every shard's drops as one dict (for a small corpus: tests, reports)."""
    drops: dict[str, tuple[str, str]] = {}
    for shard in range(n_shards):
        drops.update(load_drops(drop_file(out, shard)))
    return drops
