"""Uploads: files streamed to disk in chunks, never outside ``$STEEP_HOME/uploads/<id>/``.

An upload is a folder with a random id; each file is one PUT of the raw bytes (no
multipart parsing: the body goes straight to disk, chunk by chunk, and the size limit is
enforced while it streams). A file name is one plain path component with a text-data
suffix; it is created with ``O_EXCL | O_NOFOLLOW`` under a temporary name and renamed,
so a name that already exists -- a planted symlink included -- is refused, and nothing is
ever written through a link.

Two limits hold at once: bytes per upload and bytes under ``uploads/`` in all. Measuring
the folder when a PUT starts lets six concurrent PUTs each see an empty folder, so bytes
are *reserved* under one lock before they are written (the Content-Length up front, else
a megabyte at a time) and a reservation is freed when its PUT ends, whichever way. The
ledger is this process's: two studios on one workspace see each other's finished files
and partial files on disk, not each other's reservations.
"""

from __future__ import annotations

import os
import re
import secrets
import shutil
import stat
import threading
from collections.abc import AsyncIterator
from pathlib import Path

from steep.data.documents import COMPRESSIONS, TEXT_SUFFIXES
from steep.errors import SteepError
from steep.workspace import Workspace

_ID = re.compile(r"^[0-9a-f]{16}$")
_FILE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")
DEFAULT_WORKSPACE_UPLOAD_BYTES = 4 << 30  # all uploads not yet made into datasets
RESERVE_STEP = 1 << 20  # a body of unknown length reserves this much at a time


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


def unused_uploads(home: Path) -> list[dict]:
    """Uploads not (yet) turned into a dataset, oldest first: an ingested upload is removed,
    so what is here was abandoned, failed to ingest, or is being added now."""
    root = uploads_root(home)
    folders = (
        [p for p in root.iterdir() if p.is_dir() and _ID.match(p.name)] if root.is_dir() else []
    )
    rows = [
        {"id": f.name, "files": [x.name for x in uploaded_files(f)], "bytes": used_bytes(f),
         "modified": f.stat().st_mtime}
        for f in folders
    ]  # fmt: skip
    return sorted(rows, key=lambda r: r["modified"])


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


class _Ledger:
    """Bytes reserved by PUTs in flight, per upload folder, and their partial files."""

    def __init__(self) -> None:
        self.lock = threading.Lock()  # held for a scan and a sum, never across an await
        self.reserved: dict[Path, int] = {}
        self.parts: set[Path] = set()  # counted by their reservation, not their size

    def on_disk(self, folder: Path) -> int:
        return sum(p.lstat().st_size for p in folder.iterdir() if p not in self.parts)

    def reserve(
        self, folder: Path, name: str, need: int, want: int, limit: int, ws_limit: int
    ) -> int:
        """Reserve between ``need`` and ``want`` bytes for ``folder``; 413 if ``need`` won't fit."""
        root = folder.parent
        with self.lock:
            here = self.on_disk(folder) + self.reserved.get(folder, 0)
            folders = [p for p in root.iterdir() if stat.S_ISDIR(p.lstat().st_mode)]
            total = sum(map(self.on_disk, folders)) + sum(
                n for f, n in self.reserved.items() if f.parent == root
            )
            if need > limit - here:
                raise UploadError(
                    f"{name}: over the upload limit ({limit:,} bytes per upload, "
                    f"{max(limit - here, 0):,} left)",
                    413,
                )
            if need > ws_limit - total:
                raise UploadError(
                    f"{name}: the workspace's uploads would pass {ws_limit:,} bytes "
                    f"({max(ws_limit - total, 0):,} left): make datasets of the uploads in "
                    f"{root} or remove old ones",
                    413,
                )
            grant = min(max(need, want), limit - here, ws_limit - total)
            self.reserved[folder] = self.reserved.get(folder, 0) + grant
            return grant

    def release(self, folder: Path, tmp: Path, amount: int) -> None:
        """Drop a PUT's reservation and partial file; the caller holds ``lock``."""
        self.parts.discard(tmp)
        left = self.reserved.get(folder, 0) - amount
        if left > 0:
            self.reserved[folder] = left
        else:
            self.reserved.pop(folder, None)


_LEDGER = _Ledger()
_WORKSPACE_LIMITS: dict[Path, int] = {}  # uploads root -> its limit (set by the studio)


def set_workspace_limit(home: Path, limit: int) -> None:
    """The most bytes all uploads of ``home`` may hold (``Settings.max_workspace_upload_bytes``)."""
    _WORKSPACE_LIMITS[uploads_root(home).resolve()] = limit


async def save_stream(
    folder: Path,
    name: str,
    chunks: AsyncIterator[bytes],
    limit: int,
    declared: int | None = None,
    workspace_limit: int | None = None,
) -> int:
    """Write ``chunks`` to ``folder/name``; refuse (413) past ``limit`` bytes for the upload
    or the workspace's limit for all uploads (``workspace_limit``, else the one set for it).

    ``declared`` (Content-Length) is reserved first, so an oversized upload fails before
    a byte is read and concurrent PUTs cannot all fit in the same free space.
    """
    check_filename(name)
    if workspace_limit is None:
        workspace_limit = _WORKSPACE_LIMITS.get(folder.parent, DEFAULT_WORKSPACE_UPLOAD_BYTES)
    final = folder / name
    if os.path.lexists(final):
        raise UploadError(f"{name}: a file of that name is already in this upload", 409)
    tmp = folder / f".{name}.{secrets.token_hex(4)}.part"
    reserved = written = 0
    done = False
    with _LEDGER.lock:
        _LEDGER.parts.add(tmp)
    try:
        if declared is not None:
            reserved = _LEDGER.reserve(folder, name, declared, declared, limit, workspace_limit)
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW
        with os.fdopen(os.open(tmp, flags, 0o600), "wb") as f:
            async for chunk in chunks:
                written += len(chunk)
                if written > reserved:
                    need = written - reserved
                    reserved += _LEDGER.reserve(
                        folder, name, need, RESERVE_STEP, limit, workspace_limit
                    )
                f.write(chunk)
        with _LEDGER.lock:  # the file on disk replaces its reservation in one step
            if os.path.lexists(final):  # appeared while we streamed
                raise UploadError(f"{name}: a file of that name is already in this upload", 409)
            os.rename(tmp, final)
            _LEDGER.release(folder, tmp, reserved)
            done = True
    except BaseException:
        if not done:
            with _LEDGER.lock:
                _LEDGER.release(folder, tmp, reserved)
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
