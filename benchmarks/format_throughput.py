"""Extraction throughput per core for each input format of ``steep data add`` (#31), and
how the HTML extractor's text compares with Debian's plain-text versions of the same
manuals.

Each format is read by ``steep.data.documents.read_documents`` (what an ingest unit runs),
in this process pinned to one CPU, on real samples:

- html: every HTML page under /usr/share/doc (Debian's manuals);
- warc: the same pages as HTML responses in a WARC.gz written by warcio;
- mediawiki: the gensim 4.4.0 wheel's English dump (the demo's; ``--gensim-wheel``), else
  the test fixture;
- pdf, epub, docx: Debian's licence texts (/usr/share/common-licenses), written by fpdf2,
  ebooklib and python-docx, one file per licence;
- csv: matplotlib's msft.csv rows through an inline template, repeated to 50,000 rows;
- code: jinja2's package and the standard library's asyncio, email, json, unittest and xml
  folders (per-file mode; ``__pycache__`` files are skipped as binary).

Quality: for each Debian manual shipped as both HTML and plain text, the words (``\\w+``,
lower case, as a multiset) of the extracted text against those of the text version:
"lost" is the share of the text version's words the extraction lacks, "extra" the share of
the extraction's words the text version lacks (boilerplate, or the HTML's own extras).

    PYTHONPATH=src .venv/bin/python benchmarks/format_throughput.py --out /tmp/formats.md
"""

from __future__ import annotations

import argparse
import glob
import gzip
import io
import os
import re
import sysconfig
import tempfile
import time
import zipfile
from collections import Counter
from pathlib import Path

import jinja2
import matplotlib

from steep.data.documents import SkipLog, read_documents
from steep.data.formats import code
from steep.data.formats.html import extract_page
from steep.data.formats.template import load_template

DOC = Path("/usr/share/doc")
LICENSES = Path("/usr/share/common-licenses")
PAIRS = [  # Debian manuals shipped as HTML and as text
    (DOC / "python3/python-policy.html", DOC / "python3/python-policy.txt.gz"),
    (DOC / "base-passwd/users-and-groups.html", DOC / "base-passwd/users-and-groups.txt.gz"),
]
WIKI_MEMBER = (
    "gensim/test/test_data/enwiki-latest-pages-articles1.xml-p000000010p000030302-shortened.bz2"
)


def _pages() -> list[Path]:
    return sorted(
        Path(p) for p in glob.glob(str(DOC / "**/*.html"), recursive=True) if os.path.isfile(p)
    )


def _warc(out: Path, pages: list[Path]) -> Path:
    from warcio.statusandheaders import StatusAndHeaders
    from warcio.warcwriter import WARCWriter

    with open(out, "wb") as f:
        writer = WARCWriter(f, gzip=True)
        for p in pages:
            head = StatusAndHeaders("200 OK", [("Content-Type", "text/html")], protocol="HTTP/1.1")
            rec = writer.create_warc_record(
                f"https://localhost{p}",
                "response",
                payload=io.BytesIO(p.read_bytes()),
                http_headers=head,
            )
            writer.write_record(rec)
    return out


def _licences() -> list[tuple[str, str]]:
    return [
        (p.name, p.read_text(encoding="utf-8")) for p in sorted(LICENSES.iterdir()) if p.is_file()
    ]


def _pdfs(folder: Path) -> list[Path]:
    from fpdf import FPDF

    out = []
    for name, text in _licences():
        pdf = FPDF()
        pdf.set_font("helvetica", size=10)
        pdf.add_page()
        pdf.multi_cell(0, 5, text.encode("latin-1", "replace").decode("latin-1"))
        out.append(folder / f"{name}.pdf")
        pdf.output(str(out[-1]))
    return out


def _epubs(folder: Path) -> list[Path]:
    from ebooklib import epub

    out = []
    for name, text in _licences():
        book = epub.EpubBook()
        book.set_identifier(name)
        book.set_title(name)
        chapters = []
        for i, part in enumerate(text.split("\n\n")[:200]):
            ch = epub.EpubHtml(title=str(i), file_name=f"c{i}.xhtml")
            ch.content = f"<html><body><p>{part}</p></body></html>"
            book.add_item(ch)
            chapters.append(ch)
        book.spine = chapters
        book.add_item(epub.EpubNav())
        out.append(folder / f"{name}.epub")
        epub.write_epub(str(out[-1]), book)
    return out


def _docxs(folder: Path) -> list[Path]:
    import docx

    out = []
    for name, text in _licences():
        d = docx.Document()
        d.add_heading(name, level=1)
        for part in text.split("\n\n"):
            d.add_paragraph(" ".join(part.split()))
        out.append(folder / f"{name}.docx")
        d.save(str(out[-1]))
    return out


