"""Gopher's rules (Rae et al. 2021, table A1): ``gopher_quality``, ``gopher_repetition``."""

from __future__ import annotations

import re
import unicodedata
from typing import ClassVar

import numpy as np
from pydantic import Field, PrivateAttr

from steep.datahub.steps.base import Doc, DocStep, Drop, StepResult, register
from steep.datahub.steps.text import _dup_stats, count_non_alpha, words_of

# ---------------------------------------------------------------- Gopher quality

# Gopher's English list, and lists of the same kind (very frequent function words) for
# other languages. A real paragraph has several; boilerplate, lists and keyword spam don't.
DEFAULT_STOP_WORDS: dict[str, list[str]] = {
    "en": ["the", "be", "to", "of", "and", "that", "have", "with"],
    "de": ["der", "die", "das", "und", "ist", "zu", "den", "von", "mit", "nicht", "sich", "ein", "eine", "dem", "des", "für", "im", "auf"],
    "fr": ["le", "la", "les", "de", "des", "et", "un", "une", "est", "que", "du", "pour", "dans", "en", "qui", "pas"],
    "es": ["el", "la", "los", "las", "de", "que", "y", "en", "un", "una", "es", "por", "con", "para", "del", "se"],
    "pt": ["o", "a", "os", "as", "de", "que", "e", "do", "da", "em", "um", "uma", "para", "com", "não"],
    "it": ["il", "la", "di", "che", "e", "un", "una", "per", "non", "del", "della", "sono", "con", "in"],
    "nl": ["de", "het", "een", "en", "van", "is", "dat", "op", "te", "in", "niet", "met", "voor", "zijn"],
    "vi": ["và", "của", "là", "có", "các", "được", "những", "một", "trong", "cho", "không", "người", "với", "này", "đã"],
}  # fmt: skip

# ISO 639-3 / 639-2B codes (as language-ID models such as GlotLID/NLLB emit, "vie_Latn")
# for the languages above, so either code style finds the list.
_ISO3_TO_ISO1 = {
    "eng": "en",
    "deu": "de",
    "ger": "de",
    "fra": "fr",
    "fre": "fr",
    "spa": "es",
    "por": "pt",
    "ita": "it",
    "nld": "nl",
    "dut": "nl",
    "vie": "vi",
}

_BULLETS = ("•", "-", "*", "·", "‣", "◦", "▪", "■", "○", "–", "—")


@register
class GopherQuality(DocStep):
    """Gopher's quality heuristics: keep documents that read like prose.

    Rejects too short/long documents, gibberish (odd mean word length), hash-tag or
    ellipsis spam, bullet-only pages, pages of truncated teasers, number/symbol soup, and
    text with no function words at all. Each threshold can be set to None to skip its rule.
    The stop-word rule uses the list for ``meta["lang"]`` (``default_lang`` when absent)
    and is skipped for languages without a list, so no language is judged by English.
    """

    kind: ClassVar[str] = "gopher_quality"

    min_doc_words: int | None = 50
    max_doc_words: int | None = 100_000
    min_avg_word_length: float | None = 3
    max_avg_word_length: float | None = 10
    max_symbol_word_ratio: float | None = 0.1
    max_bullet_lines_ratio: float | None = 0.9
    max_ellipsis_lines_ratio: float | None = 0.3
    max_non_alpha_words_ratio: float | None = 0.8  # at least this share of words has a letter
    min_stop_words: int | None = 2
    stop_words: dict[str, list[str]] = Field(default_factory=lambda: dict(DEFAULT_STOP_WORDS))
    default_lang: str = "en"

    _stop_sets: dict[str, frozenset[str]] = PrivateAttr(default_factory=dict)

    def model_post_init(self, context: object, /) -> None:
        self._stop_sets = {
            lang: frozenset(unicodedata.normalize("NFC", w).lower() for w in words)
            for lang, words in self.stop_words.items()
        }

    def _stop_set(self, lang: str) -> frozenset[str] | None:
        """The stop-word set for a language code: "en", "en-US", "eng_Latn" all find "en"."""
        if lang in self._stop_sets:
            return self._stop_sets[lang]
        base = lang.lower().replace("-", "_").split("_")[0]
        base = _ISO3_TO_ISO1.get(base, base)
        return self._stop_sets.get(base)

    def apply(self, doc: Doc) -> StepResult:
        text = doc.text
        words = words_of(text)
        n = len(words)
        if n == 0 or (self.min_doc_words is not None and n < self.min_doc_words):
            return Drop("gopher_quality.too_few_words", f"{n} < {self.min_doc_words or 1}")
        if self.max_doc_words is not None and n > self.max_doc_words:
            return Drop("gopher_quality.too_many_words", f"{n} > {self.max_doc_words}")

        mean_len = sum(map(len, words)) / n
        if self.min_avg_word_length is not None and mean_len < self.min_avg_word_length:
            return Drop(
                "gopher_quality.mean_word_length", f"{mean_len:.2f} < {self.min_avg_word_length:g}"
            )
        if self.max_avg_word_length is not None and mean_len > self.max_avg_word_length:
            return Drop(
                "gopher_quality.mean_word_length", f"{mean_len:.2f} > {self.max_avg_word_length:g}"
            )

        if self.max_symbol_word_ratio is not None:
            ratio = text.count("#") / n
            if ratio > self.max_symbol_word_ratio:
                return Drop(
                    "gopher_quality.hash_ratio", f"{ratio:.3f} > {self.max_symbol_word_ratio:g}"
                )
            ratio = (text.count("...") + text.count("…")) / n
            if ratio > self.max_symbol_word_ratio:
                return Drop(
                    "gopher_quality.ellipsis_ratio",
                    f"{ratio:.3f} > {self.max_symbol_word_ratio:g}",
                )

        if self.max_bullet_lines_ratio is not None or self.max_ellipsis_lines_ratio is not None:
            lines = [s.strip() for s in text.splitlines()]
            lines = [s for s in lines if s]  # blank lines are layout, not content
            n_lines = max(len(lines), 1)
            if self.max_bullet_lines_ratio is not None:
                ratio = sum(s.startswith(_BULLETS) for s in lines) / n_lines
                if ratio > self.max_bullet_lines_ratio:
                    return Drop(
                        "gopher_quality.bullet_lines",
                        f"{ratio:.3f} > {self.max_bullet_lines_ratio:g}",
                    )
            if self.max_ellipsis_lines_ratio is not None:
                ratio = sum(s.endswith(("...", "…")) for s in lines) / n_lines
                if ratio > self.max_ellipsis_lines_ratio:
                    return Drop(
                        "gopher_quality.ellipsis_lines",
                        f"{ratio:.3f} > {self.max_ellipsis_lines_ratio:g}",
                    )

        if self.max_non_alpha_words_ratio is not None:
            alpha = 1 - count_non_alpha(words) / n
            if alpha < self.max_non_alpha_words_ratio:
                return Drop(
                    "gopher_quality.alpha_words",
                    f"{alpha:.3f} < {self.max_non_alpha_words_ratio:g}",
                )

        if self.min_stop_words:
            lang = str(doc.meta.get("lang") or self.default_lang)
            stop = self._stop_set(lang)
            if stop is not None:
                found = _stop_words(words, stop, self.min_stop_words)
                if found < self.min_stop_words:
                    return Drop(
                        "gopher_quality.stop_words", f"{found} < {self.min_stop_words} ({lang})"
                    )
        return doc


