"""Exclusion files: every document a step dropped, changed or could not read, and why.

One parquet file per (stage, shard), so workers never share a file and a resumed run can
skip shards already done. The text kept is the document as it was before the step, so a
user can always see (and recover) what was left out.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

SCHEMA = pa.schema(
    [
        ("id", pa.string()),
        ("step", pa.string()),
        ("action", pa.string()),  # drop | edit | skip
        ("reason", pa.string()),
        ("detail", pa.string()),
        ("path", pa.string()),
        ("line", pa.int64()),
        ("text", pa.string()),
    ]
)


@dataclass
class Exclusion:
    id: str | None
    step: str
    action: str
    reason: str
    detail: str = ""
    path: str | None = None
    line: int | None = None
    text: str | None = None


def write_exclusions(path: Path, rows: Iterable[Exclusion]) -> int:
    """Write rows atomically (an empty file is written too: it marks the shard as done)."""
    rows = list(rows)
    table = pa.Table.from_pylist([asdict(r) for r in rows], schema=SCHEMA)
    tmp = path.with_name(f".{path.name}.tmp")
    pq.write_table(table, tmp, compression="zstd")
    tmp.replace(path)
    return len(rows)


def read_exclusions(paths: Iterable[Path], columns: list[str] | None = None) -> Iterator[dict]:
    for path in paths:
        pf = pq.ParquetFile(path)
        for batch in pf.iter_batches(columns=columns, batch_size=4096):
            yield from batch.to_pylist()
