"""A file over its decompressed cap is skipped whole, measured before any document is read.

Reading a bomb until the cap and skipping it then kept every document read before the cap
(a 295 KB upload became 67 MB of text): so a compressed stream is first decompressed and
counted (at most the cap, then stopped), and a parquet file's text column is decoded and
counted alike. The cap is the caller's: the studio sets one per file, the CLI none unless
``--max-input-mb`` or ``--max-input-ratio`` is given (see ``steep.studio.ingest_job``).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

CHUNK = 1 << 20
FLOOR = 16 << 20  # a ratio cap's least: room for a tiny file's headers and a few documents


class InputLimitError(OSError):
    """A file that decompresses past the limit it was read under (a decompression bomb)."""


def file_cap(size: int, max_bytes: int | None, ratio: float | None) -> int | None:
    """What a file of ``size`` bytes may decompress to: ``ratio`` x its own size (at least
    ``FLOOR``; never one file's size for another's: a bomb beside a big plain file is
    still a bomb), under ``max_bytes``; None caps nothing."""
    if ratio is None:
        return max_bytes
    cap = max(FLOOR, int(ratio * size))
    return cap if max_bytes is None else min(cap, max_bytes)


def _message(limit: int) -> str:
    return f"more than {limit:,} bytes once decompressed"


def check_stream(path: Path, limit: int, open_binary: Callable[[Path], IO[bytes]]) -> None:
    """Raise ``InputLimitError`` if the decompressed ``path`` holds more than ``limit`` bytes;
    reads at most ``limit + CHUNK`` of them, holding one chunk."""
    seen = 0
    with open_binary(path) as raw:
        while chunk := raw.read(CHUNK):
            seen += len(chunk)
            if seen > limit:
                raise InputLimitError(_message(limit))


def check_parquet(pf: Any, column: str, limit: int) -> None:
    """Raise ``InputLimitError`` if ``column`` holds more than ``limit`` bytes once decoded
    (a zip-in-parquet bomb). The footer's sizes are of encoded pages, and a dictionary holds
    a million copies of one text in a few bytes: so the column is decoded, a batch at a time,
    and counted (a damaged row group is passed over here: the reader reports it)."""
    import pyarrow as pa  # deferred: parquet only where a .parquet file is read

    seen = 0
    for g in range(pf.metadata.num_row_groups):
        try:
            for batch in pf.iter_batches(columns=[column], batch_size=1024, row_groups=[g]):
                seen += batch.column(0).nbytes
                if seen > limit:
                    raise InputLimitError(_message(limit))
        except InputLimitError:
            raise
        except (OSError, pa.ArrowException):
            continue
