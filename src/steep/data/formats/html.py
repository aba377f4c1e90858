"""HTML pages: the main text by trafilatura, the extractor FineWeb used.

trafilatura, not resiliparse (DCLM's), because it writes Markdown, so headings, lists and
tables stay as text, which documentation and enterprise pages depend on; it is pure Python
on lxml (no compiled wheel to match per platform); and FineWeb found that text it extracts
from WARC trains better models than Common Crawl's own WET text. resiliparse is the faster
of the two (compiled): where extraction's CPU time dominates a crawl, that is the trade.
A page with no main content (a script's shell, a navigation-only index) is skipped with
that reason.
"""

from __future__ import annotations

from typing import Any

from steep.data.formats.base import Extracted, Items, Opener, Skipped

MAX_PAGE_BYTES = 40 << 20  # an HTML file past this is a dump, not a page


def extract_page(html: bytes | str, url: str | None = None) -> tuple[str, dict[str, Any]] | None:
    """(Markdown text, meta with title and url) of a page, or None when it has no main text."""
    import trafilatura  # optional: the web extra (pip install 'steep[web]')

    text = trafilatura.extract(
        html,
        url=url,
        output_format="markdown",
        include_tables=True,
        include_formatting=True,
        include_comments=False,
        with_metadata=False,
        deduplicate=False,
    )
    if not text or not text.strip():
        return None
    meta: dict[str, Any] = {"format": "html"}
    info = trafilatura.extract_metadata(html, default_url=url)
    title = info.title if info is not None else None
    if title:
        meta["title"] = title.strip()
    if url:
        meta["url"] = url
    return text.strip(), meta


def read(open_bytes: Opener, path: str, **_: Any) -> Items:
    """One document per HTML file, its URL the file's path."""
    with open_bytes() as raw:
        data = raw.read(MAX_PAGE_BYTES + 1)
    if len(data) > MAX_PAGE_BYTES:
        yield Skipped(1, f"giant page: more than {MAX_PAGE_BYTES:,} bytes of HTML")
        return
    found = extract_page(data, path)
    if found is None:
        yield Skipped(1, "no main content: the extractor found no article text")
        return
    text, meta = found
    yield Extracted(text, 1, meta)
