"""One ``steep data add NAME`` at a time, and one run of the same ``prepare`` at a time:
an exclusive lock held while the work runs.

``add`` makes ``NAME@1`` and refuses a name already taken; two at once both passed that
check, then raced in one staging folder (the same input: the loser died with a
FileNotFoundError) or published ``@1`` and ``@2`` (different input). So ``add`` holds
``datasets/.locks/NAME.add`` from its check to its publish (outside the dataset's folder:
a refused add leaves that untouched), and a second ``add`` of the name is refused at once,
naming the holder. ``flock`` belongs to the open file: a killed ``add`` holds nothing, and
its rerun resumes from its staging folder.

``prepare`` is the same with the same parent and recipe (they share a staging folder, so
the second is refused naming the first). Different prepares of one dataset run at once:
versions are appends, each takes the next number when it publishes
(``Catalog.publish``).
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
import sys
import time
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path

from steep.datahub.catalog import CatalogError

LOCKS = ".locks"


def adding(root: Path, name: str) -> AbstractContextManager[None]:
    """Hold ``root/.locks/NAME.add`` (``root`` is the datasets folder) while the body runs;
    raise ``CatalogError`` naming the holder when another process holds it."""
    then = f"`steep data prepare {name}` for a new version (a killed add holds nothing)"
    return _holding(root / LOCKS / f"{name}.add", f"dataset {name!r} is being added", then)


def preparing(root: Path, name: str, key: str, what: str) -> AbstractContextManager[None]:
    """Hold the lock of one prepare (``key``: its staging folder's) into dataset ``name``."""
    return _holding(
        root / LOCKS / f"{name}.{key}",
        f"the same prepare ({what}) is running",
        "rerun it to find its result (a killed prepare holds nothing; its rerun resumes)",
    )


@contextmanager
def _holding(path: Path, busy: str, then: str) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+", encoding="utf-8") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            f.seek(0)
            raise CatalogError(_refusal(busy, then, f.read())) from None
        try:
            f.seek(0)
            f.truncate()
            me = {
                "pid": os.getpid(),
                "host": socket.gethostname(),
                "since": time.strftime("%Y-%m-%d %H:%M:%S"),
                "command": " ".join(sys.argv)[:300],
            }
            f.write(json.dumps(me) + "\n")
            f.flush()
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def _refusal(busy: str, then: str, text: str) -> str:
    try:
        who = json.loads(text or "{}")
    except ValueError:
        who = {}
    who = who if isinstance(who, dict) else {}
    by = f"pid {who.get('pid', '?')} on {who.get('host', '?')}"
    since = f" since {who['since']}" if who.get("since") else ""
    return f"{busy} by {by}{since}: wait for it to end, then {then}"
