"""One bad record or page never stops a dataset: it is skipped with file, line and reason,
the same in the Data Hub's ingest and in training's reader, at any unit size."""

from __future__ import annotations

import bz2
import gzip
import json
import os
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import zstandard

from steep.data import spans
from steep.data.documents import SkipLog
from steep.data.executor import LocalExecutor
from steep.data.spans import plan_file, read_span
from steep.data.tokenize import tokenize_source
from steep.datahub.exclusions import read_exclusions
from steep.datahub.ingest import add_dataset
from steep.model.io import byte_tokenizer

INLINE = LocalExecutor(1)
GOOD = [json.dumps({"text": f"good document {i}"}) for i in range(3)]
BAD = {
    "lone surrogate": '{"text": "\\ud800"}',
    "deep nesting": '{"text": "x", "n": ' + "[" * 100_000 + "]" * 100_000 + "}",
    "huge integer": '{"text": "x", "n": ' + "7" * 5000 + "}",
}


def _bad_folder(root: Path) -> Path:
    """good, bad, good, bad, ... in one jsonl file, plus undecodable compressed files."""
    folder = root / "in"
    folder.mkdir()
    lines = [GOOD[0]]
    for bad in BAD.values():
        lines += [bad, GOOD[len(lines) // 2 % 3]]
    (folder / "mixed.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    for suffix in (".jsonl.zst", ".jsonl.gz", ".jsonl.bz2"):
        (folder / f"noise{suffix}").write_bytes(os.urandom(4096))
    (folder / "ok.jsonl.zst").write_bytes(zstandard.compress(GOOD[0].encode() + b"\n"))
    (folder / "ok.jsonl.gz").write_bytes(gzip.compress(GOOD[1].encode() + b"\n"))
    (folder / "ok.jsonl.bz2").write_bytes(bz2.compress(GOOD[2].encode() + b"\n"))
    return folder


def test_bad_records_are_skipped_with_line_and_reason_in_add(tmp_path: Path) -> None:
    folder = _bad_folder(tmp_path)
    ds = add_dataset("bad", [str(folder)], langid=False, executor=INLINE)
    assert ds.manifest["documents"] == 4 + 3
    rows = list(read_exclusions(ds.exclusions))
    mixed = sorted((r["line"], r["reason"]) for r in rows if r["path"].endswith("mixed.jsonl"))
    assert [line for line, _ in mixed] == [2, 4, 6]
    assert {reason for _, reason in mixed} <= {"invalid text", "malformed JSON"}
    noise = sorted(Path(r["path"]).name for r in rows if r["reason"] == "unreadable file")
    assert noise == ["noise.jsonl.bz2", "noise.jsonl.gz", "noise.jsonl.zst"]


def test_bad_records_are_skipped_in_training_s_reader(tmp_path: Path) -> None:
    folder = _bad_folder(tmp_path)
    ts = tokenize_source("bad", [str(folder)], byte_tokenizer(), tmp_path / "cache")
    assert ts.info["splits"]["train"]["documents"] == 7
    assert ts.info["skipped"] == 6


def _cr_only(path: Path, n: int = 5) -> Path:
    path.write_bytes(b"\r".join(json.dumps({"text": f"doc {i}"}).encode() for i in range(n)))
    return path


@pytest.mark.parametrize("unit_bytes", [10, 1 << 20])
def test_cr_only_line_endings_are_lines(tmp_path: Path, unit_bytes: int) -> None:
    path = _cr_only(tmp_path / "cr.jsonl")
    skips = SkipLog()
    docs = [d for s in plan_file(path, unit_bytes).spans for d in read_span(s, skips)]
    assert [(d.text, d.line) for d in docs] == [(f"doc {i}", i + 1) for i in range(5)]
    assert not skips.skips


@pytest.mark.parametrize("chunk", [5, 8 << 20])  # a CRLF cut across planning's blocks
def test_mixed_line_endings_number_lines_alike_at_any_unit(
    tmp_path: Path, chunk: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(spans, "_CHUNK", chunk)
    recs = [json.dumps({"text": f"doc {i}"}).encode() for i in range(12)]
    ends = [b"\n", b"\r", b"\r\n"]
    path = tmp_path / "mixed.jsonl"
    path.write_bytes(b"".join(r + ends[i % 3] for i, r in enumerate(recs)))
    for unit in (1, 7, 30, 1 << 20):
        skips = SkipLog()
        docs = [d for s in plan_file(path, unit).spans for d in read_span(s, skips)]
        assert [(d.text, d.line) for d in docs] == [(f"doc {i}", i + 1) for i in range(12)], unit


def _damaged_parquet(path: Path) -> Path:
    """Three row groups of 500 rows; the second group's data page header is overwritten."""
    table = pa.table({"text": [f"row {i} " + "word " * 20 for i in range(1500)]})
    pq.write_table(table, path, row_group_size=500, compression="none")
    meta = pq.ParquetFile(path).metadata
    offset = meta.row_group(1).column(0).data_page_offset
    data = bytearray(path.read_bytes())
    data[offset : offset + 64] = b"\xff" * 64
    path.write_bytes(bytes(data))
    return path


@pytest.mark.parametrize("unit_bytes", [1, 30_000, 64 << 20])
def test_a_damaged_parquet_page_skips_its_row_group_at_any_unit(
    tmp_path: Path, unit_bytes: int
) -> None:
    path = _damaged_parquet(tmp_path / "d.parquet")
    skips = SkipLog()
    docs = [d for s in plan_file(path, unit_bytes).spans for d in read_span(s, skips)]
    assert [d.line for d in docs] == [*range(1, 501), *range(1001, 1501)]
    (skip,) = skips.skips
    assert skip.line == 501 and "row group 1" in skip.reason and "rows 501-1000" in skip.reason


def test_a_damaged_parquet_page_in_add_and_training(tmp_path: Path) -> None:
    path = _damaged_parquet(tmp_path / "d.parquet")
    ds = add_dataset("pq", [str(path)], langid=False, executor=INLINE)
    assert ds.manifest["documents"] == 1000
    ts = tokenize_source("pq", [str(path)], byte_tokenizer(), tmp_path / "cache")
    assert ts.info["splits"]["train"]["documents"] == 1000


RECORDS = [{"text": f"record {i}", "id": i} for i in range(3)]


@pytest.mark.parametrize(
    "value", [RECORDS, {"data": RECORDS}, {"version": "2", "rows": RECORDS, "tags": ["a"]}]
)
@pytest.mark.parametrize("unit_bytes", [10, 1 << 20])
def test_a_pretty_printed_json_file_is_one_document(
    tmp_path: Path, value: object, unit_bytes: int
) -> None:
    path = tmp_path / "d.json"
    path.write_text(json.dumps(value, indent=2), encoding="utf-8")
    skips = SkipLog()
    docs = [d for s in plan_file(path, unit_bytes).spans for d in read_span(s, skips)]
    assert [(d.text, d.line) for d in docs] == [(f"record {i}", i + 1) for i in range(3)]
    assert not skips.skips


def test_a_json_file_of_json_lines_still_reads_as_lines(tmp_path: Path) -> None:
    path = tmp_path / "l.json"
    path.write_text("{broken\n" + "\n".join(json.dumps(r) for r in RECORDS) + "\n")
    skips = SkipLog()
    docs = [d for s in plan_file(path, 10).spans for d in read_span(s, skips)]
    assert [(d.text, d.line) for d in docs] == [(f"record {i}", i + 2) for i in range(3)]
    assert [(s.line, s.reason.split(":")[0]) for s in skips.skips] == [(1, "malformed JSON")]


def test_an_ambiguous_json_object_is_refused_naming_the_file(tmp_path: Path) -> None:
    path = tmp_path / "two.json"
    path.write_text(json.dumps({"train": RECORDS, "test": RECORDS}, indent=2))
    (tmp_path / "ok.json").write_text(json.dumps(RECORDS, indent=1))
    ds = add_dataset("j", [str(tmp_path)], langid=False, executor=INLINE)
    assert ds.manifest["documents"] == 3
    (row,) = list(read_exclusions(ds.exclusions))
    assert row["path"].endswith("two.json") and row["reason"] == "ambiguous JSON"
    assert "'test', 'train'" in row["detail"]
