"""EPUB books: the chapters in the spine's reading order, one document per book.

ebooklib reads the container and its package file; each chapter's XHTML becomes text by
the same extractor as a web page (``formats.html``), so a chapter's headings and lists
stay. A chapter with no text (a cover image, a title page) adds nothing.
"""

from __future__ import annotations

import warnings
from typing import Any

from steep.data.formats.base import Extracted, Items, Opener, Skipped, held_zip
from steep.data.formats.html import extract_page


def read(open_bytes: Opener, path: str, max_bytes: int | None = None, **_: Any) -> Items:
    from ebooklib import ITEM_DOCUMENT, epub  # optional: the docs extra

    data = held_zip(open_bytes, path, max_bytes)  # too large or a zip bomb: skipped whole
    try:
        with warnings.catch_warnings():  # ebooklib warns of its own future defaults
            warnings.simplefilter("ignore")
            book = epub.read_epub(data, {"ignore_ncx": True})
    except Exception as exc:  # ebooklib raises EpubException, KeyError, XML errors
        yield Skipped(None, f"unreadable EPUB: {' '.join(str(exc).split())[:200]}")
        return
    chapters = []
    for idref, _linear in book.spine:
        item = book.get_item_with_id(idref)
        if item is None or item.get_type() != ITEM_DOCUMENT:
            continue
        found = extract_page(item.get_content())
        if found is not None:
            chapters.append(found[0])
    if not chapters:
        yield Skipped(None, "no text: no chapter in the reading order holds text")
        return
    meta: dict[str, Any] = {"format": "epub", "chapters": len(chapters)}
    titles = book.get_metadata("DC", "title")
    if titles and titles[0][0]:
        meta["title"] = str(titles[0][0]).strip()
    yield Extracted("\n\n".join(chapters), 1, meta)
