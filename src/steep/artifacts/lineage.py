"""``steep.json``: what a model folder is and where it came from. One reader, one writer.

Four kinds are written: ``cpt`` (a training run's model), ``vocab_extension`` (a base
with new tokens, not trained yet), ``base`` (a GGUF converted to a plain HF folder) and
``merge`` (``steep models merge``: parents, method, alpha).
``steep eval`` adds an ``eval`` block to any of them (or to a plain HF folder, which then
gets a steep.json holding only that). docs/formats.md documents every field.

Versioning: ``format_version`` is written from 1 on; files from before it (steep 0.1
wrote none) read as version 1. Every field is optional on read and unknown fields are
kept, so a newer steep's file survives a read-modify-write by an older one.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from steep.artifacts.atomic import write_text
from steep.artifacts.scores import Headline, Role, loss_headline, source_role
from steep.artifacts.validate import validate
from steep.errors import SteepError
from steep.workspace import LINEAGE_FILE

FORMAT_VERSION = 1
Kind = Literal["cpt", "vocab_extension", "base", "merge"]


class LineageError(SteepError):
    """A steep.json that cannot be read (the message names the file and the field)."""


class _Open(BaseModel):
    """Unknown keys are kept (and written back); a wrong type is an error naming the field."""

    model_config = ConfigDict(extra="allow")


class BaseInfo(_Open):
    """The model training started from, as ``steep.model.io.load_base`` found it."""

    source: str | None = None  # what the user named: a folder, a .gguf, hub:ID, random_init
    path: str | None = None  # the local folder actually loaded
    tokenizer_sha256: str | None = None
    lineage: dict[str, Any] | None = None  # the base's own steep.json, when it has one


class DataEntry(_Open):
    """One training source: its weight, realised share, origin (files or dataset), splits."""

    name: str | None = None
    weight: float | None = None
    share: float | None = None
    dataset: dict[str, Any] | None = None  # {"ref": "name@N", ...} for a Data Hub source
    files: list[dict[str, Any]] = Field(default_factory=list)  # [{"path", "sha256"}, ...]
    splits: dict[str, dict[str, Any]] = Field(default_factory=dict)  # train/heldout counts


class TrainMetrics(_Open):
    """Held-out loss per set at step 0 (``baseline``) and at the last eval (``final``)."""

    step: int | None = None
    baseline: dict[str, float] = Field(default_factory=dict)
    final: dict[str, float] = Field(default_factory=dict)


class Lineage(_Open):
    format_version: int = FORMAT_VERSION
    kind: Kind | None = None
    steep_version: str | None = None
    created: str | None = None
    run_dir: str | None = None
    base: BaseInfo | None = None
    base_names: list[str] = Field(default_factory=list)
    max_lr: float | None = None
    max_lr_source: str | None = None
    base_peak_lr: dict[str, Any] | None = None  # {"value", "source"}: carried to later runs
    data: list[DataEntry] = Field(default_factory=list)
    tokens_by_source: dict[str, int] = Field(default_factory=dict)
    tokens_by_phase: dict[str, dict[str, int]] = Field(default_factory=dict)  # data.phases
    mixture_changes: list[dict[str, Any]] = Field(default_factory=list)  # resumes that changed it
    forgetting_budget: dict[str, Any] | None = None  # train.forgetting_budget: actions, best
    world_size: int | None = None
    method: dict[str, Any] | None = None  # LoRA / QLoRA: rank, targets, trained params, adapter
    config: dict[str, Any] | None = None  # the resolved run config
    metrics: TrainMetrics | None = None
    eval: dict[str, Any] | None = None  # `steep eval` result (eval.json without samples)
    vocab_extension: dict[str, Any] | None = None  # kind vocab_extension: what was added
    corpus: dict[str, Any] | None = None  # kind vocab_extension: the text the merges came from
    report: dict[str, Any] | None = None  # kind vocab_extension: fertility and initial bpb
    converted_from: str | None = None  # kind base: the GGUF file
    gguf_sha256: str | None = None
    merge: dict[str, Any] | None = None  # kind merge: method, alpha or weight, parents, rows
    export: dict[str, Any] | None = None  # an exported copy (GGUF): what, from where, by what

    # --- what readers ask of it --------------------------------------------------------

    @property
    def base_source(self) -> str | None:
        """What the model started from, as the user named it."""
        return (self.base.source if self.base else None) or self.converted_from

    @property
    def base_path(self) -> str | None:
        return self.base.path if self.base else None

    def roles(self) -> dict[str, Role]:
        """The role of each held-out set the run evaluated, from its config: a source's
        ``role`` (or its name), then ``data.eval_roles`` for extra eval sets."""
        data = (self.config or {}).get("data")
        if not isinstance(data, dict):
            return {}
        roles: dict[str, Role] = {}
        for src in data.get("sources") or []:
            if isinstance(src, dict) and isinstance(src.get("name"), str):
                roles[src["name"]] = source_role(src["name"], src.get("role"))
        for name, role in (data.get("eval_roles") or {}).items():
            if role in ("domain", "general"):
                roles[name] = role
        return roles

    def training_headline(self) -> Headline | None:
        """Domain gain / general regression of the run's own held-out loss, step 0 -> end;
        None when the run logged no eval of either role."""
        if self.metrics is None:
            return None
        head = loss_headline(self.metrics.baseline, self.metrics.final, self.roles())
        return None if head.empty else head

    def dump(self) -> dict[str, Any]:
        """The JSON object: the fields that were set (read or given), format_version first,
        so an old file read and written back is unchanged apart from its version."""
        data = self.model_dump(mode="json", exclude_unset=True)
        data.pop("format_version", None)
        return {"format_version": self.format_version, **data}


def lineage_path(model_dir: Path) -> Path:
    return Path(model_dir) / LINEAGE_FILE


def parse_lineage(data: Any, where: str = LINEAGE_FILE) -> Lineage:
    return validate(Lineage, data, where, LineageError)


def read_lineage(model_dir: Path) -> Lineage | None:
    """The folder's steep.json; None when it has none. LineageError when it is unreadable."""
    path = lineage_path(model_dir)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError) as exc:
        raise LineageError(f"{path}: unreadable: {exc}") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise LineageError(f"{path}: not valid JSON: {exc}") from None
    return parse_lineage(data, str(path))


def try_read_lineage(model_dir: Path) -> tuple[Lineage | None, str | None]:
    """(lineage, None), (None, None) when there is no file, or (None, why) when unreadable."""
    try:
        return read_lineage(model_dir), None
    except LineageError as exc:
        return None, str(exc)


def lineage_text(lineage: Lineage) -> str:
    return json.dumps(lineage.dump(), indent=2, default=str) + "\n"


def write_lineage(model_dir: Path, lineage: Lineage) -> Path:
    """Write steep.json atomically (a reader sees the old file or the new one)."""
    path = lineage_path(model_dir)
    write_text(path, lineage_text(lineage))
    return path


def record_eval(model_dir: Path, result: dict[str, Any]) -> bool:
    """Put a ``steep eval`` result (minus samples) under ``eval``; False when the folder's
    steep.json is unreadable (it is left alone rather than overwritten)."""
    try:
        lineage = read_lineage(model_dir) or Lineage()
    except LineageError:
        return False
    lineage.eval = {k: v for k, v in result.items() if k != "samples"}
    write_lineage(model_dir, lineage)
    return True
