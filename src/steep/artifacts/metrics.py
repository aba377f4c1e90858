"""``metrics.jsonl``: a run's log, one JSON object per line. One writer, one reader.

Three kinds of record (docs/formats.md):

- train: ``{"kind": "train", "step", "tokens", "loss", "lr", "grad_norm", "tokens_per_s",
  "tokens_per_s_per_device", "mfu", "peak_mem_gib", "tokens_by_source": {...}, "time"}``
- eval: ``{"kind": "eval", "step", "tokens", "sets": {name: {"loss", "ppl", "rel_change"}},
  "time"}``; step 0 is the base model, and ``rel_change`` is against it
  (``steep.artifacts.scores.rel_change``: null when the baseline cannot divide).
- event: ``{"kind": "event", "step", "event", ...}``: something that changed the run at that
  step: ``phase`` (a ``data.phases`` phase began), ``mixture_change`` (a resume changed the
  mix), ``forgetting_budget`` (the budget acted, with its reason and numbers).

The training loop appends records (``steep.train.track``); the run report, the hub, the
studio and sweeps read them here. A reader never fails on a live or crashed run: a cut-off
last line waits, a line that does not parse or has the wrong shape is skipped and counted.
"""

from __future__ import annotations

import json
import logging
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from steep.artifacts.scores import rel_change
from steep.workspace import METRICS_FILE

log = logging.getLogger(__name__)

__all__ = [
    "METRICS_FILE",
    "EvalRecord",
    "EventRecord",
    "TrainRecord",
    "eval_record",
    "read_events",
    "read_metrics",
    "train_record",
]


class _Record(BaseModel):
    model_config = ConfigDict(extra="allow")

    step: int = Field(strict=True)
    tokens: int | None = None
    time: float | None = None


class TrainRecord(_Record):
    kind: Literal["train"] = "train"
    loss: float | None = None
    lr: float | None = None
    grad_norm: float | None = None
    tokens_per_s: float | None = None
    tokens_per_s_per_device: float | None = None
    mfu: float | None = None
    peak_mem_gib: float | None = None
    tokens_by_source: dict[str, int] = Field(default_factory=dict)


class EvalSet(BaseModel):
    model_config = ConfigDict(extra="allow")

    loss: float
    ppl: float | None = None
    rel_change: float | None = None


class EvalRecord(_Record):
    kind: Literal["eval"] = "eval"
    sets: dict[str, EvalSet]


class EventRecord(_Record):
    kind: Literal["event"] = "event"
    event: str


_MODELS: dict[str, type[_Record]] = {
    "train": TrainRecord,
    "eval": EvalRecord,
    "event": EventRecord,
}


def eval_record(
    step: int, tokens: int, losses: dict[str, float], baseline: dict[str, float]
) -> dict[str, Any]:
    """The eval record for ``losses`` at ``step``: loss, perplexity and change vs step 0."""
    sets = {
        name: EvalSet(
            loss=loss,
            ppl=math.exp(min(loss, 50.0)),
            rel_change=rel_change(loss, baseline.get(name, loss)),
        )
        for name, loss in losses.items()
    }
    return EvalRecord(step=step, tokens=tokens, sets=sets).model_dump(exclude={"time"})


def train_record(
    step: int,
    tokens: int,
    loss: float,
    lr: float,
    grad_norm: float,
    tokens_per_s: float,
    world: int,
    mfu: float | None,
    peak_mem_gib: float | None,
    tokens_by_source: dict[str, int],
    **fields: Any,
) -> dict[str, Any]:
    """The train record for the optimizer step that ended at ``step``; ``world``: ranks
    (throughput per device), ``fields``: what the mix adds (the phase, tokens per phase).
    A plain dict in ``TrainRecord``'s shape, built without validation: one a step."""
    return {
        "kind": "train",
        "step": step,
        "tokens": tokens,
        "loss": loss,
        "lr": lr,
        "grad_norm": grad_norm,
        "tokens_per_s": tokens_per_s,
        "tokens_per_s_per_device": tokens_per_s / world,
        "mfu": mfu,
        "peak_mem_gib": peak_mem_gib,
        "tokens_by_source": tokens_by_source,
        **fields,
    }


