"""Which documents of a Data Hub version a tokenized source reads (part of its cache key)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class DatasetSelection:
    """A resolved dataset version and a language filter over its documents."""

    ref: str  # NAME@VERSION, resolved: versions never change, so the ref identifies the text
    created: str
    languages: tuple[str, ...] | None = None
    exclude_languages: tuple[str, ...] | None = None
    text_bytes: int = 0  # for the progress bar (shard files are compressed)

    @classmethod
    def of(
        cls,
        ref: str,
        manifest: dict[str, Any],
        languages: Sequence[str] | None = None,
        exclude_languages: Sequence[str] | None = None,
    ) -> DatasetSelection:
        """The selection for a dataset version (its ref and manifest) and language filter."""
        return cls(
            ref,
            manifest["created"],
            tuple(languages) if languages else None,
            tuple(exclude_languages) if exclude_languages else None,
            manifest["bytes"],
        )

    def keep(self, lang: str) -> bool:
        if self.languages is not None and lang not in self.languages:
            return False
        return not (self.exclude_languages and lang in self.exclude_languages)
