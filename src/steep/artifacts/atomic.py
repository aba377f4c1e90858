"""Atomic replacement of a file or a folder: a reader sees the old one or the new, never half.

One place for the temp-name + ``os.replace`` pattern that reports, lineage, model cards,
sweep state and saved models all need. Not ``tempfile.mkstemp``: its 0600 mode would hide
the file from another user of the workspace (the studio's).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path


def write_text(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` through a temp file in the same folder, then rename."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def replace_dir(tmp: Path, dest: Path) -> None:
    """Put the finished folder ``tmp`` at ``dest``, replacing what was there.

    Folders cannot be swapped in one rename, so the old one is moved aside first; a crash
    between the two renames leaves it at ``.<name>.old``, not deleted.
    """
    if dest.exists():
        old = dest.with_name(f".{dest.name}.old")
        shutil.rmtree(old, ignore_errors=True)
        os.replace(dest, old)
        os.replace(tmp, dest)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(tmp, dest)
