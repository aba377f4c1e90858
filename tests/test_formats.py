"""`steep data add` on the formats teams have (#31): web pages and WARC, MediaWiki dumps,
PDF, EPUB and DOCX, records through a template; each bad input a skip with its reason.

Samples are real: Debian's HTML manuals, the gensim wheel's Wikipedia dumps
(tests/fixtures/formats), matplotlib's msft.csv, and documents written here by fpdf2,
ebooklib, python-docx and warcio from Debian's text of the GPL.
"""

from __future__ import annotations

import gzip
import io
import json
import shutil
import subprocess
import tracemalloc
from pathlib import Path

import matplotlib
import pytest

from steep.cli import main
from steep.data.documents import SkipLog, read_documents
from steep.data.executor import LocalExecutor
from steep.data.formats.template import load_template
from steep.datahub.describe import show_dataset
from steep.datahub.ingest import add_dataset
from steep.datahub.steps.base import read_docs
from steep.errors import DataError, UsageError
from steep.studio.uploads import check_filename

INLINE = LocalExecutor(1)
FIXTURES = Path(__file__).parent / "fixtures" / "formats"
DOC = Path("/usr/share/doc")
POLICY = DOC / "python3" / "python-policy.html"  # Debian's Python policy manual
BASICS = DOC / "libffi8" / "html" / "The-Basics.html"
NO_CONTENT = Path("/usr/libexec/valgrind/dh_view.html")  # a script's shell: no text at all
GPL = Path("/usr/share/common-licenses/GPL-3")
SAMPLES = Path(matplotlib.get_data_path()) / "sample_data"


def _need(*paths: Path) -> None:
    for p in paths:
        if not p.is_file():
            pytest.skip(f"{p} is not installed here")


def _docs(ds) -> list:
    return [d for shard in ds.shards for d in read_docs(shard)]


def _read(path: Path, **kw) -> tuple[list, SkipLog]:
    skips = SkipLog()
    return list(read_documents([path], skips, **kw)), skips


def _gpl_sections(n: int) -> list[str]:
    """The first ``n`` numbered sections of the GPL, as paragraphs of real prose."""
    text = GPL.read_text(encoding="utf-8")
    parts = text.split("\n  ")
    return [" ".join(p.split()) for p in parts if len(p.split()) > 30][:n]


def test_html_pages_keep_structure_title_and_path(tmp_path: Path) -> None:
    _need(POLICY, BASICS, NO_CONTENT)
    folder = tmp_path / "pages"
    folder.mkdir()
    for p in (POLICY, BASICS, NO_CONTENT):
        shutil.copy(p, folder / p.name)
    ds = add_dataset("web", [str(folder)], langid=False, executor=INLINE)
    docs = {Path(d.meta["source"]).name: d for d in _docs(ds)}
    assert set(docs) == {POLICY.name, BASICS.name}
    policy = docs[POLICY.name]
    lines = policy.text.splitlines()
    assert any(x.startswith("## ") for x in lines) and any(x.startswith("- ") for x in lines)
    assert "packaging of Python within the Debian" in policy.text
    assert policy.meta["title"] and policy.meta["format"] == "html"
    assert "libffi" in docs[BASICS.name].meta["title"]
    funnel = ds.manifest["formats"]["html"]
    assert funnel == {"files": 3, "documents": 2, "skipped": {"no main content": 1}}
    shown = show_dataset(ds)  # `steep data show`: per format, and documents beside their source
    assert "html: 3 files read, 2 documents extracted, skipped 1 no main content" in shown
    assert f"{folder / POLICY.name}  {policy.meta['title']!r}" in shown


def _warc(path: Path, pages: list[Path], cut: int = 0) -> None:
    from warcio.statusandheaders import StatusAndHeaders
    from warcio.warcwriter import WARCWriter

    buf = io.BytesIO()
    writer = WARCWriter(buf, gzip=False)
    writer.write_record(writer.create_warcinfo_record(path.name, {"software": "warcio"}))
    jpeg = SAMPLES / "grace_hopper.jpg"
    for url, body, ctype in [
        *((f"https://localhost{p}", p.read_bytes(), "text/html; charset=utf-8") for p in pages),
        ("https://localhost/grace_hopper.jpg", jpeg.read_bytes(), "image/jpeg"),
    ]:
        req = StatusAndHeaders("GET / HTTP/1.1", [("Host", "localhost")], is_http_request=True)
        writer.write_record(writer.create_warc_record(url, "request", http_headers=req))
        head = StatusAndHeaders("200 OK", [("Content-Type", ctype)], protocol="HTTP/1.1")
        writer.write_record(
            writer.create_warc_record(url, "response", payload=io.BytesIO(body), http_headers=head)
        )
    data = buf.getvalue()
    path.write_bytes(gzip.compress(data[: len(data) - cut] if cut else data))


