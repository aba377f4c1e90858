"""Read text documents from jsonl / json / txt / md / parquet files, compressed or not,
and from the formats of ``steep.data.formats`` (web pages, WARC, wiki dumps, PDF, EPUB,
DOCX, CSV), each by its own reader module.

A bad record never stops the job: it is skipped, counted and kept with its file, line and
reason in a ``Skip`` so the user can see exactly what was left out and why.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import IO

from steep.data import formats
from steep.data.formats.base import Extracted, Items
from steep.data.formats.csvrows import records as csv_records
from steep.data.formats.template import MissingField, RecordTemplate
from steep.data.input_caps import InputLimitError, check_parquet, check_stream
from steep.data.jsondoc import JsonRefused, NotADocument, is_json_document, json_records
from steep.data.locations import as_input, is_url, open_input, remote_error
from steep.data.streams import open_binary as _open_binary
from steep.errors import MissingInputError

TEXT_SUFFIXES = (".jsonl", ".json", ".ndjson", ".txt", ".md", ".parquet", ".arrow")
TEXT_SUFFIXES += formats.SUFFIXES
# where a record's text comes from: a field, or a template over its fields
TextSource = str | RecordTemplate
# one rule for every reader (ingest, tokenizing for training): a document above this is
# skipped as giant (a dump of a table or a log, not text to learn from); ingest's own
# max_doc_bytes can only be stricter
MAX_DOC_BYTES = 10 * 1024 * 1024
# a jsonl record longer than this holds a text above MAX_DOC_BYTES whatever its escapes
# (\uXXXX is 6 bytes for at most 3 of UTF-8): it is measured and skipped, never held
MAX_LINE_BYTES = 3 * MAX_DOC_BYTES
BOM = "\ufeff"
COMPRESSIONS = (".gz", ".zst", ".bz2")
# JSON may escape half of a UTF-16 pair ("\ud800"): Python accepts it, but no UTF-8 file,
# shard or tokenizer can hold it, so the record is skipped where it is decoded
_SURROGATE = re.compile("[\ud800-\udfff]")


@dataclass
class Document:
    text: str
    path: str
    line: int  # 1-based line (jsonl), row (parquet) or 1 (whole-file formats)
    meta: dict | None = None  # a format's own: title, url, format (``steep.data.formats``)


@dataclass
class Skip:
    path: str
    line: int | None
    reason: str


@dataclass
class SkipLog:
    """Every record left out, with its reason; summarised for the user at the end."""

    skips: list[Skip] = field(default_factory=list)

    def add(self, path: str | Path, line: int | None, reason: str) -> None:
        self.skips.append(Skip(str(path), line, reason))

    def counts(self) -> Counter[str]:
        return Counter(s.reason.split(":")[0] for s in self.skips)

    def summary(self) -> str:
        if not self.skips:
            return "no records skipped"
        parts = ", ".join(f"{n} {reason}" for reason, n in self.counts().most_common())
        return f"{len(self.skips)} records skipped ({parts})"

    def write(self, path: Path) -> None:
        with open(path, "w", encoding="utf-8") as f:
            for s in self.skips:
                f.write(json.dumps(asdict(s), ensure_ascii=False) + "\n")


def expand_paths(paths: Iterable[str | Path]) -> list[Path]:
    """Files named directly, plus every readable text file under named folders (sorted).

    A path may be an fsspec URL (``steep.data.locations``); a folder saved by HF
    ``datasets`` (``save_to_disk``) gives the Arrow files its ``state.json`` lists.
    """
    out: list[Path] = []
    for raw in paths:
        p = as_input(raw)
        try:
            out.extend(_expand(p, raw))
        except MissingInputError:
            raise
        except Exception as exc:  # a remote store: no package, credentials or network
            if not is_url(p):
                raise
            raise remote_error(raw, exc) from None
    return out


def _expand(p: Path, raw: str | Path) -> list[Path]:
    if not _exists(p):
        raise MissingInputError(f"data path does not exist: {raw}")
    if not p.is_dir():
        return [p]
    saved = _saved_dataset(p)
    if saved is not None:
        return saved
    # every visible file: one of an unknown type is then skipped with that reason, on the
    # record, not passed over in silence (hidden files and folders are not data)
    found = sorted((f for f in p.rglob("*") if f.is_file() and not _hidden(f, p)), key=str)
    if not any(_format_of(f) for f in found):
        raise MissingInputError(
            f"folder {raw} holds no text files (looked for {', '.join(TEXT_SUFFIXES)}, "
            f"optionally compressed {', '.join(COMPRESSIONS)})"
        )
    return found


def _hidden(f: Path, root: Path) -> bool:
    return any(part.startswith(".") for part in f.relative_to(root).parts)


def _exists(p: Path) -> bool:
    """Whether the path is there; for a URL, asked so that a store that cannot be reached
    raises (its ``exists`` says False for that too, which would blame the path)."""
    if not is_url(p):
        return p.exists()
    try:
        p.stat()
    except FileNotFoundError as exc:
        cause = exc.__cause__  # fsspec's http store reports "cannot connect" as not found
        if cause is not None and not isinstance(cause, FileNotFoundError):
            raise remote_error(p, cause) from None
        return False
    return True


def _saved_dataset(folder: Path) -> list[Path] | None:
    """The data files of an HF ``datasets`` folder (``Dataset.save_to_disk``), in order."""
    state, splits = folder / "state.json", folder / "dataset_dict.json"
    if splits.is_file():
        names = json.loads(splits.read_text()).get("splits", [])
        raise MissingInputError(
            f"{folder} is a saved DatasetDict with splits {names}: name one split's folder, "
            f"e.g. {folder / (names[0] if names else 'train')}"
        )
    if not state.is_file():
        return None
    files = [f.get("filename") for f in json.loads(state.read_text()).get("_data_files", [])]
    if not files or not all(isinstance(f, str) for f in files):
        raise MissingInputError(f"{state}: a saved dataset that lists no data files")
    return [folder / f for f in files]


def _format_of(path: Path) -> str | None:
    name = path.name.lower()
    for comp in COMPRESSIONS:
        name = name.removesuffix(comp)
    for suffix in TEXT_SUFFIXES:
        if name.endswith(suffix):
            return suffix
    return None


def bounded_lines(raw: IO[bytes], first: int = 1) -> Iterator[tuple[int, bytes | int]]:
    """(line number, line) of a byte stream, holding at most ``MAX_LINE_BYTES`` at once: a
    longer line is read through and given as its length (an int) instead of its bytes."""
    lineno = first
    while line := raw.readline(MAX_LINE_BYTES + 1):
        if len(line) > MAX_LINE_BYTES and not line.endswith(b"\n"):
            n = len(line)
            while rest := raw.readline(1 << 20):
                n += len(rest)
                if rest.endswith(b"\n"):
                    break
            yield lineno, n
            lineno += 1
        else:
            for piece in split_cr(line):
                yield lineno, piece
                lineno += 1


def split_cr(line: bytes) -> list[bytes]:
    """A line read up to ``\n`` cut after each lone ``\r`` as well: universal newlines, as
    Python reads text, so a file of old Mac line endings is many records, not one."""
    if b"\r" not in line or (line.endswith(b"\r\n") and line.count(b"\r") == 1):
        return [line]  # the common case: no CR, or only a final CRLF
    pieces = line.split(b"\r")
    out = [p + b"\r" for p in pieces[:-1]]
    if pieces[-1] == b"\n":  # the last CR belongs to a CRLF
        out[-1] += b"\n"
    elif pieces[-1]:
        out.append(pieces[-1])
    return out


def count_breaks(block: bytes, start: int, end: int) -> int:
    """Line breaks in ``block[start:end]`` as ``split_cr`` counts them: each ``\n`` and each
    ``\r`` not followed by ``\n`` (a CR that ends the range counts; the caller corrects it
    when the next block starts with ``\n``)."""
    part = block[start:end]
    return part.count(b"\n") + part.count(b"\r") - part.count(b"\r\n")


def read_documents(
    paths: Iterable[str | Path],
    skips: SkipLog,
    text_field: TextSource = "text",
    max_bytes: int | None = None,
) -> Iterator[Document]:
    """Yield non-empty documents from every file; anything unusable goes to ``skips``.

    ``max_bytes`` caps what one jsonl or text file may decompress to (the studio's uploads);
    ``text_field`` may be a ``RecordTemplate`` that makes a record's text of its fields.
    """
    for path in expand_paths(paths):
        fmt = _format_of(path)
        try:
            if max_bytes is not None and path.name.lower().endswith(COMPRESSIONS):
                check_stream(path, max_bytes, _open_binary)  # skipped whole, or read whole
            if fmt in (".jsonl", ".ndjson"):
                yield from _read_jsonl(path, text_field, skips, max_bytes)
            elif fmt == ".json":
                yield from _read_json(path, text_field, skips, max_bytes)
            elif fmt == ".parquet":
                yield from _read_parquet(path, text_field, skips, max_bytes=max_bytes)
            elif fmt == ".arrow":
                yield from _read_arrow(path, text_field, skips)
            elif fmt in (".txt", ".md"):
                yield from _read_whole(path, skips, max_bytes)
            elif fmt in (".csv", ".tsv"):
                yield from _read_csv(path, text_field, skips, max_bytes)
            elif (reader := formats.format_for(fmt)) is not None and reader.read is not None:
                yield from _read_format(path, reader.read, skips, max_bytes)
            else:
                skips.add(path, None, f"unsupported file type: expected one of {TEXT_SUFFIXES}")
        except InputLimitError as exc:
            skips.add(path, None, f"too large: {exc}")
        except OSError as exc:
            skips.add(path, None, f"unreadable file: {exc}")
        except EOFError as exc:
            skips.add(path, None, f"unreadable file: truncated archive ({exc})")


def _accept(text: object, path: Path, line: int, skips: SkipLog, field_name: str) -> str | None:
    if not isinstance(text, str):
        kind = "missing" if text is None else f"not a string ({type(text).__name__})"
        skips.add(path, line, f"bad field: '{field_name}' {kind}")
        return None
    if not text.strip():
        skips.add(path, line, "empty document")
        return None
    if not text.isascii() and (bad := _SURROGATE.search(text)):
        skips.add(path, line, f"invalid text: a lone surrogate at character {bad.start()}")
        return None
    if len(text) > MAX_DOC_BYTES // 4 and (n := len(text.encode("utf-8"))) > MAX_DOC_BYTES:
        skips.add(path, line, f"giant document: {n:,} bytes > {MAX_DOC_BYTES:,}")
        return None
    return text


def record_text(
    record: dict, source: TextSource, path: Path, line: int, skips: SkipLog
) -> str | None:
    """A record's text: its ``source`` field, or a template's rendering (a record missing a
    field the template uses is skipped, naming the field: ``formats.template``'s rule)."""
    if isinstance(source, str):
        return _accept(record.get(source), path, line, skips, source)
    try:
        text = source.render(record)
    except MissingField as exc:
        skips.add(path, line, f"missing field: '{exc}' (the template uses it)")
        return None
    return _accept(text, path, line, skips, "template")


def _read_format(
    path: Path, read: Callable[..., Items], skips: SkipLog, max_bytes: int | None
) -> Iterator[Document]:
    """A ``steep.data.formats`` reader's documents, each under the same checks as any."""
    items = read(lambda: _open_binary(path, max_bytes), str(path), max_bytes=max_bytes)
    yield from item_documents(path, items, skips)


def item_documents(path: Path, items: Items, skips: SkipLog) -> Iterator[Document]:
    """Documents of a format reader's items; its skips go to ``skips``."""
    for item in items:
        if not isinstance(item, Extracted):
            skips.add(path, item.line, item.reason)
            continue
        text = _accept(item.text, path, item.line, skips, "text")
        if text is not None:
            yield Document(text, str(path), item.line, item.meta)


def _read_csv(
    path: Path, source: TextSource, skips: SkipLog, max_bytes: int | None
) -> Iterator[Document]:
    for row in csv_records(lambda: _open_binary(path, max_bytes), str(path)):
        if not isinstance(row, tuple):
            skips.add(path, row.line, row.reason)
            continue
        text = record_text(row[1], source, path, row[0], skips)
        if text is not None:
            yield Document(text, str(path), row[0], {"format": "csv"})


def _read_jsonl(
    path: Path, text_field: TextSource, skips: SkipLog, max_bytes: int | None = None
) -> Iterator[Document]:
    with _open_binary(path, max_bytes) as raw:
        yield from parse_jsonl_lines(bounded_lines(raw), path, text_field, skips)


def _read_json(
    path: Path, text_field: TextSource, skips: SkipLog, max_bytes: int | None = None
) -> Iterator[Document]:
    """One JSON document (``steep.data.jsondoc``; records numbered from 1), or JSON lines."""
    with _open_binary(path, max_bytes) as raw:
        whole = is_json_document(raw, MAX_LINE_BYTES)
    try:
        if not whole:
            raise NotADocument
        with _open_binary(path, max_bytes) as raw:
            records = json_records(raw.read(), text_field)
    except NotADocument:
        yield from _read_jsonl(path, text_field, skips, max_bytes)
        return
    except JsonRefused as exc:
        skips.add(path, exc.line, str(exc))
        return
    for i, record in enumerate(records, 1):
        if not isinstance(record, dict):
            skips.add(path, i, f"malformed JSON: record {i} is a {type(record).__name__}")
            continue
        text = record_text(record, text_field, path, i, skips)
        if text is not None:
            yield Document(text, str(path), i)


def parse_jsonl_lines(
    numbered: Iterable[tuple[int, bytes | int]], path: Path, text_field: TextSource, skips: SkipLog
) -> Iterator[Document]:
    """Documents of (line number, raw line) pairs: a whole file, or one span of it. A line
    given as an int was too long to hold (``bounded_lines``): a giant record."""
    for lineno, line in numbered:
        if isinstance(line, int):
            skips.add(path, lineno, f"giant document: a {line:,}-byte record > {MAX_LINE_BYTES:,}")
            continue
        if not line.strip():
            continue
        if lineno == 1 and line.startswith(BOM.encode()):  # a BOM is not part of the record
            line = line[len(BOM.encode()) :]
        try:
            record = json.loads(line.decode("utf-8"))
        except UnicodeDecodeError as exc:
            skips.add(path, lineno, f"invalid UTF-8: byte {exc.start}")
            continue
        except json.JSONDecodeError as exc:
            skips.add(path, lineno, f"malformed JSON: {exc.msg} at column {exc.colno}")
            continue
        except RecursionError:
            skips.add(path, lineno, "malformed JSON: nested too deeply")
            continue
        except ValueError as exc:  # an integer past Python's digit limit
            skips.add(path, lineno, f"malformed JSON: {exc}")
            continue
        if not isinstance(record, dict):
            skips.add(
                path, lineno, f"malformed JSON: expected an object, got {type(record).__name__}"
            )
            continue
        text = record_text(record, text_field, path, lineno, skips)
        if text is not None:
            yield Document(text, str(path), lineno)


def _read_whole(path: Path, skips: SkipLog, max_bytes: int | None = None) -> Iterator[Document]:
    with _open_binary(path, max_bytes) as raw:
        data = raw.read(MAX_DOC_BYTES + len(BOM.encode()) + 1)  # never more than one document
    if len(data) > MAX_DOC_BYTES + len(BOM.encode()):
        skips.add(path, 1, f"giant document: more than {MAX_DOC_BYTES:,} bytes")
        return
    try:
        text = data.decode("utf-8").removeprefix(BOM)
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        skips.add(path, line, f"invalid UTF-8: byte {exc.start}")
        return
    if "\x00" in text:
        skips.add(path, None, "binary file: contains NUL bytes")
        return
    accepted = _accept(text, path, 1, skips, "text")
    if accepted is not None:
        yield Document(accepted, str(path), 1)


def _read_parquet(
    path: Path,
    text_field: TextSource,
    skips: SkipLog,
    groups: range | None = None,
    first_row: int = 1,
    max_bytes: int | None = None,
) -> Iterator[Document]:
    """Rows of a parquet file (or of the row groups ``groups``), numbered from ``first_row``;
    a text column over ``max_bytes`` skips the file (one record, at its first span)."""
    import pyarrow as pa  # deferred: parquet only where a .parquet file is read
    import pyarrow.parquet as pq

    try:
        pf = pq.ParquetFile(open_input(path) if is_url(path) else path)
    except Exception as exc:  # pyarrow raises ArrowInvalid for a non-parquet file
        skips.add(path, None, f"unreadable file: not parquet ({exc})")
        return
    columns = _columns(text_field, pf.schema_arrow.names)
    if isinstance(columns, str):
        skips.add(path, None, columns)
        return
    if max_bytes is not None:
        try:
            for column in columns:
                check_parquet(pf, column, max_bytes)
        except InputLimitError as exc:
            if groups is None or groups.start == 0:
                skips.add(path, None, f"too large: {exc}")
            return
    row = first_row - 1
    for g in groups if groups is not None else range(pf.metadata.num_row_groups):
        # a row group at a time, so a damaged page costs its group and no more, and the
        # same group whatever the unit size (a unit is a run of whole groups)
        end = row + pf.metadata.row_group(g).num_rows
        try:
            for batch in pf.iter_batches(columns=columns, batch_size=1024, row_groups=[g]):
                for value in _batch_values(batch, text_field):
                    row += 1
                    text = _row_text(value, text_field, path, row, skips)
                    if text is not None:
                        yield Document(text, str(path), row)
        except (OSError, pa.ArrowException) as exc:  # a damaged page or column chunk
            why = " ".join(str(exc).split())
            lost = f"row group {g}, rows {row + 1}-{end}"
            skips.add(path, row + 1, f"unreadable rows: {lost} ({why})")
        row = end


def _read_arrow(path: Path, text_field: TextSource, skips: SkipLog) -> Iterator[Document]:
    """Rows of an Arrow IPC stream (what HF ``datasets`` saves), a record batch at a time."""
    import pyarrow as pa  # deferred: Arrow only where an .arrow file is read

    with open_input(path) as raw:
        try:
            reader = pa.ipc.open_stream(raw)
        except Exception as exc:  # ArrowInvalid: not an Arrow stream
            skips.add(path, None, f"unreadable file: not an Arrow stream ({exc})")
            return
        columns = _columns(text_field, reader.schema.names)
        if isinstance(columns, str):
            skips.add(path, None, columns)
            return
        row = 0
        for batch in reader:
            for value in _batch_values(batch.select(columns), text_field):
                row += 1
                text = _row_text(value, text_field, path, row, skips)
                if text is not None:
                    yield Document(text, str(path), row)


def _columns(source: TextSource, names: list[str]) -> list[str] | str:
    """The columns a table reader loads for ``source``, or why the file has none of them."""
    if isinstance(source, str):
        if source in names:
            return [source]
        return f"bad field: no column '{source}' (has {names})"
    wanted = [n for n in source.fields if n in names]
    return wanted or f"missing field: the template uses {list(source.fields)}, the file has {names}"


def _batch_values(batch, source: TextSource) -> list:
    """A record batch's texts (one column) or records (a template's columns)."""
    return batch.column(0).to_pylist() if isinstance(source, str) else batch.to_pylist()


def _row_text(value, source: TextSource, path: Path, row: int, skips: SkipLog) -> str | None:
    if isinstance(source, str):
        return _accept(value, path, row, skips, source)
    return record_text(value, source, path, row, skips)
