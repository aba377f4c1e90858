"""The file formats beyond JSON lines, parquet and text: one reader module each, one table.

``FORMATS`` maps a file's suffix (after any compression suffix) to its reader, the
libraries it needs and the extra that installs them; ``steep.data.documents`` dispatches
on it, and ``missing_libraries`` names a missing one before any work starts.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from steep.data.formats import docx, epub, html, pdf, warc, wiki
from steep.data.formats.base import Items


@dataclass(frozen=True)
class Format:
    name: str
    suffixes: tuple[str, ...]
    needs: tuple[tuple[str, str], ...]  # (import name, pip name)
    extra: str
    read: Callable[..., Items] | None  # None: a record format (its rows go through a field)


_WEB = (("trafilatura", "trafilatura"),)
FORMATS = (
    Format("html", (".html", ".htm", ".xhtml"), _WEB, "web", html.read),
    Format("warc", (".warc",), (*_WEB, ("warcio", "warcio")), "web", warc.read),
    Format("mediawiki", (".xml",), (("mwparserfromhell", "mwparserfromhell"),), "wiki", wiki.read),
    Format("pdf", (".pdf",), (("pypdf", "pypdf"),), "docs", pdf.read),
    Format("epub", (".epub",), (("ebooklib", "ebooklib"), *_WEB), "docs", epub.read),
    Format("docx", (".docx",), (("docx", "python-docx"),), "docs", docx.read),
    Format("csv", (".csv", ".tsv"), (), "", None),
)
SUFFIXES = tuple(s for f in FORMATS for s in f.suffixes)
# a code repository is named by ``--code``, not by a suffix: "code" stands for it here
CODE = Format("code", ("code",), (("pygments", "pygments"),), "code", None)
_BY_SUFFIX = {s: f for f in (*FORMATS, CODE) for s in f.suffixes}


def format_for(suffix: str | None) -> Format | None:
    """The format of a file whose ``_format_of`` suffix is ``suffix`` (None: a core one)."""
    return _BY_SUFFIX.get(suffix or "")


def missing_libraries(files: Iterable[tuple[Path, str | None]]) -> str | None:
    """One line naming the libraries the files' formats need and this Python lacks (and the
    extra that installs them), or None; ``files`` is (path, suffix) pairs."""
    lacking: dict[str, tuple[str, Path]] = {}  # pip name -> (extra, first file needing it)
    for path, suffix in files:
        fmt = format_for(suffix)
        for module, pip_name in fmt.needs if fmt else ():
            if pip_name not in lacking and importlib.util.find_spec(module) is None:
                lacking[pip_name] = (fmt.extra, path)
    if not lacking:
        return None
    names = ", ".join(lacking)
    extras = ",".join(sorted({extra for extra, _ in lacking.values()}))
    first = next(iter(lacking.values()))[1]
    return f"reading {first.name} needs {names}: pip install 'steep[{extras}]'"
