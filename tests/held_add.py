"""``steep`` whose ``Catalog.publish`` waits while ``DIR/hold`` exists (``STEEP_TEST_HOLD=DIR``):
a test holds a ``steep data add`` inside its publish, after it has ingested, and starts a
second one then. It writes ``DIR/held`` when it waits. Nothing in steep changes: the one
function is wrapped in this process only.

    python tests/held_add.py data add NAME PATH...
"""

from __future__ import annotations

import os
import runpy
import sys
import time
from pathlib import Path

from steep.datahub.catalog import Catalog

_publish = Catalog.publish


def _held_publish(self, *args, **kwargs):
    folder = Path(os.environ["STEEP_TEST_HOLD"])
    (folder / "held").touch()
    while (folder / "hold").exists():
        time.sleep(0.05)
    return _publish(self, *args, **kwargs)


if __name__ == "__main__":
    Catalog.publish = _held_publish  # type: ignore[method-assign]
    sys.argv[0] = "steep"
    runpy.run_module("steep", run_name="__main__")
