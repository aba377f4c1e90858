"""Decontamination: drop training documents that contain text from an evaluation set.

A document is contaminated when it shares at least ``min_matches`` word n-grams
(``n = 13`` by default, the length GPT-3's decontamination used) with any named eval set.
Eval sets are small, so their n-gram hashes fit in memory; each worker builds the set once.
"""

from __future__ import annotations

import hashlib
import re
from functools import lru_cache
from pathlib import Path
from typing import ClassVar

from pydantic import Field

from steep.data.documents import SkipLog, read_documents
from steep.datahub.steps.base import Doc, DocStep, Drop, StepResult, register
from steep.errors import DataError

_WORD = re.compile(r"\w+", re.UNICODE)


def _words(text: str) -> list[str]:
    return _WORD.findall(text.lower())


def _ngram_hashes(words: list[str], n: int) -> set[bytes]:
    return {
        hashlib.blake2b(" ".join(words[i : i + n]).encode(), digest_size=8).digest()
        for i in range(len(words) - n + 1)
    }


@lru_cache(maxsize=8)
def eval_ngrams(paths: tuple[str, ...], n: int, text_field: str) -> dict[bytes, str]:
    """n-gram hash -> the eval file it came from, over every document of ``paths``."""
    table: dict[bytes, str] = {}
    for doc in read_documents(list(paths), SkipLog(), text_field):
        for h in _ngram_hashes(_words(doc.text), n):
            table.setdefault(h, Path(doc.path).name)
    if not table:
        raise DataError(f"decontaminate: no {n}-word n-grams in eval sets {list(paths)}")
    return table


@register
class Decontaminate(DocStep):
    """Drop documents sharing word n-grams with held-out eval text (files or folders)."""

    kind: ClassVar[str] = "decontaminate"
    eval_sets: list[str] = Field(min_length=1, description="files or folders of eval text")
    n: int = Field(13, ge=3, description="words per n-gram")
    min_matches: int = Field(
        1, ge=1, description="shared n-grams that make a document contaminated"
    )
    text_field: str = "text"

    def apply(self, doc: Doc) -> StepResult:
        table = eval_ngrams(tuple(self.eval_sets), self.n, self.text_field)
        hits = [table[h] for h in _ngram_hashes(_words(doc.text), self.n) if h in table]
        if len(hits) >= self.min_matches:
            sets = ", ".join(sorted(set(hits)))
            return Drop("decontaminate.eval_overlap", f"{len(hits)} {self.n}-grams from {sets}")
        return doc
