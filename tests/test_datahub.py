"""Data Hub: versioned datasets, ingest with exclusions, recipes, funnel and resume."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import ClassVar

import pytest

from steep.cli import main
from steep.config import ConfigError
from steep.data.executor import LocalExecutor
from steep.datahub.catalog import Catalog, CatalogError, DatasetRef
from steep.datahub.exclusions import read_exclusions
from steep.datahub.ingest import add_dataset
from steep.datahub.pipeline import parse_recipe, prepare
from steep.datahub.steps.base import CorpusStep, Doc, DocStep, Drop, Edit, read_docs, register
from steep.errors import DataError

INLINE = LocalExecutor(1)


@register
class DropMarked(DocStep):
    """Test step: drop documents containing a marker, upper-case those with another."""

    kind: ClassVar[str] = "test_drop_marked"
    marker: str = "DROPME"

    def apply(self, doc: Doc) -> Doc | Edit | Drop:
        if self.marker in doc.text:
            return Drop("test_drop_marked.marker", f"contains {self.marker}")
        if "shout" in doc.text:
            return Edit(Doc(doc.id, doc.text.upper(), doc.meta), "test_drop_marked.upper")
        if os.environ.get("STEEP_TEST_CRASH_ON") and os.environ["STEEP_TEST_CRASH_ON"] in doc.text:
            raise RuntimeError("simulated crash")
        return doc


@register
class SameText(CorpusStep):
    """Test step: drop later copies of the same text (a tiny exact dedup)."""

    kind: ClassVar[str] = "test_same_text"

    def select_drops(self, shards: list[Path], workdir: Path) -> dict[str, Drop]:
        seen: dict[str, str] = {}
        drops = {}
        for shard in shards:
            for doc in read_docs(shard):
                if doc.text in seen:
                    drops[doc.id] = Drop("test_same_text.copy", f"same as {seen[doc.text]}")
                else:
                    seen[doc.text] = doc.id
        return drops


def write_lines(path: Path, lines: list[str]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    return path


def doc(text: str) -> str:
    return json.dumps({"text": text})


@pytest.fixture
def raw(tmp_path: Path) -> Path:
    d = tmp_path / "raw"
    write_lines(d / "a.jsonl", [doc("alpha one"), doc("beta DROPME"), "{broken", doc("shout it")])
    write_lines(d / "b.jsonl", [doc("alpha one"), doc(""), doc("gamma three")])
    (d / "notes.txt").write_text("a plain text document\n")
    (d / "blob.txt").write_bytes(b"\x00\x01binary")
    (d / "same-as-a.jsonl").write_bytes((d / "a.jsonl").read_bytes())
    return d


def tree_digest(folder: Path) -> str:
    h = hashlib.sha256()
    for p in sorted(folder.rglob("*")):
        if p.is_file():
            h.update(str(p.relative_to(folder)).encode() + p.read_bytes())
    return h.hexdigest()


def test_add_counts_keeps_and_explains_everything(raw: Path) -> None:
    ds = add_dataset("raw", [str(raw)], langid=False, executor=INLINE)
    assert ds.ref == "raw@1"
    m = ds.manifest
    assert m["documents"] == 6  # 3 from a, 2 from b, 1 txt; the copy of a is ingested once
    texts = sorted(d.text for s in ds.shards for d in read_docs(s))
    assert texts == sorted(
        [
            "alpha one",
            "beta DROPME",
            "shout it",
            "alpha one",
            "gamma three",
            "a plain text document\n",
        ]
    )
    assert m["skipped"] == {
        "malformed JSON": 1,
        "empty document": 1,
        "binary file": 1,
        "duplicate file": 1,
    }
    by_path = {Path(i["path"]).name: i for i in m["inputs"]}
    assert (
        by_path["a.jsonl"]["sha256"] == hashlib.sha256((raw / "a.jsonl").read_bytes()).hexdigest()
    )
    rows = list(read_exclusions(ds.exclusions))
    malformed = [r for r in rows if r["reason"] == "malformed JSON"]
    assert malformed[0]["path"].endswith("a.jsonl") and malformed[0]["line"] == 3


def test_versions_are_immutable_and_names_unique(raw: Path) -> None:
    add_dataset("raw", [str(raw / "a.jsonl")], langid=False, executor=INLINE)
    with pytest.raises(CatalogError, match="exists"):
        add_dataset("raw", [str(raw / "b.jsonl")], langid=False, executor=INLINE)
    with pytest.raises(FileNotFoundError):
        add_dataset("other", [str(raw / "nope.jsonl")], langid=False, executor=INLINE)
    with pytest.raises(CatalogError, match="no dataset named 'nothing'"):
        Catalog().get("nothing")
    with pytest.raises(CatalogError, match="version must be a number"):
        DatasetRef.parse("raw@latest")


def test_folder_without_text_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises((CatalogError, FileNotFoundError), match="empty"):
        add_dataset("e", [str(tmp_path / "empty")], langid=False, executor=INLINE)


def test_prepare_makes_a_new_version_with_funnel_and_exclusions(raw: Path) -> None:
    v1 = add_dataset("raw", [str(raw)], langid=False, executor=INLINE)
    before = tree_digest(v1.path)
    specs = parse_recipe({"steps": ["test_drop_marked", "test_same_text"]})
    v2 = prepare("raw", specs, executor=INLINE)
    assert v2.ref == "raw@2" and v2.manifest["parent"] == "raw@1"
    assert tree_digest(v1.path) == before  # the old version is untouched

    texts = sorted(d.text for s in v2.shards for d in read_docs(s))
    assert texts == ["SHOUT IT", "a plain text document\n", "alpha one", "gamma three"]
    funnel = {f["step"]: f for f in v2.manifest["funnel"]}
    assert funnel["test_drop_marked"]["docs_in"] == 6
    assert funnel["test_drop_marked"]["docs_out"] == 5
    assert funnel["test_drop_marked"]["dropped"] == {"test_drop_marked.marker": 1}
    assert funnel["test_drop_marked"]["edited"] == {"test_drop_marked.upper": 1}
    assert funnel["test_same_text"]["dropped"] == {"test_same_text.copy": 1}
    assert v2.manifest["documents"] == 4

    rows = [r for r in read_exclusions(v2.exclusions) if r["step"].startswith("test_")]
    by_reason = {r["reason"]: r for r in rows}
    assert by_reason["test_drop_marked.marker"]["text"] == "beta DROPME"  # nothing is lost
    assert by_reason["test_drop_marked.upper"]["text"] == "shout it"  # the text before the edit
    assert by_reason["test_same_text.copy"]["detail"].startswith("same as ")


def test_prepare_that_drops_everything_publishes_nothing(raw: Path) -> None:
    add_dataset("raw", [str(raw)], langid=False, executor=INLINE)
    specs = parse_recipe({"steps": [{"test_drop_marked": {"marker": ""}}, "test_same_text"]})
    with pytest.raises(DataError, match=r"step 'test_drop_marked' dropped all 6 documents"):
        prepare("raw", specs, executor=INLINE)
    assert Catalog().versions("raw") == [1]


def test_prepare_resumes_after_a_crash(
    raw: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    add_dataset("raw", [str(raw / "a.jsonl"), str(raw / "b.jsonl")], langid=False, executor=INLINE)
    specs = parse_recipe({"steps": ["test_drop_marked"]})
    monkeypatch.setenv("STEEP_TEST_CRASH_ON", "gamma")  # a doc in the second shard
    with pytest.raises(RuntimeError, match="simulated crash"):
        prepare("raw", specs, executor=INLINE)
    assert Catalog().versions("raw") == [1]  # nothing published
    partial = next((Catalog().root / "raw").glob(".partial-prepare-*"))
    done = sorted((partial / "work" / "stage-0").glob("*.json"))
    assert len(done) == 1

    monkeypatch.delenv("STEEP_TEST_CRASH_ON")
    v2 = prepare("raw", specs, executor=INLINE)
    assert v2.manifest["documents"] == 4
    assert not partial.exists()
    assert "resuming" in capsys.readouterr().out
    assert v2.manifest["funnel"][0]["docs_in"] == 5  # the finished shard's counts were kept


def test_recipe_errors_name_the_step_and_field() -> None:
    with pytest.raises(ConfigError, match=r"steps\[0\]: unknown step 'nope'"):
        parse_recipe({"steps": ["nope"]})
    with pytest.raises(ConfigError, match=r"steps\[1\] \(test_drop_marked\): colour"):
        parse_recipe({"steps": ["test_drop_marked", {"test_drop_marked": {"colour": 1}}]})
    with pytest.raises(ConfigError, match="non-empty list 'steps:'"):
        parse_recipe({"steps": []})


def test_data_cli_round_trip(raw: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert main(["data", "add", "raw", str(raw / "a.jsonl"), "--no-langid", "--workers", "1"]) == 0
    recipe = tmp_path / "r.yaml"
    recipe.write_text("steps:\n  - test_drop_marked: {marker: DROPME}\n")
    assert main(["data", "prepare", "raw", "--recipe", str(recipe), "--workers", "1"]) == 0
    capsys.readouterr()
    assert main(["data", "list"]) == 0
    listing = capsys.readouterr().out
    assert "raw@2" in listing and "1,2" in listing
    assert main(["data", "show", "raw@2"]) == 0
    shown = capsys.readouterr().out
    assert "test_drop_marked" in shown and "beta DROPME" in shown and "parent: raw@1" in shown
    assert main(["data", "show", "raw@9"]) == 2
    assert "raw has no version 9" in capsys.readouterr().err


def test_giant_documents_are_skipped_and_kept(tmp_path: Path) -> None:
    write_lines(tmp_path / "g.jsonl", [doc("small one"), doc("x" * 5000), doc("small two")])
    ds = add_dataset(
        "g", [str(tmp_path / "g.jsonl")], max_doc_bytes=1000, langid=False, executor=INLINE
    )
    assert ds.manifest["documents"] == 2
    assert ds.manifest["skipped"] == {"giant document": 1}
    (row,) = list(read_exclusions(ds.exclusions))
    assert row["line"] == 2 and row["detail"] == "5,000 bytes > 1,000"


def test_add_resumes_after_a_crash(raw: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import steep.datahub.ingest as ingest

    real = ingest.read_span

    def crash_on_b(span, skips, text_field, max_bytes=None):
        if span.path.endswith("b.jsonl"):
            raise RuntimeError("simulated crash")
        return real(span, skips, text_field, max_bytes)

    monkeypatch.setattr(ingest, "read_span", crash_on_b)
    files = [str(raw / "a.jsonl"), str(raw / "b.jsonl")]
    with pytest.raises(RuntimeError, match="simulated crash"):
        add_dataset("raw", files, langid=False, executor=INLINE)
    assert Catalog().versions("raw") == []
    monkeypatch.setattr(ingest, "read_span", real)
    calls = []

    def counting(span, skips, text_field, max_bytes=None):
        calls.append(span.path)
        return real(span, skips, text_field, max_bytes)

    monkeypatch.setattr(ingest, "read_span", counting)
    planned = []
    monkeypatch.setattr(ingest, "plan_file", lambda p, n: planned.append(p) or (1 / 0))
    ds = add_dataset("raw", files, langid=False, executor=INLINE)
    assert [Path(p).name for p in calls] == ["b.jsonl"]  # a.jsonl was done before the crash
    assert planned == []  # both files were planned (hashed, cut) before it: not read again
    assert ds.manifest["documents"] == 5


def test_every_recipe_step_is_found_in_a_fresh_process() -> None:
    """The pipeline finds steps by importing the modules that register them; a module that
    moved must not be skipped silently (it was, once: decontaminate went missing)."""
    import subprocess
    import sys

    code = (
        "import json; from steep.datahub.pipeline import load_step_types; "
        "print(json.dumps(sorted(load_step_types())))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    kinds = json.loads(out.stdout)
    assert kinds == [
        "c4",
        "decontaminate",
        "domain_filter",
        "exact_dedup",
        "fineweb",
        "gopher_quality",
        "gopher_repetition",
        "langid",
        "languages",
        "minhash_dedup",
        "normalize",
        "pii",
    ]
