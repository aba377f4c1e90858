"""``fineweb``: FineWeb's extra quality rules (Penedo et al. 2024)."""

from __future__ import annotations

from typing import ClassVar

from steep.datahub.steps.base import Doc, DocStep, Drop, StepResult, register
from steep.datahub.steps.text import _dup_stats, _ends_sentence, words_of


@register
class FineWeb(DocStep):
    """FineWeb's extra quality rules (Penedo et al. 2024), complementing Gopher and C4.

    Drops pages where few lines end like sentences, most lines are short (menus, lists of
    links), lines repeat, or there are many line breaks per word (lists). Blank lines are
    ignored: FineWeb's text had one paragraph per line, ours may separate paragraphs with
    an empty line, which would otherwise count as short unpunctuated lines. Comparisons
    (<=, >=) follow datatrove.
    """

    kind: ClassVar[str] = "fineweb"

    line_punct_thr: float | None = 0.12
    short_line_thr: float | None = 0.67
    short_line_length: int = 30
    char_duplicates_ratio: float | None = 0.01
    new_line_ratio: float | None = 0.3

    def apply(self, doc: Doc) -> StepResult:
        lines = [s.strip() for s in doc.text.split("\n")]
        lines = [s for s in lines if s]
        n = len(lines)
        if n == 0:
            return Drop("fineweb.empty", "no visible lines")

        if self.line_punct_thr is not None:
            ratio = sum(_ends_sentence(s) for s in lines) / n
            if ratio <= self.line_punct_thr:
                return Drop("fineweb.line_punct_ratio", f"{ratio:.3f} <= {self.line_punct_thr:g}")

        if self.short_line_thr is not None:
            ratio = sum(len(s) <= self.short_line_length for s in lines) / n
            if ratio >= self.short_line_thr:
                return Drop("fineweb.short_line_ratio", f"{ratio:.3f} >= {self.short_line_thr:g}")

        if self.char_duplicates_ratio is not None:
            dup_chars = _dup_stats(lines)[1]
            ratio = dup_chars / max(sum(map(len, lines)), 1)
            if ratio >= self.char_duplicates_ratio:
                return Drop(
                    "fineweb.char_dup_ratio", f"{ratio:.3f} >= {self.char_duplicates_ratio:g}"
                )

        if self.new_line_ratio is not None:
            n_words = len(words_of(doc.text))
            ratio = (n - 1) / max(n_words, 1)
            if ratio > self.new_line_ratio:
                return Drop("fineweb.list_ratio", f"{ratio:.3f} > {self.new_line_ratio:g}")
        return doc