def parse_record(rec: Any) -> dict[str, Any] | None:
    """A record checked against its kind's shape, as a plain dict; None when it is not one
    (unknown kind, missing step, eval without sets, wrong types)."""
    if not isinstance(rec, dict):
        return None
    model = _MODELS.get(rec.get("kind"))  # type: ignore[arg-type]
    if model is None:
        return None
    try:
        model.model_validate(rec)
    except ValidationError:
        return None
    return rec


@dataclass
class Chunk:
    """New complete records of a file read from a byte offset (studio polls, hub sync)."""

    records: list[dict[str, Any]] = field(default_factory=list)
    offset: int = 0
    inode: int | None = None
    reset: bool = False  # the file was rewritten (a resume): drop what you had
    bad_lines: int = 0


def read_from(path: Path, offset: int, inode: int | None, limit: int | None = None) -> Chunk:
    """Complete lines after byte ``offset``. A new inode or a shorter file (a resume
    rewrites it) starts again from the top; a half-written last line waits."""
    try:
        st = Path(path).stat()
    except OSError:
        return Chunk(offset=0, inode=None, reset=offset > 0)
    reset = (inode is not None and st.st_ino != inode) or st.st_size < offset
    if reset:
        offset = 0
    with open(path, "rb") as f:
        f.seek(offset)
        data = f.read() if limit is None else f.read(limit)
    end = data.rfind(b"\n") + 1
    out = Chunk(offset=offset + end, inode=st.st_ino, reset=reset)
    for line in data[:end].splitlines():
        try:
            rec = json.loads(line)
        except (json.JSONDecodeError, UnicodeDecodeError):
            out.bad_lines += 1
            continue
        if isinstance(rec, dict):
            out.records.append(rec)
    return out


def read_metrics(path: Path) -> tuple[list[dict], list[dict]]:
    """(train_records, eval_records), each sorted by step, one record per step.

    A resumed run may have logged a step twice; the last occurrence wins because it is the
    one the surviving run produced. Lines that do not parse (the last line of a crashed
    run is often cut short), unknown kinds and records of the wrong shape are skipped, so a
    reader never fails on a live or crashed run.
    """
    path = Path(path)
    by_kind: dict[str, dict[int, dict]] = {kind: {} for kind in _MODELS}
    lines = path.read_text(encoding="utf-8").splitlines()
    for lineno, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            raw = json.loads(line)
        except json.JSONDecodeError:
            if lineno < len(lines):  # only the final line is expected to be partial
                log.warning("%s:%d: skipping a line that is not valid JSON", path, lineno)
            continue
        if not isinstance(raw, dict) or raw.get("kind") not in by_kind:
            continue
        rec = parse_record(raw)
        if rec is None:
            log.warning("%s:%d: skipping a malformed %s record", path, lineno, raw["kind"])
            continue
        by_kind[rec["kind"]][rec["step"]] = rec  # later lines overwrite earlier ones
    train, evals = ([recs[s] for s in sorted(recs)] for recs in (by_kind["train"], by_kind["eval"]))
    return train, evals


def read_events(path: Path) -> list[dict]:
    """The event records, in step order; several may share a step, and a resume that
    logged a step's events again keeps the last copy of each."""
    seen: dict[tuple[int, str, str], dict] = {}
    path = Path(path)
    if not path.exists():
        return []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            raw = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(raw, dict) and raw.get("kind") == "event":
            rec = parse_record(raw)
            if rec is not None:
                what = str(rec.get("action") or rec.get("phase") or "")
                seen[(rec["step"], rec["event"], what)] = rec
    return [seen[k] for k in sorted(seen, key=lambda k: k[0])]
