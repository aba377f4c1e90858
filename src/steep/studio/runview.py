"""What a run page shows besides its live metrics: checkpoint steps for the charts' markers,
the TensorBoard command to copy, the metrics as CSV and the run report as HTML.

Kept torch-free (the studio never imports the training code): checkpoint folders are
recognised by their ``step_N`` names, as ``steep.train.checkpoint`` writes them.
"""

from __future__ import annotations

import csv
import io
import re
import shlex
from pathlib import Path
from typing import Any

from steep.artifacts.metrics import read_metrics
from steep.studio.markdown import render
from steep.workspace import CHECKPOINTS_DIR, REPORT_FILE

_STEP_DIR = re.compile(r"^step_(\d+)$")  # steep.train.checkpoint.STEP_DIR
TRAIN_COLUMNS = ("loss", "lr", "grad_norm", "tokens_per_s", "mfu", "peak_mem_gib")


def checkpoint_steps(run_dir: Path) -> list[int]:
    """Steps of the run's checkpoints on disk (one being written is hidden, ``.step_N``)."""
    folder = Path(run_dir) / CHECKPOINTS_DIR
    if not folder.is_dir():
        return []
    return sorted(int(m.group(1)) for p in folder.iterdir() if (m := _STEP_DIR.match(p.name)))


def tensorboard_command(logdir: Path) -> str:
    """The command a user pastes into a shell to look at the run in TensorBoard."""
    return f"tensorboard --logdir {shlex.quote(str(logdir))}"


def metrics_csv(path: Path) -> str:
    """metrics.jsonl as one table, a row per step: the train numbers, then each eval set's
    loss where the step had an eval (a resumed run's repeated steps counted once, as the
    report counts them)."""
    train, evals = read_metrics(path) if Path(path).is_file() else ([], [])
    sets = list(dict.fromkeys(name for rec in evals for name in rec["sets"]))
    rows: dict[int, dict[str, Any]] = {}
    for rec in train:
        row = rows.setdefault(rec["step"], {"step": rec["step"]})
        row["tokens"] = rec.get("tokens")
        row.update({k: rec.get(k) for k in TRAIN_COLUMNS})
    for rec in evals:
        row = rows.setdefault(rec["step"], {"step": rec["step"]})
        row.setdefault("tokens", rec.get("tokens"))
        row.update({f"eval_loss:{n}": m.get("loss") for n, m in rec["sets"].items()})
    header = ["step", "tokens", *TRAIN_COLUMNS, *(f"eval_loss:{n}" for n in sets)]
    out = io.StringIO()
    writer = csv.DictWriter(out, header, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows[s] for s in sorted(rows))
    return out.getvalue()


def report_html(run_dir: Path, files_url: str) -> str | None:
    """The run's report.md as HTML, its plots loading from ``files_url`` (the route that
    serves the run's report and plots); None when the run has no report yet."""
    path = Path(run_dir) / REPORT_FILE
    if not path.is_file():
        return None
    return render(path.read_text(encoding="utf-8", errors="replace"), files_url)
