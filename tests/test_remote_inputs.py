"""Inputs where data lives: fsspec URLs (memory:// and file:// here; s3://, gs://, hf://
take the same path with their package and credentials) and folders saved by HF datasets.
A URL that cannot be read is one line naming it, and nothing is written."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import fsspec
import numpy as np
import pytest

from steep.data.documents import SkipLog, read_documents
from steep.data.executor import LocalExecutor
from steep.data.tokenize import tokenize_source
from steep.datahub.catalog import Catalog
from steep.datahub.ingest import add_dataset
from steep.errors import MissingInputError
from steep.model.io import byte_tokenizer

INLINE = LocalExecutor(1)  # memory:// lives in this process


def _lines(n: int) -> bytes:
    rows = [json.dumps({"text": f"record {i}: " + "word " * (i % 13 + 1)}) for i in range(n)]
    rows.insert(17, "{broken")
    return ("\n".join(rows) + "\n").encode()


@pytest.fixture()
def memfs():
    fs = fsspec.filesystem("memory")
    fs.pipe("/corpus/a.jsonl", _lines(200))
    fs.pipe("/corpus/sub/b.jsonl", _lines(50))
    yield fs
    fs.rm("/corpus", recursive=True)


def _docs(ref: str) -> list[tuple[str, str]]:
    from steep.data.docshards import read_docs

    ds = Catalog().get(ref)
    return [(d.id, d.text) for shard in ds.shards for d in read_docs(shard)]


def test_a_memory_url_folder_ingests_as_its_local_copy(tmp_path: Path, memfs):
    local = tmp_path / "corpus"
    (local / "sub").mkdir(parents=True)
    (local / "a.jsonl").write_bytes(memfs.cat("/corpus/a.jsonl"))
    (local / "sub" / "b.jsonl").write_bytes(memfs.cat("/corpus/sub/b.jsonl"))
    # small units: the remote file is read in byte ranges (seek + read), as s3 would be
    remote = add_dataset(
        "remote", ["memory://corpus"], langid=False, unit_bytes=1500, executor=INLINE
    )
    here = add_dataset("here", [str(local)], langid=False, unit_bytes=1500, executor=INLINE)
    assert _docs(remote.ref) == _docs(here.ref) and len(_docs(here.ref)) == 250
    inputs = remote.manifest["inputs"]
    assert [i["path"] for i in inputs] == ["memory://corpus/a.jsonl", "memory://corpus/sub/b.jsonl"]
    assert [i["sha256"] for i in inputs] == [i["sha256"] for i in here.manifest["inputs"]]
    assert remote.manifest["skipped"] == here.manifest["skipped"] == {"malformed JSON": 2}


def test_a_file_url_tokenizes_as_the_path(tmp_path: Path):
    path = tmp_path / "d.jsonl"
    path.write_bytes(_lines(300))
    tok = byte_tokenizer()
    a = tokenize_source("d", [str(path)], tok, tmp_path / "c1", unit_bytes=2000)
    b = tokenize_source("d", [path.as_uri()], tok, tmp_path / "c2", unit_bytes=2000)
    assert b.info["files"][0]["path"] == path.as_uri()
    assert np.array_equal(a.train.read(0, a.train.num_tokens), b.train.read(0, b.train.num_tokens))


def test_a_url_without_its_filesystem_package_is_one_line_and_writes_nothing(tmp_path: Path):
    pytest.importorskip("upath")
    try:
        import s3fs  # noqa: F401

        pytest.skip("s3fs is installed here: the missing-package case cannot be shown")
    except ImportError:
        pass
    with pytest.raises(MissingInputError, match=r"^data path s3://bucket/x.jsonl: .*s3fs"):
        add_dataset("s3", ["s3://bucket/x.jsonl"], langid=False, executor=INLINE)
    assert Catalog().versions("s3") == []
    assert not any((Catalog().root / "s3").glob("*")) if (Catalog().root / "s3").exists() else True


def test_a_url_with_no_network_is_one_line(tmp_path: Path):
    pytest.importorskip("aiohttp", reason="fsspec's http filesystem needs aiohttp")
    with pytest.raises(MissingInputError, match=r"^data path http://127.0.0.1:9/x.jsonl: "):
        list(read_documents(["http://127.0.0.1:9/x.jsonl"], SkipLog()))


def test_a_saved_hf_dataset_folder_is_read_as_its_rows(tmp_path: Path):
    datasets = pytest.importorskip("datasets", reason="HF datasets is not installed")
    texts = [f"row {i} " + "text " * i for i in range(1, 40)]
    ds = datasets.Dataset.from_dict({"text": texts, "n": list(range(39))})
    ds.save_to_disk(str(tmp_path / "saved"), num_shards=3)
    skips = SkipLog()
    docs = list(read_documents([tmp_path / "saved"], skips))
    assert [d.text for d in docs] == texts and not skips.skips  # no state.json read as text
    version = add_dataset("saved", [str(tmp_path / "saved")], langid=False, executor=INLINE)
    assert version.manifest["documents"] == 39

    datasets.DatasetDict({"train": ds, "test": ds}).save_to_disk(str(tmp_path / "dd"))
    with pytest.raises(MissingInputError, match="saved DatasetDict with splits .*train"):
        list(read_documents([tmp_path / "dd"], SkipLog()))
    shutil.rmtree(tmp_path / "dd")
