"""CSV and TSV files: one record per row, its fields named by the header row.

The csv module reads quoted fields that hold commas and newlines; a row whose number of
fields differs from the header's (a ragged row) is skipped with both counts, and the rest
of the file goes on. A record's text is its text field, or a template's rendering of it.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from typing import Any

from steep.data.formats.base import Opener, Skipped

FIELD_BYTES = 16 << 20  # a long description is a field, not an error (csv's default: 128 KB)


def records(open_bytes: Opener, path: str) -> Iterator[tuple[int, dict[str, Any]] | Skipped]:
    """(line, record) per row, numbered by the line it starts on; Skipped for a bad row."""
    delimiter = "\t" if path.lower().split(".")[-1] == "tsv" or ".tsv." in path.lower() else ","
    if csv.field_size_limit() < FIELD_BYTES:
        csv.field_size_limit(FIELD_BYTES)
    with open_bytes() as raw:
        text = io.TextIOWrapper(raw, encoding="utf-8-sig", newline="")
        reader = csv.reader(text, delimiter=delimiter)
        try:
            yield from _rows(reader)
        except UnicodeDecodeError as exc:
            yield Skipped(reader.line_num + 1, f"invalid UTF-8: byte {exc.start} of a block")
        except csv.Error as exc:
            yield Skipped(reader.line_num, f"malformed CSV: {exc}")


def _rows(reader: Any) -> Iterator[tuple[int, dict[str, Any]] | Skipped]:
    try:
        header = next(reader)
    except StopIteration:
        return
    start = reader.line_num + 1
    for row in reader:
        line, start = start, reader.line_num + 1
        if not row:
            continue
        if len(row) != len(header):
            yield Skipped(line, f"ragged row: {len(row)} fields, the header has {len(header)}")
            continue
        yield line, dict(zip(header, row, strict=True))
