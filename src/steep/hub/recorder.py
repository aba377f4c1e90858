"""How other commands tell the hub what they made: a training run, an eval report.

Hub trouble is printed, never raised: what the command made is already safe on disk, and a
registry problem must not stop training or lose an eval.
"""

from __future__ import annotations

import os
from pathlib import Path

from steep.hub.registry import Hub
from steep.workspace import LINEAGE_FILE, MODEL_DIR


def record_run(run_dir: Path) -> None:
    """After ``steep train`` / ``steep demo``: register the run (status from its status.json)
    and its model, and write the model card (README.md) now rather than at the next query.
    Under torchrun only rank 0 records (the others return at once)."""
    if os.environ.get("RANK", "0") != "0":
        return
    try:
        hub = Hub()
        name = hub.register_run(Path(run_dir), None)
        model_dir = Path(run_dir) / MODEL_DIR
        if (model_dir / LINEAGE_FILE).is_file():
            hub.register_model(model_dir, name)
    except Exception as exc:
        print(f"warning: model hub: could not record the run {run_dir}: {exc}")


def attach_eval_report(model_dir: Path) -> None:
    """Called by ``steep eval`` after it wrote the report: refresh the hub row and card."""
    try:
        Hub().attach_eval(model_dir)
    except Exception as exc:
        print(f"warning: model hub: could not attach the eval report of {model_dir}: {exc}")
