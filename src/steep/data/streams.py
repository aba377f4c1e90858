"""A file's bytes, decompressed (.gz, .bz2, .zst) and counted against a cap.

Every reader opens its input here, so a decompression bomb stops at the caller's cap
(``InputLimitError``) whatever the format, and a .zst cut short raises as gzip's does.
"""

from __future__ import annotations

import bz2
import gzip
import io
from pathlib import Path
from typing import IO

from steep.data.input_caps import InputLimitError
from steep.data.locations import open_input


def open_binary(path: Path, max_bytes: int | None = None) -> IO[bytes]:
    """The file's bytes, decompressed; past ``max_bytes`` of them reading raises
    ``InputLimitError`` (the caller skips the file) instead of filling memory or disk."""
    name = path.name.lower()
    raw = open_input(path)
    stream: IO[bytes]
    if name.endswith(".gz"):
        stream = gzip.open(raw, "rb")  # type: ignore[assignment]
    elif name.endswith(".bz2"):
        stream = bz2.open(raw, "rb")  # type: ignore[assignment]
    elif name.endswith(".zst"):
        stream = io.BufferedReader(_ZstdReader(raw))  # adds line iteration
    else:
        stream = raw
    if max_bytes is None:
        return stream
    return io.BufferedReader(_Limited(stream, max_bytes))


class _Limited(io.RawIOBase):
    """Counts the bytes read through it and stops at a limit."""

    def __init__(self, raw: IO[bytes], limit: int) -> None:
        self._raw, self._limit, self._seen = raw, limit, 0

    def readable(self) -> bool:
        return True

    def readinto(self, out: bytearray | memoryview) -> int:  # type: ignore[override]
        data = self._raw.read(len(out))
        self._seen += len(data)
        if self._seen > self._limit:
            raise InputLimitError(f"more than {self._limit:,} bytes once decompressed")
        out[: len(data)] = data
        return len(data)

    def close(self) -> None:
        self._raw.close()
        super().close()


class _ZstdReader(io.RawIOBase):
    """A .zst stream (one frame or several) that, like gzip and bz2, raises EOFError when
    the file ends inside a frame: zstandard's own stream reader just stops, and a
    truncated download would lose its last documents without a word."""

    CHUNK = 1 << 20

    def __init__(self, raw: IO[bytes]) -> None:
        import zstandard  # deferred: only for .zst inputs

        self._raw, self._zstd = raw, zstandard
        self._obj = zstandard.ZstdDecompressor().decompressobj()
        self._buf, self._started = b"", False

    def readable(self) -> bool:
        return True

    def readinto(self, out: bytearray | memoryview) -> int:  # type: ignore[override]
        while not self._buf:
            data = self._raw.read(self.CHUNK)
            if not data:
                if self._started and not self._obj.eof:
                    raise EOFError("compressed file ended before the end-of-stream marker")
                return 0
            while data:
                if self._obj.eof:  # the next frame of a multi-frame file
                    self._obj = self._zstd.ZstdDecompressor().decompressobj()
                self._started = True
                try:
                    self._buf += self._obj.decompress(data)
                except self._zstd.ZstdError as exc:  # as gzip's BadGzipFile: an OSError
                    raise OSError(f"not zstd data ({exc})") from None
                data = self._obj.unused_data if self._obj.eof else b""
        n = min(len(out), len(self._buf))
        out[:n] = self._buf[:n]
        self._buf = self._buf[n:]
        return n

    def close(self) -> None:
        self._raw.close()
        super().close()
