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
from steep.studio.ingest_job import max_input_bytes

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


def test_the_studio_cap_is_a_ratio_of_the_upload_under_an_absolute_cap(tmp_path: Path) -> None:
    small = tmp_path / "s.gz"
    small.write_bytes(b"x" * 300_000)  # the 295 KB bomb of the finding: 300 MB inside
    assert max_input_bytes([small]) < 300 << 20
    from steep.studio import ingest_job

    big = tmp_path / "big.zst"
    with open(big, "wb") as f:
        f.truncate(ingest_job.MAX_INPUT_BYTES)  # sparse: a huge upload
    assert max_input_bytes([big]) == ingest_job.MAX_INPUT_BYTES


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
