"""One writer per run folder: an exclusive lock held by the training process.

Two ``steep train --resume`` on one folder would both write metrics.jsonl, checkpoints and
the model, and the record would end up describing neither run. ``flock`` is held by the
open file, so the kernel releases it when the process dies however it dies (a SIGKILLed
run never locks its folder out), and it works across processes on one host and on NFS
v4 / Lustre mounts that support it. The holder writes who it is into the lock file so a
refused second writer can say whom it is waiting for. The studio and sweeps start runs
as ``steep train`` processes, so they take the same lock.
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

from steep.errors import SteepError
from steep.train.runfolder.write_errors import folder_error
from steep.workspace import LOCK_FILE


class RunLockedError(SteepError):
    """Another process is writing this run folder."""


def holder(run_dir: Path) -> dict[str, Any] | None:
    """Who holds the folder's lock, as it wrote itself down (None when nobody does)."""
    path = Path(run_dir) / LOCK_FILE
    if not path.exists():
        return None
    try:
        with open(path, "a+") as f:
            try:
                fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                f.seek(0)
                return _who(f.read())
            fcntl.flock(f, fcntl.LOCK_UN)
    except FileNotFoundError:
        return None
    return None


@contextmanager
def held_last_by(run_dir: Path, session: int) -> Iterator[bool]:
    """True when the folder's lock is free and was last held by a process of ``session``
    on this host: that session's run was the folder's writer and nobody took it since. The
    lock is held while the body runs, so no writer starts in between; False when another
    process holds it, when nobody ever held it, or when it was held by another run."""
    try:
        f = open(Path(run_dir) / LOCK_FILE, encoding="utf-8")
    except OSError:  # no lock file: nobody ever wrote the folder
        yield False
        return
    with f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:  # its writer is running
            yield False
            return
        try:
            who = _who(f.read())
            yield who.get("sid") == session and who.get("host") == socket.gethostname()
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


class RunLock:
    """``acquire()`` or raise ``RunLockedError`` naming the holder; ``release()`` frees."""

    def __init__(self, run_dir: Path) -> None:
        self.path = Path(run_dir) / LOCK_FILE
        self._file: IO[str] | None = None

    def acquire(self) -> None:
        try:
            f = open(self.path, "a+")
        except OSError as exc:  # a read-only folder, a full disk: nothing was written
            run = self.path.parent
            raise folder_error(
                "write the run folder", run, exc, run, "nothing in it changed"
            ) from exc
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            f.seek(0)
            text = f.read()
            f.close()
            raise RunLockedError(_refusal(self.path.parent, text)) from None
        me = {
            "pid": os.getpid(),
            "sid": os.getsid(0),  # the session: a studio job's, whose id is its pid
            "host": socket.gethostname(),
            "since": time.strftime("%Y-%m-%d %H:%M:%S"),
            "command": " ".join(sys.argv)[:500],
        }
        f.seek(0)
        f.truncate()
        f.write(json.dumps(me) + "\n")
        f.flush()
        self._file = f

    def release(self) -> None:
        if self._file is not None:
            fcntl.flock(self._file, fcntl.LOCK_UN)
            self._file.close()
            self._file = None


def _who(text: str) -> dict[str, Any]:
    """The holder's record as it wrote it ({} when unreadable: written by something else)."""
    try:
        who = json.loads(text or "{}")
    except ValueError:
        return {}
    return who if isinstance(who, dict) else {}


def _refusal(run_dir: Path, text: str) -> str:
    who = _who(text)
    by = f"pid {who.get('pid', '?')} on {who.get('host', '?')}"
    since = f" since {who['since']}" if who.get("since") else ""
    command = f" ({who['command']})" if who.get("command") else ""
    return (
        f"run folder {run_dir} is in use by {by}{since}{command}: wait for it to end or "
        "stop it, then resume (a run that was killed holds nothing)"
    )
