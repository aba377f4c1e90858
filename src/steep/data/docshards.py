"""Data Hub document shards: parquet files of (``id``, ``text``, ``meta`` as JSON).

A dataset version's ``shards/*.parquet`` (docs/formats.md). Written by the Data Hub's
ingest and pipeline, read by them and by training's tokenizer, which is why the format
lives here with the rest of what training reads. pyarrow is imported where a shard is
opened: the rest of steep.data works without touching parquet.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

SHARD_SUFFIX = ".parquet"


@dataclass
class Doc:
    id: str  # stable across versions: "<input file key>:<line>"
    text: str
    meta: dict[str, Any] = field(default_factory=dict)  # source, line, lang, lang_score, ...


def write_docs(path: Path, docs: Iterable[Doc], rows_per_group: int = 2048) -> int:
    """Write docs to a parquet shard via a temporary file (whole or absent). Returns count."""
    import pyarrow as pa  # deferred: parquet only where a shard is written
    import pyarrow.parquet as pq

    schema = pa.schema([("id", pa.string()), ("text", pa.string()), ("meta", pa.string())])
    tmp = path.with_name(f".{path.name}.tmp")
    n = 0
    with pq.ParquetWriter(tmp, schema, compression="zstd") as writer:
        batch: list[Doc] = []

        def flush() -> None:
            writer.write_table(
                pa.table(
                    {
                        "id": [d.id for d in batch],
                        "text": [d.text for d in batch],
                        "meta": [json.dumps(d.meta, ensure_ascii=False) for d in batch],
                    },
                    schema=schema,
                )
            )
            batch.clear()

        for doc in docs:
            batch.append(doc)
            n += 1
            if len(batch) >= rows_per_group:
                flush()
        if batch:
            flush()
    tmp.replace(path)
    return n


def read_docs(
    path: Path, batch_size: int = 1024, row_groups: Sequence[int] | None = None
) -> Iterator[Doc]:
    """Stream the documents of one shard (or of some of its row groups), a batch at a time
    (memory bounded by the batch)."""
    import pyarrow.parquet as pq  # deferred: parquet only where a shard is read

    pf = pq.ParquetFile(path)
    groups = list(row_groups) if row_groups is not None else None
    columns = ["id", "text", "meta"]
    for batch in pf.iter_batches(batch_size=batch_size, columns=columns, row_groups=groups):
        ids, texts, metas = (batch.column(i).to_pylist() for i in range(3))
        for i, t, m in zip(ids, texts, metas, strict=True):
            yield Doc(i, t, json.loads(m) if m else {})
