"""``steep`` whose Data Hub pool workers hold inside their unit: a test can kill the
parent while its workers are certainly busy, never after they have finished.

Run in place of ``python -m steep`` with ``STEEP_TEST_HOLD=DIR``::

    python tests/held_datahub.py data add NAME FILE --workers 2

Each worker that starts an ``add`` unit writes ``DIR/working-PID`` and then waits, as a
unit in the middle of a large file would, until ``DIR/go`` exists (with ``--executor ray``,
on whichever node Ray runs the unit: the wrapper travels by value). Nothing in steep
changes: ``steep.datahub.ingest.ingest_unit`` is wrapped in this process only, and the
pool's workers are forked from it (Linux), so they run the wrapper.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

ENV = "STEEP_TEST_HOLD"
SCRIPT = Path(__file__).resolve()


def argv(*args: str) -> list[str]:
    """The command line of ``steep ARGS...`` run through this script."""
    return [sys.executable, str(SCRIPT), *args]


def _hold_the_units(folder: Path, on_ray: bool) -> None:
    import steep.datahub.ingest as ingest  # after the sys.path fix below

    real = ingest.ingest_unit

    def held_unit(task):  # steep's IngestTask -> UnitResult
        (folder / f"working-{os.getpid()}").touch()
        while not (folder / "go").exists():
            time.sleep(0.05)
        return real(task)

    def held_ray_unit(task):  # shipped by value; the node's own steep does the unit
        from steep.datahub.ingest import ingest_unit

        (folder / f"working-{os.getpid()}").touch()
        while not (folder / "go").exists():
            time.sleep(0.05)
        return ingest_unit(task)

    if on_ray:  # Ray pickles a nested function by value (cloudpickle): any node runs it
        ingest.ingest_unit = held_ray_unit
        return
    # pickled by name: a worker forked from here finds the wrapper under the real name
    held_unit.__module__, held_unit.__qualname__ = real.__module__, real.__qualname__
    ingest.ingest_unit = held_unit


if __name__ == "__main__":
    if sys.path and Path(sys.path[0]).resolve() == SCRIPT.parent:
        del sys.path[0]  # the script's folder (tests/): import steep as `python -m` does
    if os.environ.get(ENV):
        pairs = zip(sys.argv, sys.argv[1:], strict=False)
        _hold_the_units(Path(os.environ[ENV]), ("--executor", "ray") in pairs)
    from steep.cli import main

    sys.exit(main())
