"""Uploads: files streamed to disk in chunks, never outside ``$STEEP_HOME/uploads/<id>/``.

An upload is a folder with a random id; each file is one PUT of the raw bytes (no
multipart parsing: the body goes straight to disk, chunk by chunk, and the size limit is
enforced while it streams). A file name is one plain path component with a text-data
suffix; it is created with ``O_EXCL | O_NOFOLLOW`` under a temporary name and renamed,
so a name that already exists -- a planted symlink included -- is refused, and nothing is
ever written through a link.
"""

from __future__ import annotations

import os
import re
import secrets
import shutil
import stat
from collections.abc import AsyncIterator
from pathlib import Path

from steep.data.documents import COMPRESSIONS, TEXT_SUFFIXES
from steep.errors import SteepError
from steep.workspace import Workspace

_ID = re.compile(r"^[0-9a-f]{16}$")
_FILE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")


class UploadError(SteepError):
    """A refused upload; ``status`` is the HTTP status to answer with."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


def uploads_root(home: Path) -> Path:
    return Workspace(home).uploads


def new_upload(home: Path) -> str:
    upload_id = secrets.token_hex(8)
    root = uploads_root(home)
    root.mkdir(parents=True, exist_ok=True)
    (root / upload_id).mkdir(mode=0o700)
    return upload_id


def upload_dir(home: Path, upload_id: str) -> Path:
    """The folder of an upload id, checked to be a real folder right under uploads/."""
    if not _ID.match(upload_id):
        raise UploadError(f"upload id {upload_id!r} is not one the studio made", 404)
    root = uploads_root(home).resolve()
    folder = root / upload_id
    try:
        st = os.lstat(folder)
    except FileNotFoundError:
        raise UploadError(f"no upload {upload_id}", 404) from None
    if not stat.S_ISDIR(st.st_mode) or folder.resolve().parent != root:
        raise UploadError(f"upload {upload_id} is not a plain folder in {root}", 400)
    return folder


def check_filename(name: str) -> str:
    """One path component, no dot start, a readable data suffix; else UploadError(400)."""
    if not name or "/" in name or "\\" in name or "\x00" in name or os.path.isabs(name):
        raise UploadError(f"file name {name!r}: give a plain name, no folders", 400)
    if not _FILE.match(name) or ".." in name:
        raise UploadError(
            f"file name {name!r}: use letters, digits, '_', '.', '-' (starting with a letter "
            "or digit, no '..', at most 128 characters)",
            400,
        )
    lowered = name.lower()
    for comp in COMPRESSIONS:
        lowered = lowered.removesuffix(comp)
    if not lowered.endswith(TEXT_SUFFIXES):
        raise UploadError(
            f"file name {name!r}: steep reads {', '.join(TEXT_SUFFIXES)} (optionally "
            f"{', '.join(COMPRESSIONS)})",
            400,
        )
    return name


def used_bytes(folder: Path) -> int:
    return sum(p.lstat().st_size for p in folder.iterdir())


async def save_stream(
    folder: Path,
    name: str,
    chunks: AsyncIterator[bytes],
    limit: int,
    declared: int | None = None,
) -> int:
    """Write ``chunks`` to ``folder/name``; refuse (413) past ``limit`` bytes for the upload.

    ``declared`` (Content-Length) lets an oversized upload fail before a byte is read.
    """
    check_filename(name)
    budget = limit - used_bytes(folder)
    if declared is not None and declared > budget:
        raise UploadError(
            f"{name}: {declared:,} bytes is over the upload limit ({limit:,} bytes per upload, "
            f"{max(budget, 0):,} left)",
            413,
        )
    final = folder / name
    if os.path.lexists(final):
        raise UploadError(f"{name}: a file of that name is already in this upload", 409)
    tmp = folder / f".{name}.{secrets.token_hex(4)}.part"
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW
    fd = os.open(tmp, flags, 0o600)
    written = 0
    try:
        with os.fdopen(fd, "wb") as f:
            async for chunk in chunks:
                written += len(chunk)
                if written > budget:
                    raise UploadError(
                        f"{name}: over the upload limit ({limit:,} bytes per upload)", 413
                    )
                f.write(chunk)
        if os.path.lexists(final):  # appeared while we streamed
            raise UploadError(f"{name}: a file of that name is already in this upload", 409)
        os.rename(tmp, final)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return written


def uploaded_files(folder: Path) -> list[Path]:
    """The upload's finished files: regular files only (no links, no partial files)."""
    return sorted(
        p
        for p in folder.iterdir()
        if not p.name.startswith(".") and stat.S_ISREG(p.lstat().st_mode)
    )


def remove_upload(folder: Path) -> None:
    shutil.rmtree(folder, ignore_errors=True)
