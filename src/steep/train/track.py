"""Metrics out of a run: ``metrics.jsonl`` (the contract) and TensorBoard (the viewer).

metrics.jsonl (``steep.artifacts.metrics`` defines its records) has one JSON object per
line, flushed as it is written so a studio or ``tail -f`` sees it live.

On resume, records after the checkpoint's step are dropped (file and TensorBoard) so the
log reads as one uninterrupted run.

With ``config.track`` set, every record also goes to W&B and/or MLflow
(``steep.train.trackers``): a copy, never the contract, and one that can fail without
stopping the run. Only rank 0 reports: the loop builds a Tracker on rank 0 alone.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

from steep.config.schema import RunConfig
from steep.train.runfolder.write_errors import folder_error
from steep.train.trackers import flat_metrics, open_trackers, result_files
from steep.workspace import METRICS_FILE


def _truncate_after(path: Path, step: int) -> set[tuple[str, int]]:
    """Keep only complete records with step <= ``step``; rewrite atomically.

    Returns the (kind, step) of the records dropped: the trackers already have them.
    """
    if not path.exists():
        return set()
    kept, dropped = [], set()
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            rec = json.loads(line)
        except json.JSONDecodeError:
            continue  # a line cut short by the crash
        if rec.get("step", 0) <= step:
            kept.append(line)
        else:
            dropped.add((rec.get("kind"), rec.get("step")))
    tmp = path.with_suffix(".jsonl.tmp")
    try:
        tmp.write_text("".join(k + "\n" for k in kept), encoding="utf-8")
        os.replace(tmp, path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise folder_error(
            "rewrite", path, exc, path.parent, "it and the checkpoints are unchanged"
        ) from exc
    return dropped


class Tracker:
    def __init__(
        self,
        run_dir: Path,
        resume_step: int | None = None,
        tensorboard: bool = True,
        config: RunConfig | None = None,
    ):
        self.path = run_dir / METRICS_FILE
        self._sent: set[tuple[str, int]] = set()  # a resume's records the trackers have
        if resume_step is not None:
            self._sent = _truncate_after(self.path, resume_step)
        self._trackers = []
        if config is not None:
            dump = config.model_dump(mode="json")
            self._trackers = open_trackers(config.track, run_dir, dump, resume_step is not None)
        self._file = open(self.path, "a", encoding="utf-8")
        self._tb = None
        if tensorboard:
            # deferred: TensorBoard only when the run logs to it
            from torch.utils.tensorboard import SummaryWriter

            purge = resume_step + 1 if resume_step is not None else None
            self._tb = SummaryWriter(str(run_dir / "tensorboard"), purge_step=purge)

    def log(self, record: dict[str, Any]) -> None:
        record = {**record, "time": time.time()}
        try:
            self._file.write(json.dumps(record) + "\n")
            self._file.flush()
        except OSError as exc:  # a line cut short is dropped by the resume's truncation
            raise folder_error(
                "append to", self.path, exc, self.path.parent, "the checkpoints are intact"
            ) from exc
        if self._tb is not None:
            self._to_tensorboard(record)
        if self._trackers and record["kind"] in ("train", "eval"):  # events: metrics.jsonl
            kind, step = record["kind"], record["step"]
            metrics, resent = flat_metrics(record), (kind, step) in self._sent
            for tracker in self._trackers:
                tracker.log(metrics, step, kind, resent)

    def _to_tensorboard(self, rec: dict[str, Any]) -> None:
        step = rec["step"]
        if rec["kind"] == "train":
            for key in ("loss", "lr", "grad_norm", "tokens_per_s", "mfu", "peak_mem_gib"):
                if rec.get(key) is not None:
                    self._tb.add_scalar(f"train/{key}", rec[key], step)
            for name, n in rec.get("tokens_by_source", {}).items():
                self._tb.add_scalar(f"tokens/{name}", n, step)
        elif rec["kind"] == "eval":
            for name, m in rec["sets"].items():
                self._tb.add_scalar(f"eval/{name}/loss", m["loss"], step)
                if m.get("rel_change") is not None:  # None: the baseline cannot divide
                    self._tb.add_scalar(f"eval/{name}/rel_change_pct", 100 * m["rel_change"], step)

    def close(self) -> None:
        """metrics.jsonl and TensorBoard; the trackers stay open for ``finish``."""
        self._file.close()
        if self._tb is not None:
            self._tb.flush()
            self._tb.close()

    def finish(self, run_dir: Path) -> None:
        """Send report.md, plots/, config.yaml and model/steep.json; end the tracker runs."""
        files = list(result_files(run_dir))
        for tracker in self._trackers:
            tracker.upload(files)
            tracker.close()
