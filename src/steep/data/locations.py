"""Where input files live: a local path, or an fsspec URL (s3://, gs://, hf://, file://,
memory://, ...) read as a stream, never copied whole first.

A URL becomes a ``upath.UPath``, which has the parts of ``pathlib.Path`` the readers use
(``name``, ``open``, ``stat``, ``is_dir``, ``rglob``), so every reader takes either kind.
The filesystem's own package (s3fs, gcsfs, huggingface_hub) and credentials come from the
user's environment, as for any fsspec tool; when one is missing, or the network is, the
error is one line naming the URL.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import IO

from steep.errors import MissingInputError

_URL = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*://")


def is_url(raw: object) -> bool:
    """A URL string, or a path object made from one (a UPath is not a ``Path``)."""
    return not isinstance(raw, Path) and bool(_URL.match(str(raw)))


def as_input(raw: str | Path) -> Path:
    """A readable path object for a local path or a URL (``str()`` gives it back)."""
    if not is_url(raw):
        return Path(raw)
    if not isinstance(raw, str):
        return raw  # already a UPath
    from upath import UPath  # deferred: fsspec only where a URL is read

    try:
        return UPath(str(raw))
    except (ImportError, ValueError) as exc:
        raise MissingInputError(f"data path {raw}: {_why(exc)}") from None


def open_input(path: Path) -> IO[bytes]:
    """The file's bytes as a stream (a local file, or fsspec's buffered remote reader)."""
    return path.open("rb")


def _why(exc: BaseException) -> str:
    text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    if isinstance(exc, ImportError):
        return f"{text} (the filesystem for this URL is a separate package)"
    return f"{type(exc).__name__}: {text}"


def remote_error(raw: str | Path, exc: BaseException) -> MissingInputError:
    """One line for a URL that cannot be listed or read (no package, credentials, network)."""
    return MissingInputError(f"data path {raw}: cannot read it: {_why(exc)}")
