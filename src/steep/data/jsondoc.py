"""A ``.json`` file that is one JSON document, not JSON lines (as Hugging Face reads it).

Accepted shapes:

- an array of records: ``[{"text": ...}, ...]``;
- an object that is itself one record (it has the text field);
- an object with one field holding the records, a list of objects: ``{"data": [...]}``. When
  several fields hold lists of objects, the one named ``data``, ``rows``, ``records``,
  ``examples``, ``instances``, ``documents`` or ``items`` is taken; anything else (say
  ``{"train": [...], "test": [...]}``) is refused as ambiguous, naming the fields.

A file whose first non-blank line is a whole JSON object is JSON lines, whatever its name;
so is one that starts with ``{`` but does not parse as one document (a broken first record).
"""

from __future__ import annotations

import json
from typing import IO

RECORDS_FIELDS = ("data", "rows", "records", "examples", "instances", "documents", "items")
BOM = b"\xef\xbb\xbf"
_SNIFF_LINES = 1000  # blank lines looked past before deciding


class NotADocument(Exception):
    """The file is JSON lines after all: read it line by line."""


class JsonRefused(Exception):
    """The document cannot give records; ``line`` is where it failed, if known."""

    def __init__(self, reason: str, line: int | None = None) -> None:
        super().__init__(reason)
        self.line = line


def is_json_document(raw: IO[bytes], max_line: int) -> bool:
    """Whether the stream holds one JSON document (read from its start, up to a line)."""
    for _ in range(_SNIFF_LINES):
        line = raw.readline(max_line + 1)
        if not line:
            return False
        head = line.removeprefix(BOM).strip()
        if not head:
            continue
        if head.startswith(b"["):
            return True
        if not head.startswith(b"{") or len(line) > max_line:
            return False
        try:
            return not isinstance(json.loads(head), dict)
        except (ValueError, RecursionError):  # a first line that is not a whole object
            return True
    return False


def json_records(data: bytes, text_field: str) -> list[object]:
    """The records of a JSON document; ``NotADocument`` or ``JsonRefused`` otherwise."""
    data = data.removeprefix(BOM)
    try:
        value = json.loads(data.decode("utf-8"))
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise JsonRefused(f"invalid UTF-8: byte {exc.start}", line) from None
    except json.JSONDecodeError as exc:
        if data.lstrip().startswith(b"{"):
            raise NotADocument from None
        raise JsonRefused(f"malformed JSON: {exc.msg} at column {exc.colno}", exc.lineno) from None
    except RecursionError:
        raise JsonRefused("malformed JSON: nested too deeply") from None
    except ValueError as exc:  # an integer past Python's digit limit
        raise JsonRefused(f"malformed JSON: {exc}") from None
    if isinstance(value, list):
        return value
    if not isinstance(value, dict):
        raise JsonRefused(f"malformed JSON: a {type(value).__name__}, not records")
    if text_field in value:
        return [value]
    return value[_records_field(value)]


def _records_field(obj: dict[str, object]) -> str:
    lists = sorted(
        k for k, v in obj.items() if isinstance(v, list) and v and isinstance(v[0], dict)
    )
    if len(lists) == 1:
        return lists[0]
    named = [k for k in lists if k in RECORDS_FIELDS]
    if len(named) == 1:
        return named[0]
    if not lists:
        raise JsonRefused("malformed JSON: an object with no list of records in any field")
    fields = ", ".join(repr(k) for k in lists)
    raise JsonRefused(
        f"ambiguous JSON: records could be under {fields}; keep one, or name one of "
        f"{', '.join(RECORDS_FIELDS)}"
    )