def _csv(folder: Path) -> Path:
    lines = (Path(matplotlib.get_data_path()) / "sample_data" / "msft.csv").read_text().splitlines()
    rows = [r for r in lines[1:] if r.strip()]
    out = folder / "msft.csv"
    body = (rows * (50_000 // len(rows) + 1))[:50_000]
    out.write_text("\n".join([lines[0], *body]) + "\n")
    return out


def _wiki(folder: Path, wheel: str | None) -> Path:
    out = folder / "enwiki-pages-articles.xml.bz2"
    if wheel:
        with zipfile.ZipFile(wheel) as zf:
            out.write_bytes(zf.read(WIKI_MEMBER))
        return out
    return (
        Path(__file__).parents[1] / "tests/fixtures/formats/enwiki-pages-articles-first10.xml.bz2"
    )


def _measure(name: str, paths: list[Path], **kw) -> dict:
    size = sum(p.stat().st_size for p in paths)
    skips = SkipLog()
    start = time.process_time()
    docs = chars = 0
    for d in read_documents(paths, skips, **kw):
        docs += 1
        chars += len(d.text)
    cpu = time.process_time() - start
    return {"format": name, "files": len(paths), "MB": size / 1e6, "docs": docs, "skipped": len(skips.skips),
            "cpu_s": cpu, "MB_s": size / 1e6 / cpu, "docs_s": docs / cpu, "text_MB": chars / 1e6}  # fmt: skip


def _measure_code(roots: list[Path]) -> dict:
    files = [f for root in roots for f in code.listing(root)]
    size = sum(n for _, n in files)
    start = time.process_time()
    items = [i for root in roots for i in code.read(root, "file", 0, None)]
    cpu = time.process_time() - start
    docs = sum(1 for i in items if hasattr(i, "text"))
    return {"format": "code (file)", "files": len(files), "MB": size / 1e6, "docs": docs,
            "skipped": len(items) - docs, "cpu_s": cpu, "MB_s": size / 1e6 / cpu,
            "docs_s": docs / cpu, "text_MB": 0.0}  # fmt: skip


def _words(text: str) -> Counter[str]:
    return Counter(re.findall(r"\w+", text.lower()))


def quality() -> list[dict]:
    out = []
    for html, txt in PAIRS:
        if not (html.is_file() and txt.is_file()):
            continue
        plain = (gzip.open(txt, "rt") if txt.suffix == ".gz" else open(txt)).read()
        found = extract_page(html.read_bytes(), str(html))
        extracted = found[0] if found else ""
        ref, got = _words(plain), _words(extracted)
        common = sum((ref & got).values())
        out.append({"page": str(html.relative_to(DOC)), "text_words": sum(ref.values()),
                    "extracted_words": sum(got.values()),
                    "lost": 1 - common / max(1, sum(ref.values())),
                    "extra": 1 - common / max(1, sum(got.values()))})  # fmt: skip
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--gensim-wheel", help="the gensim 4.4.0 wheel (the demo's download)")
    ap.add_argument("--out", type=Path)
    args = ap.parse_args()
    os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})  # one core
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        pages = _pages()
        rows.append(_measure("html", pages))
        rows.append(_measure("warc", [_warc(folder / "pages.warc.gz", pages)]))
        rows.append(_measure("mediawiki", [_wiki(folder, args.gensim_wheel)]))
        rows.append(_measure("pdf", _pdfs(folder)))
        rows.append(_measure("epub", _epubs(folder)))
        rows.append(_measure("docx", _docxs(folder)))
        template = load_template(r"On {Date} Microsoft opened at {Open}\nand closed at {Close}.")
        rows.append(_measure("csv + template", [_csv(folder)], text_field=template))
        stdlib = Path(sysconfig.get_paths()["stdlib"])
        trees = [Path(jinja2.__file__).parent] + [
            stdlib / n for n in ("asyncio", "email", "json", "unittest", "xml")
        ]
        rows.append(_measure_code(trees))
    lines = ["| format | files | input MB | documents | skipped | CPU s | MB/s per core | docs/s per core |",
             "|---|---:|---:|---:|---:|---:|---:|---:|"]  # fmt: skip
    for r in rows:
        lines.append(
            f"| {r['format']} | {r['files']:,} | {r['MB']:.1f} | {r['docs']:,} | {r['skipped']:,} | "
            f"{r['cpu_s']:.1f} | {r['MB_s']:.2f} | {r['docs_s']:,.0f} |"
        )
    lines += ["", "| Debian manual (HTML vs its text version) | text words | extracted words | lost | extra |",
              "|---|---:|---:|---:|---:|"]  # fmt: skip
    for q in quality():
        lines.append(
            f"| {q['page']} | {q['text_words']:,} | {q['extracted_words']:,} | {q['lost']:.1%} | {q['extra']:.1%} |"
        )
    text = "\n".join(lines)
    print(text)
    if args.out:
        args.out.write_text(text + "\n")


if __name__ == "__main__":
    main()
