"""WARC archives (a crawl's output, Common Crawl's format): HTML responses as documents.

warcio (Webrecorder's reader) streams the records and undoes the HTTP transfer and content
encodings; each HTML response goes through the same extractor as an HTML file
(``formats.html``). Every other record (request, metadata, a PDF or image response) is
skipped with its kind, and an archive cut short keeps what came before the cut.
"""

from __future__ import annotations

from typing import Any

from steep.data.formats.base import Extracted, Items, Opener, Skipped
from steep.data.formats.html import MAX_PAGE_BYTES, extract_page

HTML_TYPES = ("text/html", "application/xhtml+xml")


def read(open_bytes: Opener, path: str, **_: Any) -> Items:
    """One document per HTML response, numbered by its record's place in the archive."""
    from warcio.archiveiterator import ArchiveIterator  # optional: the web extra

    n = 0
    with open_bytes() as raw:
        records = iter(ArchiveIterator(raw, check_digests=False))
        while True:
            try:
                record = next(records)
            except StopIteration:
                return
            except Exception as exc:  # warcio's ArchiveLoadFailed, EOFError of a cut .gz
                why = " ".join(str(exc).split())[:200]
                if n == 0:
                    yield Skipped(None, f"not a WARC archive: {why}")
                else:
                    yield Skipped(n + 1, f"truncated archive: after record {n} ({why})")
                return
            n += 1
            if record.rec_type is None:  # no WARC-Type: not a WARC (or ARC) record at all
                yield Skipped(n, "not a WARC archive: a record with no WARC-Type header")
                return
            try:
                yield from _record(record, n)
            except Exception as exc:  # a record cut short inside its payload
                why = " ".join(str(exc).split())[:200]
                yield Skipped(n, f"truncated archive: record {n} ({why})")
                return


def _record(record: Any, n: int) -> Items:
    if record.rec_type != "response":
        yield Skipped(n, f"not an HTML response: a {record.rec_type} record")
        return
    http = record.http_headers
    ctype = (http.get_header("Content-Type") if http else None) or "no content type"
    if not ctype.split(";")[0].strip().lower().startswith(HTML_TYPES):
        yield Skipped(n, f"not an HTML response: {ctype.split(';')[0].strip()}")
        return
    body = record.content_stream().read(MAX_PAGE_BYTES + 1)
    url = record.rec_headers.get_header("WARC-Target-URI")
    if len(body) > MAX_PAGE_BYTES:
        yield Skipped(n, f"giant page: more than {MAX_PAGE_BYTES:,} bytes of HTML at {url}")
        return
    if getattr(record.raw_stream, "limit", 0) > 0:  # the file ended inside this record
        yield Skipped(n, f"truncated archive: record {n} ({url}) ends early")
        return
    found = extract_page(body, url)
    if found is None:
        yield Skipped(n, f"no main content: {url}")
        return
    text, meta = found
    meta["format"] = "warc"
    date = record.rec_headers.get_header("WARC-Date")
    if date:
        meta["crawled"] = date
    yield Extracted(text, n, meta)