def test_warc_keeps_html_responses_with_url_and_skips_the_rest(tmp_path: Path) -> None:
    _need(POLICY, BASICS)
    whole, cut = tmp_path / "crawl.warc.gz", tmp_path / "cut.warc.gz"
    _warc(whole, [POLICY, BASICS])
    _warc(cut, [POLICY, BASICS], cut=len(BASICS.read_bytes()) // 2 + 60_000)
    docs, skips = _read(whole)
    assert [d.meta["url"] for d in docs] == [
        f"https://localhost{POLICY}",
        f"https://localhost{BASICS}",
    ]
    assert docs[0].meta["title"] and "packaging of Python" in docs[0].text
    reasons = [s.reason for s in skips.skips]
    assert reasons.count("not an HTML response: a request record") == 3
    assert "not an HTML response: a warcinfo record" in reasons
    assert "not an HTML response: image/jpeg" in reasons
    docs, skips = _read(cut)  # cut inside the second page: the first is kept
    assert [d.line for d in docs] == [3]
    assert any(s.reason.startswith("truncated archive") for s in skips.skips)
    shutil.copy(POLICY, tmp_path / "page.warc")  # not a WARC at all
    docs, skips = _read(tmp_path / "page.warc")
    assert not docs and skips.skips[0].reason.startswith("not a WARC archive")


def test_a_wikipedia_dump_is_articles_with_titles(tmp_path: Path) -> None:
    enwiki = FIXTURES / "enwiki-pages-articles-first10.xml.bz2"
    bgwiki = FIXTURES / "bgwiki-latest-pages-articles-shortened.xml.bz2"
    ds = add_dataset("wiki", [str(enwiki), str(bgwiki)], langid=False, executor=INLINE)
    docs = _docs(ds)
    assert [d.meta["title"] for d in docs] == ["Anarchism", "Григориански календар"]
    assert all("[[" not in d.text and "{{" not in d.text for d in docs)
    assert "political philosophy" in docs[0].text
    assert ds.manifest["formats"]["mediawiki"]["skipped"] == {"redirect": 9, "not an article": 2}


def _pdf(path: Path, paragraphs: list[str], password: str | None = None) -> None:
    from fpdf import FPDF

    pdf = FPDF()
    pdf.set_title("GNU General Public License")
    pdf.set_font("helvetica", size=11)
    for text in paragraphs:
        pdf.add_page()
        pdf.multi_cell(0, 6, text)
    if password:
        pdf.set_encryption(owner_password="owner", user_password=password)
    pdf.output(str(path))


def test_pdf_text_is_one_document_and_bad_pdfs_are_skipped_with_reasons(tmp_path: Path) -> None:
    from fpdf import FPDF

    _need(GPL)
    sections = _gpl_sections(3)
    good, locked, broken, scan = (
        tmp_path / f"{n}.pdf" for n in ("good", "locked", "broken", "scan")
    )
    _pdf(good, sections)
    _pdf(locked, sections, password="secret")
    broken.write_bytes(good.read_bytes()[: good.stat().st_size // 3])
    image = FPDF()
    image.add_page()
    image.image(str(SAMPLES / "grace_hopper.jpg"), w=100)
    image.output(str(scan))
    docs, skips = _read(good)
    assert len(docs) == 1 and docs[0].meta == {
        "format": "pdf",
        "pages": 3,
        "title": "GNU General Public License",
    }
    assert " ".join(sections[1].split()[:8]) in " ".join(docs[0].text.split())
    for path, reason in (
        (locked, "encrypted PDF"),
        (broken, "unreadable PDF"),
        (scan, "no text layer"),
    ):
        docs, skips = _read(path)
        assert not docs and [s.reason.split(":")[0] for s in skips.skips] == [reason], path


def test_epub_chapters_in_reading_order_and_docx_structure(tmp_path: Path) -> None:
    import docx
    from ebooklib import epub

    _need(GPL)
    first, second = _gpl_sections(2)
    book = epub.EpubBook()
    book.set_identifier("gpl-3")
    book.set_title("GPL")
    book.set_language("en")
    chapters = []
    for i, (name, text) in enumerate((("b.xhtml", first), ("a.xhtml", second))):
        ch = epub.EpubHtml(title=f"Part {i}", file_name=name, lang="en")
        ch.content = f"<html><body><h1>Part {i}</h1><p>{text}</p></body></html>"
        book.add_item(ch)
        chapters.append(ch)
    book.spine = chapters  # the reading order: b.xhtml before a.xhtml
    book.add_item(epub.EpubNav())
    epub.write_epub(str(tmp_path / "gpl.epub"), book)
    docs, _ = _read(tmp_path / "gpl.epub")
    text = " ".join(docs[0].text.split())
    assert docs[0].meta["title"] == "GPL"
    assert text.index(" ".join(first.split()[:6])) < text.index(" ".join(second.split()[:6]))
    _, skips = _read(tmp_path / "gpl.epub", max_bytes=1000)  # a book past the cap
    assert [s.reason.split(":")[0] for s in skips.skips] == ["too large"]
    with open(tmp_path / "huge.epub", "wb") as f:
        f.truncate(2 << 30)  # a 2 GB EPUB (sparse): refused by its size, never read
    tracemalloc.start()
    _, skips = _read(tmp_path / "huge.epub")
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert [s.reason.split(":")[0] for s in skips.skips] == ["too large"]
    assert peak < 64 << 20  # not held: the cap is 1 GiB

    d = docx.Document()
    d.core_properties.title = "Licence"
    d.add_heading("Terms and Conditions", level=1)
    d.add_paragraph(first)
    table = d.add_table(rows=1, cols=2)
    table.rows[0].cells[0].text, table.rows[0].cells[1].text = "Section", "Definitions"
    d.save(str(tmp_path / "policy.docx"))
    docs, _ = _read(tmp_path / "policy.docx")
    assert docs[0].text.startswith("# Terms and Conditions\n\n" + first[:40])
    assert docs[0].text.endswith("Section | Definitions") and docs[0].meta["title"] == "Licence"


def _listings(tmp_path: Path) -> Path:
    """matplotlib's msft.csv (a real CSV of records) with row 3 made ragged."""
    lines = (SAMPLES / "msft.csv").read_text().splitlines()
    lines[2] = lines[2].rsplit(",", 1)[0]
    out = tmp_path / "msft.csv"
    out.write_text("\n".join(lines) + "\n")
    return out


def test_records_become_text_by_template_recorded_in_the_manifest(tmp_path: Path) -> None:
    csv_path = _listings(tmp_path)
    template = load_template(r"On {Date} Microsoft opened at {Open}\nand closed at {Close}.")
    ds = add_dataset("msft", [str(csv_path)], langid=False, executor=INLINE, template=template)
    docs = _docs(ds)
    assert docs[0].text == "On 19-Sep-03 Microsoft opened at 29.76\nand closed at 29.96."
    assert ds.manifest["created_by"]["template"]["source"] == template.source
    assert ds.manifest["formats"]["csv"]["skipped"] == {"ragged row": 1}
    jsonl = tmp_path / "rows.jsonl"
    rows = [{"Date": "19-Sep-03", "Open": "29.76"}, {"Date": "18-Sep-03"}]
    jsonl.write_text("".join(json.dumps(r) + "\n" for r in rows))
    jinja = tmp_path / "row.j2"
    jinja.write_text("{{ Date }}: opened at {{ Open }}")
    docs, skips = _read(jsonl, text_field=load_template(str(jinja)))
    assert [d.text for d in docs] == ["19-Sep-03: opened at 29.76"]
    assert [s.reason.split(":")[0] for s in skips.skips] == ["missing field"]
    with pytest.raises(DataError, match="missing field"):  # a field no row has
        add_dataset("none", [str(csv_path)], executor=INLINE, template=load_template("{Ticker}"))


def test_a_template_error_is_one_line_before_any_work(tmp_path: Path, capsys) -> None:
    csv_path = _listings(tmp_path)
    with pytest.raises(UsageError, match="expected '}'"):
        load_template("Title: {Date")
    broken = tmp_path / "listing.j2"
    broken.write_text("Title: {{ Date }}\n{% if Open %}opened at {{ Open }}\n")  # no endif
    with pytest.raises(UsageError, match=r"listing.j2:\d+: .*endif"):
        load_template(str(broken))
    assert main(["data", "add", "x", str(csv_path), "--template", "Title: {Date"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--template" in err[0]
    assert main(["data", "list"]) == 0 and "x" not in capsys.readouterr().out.split()


def test_a_missing_library_is_named_before_any_work(tmp_path: Path, monkeypatch) -> None:
    import importlib.util

    from steep.data import formats

    real = importlib.util.find_spec
    monkeypatch.setattr(  # as on a machine without pypdf: only the lookup says so
        formats.importlib.util, "find_spec", lambda name: None if name == "pypdf" else real(name)
    )
    pdf = tmp_path / "doc.pdf"
    pdf.write_bytes(b"")
    with pytest.raises(DataError, match=r"doc.pdf needs pypdf: pip install 'steep\[docs\]'"):
        add_dataset("pdfs", [str(pdf)], executor=INLINE)


def test_the_studio_upload_takes_the_same_formats() -> None:
    for name in (
        "page.html",
        "crawl.warc.gz",
        "wiki.xml.bz2",
        "a.pdf",
        "b.epub",
        "c.docx",
        "d.csv",
    ):
        assert check_filename(name) == name


def _repo(tmp_path: Path) -> Path:
    """A git checkout of real sources: jinja2's package, a vendored JavaScript library, a
    protobuf-generated module, a JPEG, a 1 GB (sparse) binary and an ignored file."""
    import google.protobuf.descriptor_pb2 as generated
    import jinja2

    repo = tmp_path / "repo"
    ignore = shutil.ignore_patterns("__pycache__")
    shutil.copytree(Path(jinja2.__file__).parent, repo / "jinja2", ignore=ignore)
    vendor = repo / "web" / "node_modules" / "uplot"
    vendor.mkdir(parents=True)
    shutil.copy(
        Path(__file__).parents[1] / "src/steep/studio/static/vendor/uPlot.iife.min.js",
        vendor / "uplot.js",
    )
    shutil.copy(generated.__file__, repo / "descriptor_pb2.py")
    shutil.copy(SAMPLES / "grace_hopper.jpg", repo / "logo.jpg")
    with open(repo / "weights.bin", "wb") as f:
        f.truncate(1 << 30)  # sparse: no disk, never read
    (repo / ".gitignore").write_text("notes.txt\n")
    (repo / "notes.txt").write_text("not tracked")
    git = ["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@t"]
    subprocess.run([*git, "init", "-q"], check=True)
    subprocess.run([*git, "add", "-A", "--", ":!weights.bin"], check=True)
    subprocess.run([*git, "add", "-N", "weights.bin"], check=True)  # tracked, not hashed
    return repo


def test_a_code_repository_per_file_and_per_repository(tmp_path: Path) -> None:
    repo = _repo(tmp_path)
    ds = add_dataset("code", [str(repo)], langid=False, executor=INLINE, code="file")
    docs = _docs(ds)
    paths = [d.meta["path"] for d in docs]
    assert paths == sorted(paths) and "jinja2/__init__.py" in paths and ".gitignore" in paths
    assert {d.meta["language"] for d in docs if d.meta["path"].endswith(".py")} == {"Python"}
    assert not any(p.startswith(("web/", "notes")) or p.endswith((".jpg", ".bin")) for p in paths)
    skipped = ds.manifest["formats"]["code"]["skipped"]
    assert skipped == {
        "vendored file": 1,
        "generated file": 2,  # descriptor_pb2.py, and _identifier.py by its header
        "binary file": 1,
        "oversized file": 1,
        "empty document": 1,  # py.typed
    }
    whole = add_dataset("repo", [str(repo)], langid=False, executor=INLINE, code="repo")
    (doc,) = _docs(whole)
    assert doc.text.index('<file path="jinja2/__init__.py">') < doc.text.index(
        '<file path="jinja2/utils.py">'
    )
    assert "Python" in doc.meta["languages"]


def test_the_studio_upload_ingests_the_same_formats_with_a_template(
    _steep_home: Path, tmp_path: Path
) -> None:
    pytest.importorskip("fastapi", reason="studio extra not installed")
    from fastapi.testclient import TestClient

    from steep.studio.app import Settings, create_app

    _need(POLICY)
    change = {"X-Steep-Request": "1"}
    c = TestClient(create_app(Settings(home=_steep_home, run_jobs=False)))
    assert ".warc" in c.get("/datasets").text  # the file picker offers what data add reads

    def upload(name: str, body: bytes) -> str:
        up = c.post("/api/uploads", headers=change).json()["id"]
        assert c.put(f"/api/uploads/{up}/{name}", content=body, headers=change).status_code == 200
        return up

    csv_body = _listings(tmp_path).read_bytes()
    bad = {"name": "bad", "upload": upload("msft.csv", csv_body), "template": "{Date"}
    r = c.post("/api/datasets", json=bad, headers=change)
    assert r.status_code == 400 and "--template" in r.json()["error"]
    assert "\n" not in r.json()["error"]
    form = {"name": "msft", "upload": upload("msft.csv", csv_body), "langid": False,
            "template": r"{Date}: closed at {Close}"}  # fmt: skip
    r = c.post("/api/datasets", json=form, headers=change)
    assert r.status_code == 200, r.text
    page = c.get("/datasets/msft").text
    assert "19-Sep-03: closed at 29.96" in page and "ragged row" in page
    web = {"name": "web", "upload": upload("policy.html", POLICY.read_bytes()), "langid": False}
    assert c.post("/api/datasets", json=web, headers=change).json()["documents"] == 1
