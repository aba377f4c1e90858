"""Which documents of a Data Hub version a tokenized source reads (part of its cache key).

The language rule, stated once: a filter keeps only documents whose tag it accepts for
certain. ``languages`` keeps the tags it lists (list ``und`` to keep undetermined ones);
``exclude_languages`` keeps every identified language it does not list, and never ``und``,
since an undetermined document may well be in the language being excluded.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

UNKNOWN = "und"  # the tag of a document language ID could not call (steps/langid)
EXCLUDE_RULE = 2  # 2: exclude_languages drops "und" too (1 kept it); in the cache key


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

    @property
    def filtered(self) -> bool:
        return self.languages is not None or self.exclude_languages is not None

    def cache_fields(self) -> dict[str, Any]:
        """What names the selected text. The rule version enters only where it changed
        what a filter keeps, so caches (and resumes) of every other filter stay valid."""
        fields = asdict(self)
        if self.exclude_languages:
            fields["exclude_rule"] = EXCLUDE_RULE
        return fields

    def keep(self, lang: str) -> bool:
        if self.languages is not None:
            return lang in self.languages
        if self.exclude_languages is not None:
            return lang != UNKNOWN and lang not in self.exclude_languages
        return True


def slice_label(ref: str, dataset: dict[str, Any] | None) -> str:
    """``general@2 [en]`` or ``general@2 [not en, und]``: a ref with its language filter,
    so two slices of one version read apart (models show, the model card)."""
    ds = dataset or {}
    if ds.get("languages"):
        return f"{ref} [{', '.join(ds['languages'])}]"
    if ds.get("exclude_languages"):
        return f"{ref} [not {', '.join(ds['exclude_languages'])}, {UNKNOWN}]"
    return ref


def _rule(dataset: dict[str, Any]) -> str:
    if dataset.get("languages"):
        return f"languages [{', '.join(dataset['languages'])}]"
    return f"exclude_languages [{', '.join(dataset.get('exclude_languages') or ())}] (and und)"


def slice_report(info: dict[str, Any]) -> str | None:
    """One line on what a tokenized source's language filter kept and dropped (None when
    it has no filter): the counts by tag, and how much was undetermined."""
    langs = info.get("languages")
    if langs is None:
        return None
    kept, dropped = langs["kept"], langs["dropped"]

    def listed(counts: dict[str, int]) -> str:
        return ", ".join(f"{k} {v:,}" for k, v in counts.items()) or "none"

    total = sum(kept.values()) + sum(dropped.values())
    line = (
        f"{_rule(info.get('dataset') or {})} kept {sum(kept.values()):,} of {total:,} "
        f"documents ({listed(kept)}); dropped {listed(dropped)}"
    )
    und = kept.get(UNKNOWN, 0) + dropped.get(UNKNOWN, 0)
    if und:
        line += f"; {und:,} ({und / max(total, 1):.0%}) were undetermined (und)"
    return line