def _stop_words(words: list[str], stop: frozenset[str], enough: int) -> int:
    """Occurrences of stop words among ``words``, counted until ``enough`` (prose has them
    in its first few words). NFC applies only beyond ASCII (ASCII is its own NFC)."""
    found = 0
    for w in words:
        w = w.lower()
        if w in stop or (not w.isascii() and unicodedata.normalize("NFC", w) in stop):
            found += 1
            if found >= enough:
                break
    return found


# ---------------------------------------------------------------- Gopher repetition

_LETTER = re.compile(r"[^\W\d_]")


class _NGrams:
    """A document's words as integer ids, so its n-grams are compared as integers at numpy
    speed instead of as tuples of strings in Python (the web recipe's costliest line).

    Exact, no hashing, and only where repetition can be: an (n+1)-gram can occur twice
    only where its first n words do, so level n+1 is built from the starts whose n-gram
    occurs at least twice, each paired with the word that follows it (``np.unique``
    numbers the pairs). Every start of a repeated n-gram is kept at every level, so counts
    and first occurrences of repeated n-grams are exact; the rest occur once. In real text
    the kept starts shrink fast with n, and so do the sorts.
    """

    def __init__(self, words: list[str]):
        index = dict.fromkeys(words, 0)  # numbered in order of first occurrence
        for i, w in enumerate(index):
            index[w] = i
        self.ids = np.fromiter(map(index.__getitem__, words), dtype=np.int64, count=len(words))
        self.lens = np.fromiter(map(len, words), dtype=np.int64, count=len(words))
        self.vocab = max(len(index), 1)
        starts = np.arange(len(self.ids), dtype=np.int64)
        counts = np.bincount(self.ids, minlength=self.vocab)
        self._levels: dict[int, tuple[np.ndarray, ...]] = {1: (starts, self.ids, counts)}

    def _level(self, n: int) -> tuple[np.ndarray, ...]:
        """(starts, their labels, count of each label, first start of each label) of the
        n-grams that may repeat (every start of an n-gram occurring more than once)."""
        if n not in self._levels:
            starts, labels, counts = self._level(n - 1)[:3]
            keep = (counts[labels] >= 2) & (starts < len(self.ids) - (n - 1))
            starts = starts[keep]
            key = labels[keep] * self.vocab + self.ids[starts + (n - 1)]
            _, first, inverse = np.unique(key, return_index=True, return_inverse=True)
            inverse = inverse.reshape(-1)
            counts = np.bincount(inverse, minlength=len(first))
            self._levels[n] = (starts, inverse, counts, starts[first])
        return self._levels[n]

    def top(self, n: int) -> tuple[int, int]:
        """(count of the most frequent n-gram, its first start; the earliest among ties)."""
        _, _, counts, firsts = self._level(n)
        if not len(counts):
            return 0, 0
        top = int(counts.max())
        return top, int(firsts[counts == top].min())

    def repeats(self, n: int) -> np.ndarray:
        """Starts of the n-gram occurrences that are not the first of their n-gram."""
        starts, labels, _, firsts = self._level(n)
        return starts[firsts[labels] != starts]


