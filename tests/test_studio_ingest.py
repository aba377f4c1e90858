"""Uploads become datasets in a child process, and a decompression bomb costs neither the
studio's memory nor a dataset of nothing (#18 finding 2)."""

from __future__ import annotations

import gzip
import json
import tracemalloc
from pathlib import Path

import pytest

from steep.data.documents import MAX_LINE_BYTES, SkipLog, read_documents

pytest.importorskip("fastapi", reason="studio extra not installed: pip install -e '.[studio]'")

from fastapi.testclient import TestClient  # noqa: E402

from steep.studio.app import Settings, create_app  # noqa: E402

CHANGE = {"X-Steep-Request": "1"}
BOMB_BYTES = 128 << 20  # decompressed; the .gz is about a thousandth of it


def _gz(path: Path, chunks) -> Path:
    with gzip.open(path, "wb", compresslevel=1) as f:
        for chunk in chunks:
            f.write(chunk)
    return path


def _text_bomb(path: Path) -> Path:
    return _gz(path, (b"a" * (1 << 20) for _ in range(BOMB_BYTES >> 20)))


def _one_line_bomb(path: Path) -> Path:
    head, tail = b'{"text": "', b'"}\n'
    return _gz(path, [head, *(b"b" * (1 << 20) for _ in range(BOMB_BYTES >> 20)), tail])


@pytest.mark.parametrize("make", [_text_bomb, _one_line_bomb], ids=["txt.gz", "jsonl.gz"])
def test_a_giant_document_is_refused_while_it_is_read(tmp_path: Path, make) -> None:
    """Before: the whole text (a 128 MB line, a 128 MB .txt) was held, then measured; now
    what is held is bounded by the longest record a document can need, not by the file."""
    bomb = make(tmp_path / ("b.txt.gz" if make is _text_bomb else "b.jsonl.gz"))
    skips = SkipLog()
    tracemalloc.start()
    docs = list(read_documents([bomb], skips))
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert docs == [] and "giant document" in skips.skips[0].reason
    assert peak < 2.5 * MAX_LINE_BYTES < BOMB_BYTES, f"{peak / 2**20:.0f} MiB held"


def test_a_file_past_its_decompressed_limit_is_skipped(tmp_path: Path) -> None:
    line = json.dumps({"text": "the same sentence again and again. " * 20}).encode() + b"\n"
    many = _gz(tmp_path / "many.jsonl.gz", (line * 1000 for _ in range(30)))  # ~21 MB inside
    skips = SkipLog()
    docs = list(read_documents([many], skips, max_bytes=8 << 20))
    assert docs == []  # skipped whole: none of its documents kept
    assert skips.skips[-1].reason.startswith("too large: more than 8,388,608 bytes")


def test_the_studio_ingests_in_a_child_process_and_publishes_no_empty_dataset(
    _steep_home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import steep.datahub.ingest as ingest_module

    def not_here(*args, **kwargs):
        raise AssertionError("ingest ran inside the studio's process")

    monkeypatch.setattr(ingest_module, "add_dataset", not_here)
    c = TestClient(create_app(Settings(home=_steep_home, run_jobs=False)))

    def upload(name: str, body: bytes) -> str:
        up = c.post("/api/uploads", headers=CHANGE).json()["id"]
        assert c.put(f"/api/uploads/{up}/{name}", content=body, headers=CHANGE).status_code == 200
        return up

    bomb = _text_bomb(tmp_path / "b.txt.gz").read_bytes()
    assert len(bomb) < 1 << 20
    up = upload("b.txt.gz", bomb)
    res = c.post("/api/datasets", json={"name": "bomb", "upload": up}, headers=CHANGE)
    assert res.status_code == 400
    assert "no usable document" in res.json()["error"] and "too large" in res.json()["error"]
    assert c.get("/api/datasets").json() == []  # nothing published

    good = "".join(json.dumps({"text": f"doc {i} has some words in it"}) + "\n" for i in range(9))
    up = upload("d.jsonl", good.encode())
    res = c.post(
        "/api/datasets", json={"name": "ok", "upload": up, "langid": False}, headers=CHANGE
    )
    assert res.status_code == 200, res.json()
    assert res.json()["ref"] == "ok@1" and res.json()["documents"] == 9
