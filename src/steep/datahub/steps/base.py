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

import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict

SHARD_SUFFIX = ".parquet"


@dataclass
class Doc:
    id: str  # stable across versions: "<input file key>:<line>"
    text: str
    meta: dict[str, Any] = field(default_factory=dict)  # source, line, lang, lang_score, ...


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


def write_docs(path: Path, docs: Iterable[Doc], rows_per_group: int = 2048) -> int:
    """Write docs to a parquet shard via a temporary file (whole or absent). Returns count."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    schema = pa.schema([("id", pa.string()), ("text", pa.string()), ("meta", pa.string())])
    tmp = path.with_name(f".{path.name}.tmp")
    n = 0
    with pq.ParquetWriter(tmp, schema, compression="zstd") as writer:
        batch: list[Doc] = []

        def flush() -> None:
            writer.write_table(
                pa.table(
                    {
                        "id": [d.id for d in batch],
                        "text": [d.text for d in batch],
                        "meta": [json.dumps(d.meta, ensure_ascii=False) for d in batch],
                    },
                    schema=schema,
                )
            )
            batch.clear()

        for doc in docs:
            batch.append(doc)
            n += 1
            if len(batch) >= rows_per_group:
                flush()
        if batch:
            flush()
    tmp.replace(path)
    return n


def read_docs(path: Path, batch_size: int = 1024) -> Iterator[Doc]:
    """Stream the documents of one shard, a batch at a time (memory bounded by the batch)."""
    import pyarrow.parquet as pq

    pf = pq.ParquetFile(path)
    for batch in pf.iter_batches(batch_size=batch_size, columns=["id", "text", "meta"]):
        ids, texts, metas = (batch.column(i).to_pylist() for i in range(3))
        for i, t, m in zip(ids, texts, metas, strict=True):
            yield Doc(i, t, json.loads(m) if m else {})
