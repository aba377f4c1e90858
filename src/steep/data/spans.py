"""Work units inside an input file, so one huge file keeps every worker busy.

A plain jsonl file is cut into byte ranges of about ``unit_bytes``, each ending just after
a newline: a record is never split, and neither is a UTF-8 character (a newline byte never
occurs inside one). A parquet file is cut into runs of whole row groups. Anything else
(compressed files, whole-file text) is one unit. Each span knows the number of its first
line or row, so documents keep the ids and line numbers a single pass would give them.

Planning reads the file once (its sha256 is part of every document id), in the worker
that plans it, not in the driver.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from steep.artifacts.fingerprint import file_sha256
from steep.data.documents import (
    COMPRESSIONS,
    MAX_LINE_BYTES,
    Document,
    SkipLog,
    TextSource,
    _format_of,
    _read_parquet,
    bounded_lines,
    count_breaks,
    item_documents,
    parse_jsonl_lines,
    read_documents,
)
from steep.data.formats import code
from steep.data.jsondoc import is_json_document
from steep.data.locations import as_input, is_url, open_input

UNIT_BYTES = 64 << 20  # a unit of work: long enough to amortise a task, short for balance
_CHUNK = 8 << 20
LINE_FORMATS = (".jsonl", ".ndjson", ".json")


@dataclass(frozen=True)
class Span:
    path: str
    kind: Literal["lines", "rows", "whole", "files", "repo"]
    start: int = 0  # lines: byte offset; rows: first row group; files: first file
    end: int | None = None  # exclusive; None: to the end of the file
    first: int = 1  # the number of the span's first line (lines) or row (rows)
    size: int = 0  # bytes of input it covers (uncompressed, for parquet): for progress


@dataclass(frozen=True)
class FilePlan:
    sha256: str
    size: int
    spans: list[Span]


def _compressed(path: Path) -> bool:
    return path.name.lower().endswith(COMPRESSIONS)


def plan_file(path: Path, unit_bytes: int = UNIT_BYTES, digest: bool = True) -> FilePlan:
    """The file's sha256, size and spans (OSError when it cannot be read).

    ``digest=False`` skips hashing a file whose identity is known otherwise (a Data Hub
    shard, named by its immutable version): its sha256 is then "". A jsonl file is hashed
    anyway, in the same pass that finds its line boundaries.
    """
    path = as_input(path)
    fmt = _format_of(path)
    if fmt in LINE_FORMATS and not _compressed(path) and not _json_document(path, fmt):
        return _plan_lines(path, unit_bytes)
    sha, size = file_sha256(path) if digest else "", path.stat().st_size
    if fmt == ".parquet" and not _compressed(path):
        return FilePlan(sha, size, _plan_rows(path, unit_bytes))
    return FilePlan(sha, size, [Span(str(path), "whole", size=size)])


def plan_repo(repo: Path, mode: str, unit_bytes: int = UNIT_BYTES) -> FilePlan:
    """A code repository's identity and units: runs of files of about ``unit_bytes`` (one
    document per file), or the whole repository as one unit (one document)."""
    files = code.listing(repo)
    size = sum(n for _, n in files)
    if mode == "repo":
        return FilePlan(code.digest(repo, files), size, [Span(str(repo), "repo", size=size)])
    spans: list[Span] = []
    start, held = 0, 0
    for i, (_, n) in enumerate(files):
        if held and held + min(n, code.MAX_FILE_BYTES) > unit_bytes:
            spans.append(Span(str(repo), "files", start, i, start + 1, held))
            start, held = i, 0
        held += min(n, code.MAX_FILE_BYTES)  # an oversized file is never read
    spans.append(Span(str(repo), "files", start, len(files), start + 1, held))
    return FilePlan(code.digest(repo, files), size, spans)


def _json_document(path: Path, fmt: str | None) -> bool:
    """A ``.json`` file that is one document is one unit (``steep.data.jsondoc``)."""
    if fmt != ".json":
        return False
    with open_input(path) as f:
        return is_json_document(f, MAX_LINE_BYTES)


def _plan_lines(path: Path, unit_bytes: int) -> FilePlan:
    """One pass: hash the bytes, count line breaks, and cut after the first newline past each
    ``unit_bytes`` boundary."""
    h = hashlib.sha256()
    spans: list[Span] = []
    start, first = 0, 1  # the current span's byte offset and first line
    pos, lines = 0, 0  # bytes and line breaks (\n, or a lone \r: ``split_cr``) read so far
    last_cr = False
    target = unit_bytes
    with open_input(path) as f:
        while block := f.read(_CHUNK):
            h.update(block)
            if pos and block.startswith(b"\n") and last_cr:  # a CRLF cut across blocks
                lines -= 1
            last_cr = block.endswith(b"\r")
            at = 0  # line breaks before this index of the block are counted
            while target < pos + len(block):  # the next cut is due inside this block
                i = block.find(b"\n", max(at, target - pos))
                if i < 0:
                    break  # no newline after the target here: the cut moves to a later block
                lines += count_breaks(block, at, i + 1)
                cut = pos + i + 1  # just after the newline
                spans.append(Span(str(path), "lines", start, cut, first, cut - start))
                start, first, at = cut, lines + 1, i + 1
                target = cut + unit_bytes
            lines += count_breaks(block, at, len(block))
            pos += len(block)
    if start < pos or not spans:
        spans.append(Span(str(path), "lines", start, None, first, pos - start))
    else:  # the file ended exactly at a cut: the last span runs to the end
        last = spans[-1]
        spans[-1] = Span(str(path), "lines", last.start, None, last.first, last.size)
    return FilePlan(h.hexdigest(), pos, spans)


def _plan_rows(path: Path, unit_bytes: int) -> list[Span]:
    import pyarrow.parquet as pq  # deferred: parquet only where a .parquet file is read

    try:
        meta = pq.ParquetFile(open_input(path) if is_url(path) else path).metadata
    except Exception:  # not parquet: the reader reports it, as for a whole file
        return [Span(str(path), "whole")]
    spans: list[Span] = []
    start, first, size, row = 0, 1, 0, 0
    for g in range(meta.num_row_groups):
        group = meta.row_group(g)
        if size and size + group.total_byte_size > unit_bytes:
            spans.append(Span(str(path), "rows", start, g, first, size))
            start, first, size = g, row + 1, 0
        size += group.total_byte_size
        row += group.num_rows
    spans.append(Span(str(path), "rows", start, meta.num_row_groups, first, size))
    return spans


def read_span(
    span: Span, skips: SkipLog, text_field: TextSource = "text", max_bytes: int | None = None
) -> Iterator[Document]:
    """The documents of one span, numbered as a read of the whole file would number them;
    ``max_bytes`` caps a whole (compressed) file's decompressed size (``read_documents``)."""
    path = as_input(span.path)
    if span.kind in ("files", "repo"):  # a code repository's files (``formats.code``)
        mode = "file" if span.kind == "files" else "repo"
        yield from item_documents(path, code.read(path, mode, span.start, span.end), skips)
        return
    if span.kind == "whole":
        yield from read_documents([path], skips, text_field, max_bytes)
        return
    try:
        if span.kind == "rows":
            groups = range(span.start, span.end if span.end is not None else span.start + 1)
            yield from _read_parquet(path, text_field, skips, groups, span.first, max_bytes)
            return
        with open_input(path) as f:
            f.seek(span.start)
            yield from parse_jsonl_lines(_numbered(f, span), path, text_field, skips)
    except OSError as exc:
        skips.add(path, None, f"unreadable file: {exc}")


def _numbered(f, span: Span) -> Iterator[tuple[int, bytes | int]]:
    pos = span.start
    for lineno, line in bounded_lines(f, span.first):
        if span.end is not None and pos >= span.end:
            return
        yield lineno, line
        pos += line if isinstance(line, int) else len(line)
