"""Work inside big files: spans of a jsonl (line-aligned) and of a parquet (row groups)
give exactly the documents, ids and line numbers of a whole-file read."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import steep.data.spans as spans
from steep.data.documents import SkipLog, read_documents
from steep.data.executor import LocalExecutor
from steep.data.spans import plan_file, read_span
from steep.datahub.catalog import Catalog
from steep.datahub.ingest import add_dataset


def _jsonl(path: Path) -> Path:
    """Records of every length (0-300 chars), multi-byte UTF-8, blank and broken lines."""
    rng = random.Random(0)
    with open(path, "w", encoding="utf-8") as f:
        for i in range(400):
            text = "ü€😀 " * rng.randint(0, 60) + f"doc {i}"
            f.write(json.dumps({"text": text}, ensure_ascii=False) + "\n")
            if i % 17 == 0:
                f.write("\n")
            if i % 23 == 0:
                f.write("{broken\n")
    return path


def _read(plan, skips: SkipLog) -> list[tuple[str, int]]:
    return [(d.text, d.line) for s in plan.spans for d in read_span(s, skips)]


@pytest.mark.parametrize("chunk", [7, 64, 1 << 20])
def test_records_across_every_boundary_are_read_once(tmp_path: Path, chunk: int, monkeypatch):
    path = _jsonl(tmp_path / "a.jsonl")
    whole_skips = SkipLog()
    whole = [(d.text, d.line) for d in read_documents([path], whole_skips)]
    monkeypatch.setattr(spans, "_CHUNK", chunk)  # planning reads in blocks of this size
    size = path.stat().st_size
    for unit in range(1, 400, 13):  # cuts land at every kind of place in a record
        plan = plan_file(path, unit)
        assert plan.size == size and len(plan.spans) > 1
        skips = SkipLog()
        assert _read(plan, skips) == whole
        assert [(s.line, s.reason) for s in skips.skips] == [
            (s.line, s.reason) for s in whole_skips.skips
        ]
    assert len(plan_file(path, 1 << 30).spans) == 1


def test_parquet_splits_by_row_groups(tmp_path: Path) -> None:
    texts = [f"row {i} " + "x" * (i % 50) for i in range(1000)]
    path = tmp_path / "t.parquet"
    pq.write_table(pa.table({"text": texts}), path, row_group_size=100)
    plan = plan_file(path, 2000)
    assert len(plan.spans) > 2 and {s.kind for s in plan.spans} == {"rows"}
    skips = SkipLog()
    assert _read(plan, skips) == [(t, i + 1) for i, t in enumerate(texts)] and not skips.skips


def test_one_big_file_becomes_many_shards_with_the_same_documents(tmp_path: Path, _steep_home):
    path = _jsonl(tmp_path / "big.jsonl")
    one = add_dataset("whole", [str(path)], langid=False, executor=LocalExecutor(1))
    many = add_dataset(
        "split", [str(path)], langid=False, unit_bytes=4096, executor=LocalExecutor(2)
    )
    assert len(one.shards) == 1 and len(many.shards) > 4

    def rows(ds) -> list[tuple[str, str]]:
        out = []
        for shard in ds.shards:
            t = pq.read_table(shard)
            out += list(zip(t.column("id").to_pylist(), t.column("text").to_pylist(), strict=True))
        return out

    assert rows(many) == rows(one)  # same ids, texts, order
    for key in ("documents", "bytes", "skipped", "inputs"):
        assert many.manifest[key] == one.manifest[key]
    assert Catalog().get("split@1").manifest["inputs"][0]["skipped"] == {"malformed JSON": 18}
