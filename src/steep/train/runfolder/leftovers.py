"""What a killed run leaves in its folder, cleared when the same run starts again.

A kill during the final save leaves a hidden ``.model.*`` folder (model-sized), one during
a LoRA run's adapter save a ``.adapter.*`` folder (each folder a run writes whole,
``RUN_FOLDERS``, is built under ``artifacts.atomic.aside_prefix``, the prefix matched
here); one during a resume's truncation of metrics.jsonl leaves ``metrics.jsonl.tmp``; one
during a checkpoint leaves ``checkpoints/.step_*.tmp``. None of them is ever read
(checkpoints count only whole ``step_*`` folders), but they would stay forever. The run's
lock (``train.runfolder.lock``) is held when this runs, so nothing else is writing them.
The leftover that is kept is ``.<folder>.old``: the previous model or adapter, moved aside
by a save that died between its two renames; it is put back when the folder is missing.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from steep.artifacts.atomic import aside_prefix, old_aside
from steep.workspace import ADAPTER_DIR, CHECKPOINTS_DIR, METRICS_FILE, MODEL_DIR

# the folders a run writes whole, through artifacts.atomic (model.io.save_hf, train.lora)
RUN_FOLDERS = (MODEL_DIR, ADAPTER_DIR)


def clear_leftovers(run_dir: Path) -> list[str]:
    """Remove a killed run's temporary files; returns what went, for one line of output."""
    run_dir = Path(run_dir)
    temps: list[Path] = []
    for name in RUN_FOLDERS:
        dest, old = run_dir / name, old_aside(run_dir / name)
        if old.is_dir() and not dest.exists():
            os.replace(old, dest)
        temps += sorted(p for p in run_dir.glob(f"{aside_prefix(dest)}*") if p != old)
    temps += [run_dir / f"{METRICS_FILE}.tmp"]
    temps += list((run_dir / CHECKPOINTS_DIR).glob(".step_*.tmp"))
    gone: list[str] = []
    for path in temps:
        if path.is_dir():
            shutil.rmtree(path, ignore_errors=True)
        elif path.exists():
            path.unlink()
        else:
            continue
        gone.append(path.name)
    return gone
