"""``steep`` whose ``Catalog.publish`` waits while ``DIR/hold`` exists (``STEEP_TEST_HOLD=DIR``):
a test holds a ``steep data add`` inside its publish, after it has ingested, and starts a
second one then. It writes ``DIR/held`` when it waits. Nothing in steep changes: the one
function is wrapped in this process only.

    python tests/held_add.py data add NAME PATH...

``while_held`` runs that order: the first held in its publish, the second meanwhile.
"""

from __future__ import annotations

import os
import runpy
import subprocess
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


def steep_env(hold: Path) -> dict[str, str]:
    """The environment a ``steep`` child of a test runs in: this checkout's src, no bars."""
    src = str(Path(__file__).resolve().parents[1] / "src")
    return {**os.environ, "STEEP_TEST_HOLD": str(hold), "PYTHONPATH": src, "TQDM_DISABLE": "1"}


def while_held(
    hold: Path, first: list[str], second: list[str]
) -> tuple[subprocess.Popen, str, subprocess.CompletedProcess]:
    """``steep FIRST`` held inside its publish while ``steep SECOND`` runs to its end; then the
    first is let go. Returns the first (ended), its output, and the second's result."""
    from tests.held_steep import wait_until  # deferred: not needed by the script itself

    hold.mkdir()
    (hold / "hold").touch()
    env = steep_env(hold)
    proc = subprocess.Popen(
        [sys.executable, __file__, *first],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        wait_until(
            f"the first `steep {first[1]}` reached its publish", (hold / "held").exists, proc
        )
        run = subprocess.run(
            [sys.executable, "-m", "steep", *second],
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )
    finally:
        (hold / "hold").unlink()
        out, _ = proc.communicate(timeout=300)
    return proc, out, run


if __name__ == "__main__":
    Catalog.publish = _held_publish  # type: ignore[method-assign]
    sys.argv[0] = "steep"
    runpy.run_module("steep", run_name="__main__")
