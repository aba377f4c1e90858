"""PDF: the text layer of each page, joined into one document, by pypdf (no OCR).

pypdf is pure Python (no binary to match per platform) and reads encrypted files with an
empty owner password as viewers do. A file with pages but no text on any of them is a scan
or an image-only export: it is skipped with that reason, never kept as an empty document.
"""

from __future__ import annotations

import io
from typing import Any

from steep.data.formats.base import Extracted, Items, Opener, Skipped, held


def read(open_bytes: Opener, path: str, max_bytes: int | None = None, **_: Any) -> Items:
    """One document per PDF, pages in order, separated by a blank line."""
    from pypdf import PdfReader  # optional: the docs extra (pip install 'steep[docs]')
    from pypdf.errors import DependencyError, FileNotDecryptedError, PdfReadError

    data = held(open_bytes, path, max_bytes, "PDF")  # pypdf seeks: held whole, under the cap
    try:
        reader = PdfReader(io.BytesIO(data))
        if reader.is_encrypted and not reader.decrypt(""):
            yield Skipped(None, "encrypted PDF: it needs a password")
            return
        texts = [(page.extract_text() or "").strip() for page in reader.pages]
    except (FileNotDecryptedError, DependencyError) as exc:
        yield Skipped(None, f"encrypted PDF: {exc}")
        return
    except (PdfReadError, ValueError, KeyError, TypeError, AttributeError) as exc:
        yield Skipped(None, f"unreadable PDF: {' '.join(str(exc).split())[:200]}")
        return
    if not any(texts):
        yield Skipped(None, f"no text layer: {len(texts)} pages of images (a scan? no OCR)")
        return
    meta: dict[str, Any] = {"format": "pdf", "pages": len(texts)}
    title = reader.metadata.title if reader.metadata else None
    if title:
        meta["title"] = str(title).strip()
    yield Extracted("\n\n".join(t for t in texts if t), 1, meta)
