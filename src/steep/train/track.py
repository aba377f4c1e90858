"""Metrics out of a run: ``metrics.jsonl`` (the contract), then its copies.

metrics.jsonl (``steep.artifacts.metrics`` defines its records) has one JSON object per
line, flushed as it is written so a studio or ``tail -f`` sees it live.

On resume, records after the checkpoint's step are dropped (file and TensorBoard) so the
log reads as one uninterrupted run.

Every train and eval record also goes, as the same scalars (``trackers.flat_metrics``),
to TensorBoard in the run folder and, with ``config.track`` set, to W&B and/or MLflow
(``steep.train.trackers``): copies, never the contract, and each can fail without stopping
the run. Only rank 0 reports: the loop builds a Tracker on rank 0 alone.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

from steep.config.schema import RunConfig
from steep.train.runfolder.write_errors import folder_error
from steep.train.trackers import TensorBoardBackend, flat_metrics, open_trackers, result_files
from steep.workspace import METRICS_FILE

# events that say the step before the one they are written with (train.mixcontrol): a
# phase that began after step N; a mix changed on resume from checkpoint N
_SAID_A_STEP_EARLY = ("phase", "mixture_change")


def _written_at(rec: dict[str, Any]) -> int:
    """The step after which a record was written. A phase or mixture change event is
    written with the first train record after its step: a resume from that step drops it,
    and its run writes it again (once) if it still holds."""
    step = rec.get("step", 0)
    early = rec.get("kind") == "event" and rec.get("event") in _SAID_A_STEP_EARLY
    return step + 1 if early else step


def _truncate_after(path: Path, step: int) -> set[tuple[str, int]]:
    """Keep only complete records written up to ``step``; rewrite atomically.

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
        if _written_at(rec) <= step:
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
        self._trackers: list[Any] = []  # every backend: TensorBoard, W&B, MLflow
        if config is not None:  # first: a missing library is refused before any file
            dump = config.model_dump(mode="json")
            resume = resume_step is not None
            self._trackers += open_trackers(config.track, run_dir, dump, resume)
        if tensorboard:
            self._trackers.insert(0, TensorBoardBackend(run_dir, resume_step))
        self._file = open(self.path, "a", encoding="utf-8")

    def log(self, record: dict[str, Any]) -> None:
        record = {**record, "time": time.time()}
        try:
            self._file.write(json.dumps(record) + "\n")
            self._file.flush()
        except OSError as exc:  # a line cut short is dropped by the resume's truncation
            raise folder_error(
                "append to", self.path, exc, self.path.parent, "the checkpoints are intact"
            ) from exc
        if self._trackers and record["kind"] in ("train", "eval"):  # events: metrics.jsonl
            kind, step = record["kind"], record["step"]
            metrics, resent = flat_metrics(record), (kind, step) in self._sent
            for tracker in self._trackers:
                tracker.log(metrics, step, kind, resent)

    def close(self) -> None:
        """metrics.jsonl, and TensorBoard's events flushed; the trackers stay open for
        ``finish``."""
        self._file.close()
        for tracker in self._trackers:
            tracker.flush()

    def finish(self, run_dir: Path) -> None:
        """Send report.md, plots/, config.yaml and model/steep.json; end the tracker runs
        (TensorBoard's too)."""
        files = list(result_files(run_dir))
        for tracker in self._trackers:
            tracker.upload(files)
            tracker.close()
