"""What a format reader gives back: extracted documents and skips, with no I/O policy.

A reader gets a way to open its file's bytes (decompressed, under the caller's cap) and
yields ``Extracted`` or ``Skipped`` items; ``steep.data.documents`` turns them into
documents and skip records, so every format keeps the same checks (empty, giant, invalid
text) and the same exclusion rows.
"""

from __future__ import annotations

import io
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Union

from steep.data.input_caps import InputLimitError

Opener = Callable[[], IO[bytes]]


@dataclass
class Extracted:
    text: str
    line: int  # 1-based: a record, page, article or row number; 1 for a one-document file
    meta: dict[str, Any] = field(default_factory=dict)  # title, url, format, language


@dataclass
class Skipped:
    line: int | None
    reason: str  # "reason: detail"; the part before ":" is what the funnel counts


Item = Union[Extracted, Skipped]  # noqa: UP007 - a runtime alias, py3.10 too
Items = Iterator[Item]

MAX_ARCHIVE_BYTES = 1 << 30  # an EPUB or DOCX past this, packed or unpacked: not one book


def held(open_bytes: Opener, path: str, max_bytes: int | None, what: str) -> bytes:
    """A whole file's bytes, for a reader that seeks (PDF, EPUB, DOCX), under the cap
    (``max_bytes``, at most ``MAX_ARCHIVE_BYTES``): a plain file past it is refused by its
    size before a byte is read, a compressed one once its bytes pass it."""
    cap = min(max_bytes or MAX_ARCHIVE_BYTES, MAX_ARCHIVE_BYTES)
    plain = "://" not in path and not path.lower().endswith((".gz", ".bz2", ".zst"))
    if plain and (size := Path(path).stat().st_size) > cap:  # a local, uncompressed file
        raise InputLimitError(f"a {what} of {size:,} bytes > {cap:,}")
    with open_bytes() as raw:
        data = raw.read(cap + 1)
    if len(data) > cap:
        raise InputLimitError(f"a {what} of more than {cap:,} bytes")
    return data


def held_zip(open_bytes: Opener, path: str, max_bytes: int | None) -> io.BytesIO:
    """The bytes of a zip-based file (EPUB, DOCX) in memory, after checking that neither
    the file nor its members once unpacked pass the cap (a zip bomb, a 2 GB EPUB): past
    it, ``InputLimitError`` skips the file whole before any member is read."""
    cap = min(max_bytes or MAX_ARCHIVE_BYTES, MAX_ARCHIVE_BYTES)
    data = held(open_bytes, path, max_bytes, "zip container")
    try:
        unpacked = sum(i.file_size for i in zipfile.ZipFile(io.BytesIO(data)).infolist())
    except zipfile.BadZipFile as exc:
        raise OSError(f"not a zip container ({exc})") from None
    if unpacked > cap:
        raise InputLimitError(f"more than {cap:,} bytes once unpacked ({unpacked:,})")
    return io.BytesIO(data)