def _top_ngram_chars(grams: _NGrams, n: int) -> int:
    """Characters covered by the most frequent n-gram (its length, spaces included, x count).

    An n-gram seen once is not repetition, so a document whose top n-gram occurs once
    scores 0 (datatrove would score short documents by their single occurrence). Among
    n-grams as frequent, the first to occur counts (as ``Counter.most_common`` picks).
    """
    top, i = grams.top(n)
    if top < 2:
        return 0
    return (int(grams.lens[i : i + n].sum()) + n - 1) * top


def _dup_ngram_chars(grams: _NGrams, n: int) -> int:
    """Characters of words inside repeated n-gram occurrences, each character counted once.

    The first occurrence of an n-gram is not a repeat; overlapping repeats (a phrase said
    three times in a row) do not count the shared words twice. Spaces are not counted,
    as in datatrove.
    """
    repeats = grams.repeats(n)
    if not len(repeats):
        return 0
    size = len(grams.ids) + 1  # words inside [start, start + n) of any repeat are covered
    edges = np.bincount(repeats, minlength=size) - np.bincount(repeats + n, minlength=size)
    covered = np.cumsum(edges)[:-1] > 0
    return int(grams.lens[covered].sum())


@register
class GopherRepetition(DocStep):
    """Gopher's repetition filter: drop documents that say the same thing over and over.

    Repeated paragraphs and lines (menus, footers, spam) and heavy n-gram repetition
    (keyword stuffing, generated filler) teach a model to loop. Fractions are of the
    document's characters (``len(text)``), as in datatrove. A rule is skipped when its
    threshold is None; n-gram rules are keyed by n. ``ignore_symbol_lines`` leaves lines
    and paragraphs without a letter out of the line and paragraph rules: the borders of an
    ASCII table (``+------+``) repeat by design in documentation and are not boilerplate.
    """

    kind: ClassVar[str] = "gopher_repetition"

    dup_para_frac: float | None = 0.3
    dup_para_char_frac: float | None = 0.2
    dup_line_frac: float | None = 0.3
    dup_line_char_frac: float | None = 0.2
    ignore_symbol_lines: bool = False  # datatrove counts them; the docs recipe does not
    top_n_grams: dict[int, float] = Field(default_factory=lambda: {2: 0.2, 3: 0.18, 4: 0.16})
    dup_n_grams: dict[int, float] = Field(
        default_factory=lambda: {5: 0.15, 6: 0.14, 7: 0.13, 8: 0.12, 9: 0.11, 10: 0.10}
    )

    def apply(self, doc: Doc) -> StepResult:
        text = doc.text
        total = len(text)
        if not text.strip():
            return doc

        for unit, splitter, frac, char_frac in (
            ("para", "\n\n", self.dup_para_frac, self.dup_para_char_frac),
            ("line", "\n", self.dup_line_frac, self.dup_line_char_frac),
        ):
            # paragraphs part at runs of 2+ newlines, lines at runs of 1+: splitting at each
            # pair (each newline) leaves empty or newline-led parts, which strip and the
            # test below remove, so the parts are those of the regexes \n{2,} and \n+
            parts = [p.strip() for p in text.strip().split(splitter)]
            parts = [p for p in parts if p and (not self.ignore_symbol_lines or _LETTER.search(p))]
            if not parts:
                continue
            n_dup, dup_chars = _dup_stats(parts)
            ratio = n_dup / len(parts)
            if frac is not None and ratio > frac:
                return Drop(f"gopher_repetition.dup_{unit}_frac", f"{ratio:.3f} > {frac:g}")
            ratio = dup_chars / total
            if char_frac is not None and ratio > char_frac:
                return Drop(
                    f"gopher_repetition.dup_{unit}_char_frac", f"{ratio:.3f} > {char_frac:g}"
                )

        grams = _NGrams(words_of(text))
        for n, frac in sorted(self.top_n_grams.items()):
            ratio = _top_ngram_chars(grams, n) / total
            if ratio > frac:
                return Drop(f"gopher_repetition.top_{n}_gram", f"{ratio:.3f} > {frac:g}")

        for n, frac in sorted(self.dup_n_grams.items()):
            chars = _dup_ngram_chars(grams, n)
            if chars == 0:
                break  # no repeated n-gram means no repeated longer n-gram either
            ratio = chars / total
            if ratio > frac:
                return Drop(f"gopher_repetition.dup_{n}_gram", f"{ratio:.3f} > {frac:g}")
        return doc
