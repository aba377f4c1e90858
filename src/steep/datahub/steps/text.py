"""Text helpers shared by the document filter steps: words, sentence ends, repeats.

Words come from one language-agnostic regex tokenizer (no NLTK, no downloads), so every
rule runs on any script that separates words with spaces; the per-language parts (stop
words) are data, not code.
"""

from __future__ import annotations

import dataclasses
import re
import unicodedata
from operator import methodcaller

from steep.datahub.steps.base import Doc


def _mark_class() -> str:
    """Ranges of combining marks (Unicode M*) in the BMP, for a regex character class.

    Python's ``\\w`` excludes combining marks, which would split Devanagari, Thai or
    NFD-decomposed Latin words in the middle; adding them keeps words whole.
    """
    ranges: list[tuple[int, int]] = []
    for cp in range(0x300, 0x10000):
        if unicodedata.category(chr(cp))[0] == "M":
            if ranges and ranges[-1][1] == cp - 1:
                ranges[-1] = (ranges[-1][0], cp)
            else:
                ranges.append((cp, cp))
    return "".join(f"\\u{a:04x}-\\u{b:04x}" if a != b else f"\\u{a:04x}" for a, b in ranges)


_MARKS = _mark_class()
# A word: a run of letters, digits, underscores and combining marks. Vietnamese syllables,
# German compounds and numbers are all one token each; punctuation is never a word.
_WORD = re.compile(f"[\\w{_MARKS}]+")
# A word with no letter in it (digits/underscores only): "2021", "3", "__".
_NON_ALPHA_WORD = re.compile(f"(?<![\\w{_MARKS}])[\\d_]+(?![\\w{_MARKS}])")

# ASCII text: every character that is not a word character becomes a space, so str.split
# gives exactly the runs of ``_WORD`` (there are no combining marks in ASCII), at C speed.
_ASCII_NON_WORD = str.maketrans(
    {c: " " for c in map(chr, range(128)) if not (c.isalnum() or c == "_")}
)
_WORDS_KEPT = 1 << 20  # words remembered at most (~60 MB); a batch of documents fits
_words_memo: dict[int, tuple[str, list[str]]] = {}  # id(text) -> (text, its words)
_words_held = 0


def words_of(text: str) -> list[str]:
    """``_WORD.findall(text)``, remembered for recent texts: the Gopher steps run one after
    the other over the same batch of documents and each needs the words (do not modify
    the list). The memo holds the text itself, so an id is never reused while remembered."""
    global _words_held
    hit = _words_memo.get(id(text))
    if hit is not None and hit[0] is text:
        return hit[1]
    found = text.translate(_ASCII_NON_WORD).split() if text.isascii() else _WORD.findall(text)
    if _words_held + len(found) > _WORDS_KEPT:
        _words_memo.clear()
        _words_held = 0
    _words_memo[id(text)] = (text, found)
    _words_held += len(found)
    return found


def count_non_alpha(words: list[str]) -> int:
    """How many of ``words`` (tokens of ``_WORD``) are digits and underscores only, i.e.
    ``len(_NON_ALPHA_WORD.findall(text))``: a ``_WORD`` token is a maximal run of word
    characters, so the regex's matches are exactly the tokens without a letter or mark.
    ``isdecimal`` is ``\\d`` (Unicode Nd); an underscore is read as a digit."""
    return sum(map(str.isdecimal, map(methodcaller("replace", "_", "0"), words)))


# Line endings: a line ends with one of these (after stripping trailing spaces) when it is a
# finished sentence. Covers Latin quotes, CJK full stops, Arabic/Urdu, Devanagari, Armenian
# and Ethiopic sentence ends; "..." and "…" are deliberately not terminal.
TERMINAL_PUNCTUATION: tuple[str, ...] = (
    ".",
    "!",
    "?",
    '"',
    "'",
    "”",  # closing double quote
    "’",  # closing single quote
    "“",  # German closing quote („...“)
    "»",
    "‼",
    "⁉",
    "。",
    "！",
    "？",
    "．",
    "｡",
    "」",
    "』",
    "؟",
    "۔",
    "।",
    "॥",
    "։",
    "።",
)


def _ends_sentence(line: str) -> bool:
    return line.endswith(TERMINAL_PUNCTUATION) and not line.endswith("...")


def _dup_stats(items: list[str]) -> tuple[int, int]:
    """(number of repeated items, characters in them): the first occurrence is not a repeat."""
    seen: set[str] = set()
    n_dup = chars = 0
    for item in items:
        if item in seen:
            n_dup += 1
            chars += len(item)
        else:
            seen.add(item)
    return n_dup, chars


def _replace_text(doc: Doc, text: str) -> Doc:
    return dataclasses.replace(doc, text=text)
