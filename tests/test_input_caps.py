"""A compressed input past its decompressed cap is one skipped record, and none of its
documents are kept (#29 finding 9): a bomb read until the cap used to leave the documents
read before it, 67 MB of them from a 295 KB upload."""

from __future__ import annotations

import bz2
import gzip
import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import zstandard

from steep.data.documents import SkipLog, read_documents

LINE = json.dumps({"text": "the same sentence again and again. " * 20}).encode() + b"\n"
INSIDE = LINE * 30_000  # ~21 MB of documents, a few KB compressed
CAP = 4 << 20


def _write(path: Path) -> Path:
    if path.name.endswith(".gz"):
        path.write_bytes(gzip.compress(INSIDE))
    elif path.name.endswith(".bz2"):
        path.write_bytes(bz2.compress(INSIDE))
    elif path.name.endswith(".zst"):
        path.write_bytes(zstandard.ZstdCompressor().compress(INSIDE))
    else:  # parquet: one highly compressible column, zstd pages
        texts = [json.loads(x)["text"] for x in INSIDE.splitlines()]
        pq.write_table(pa.table({"text": texts}), path, compression="zstd", row_group_size=4096)
    return path


@pytest.mark.parametrize("name", ["b.jsonl.gz", "b.jsonl.zst", "b.jsonl.bz2", "b.parquet"])
def test_a_file_past_its_cap_is_skipped_whole(tmp_path: Path, name: str) -> None:
    bomb = _write(tmp_path / name)
    good = tmp_path / "good.jsonl"
    good.write_bytes(LINE * 3)
    skips = SkipLog()
    docs = list(read_documents([bomb, good], skips, max_bytes=CAP))
    assert [Path(d.path).name for d in docs] == ["good.jsonl"] * 3  # the rest goes on
    assert len(skips.skips) == 1
    assert skips.skips[0].path.endswith(name) and "too large" in skips.skips[0].reason


@pytest.mark.parametrize("name", ["b.jsonl.gz", "b.parquet"])
def test_under_its_cap_a_file_is_read_whole(tmp_path: Path, name: str) -> None:
    bomb = _write(tmp_path / name)
    skips = SkipLog()
    assert len(list(read_documents([bomb], skips, max_bytes=64 << 20))) == 30_000
    assert not skips.skips


def test_a_parquet_bomb_read_in_units_is_one_skipped_record(tmp_path: Path) -> None:
    """Ingest reads a parquet file as runs of row groups: each refuses the file, the first
    says so, and the result is the same at any unit size."""
    from steep.data.spans import _plan_rows, read_span

    bomb = _write(tmp_path / "b.parquet")
    spans = _plan_rows(bomb, 1000)
    assert len(spans) > 1
    skips = SkipLog()
    docs = [d for s in spans for d in read_span(s, skips, max_bytes=CAP)]
    assert docs == [] and len(skips.skips) == 1 and "too large" in skips.skips[0].reason


def test_the_studio_caps_each_file_by_its_own_size(tmp_path: Path) -> None:
    """A ratio of the largest upload let a bomb through beside one big plain file: each
    file's cap is a multiple of its own size (at least a floor), under an absolute cap."""
    from steep.data.executor import LocalExecutor
    from steep.datahub.ingest import add_dataset

    bomb = _write(tmp_path / "b.jsonl.gz")  # ~21 MB inside a few KB: over the 16 MB floor
    plain = tmp_path / "plain.jsonl"
    plain.write_bytes(LINE * 3000)  # ~2 MB: 100x is 200 MB
    ds = add_dataset(
        "mix", [str(bomb), str(plain)], langid=False, executor=LocalExecutor(1),
        max_input_ratio=100, max_input_bytes=16 << 30,
    )  # fmt: skip
    assert ds.manifest["documents"] == 3000
    assert ds.manifest["skipped"] == {"too large": 1}
