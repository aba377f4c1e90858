"""The contract between the Data Hub's pipeline and its processing steps.

A dataset version is a folder of document shards (parquet: ``id``, ``text``, ``meta`` as a
JSON string). A recipe is a list of steps. Two kinds:

- ``DocStep``: looks at one document at a time (normalise, quality filters, language ID,
  PII). It returns the document (perhaps with new meta), an ``Edit`` (text changed, and
  why) or a ``Drop`` (left out, and why). The pipeline fuses consecutive DocSteps into one
  pass per shard and runs shards in parallel.
- ``CorpusStep``: needs to see every document before deciding (exact and near dedup,
  decontamination against eval sets). It reads the shards and returns the ids to drop.

Steps are pydantic models, so a recipe's parameters are validated like a run config:
unknown names and bad values fail before any work, naming the field.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

from pydantic import BaseModel, ConfigDict

from steep.data.docshards import SHARD_SUFFIX, Doc, read_docs, write_docs

__all__ = [
    "SHARD_SUFFIX",
    "CorpusStep",
    "Doc",
    "DocStep",
    "Drop",
    "Edit",
    "Step",
    "StepResult",
    "read_docs",
    "register",
    "write_docs",
]


@dataclass(frozen=True)
class Drop:
    """A document left out. ``reason`` is a short category to count by, ``detail`` the numbers."""

    reason: str  # e.g. "gopher_quality.mean_word_length"
    detail: str = ""  # e.g. "2.10 < 3"


@dataclass
class Edit:
    """A document kept with changed text; the pipeline records the change and its reason."""

    doc: Doc
    reason: str  # e.g. "pii.email"
    detail: str = ""


StepResult = Doc | Edit | Drop


class Step(BaseModel):
    """Base of every step: strict parameters; ``kind`` is the name used in recipes."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    kind: ClassVar[str]


class DocStep(Step):
    def apply(self, doc: Doc) -> StepResult:  # pragma: no cover - abstract
        raise NotImplementedError

    def apply_batch(self, docs: list[Doc]) -> list[StepResult]:
        """One result per doc, in order; override when a batch is cheaper (a model call)."""
        return [self.apply(d) for d in docs]


class CorpusStep(Step):
    def select_drops(self, shards: list[Path], workdir: Path) -> dict[str, Drop]:
        """Read every shard (in order: earlier documents win ties) and return id -> Drop.

        ``workdir`` is a private scratch folder for disk-backed state (keep memory bounded
        by the shard size, not the corpus size).
        """
        raise NotImplementedError  # pragma: no cover - abstract


STEP_TYPES: dict[str, type[Step]] = {}


def register(cls: type[Step]) -> type[Step]:
    """Class decorator: make a step usable in recipes under ``cls.kind``."""
    if cls.kind in STEP_TYPES and STEP_TYPES[cls.kind] is not cls:
        raise ValueError(f"two steps named {cls.kind!r}")
    STEP_TYPES[cls.kind] = cls
    return cls


# ---------------------------------------------------------------- document shards
