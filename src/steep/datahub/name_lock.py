"""One ``steep data add NAME`` at a time: an exclusive lock on the name while it ingests.

``add`` makes ``NAME@1`` and refuses a name already taken; two at once both passed that
check, then raced in one staging folder (the same input: the loser died with a
FileNotFoundError) or published ``@1`` and ``@2`` (different input). So ``add`` holds
``datasets/.locks/NAME.add`` from its check to its publish (outside the dataset's folder:
a refused add leaves that untouched), and a second ``add`` of the name is refused at once,
naming the holder. ``flock`` belongs to the open file: a killed ``add`` holds nothing, and
its rerun resumes from its staging folder.
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

from steep.datahub.catalog import CatalogError

LOCKS = ".locks"


@contextmanager
def adding(root: Path, name: str) -> Iterator[None]:
    """Hold ``root/.locks/NAME.add`` (``root`` is the datasets folder) while the body runs;
    raise ``CatalogError`` naming the holder when another process holds it."""
    (root / LOCKS).mkdir(parents=True, exist_ok=True)
    with open(root / LOCKS / f"{name}.add", "a+", encoding="utf-8") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            f.seek(0)
            raise CatalogError(_refusal(name, f.read())) from None
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


def _refusal(name: str, text: str) -> str:
    try:
        who = json.loads(text or "{}")
    except ValueError:
        who = {}
    who = who if isinstance(who, dict) else {}
    by = f"pid {who.get('pid', '?')} on {who.get('host', '?')}"
    since = f" since {who['since']}" if who.get("since") else ""
    return (
        f"dataset {name!r} is being added by {by}{since}: wait for it to end, then "
        f"`steep data prepare {name}` for a new version (a killed add holds nothing)"
    )
