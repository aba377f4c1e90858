"""Word documents (DOCX): paragraphs and tables in the body's order, by python-docx.

Headings keep their level as Markdown ``#`` marks and a table becomes one line per row, so
a policy or a manual keeps the structure its headings and tables give it.
"""

from __future__ import annotations

from typing import Any

from steep.data.formats.base import Extracted, Items, Opener, Skipped, held_zip


def read(open_bytes: Opener, path: str, max_bytes: int | None = None, **_: Any) -> Items:
    import docx  # optional: the docs extra (pip install 'steep[docs]')
    from docx.table import Table

    data = held_zip(open_bytes, path, max_bytes)  # too large or a zip bomb: skipped whole
    try:
        doc = docx.Document(data)
    except Exception as exc:  # python-docx raises PackageNotFoundError, KeyError, XML errors
        yield Skipped(None, f"unreadable DOCX: {' '.join(str(exc).split())[:200]}")
        return
    blocks: list[str] = []
    for block in doc.iter_inner_content():
        if isinstance(block, Table):
            rows = [" | ".join(c.text.strip() for c in row.cells) for row in block.rows]
            blocks.append("\n".join(r for r in rows if r.strip(" |")))
            continue
        text = block.text.strip()
        style = block.style.name if block.style is not None else ""
        if text and style.startswith("Heading") and style[8:].strip().isdigit():
            text = "#" * int(style[8:]) + " " + text
        elif text and style == "Title":
            text = "# " + text
        blocks.append(text)
    text = "\n\n".join(b for b in blocks if b)
    if not text:
        yield Skipped(None, "no text: the document body is empty")
        return
    meta: dict[str, Any] = {"format": "docx"}
    if doc.core_properties.title:
        meta["title"] = doc.core_properties.title.strip()
    yield Extracted(text, 1, meta)
