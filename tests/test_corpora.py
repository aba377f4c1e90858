"""The demo corpora builders, on a tiny fake stdlib and a fake gensim wheel (no network)."""

from __future__ import annotations

import bz2
import json
import zipfile
from pathlib import Path

import pytest

from steep.demos import corpora
from steep.demos.corpora import CorpusError, build_demo_corpora, python_docs, wikipedia_articles

LONG = "This paragraph explains the behaviour in enough words to pass the length filter. " * 4

MODULE = f'''"""Tools for frobbing widgets.

{LONG}
"""

class Widget:
    """A widget that can be frobbed."""

    def frob(self, times: int = 1) -> None:
        """Frob the widget ``times`` times."""

    def _private(self):
        """Never documented."""

def helper(x, *args, key=None):
    """Help with x."""
'''

WIKI = """<mediawiki xmlns="http://www.mediawiki.org/xml/export-0.10/">
  <page><title>Anarchism</title><ns>0</ns><revision><text>'''Anarchism''' is a [[political philosophy]] {{{{citation needed}}}}. {long} {long}
  [[Category:Politics]]</text></revision></page>
  <page><title>AccessibleComputing</title><ns>0</ns><redirect title="Computer accessibility" />
  <revision><text>#REDIRECT [[Computer accessibility]]</text></revision></page>
  <page><title>Talk:Anarchism</title><ns>1</ns><revision><text>{long}</text></revision></page>
  <page><title>Stub</title><ns>0</ns><revision><text>Too short.</text></revision></page>
</mediawiki>"""


def fake_stdlib(root: Path) -> Path:
    (root / "widgets").mkdir(parents=True)
    (root / "widgets" / "__init__.py").write_text(MODULE)
    (root / "test").mkdir()
    (root / "test" / "test_widgets.py").write_text(MODULE)  # tests are not documentation
    (root / "broken.py").write_text("def (:\n")  # unparsable modules are skipped
    return root


def fake_wheel(cache: Path) -> Path:
    cache.mkdir(parents=True, exist_ok=True)
    wheel = cache / "gensim-4.4.0-cp311-cp311-manylinux_2_28_x86_64.whl"
    with zipfile.ZipFile(wheel, "w") as zf:
        zf.writestr(corpora.WIKI_MEMBER, bz2.compress(WIKI.format(long=LONG).encode()))
        news = "Bushfires near Sydney forced hundreds from their homes.\n\nThe \xa3 fell.\n"
        zf.writestr(corpora.NEWS_MEMBER, news.encode("latin-1"))
    return wheel


def test_python_docs_reads_docstrings_without_importing(tmp_path: Path) -> None:
    docs = [d for d in python_docs(fake_stdlib(tmp_path / "lib")) if "widget" in d.lower()]
    assert len(docs) == 1  # the test copy is skipped
    doc = docs[0]
    assert doc.startswith("Module widgets\n\nTools for frobbing widgets.")
    assert "class Widget\n\nA widget that can be frobbed." in doc
    assert "def Widget.frob(self, times: int=1)" in doc
    assert "def helper(x, *args, key=None)" in doc
    assert "Never documented" not in doc


def test_wikipedia_keeps_articles_only_as_plain_text() -> None:
    articles = list(wikipedia_articles(bz2.compress(WIKI.format(long=LONG).encode())))
    assert len(articles) == 1  # redirect, talk page and stub are dropped
    text = articles[0]
    assert text.startswith("Anarchism\n\nAnarchism is a political philosophy. This")
    assert "[[" not in text and "{{" not in text and "'''" not in text
    assert "Category:" not in text


def test_build_demo_corpora_writes_once_then_reuses(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    stdlib = fake_stdlib(tmp_path / "lib")
    monkeypatch.setattr(corpora.sysconfig, "get_paths", lambda: {"stdlib": str(stdlib)})
    fake_wheel(tmp_path / "cache")
    out = tmp_path / "corpora"
    built = build_demo_corpora(out, tmp_path / "cache")
    assert set(built) == {"python_docs", "wikipedia", "news"}
    news = [json.loads(x)["text"] for x in built["news"].path.read_text().splitlines()]
    assert news == ["Bushfires near Sydney forced hundreds from their homes.", "The \xa3 fell."]
    wiki = built["wikipedia"]
    lines = wiki.path.read_text().splitlines()
    assert wiki.documents == len(lines) == 1
    assert json.loads(lines[0])["text"].startswith("Anarchism")
    sidecar = json.loads((out / "wikipedia.jsonl.info.json").read_text())
    assert sidecar["documents"] == 1 and sidecar["sha256"] == wiki.sha256

    # a second call reuses the files: no wheel needed any more
    (tmp_path / "cache" / next(iter(p.name for p in (tmp_path / "cache").iterdir()))).unlink()
    again = build_demo_corpora(out, tmp_path / "cache")
    assert again["wikipedia"].sha256 == wiki.sha256


def test_missing_gensim_wheel_is_a_clear_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    class Failed:
        returncode = 1
        stderr = "ERROR: No matching distribution found for gensim==4.4.0"

    monkeypatch.setattr(corpora.subprocess, "run", lambda *a, **k: Failed())
    with pytest.raises(CorpusError, match="gensim 4.4.0 wheel in that folder"):
        corpora.build_wikipedia(tmp_path / "w.jsonl", tmp_path / "cache")
    assert not (tmp_path / "w.jsonl").exists()


def test_empty_corpus_leaves_no_file(tmp_path: Path) -> None:
    with pytest.raises(CorpusError, match="no documents"):
        corpora.write_corpus(iter(()), tmp_path / "empty.jsonl", "nothing")
    assert list(tmp_path.iterdir()) == []
