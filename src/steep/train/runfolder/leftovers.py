"""What a killed run leaves in its folder, cleared when the same run starts again.

A kill during the final save leaves a hidden ``.model.*`` folder (model-sized); one during
a resume's truncation of metrics.jsonl leaves ``metrics.jsonl.tmp``; one during a
checkpoint leaves ``checkpoints/.step_*.tmp``. None of them is ever read (checkpoints count
only whole ``step_*`` folders), but they would stay forever. The run's lock
(``train.runfolder.lock``) is held when this runs, so nothing else is writing them. The one
leftover that is kept is ``.model.old``: the previous model, moved aside by a save that
died between its two renames; it is put back when ``model/`` is missing.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from steep.workspace import CHECKPOINTS_DIR, METRICS_FILE, MODEL_DIR


def clear_leftovers(run_dir: Path) -> list[str]:
    """Remove a killed run's temporary files; returns what went, for one line of output."""
    run_dir = Path(run_dir)
    gone: list[str] = []
    old = run_dir / f".{MODEL_DIR}.old"
    if old.is_dir() and not (run_dir / MODEL_DIR).exists():
        os.replace(old, run_dir / MODEL_DIR)
    temps = [p for p in run_dir.glob(f".{MODEL_DIR}.*") if p != old]
    temps += [run_dir / f"{METRICS_FILE}.tmp"]
    temps += list((run_dir / CHECKPOINTS_DIR).glob(".step_*.tmp"))
    for path in temps:
        if path.is_dir():
            shutil.rmtree(path, ignore_errors=True)
        elif path.exists():
            path.unlink()
        else:
            continue
        gone.append(path.name)
    return gone
