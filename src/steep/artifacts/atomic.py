"""Atomic replacement of a file or a folder: a reader sees the old one or the new, never half.

One place for the temp-name + ``os.replace`` pattern that reports, lineage, model cards,
sweep state and saved models all need. Not ``tempfile.mkstemp``: its 0600 mode would hide
the file from another user of the workspace (the studio's).
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from steep.errors import AlreadyExistsError


def write_text(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` through a temp file in the same folder, then rename."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def aside_prefix(dest: Path) -> str:
    """The name prefix of the hidden folders ``dest`` is built in (``aside_dir``) and moved
    aside to (``old_aside``): the one definition that a killed writer's cleanup
    (``train.runfolder.leftovers``) matches."""
    return f".{Path(dest).name}."


def old_aside(dest: Path) -> Path:
    """Where ``replace_dir`` moves the previous ``dest`` between its two renames."""
    return Path(dest).with_name(f"{aside_prefix(dest)}old")


def aside_dir(dest: Path) -> Path:
    """A new hidden sibling of ``dest`` to build it in, renamed into place when whole."""
    return temp_dir(Path(dest).parent, aside_prefix(dest))


def replace_dir(tmp: Path, dest: Path) -> None:
    """Put the finished folder ``tmp`` at ``dest``, replacing what was there.

    Folders cannot be swapped in one rename, so the old one is moved aside first; a crash
    between the two renames leaves it at ``.<name>.old``, not deleted.
    """
    if dest.exists():
        old = old_aside(dest)
        shutil.rmtree(old, ignore_errors=True)
        os.replace(dest, old)
        os.replace(tmp, dest)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(tmp, dest)


def umask() -> int:
    """This process's umask, read without changing it (Linux), else by setting it back."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except OSError:
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def temp_dir(parent: Path, prefix: str) -> Path:
    """A new hidden folder in ``parent`` for a folder written whole, with the umask's
    permissions (``tempfile.mkdtemp`` makes it 0700: a saved model would be hidden from
    the studio's user and from a serving process)."""
    tmp = Path(tempfile.mkdtemp(prefix=prefix, dir=parent))
    os.chmod(tmp, 0o777 & ~umask())
    return tmp


@contextmanager
def new_folder(dest: Path) -> Iterator[Path]:
    """Build the new folder ``dest`` in a hidden sibling and rename it into place at the end:
    a failure leaves nothing behind, and an existing ``dest`` is never touched."""
    dest = Path(dest)
    if dest.exists():
        raise AlreadyExistsError(f"{dest} already exists: choose a new folder")
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = aside_dir(dest)
    try:
        yield tmp
        if dest.exists():
            raise AlreadyExistsError(f"{dest} appeared while it was being written: not replaced")
        os.rename(tmp, dest)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def umask_permissions(tree: Path) -> None:
    """Give every file under ``tree`` the umask's permissions: libraries that write through
    their own temp files (safetensors does) leave 0600 behind."""
    file_mode, dir_mode = 0o666 & ~umask(), 0o777 & ~umask()
    for path in Path(tree).rglob("*"):
        if path.is_symlink():
            continue
        os.chmod(path, dir_mode if path.is_dir() else file_mode)
