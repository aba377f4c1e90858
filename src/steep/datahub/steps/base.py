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
from steep.data.executor import Executor
from steep.datahub.steps.drops import read_all, write_by_id

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
    """A step that sees every document before deciding. Define ``write_drops`` (bounded
    memory, as the dedup steps do) or, for a small corpus, just ``select_drops``."""

    def write_drops(
        self, shards: list[Path], workdir: Path, out: Path, executor: Executor | None = None
    ) -> None:
        """Read every shard (in order: earlier documents win ties) and write the documents
        to drop into ``out``, one file per shard (``steep.datahub.steps.drops``).

        ``workdir`` is a private scratch folder for disk-backed state (keep memory bounded
        by the shard size, not the corpus size), shared by the ``executor``'s workers, which
        do the per-shard part (hashing every document) when one is given.
        """
        if type(self).select_drops is CorpusStep.select_drops:
            raise NotImplementedError(f"{self.kind}: define write_drops or select_drops")
        drops = self.select_drops(shards, workdir)  # a step of the dict kind
        write_by_id({i: (d.reason, d.detail) for i, d in drops.items()}, shards, out)

    def select_drops(
        self, shards: list[Path], workdir: Path, executor: Executor | None = None
    ) -> dict[str, Drop]:
        """id -> Drop for the whole corpus, in one dict: for small corpora and tests."""
        if type(self).write_drops is CorpusStep.write_drops:
            raise NotImplementedError(f"{self.kind}: define write_drops or select_drops")
        out = Path(workdir) / "drops"
        self.write_drops(shards, workdir, out, executor)
        return {i: Drop(r, d) for i, (r, d) in read_all(out, len(shards)).items()}


STEP_TYPES: dict[str, type[Step]] = {}


def register(cls: type[Step]) -> type[Step]:
    """Class decorator: make a step usable in recipes under ``cls.kind``."""
    if cls.kind in STEP_TYPES and STEP_TYPES[cls.kind] is not cls:
        raise ValueError(f"two steps named {cls.kind!r}")
    STEP_TYPES[cls.kind] = cls
    return cls


# ---------------------------------------------------------------- document shards
