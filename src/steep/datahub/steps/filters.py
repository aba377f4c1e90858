"""Document-level cleaning and quality steps: normalise, Gopher, C4, FineWeb, PII.

The thresholds default to the values datatrove uses (which in turn follow the Gopher paper,
Rae et al. 2021 table A1; the C4 paper, Raffel et al. 2020; and FineWeb), so a recipe that
names a step without parameters gets the well-studied behaviour. Words come from one
language-agnostic regex tokenizer (no NLTK, no downloads), so every rule runs on any script
that separates words with spaces; the per-language parts (stop words) are data, not code.

Drop reasons are ``"<kind>.<rule>"`` so the pipeline can count them; ``detail`` carries
the measured value and the threshold it crossed.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import re
import unicodedata
from collections import Counter
from itertools import accumulate
from typing import ClassVar

from pydantic import Field, PrivateAttr

from steep.datahub.steps.base import Doc, DocStep, Drop, Edit, StepResult, register

# ---------------------------------------------------------------- shared text helpers


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


# ---------------------------------------------------------------- normalize

_NEWLINES = re.compile("\r\n?|[\x0b\x0c\x85\u2028\u2029]")
# C0/C1 controls except \t and \n (\v, \f, \r, NEL became \n above), DEL, and the BOM.
_CONTROL = re.compile("[\x00-\x08\x0e-\x1f\x7f-\x9f\ufeff]")
_TRAILING_WS = re.compile(r"[^\S\n]+$", re.MULTILINE)
# A run of 2+ spaces/tabs after the first visible character of a line (indentation stays).
_INNER_WS = re.compile(r"(?<=\S)[ \t]{2,}")
_MANY_BLANK_LINES = re.compile(r"\n{4,}")


@register
class Normalize(DocStep):
    """Canonical text: NFC, no control characters, \\n line ends, tidy whitespace.

    Later steps (dedup hashes, stop-word lists, n-gram counts) compare strings; without
    this, the same text in NFD or with \\r\\n would count as different. Leading
    indentation is kept (code and verse need it); runs of spaces/tabs inside a line become
    one space (a lone tab, as in a table row, stays), trailing spaces go, 3+ blank lines
    become 2, and blank lines at the start and end go.
    """

    kind: ClassVar[str] = "normalize"

    def apply(self, doc: Doc) -> StepResult:
        text = _NEWLINES.sub("\n", doc.text)
        text = _CONTROL.sub("", text)
        if not unicodedata.is_normalized("NFC", text):
            text = unicodedata.normalize("NFC", text)
        text = _TRAILING_WS.sub("", text)
        text = _INNER_WS.sub(" ", text)
        text = _MANY_BLANK_LINES.sub("\n\n\n", text).strip("\n")
        if not text.strip():
            return Drop("normalize.empty", f"{len(doc.text)} chars, none visible")
        if text == doc.text:
            return doc
        return Edit(
            _replace_text(doc, text), "normalize.changed", f"{len(doc.text)} -> {len(text)} chars"
        )


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
        words = _WORD.findall(text)
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
            alpha = 1 - len(_NON_ALPHA_WORD.findall(text)) / n
            if alpha < self.max_non_alpha_words_ratio:
                return Drop(
                    "gopher_quality.alpha_words",
                    f"{alpha:.3f} < {self.max_non_alpha_words_ratio:g}",
                )

        if self.min_stop_words:
            lang = str(doc.meta.get("lang") or self.default_lang)
            stop = self._stop_set(lang)
            if stop is not None:
                counts = Counter(words)
                found = 0
                for w, c in counts.items():
                    w = w.lower()
                    if w in stop or unicodedata.normalize("NFC", w) in stop:
                        found += c
                        if found >= self.min_stop_words:
                            break
                if found < self.min_stop_words:
                    return Drop(
                        "gopher_quality.stop_words", f"{found} < {self.min_stop_words} ({lang})"
                    )
        return doc


# ---------------------------------------------------------------- Gopher repetition

_PARAGRAPH_SPLIT = re.compile(r"\n{2,}")
_LINE_SPLIT = re.compile(r"\n+")


def _top_ngram_chars(words: list[str], n: int) -> int:
    """Characters covered by the most frequent n-gram (its length, spaces included, x count).

    An n-gram seen once is not repetition, so a document whose top n-gram occurs once
    scores 0 (datatrove would score short documents by their single occurrence).
    """
    grams = Counter(zip(*(words[k:] for k in range(n)), strict=False))
    if not grams:
        return 0
    gram, count = grams.most_common(1)[0]
    if count < 2:
        return 0
    return (sum(map(len, gram)) + n - 1) * count


def _dup_ngram_chars(words: list[str], prefix: list[int], n: int) -> int:
    """Characters of words inside repeated n-gram occurrences, each character counted once.

    The first occurrence of an n-gram is not a repeat; overlapping repeats (a phrase said
    three times in a row) do not count the shared words twice. Spaces are not counted,
    as in datatrove.
    """
    keys = list(zip(*(words[k:] for k in range(n)), strict=False))
    if len(set(keys)) == len(keys):
        return 0
    # First index of every n-gram, computed at C speed: later (smaller) indices win.
    first = dict(zip(reversed(keys), range(len(keys) - 1, -1, -1), strict=True))
    chars = covered_to = 0
    for i, key in enumerate(keys):
        if first[key] != i:
            start = max(i, covered_to)
            covered_to = i + n
            chars += prefix[covered_to] - prefix[start]
    return chars


@register
class GopherRepetition(DocStep):
    """Gopher's repetition filter: drop documents that say the same thing over and over.

    Repeated paragraphs and lines (menus, footers, spam) and heavy n-gram repetition
    (keyword stuffing, generated filler) teach a model to loop. Fractions are of the
    document's characters (``len(text)``), as in datatrove. A rule is skipped when its
    threshold is None; n-gram rules are keyed by n.
    """

    kind: ClassVar[str] = "gopher_repetition"

    dup_para_frac: float | None = 0.3
    dup_para_char_frac: float | None = 0.2
    dup_line_frac: float | None = 0.3
    dup_line_char_frac: float | None = 0.2
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
            ("para", _PARAGRAPH_SPLIT, self.dup_para_frac, self.dup_para_char_frac),
            ("line", _LINE_SPLIT, self.dup_line_frac, self.dup_line_char_frac),
        ):
            parts = [p.strip() for p in splitter.split(text.strip())]
            parts = [p for p in parts if p]
            n_dup, dup_chars = _dup_stats(parts)
            ratio = n_dup / len(parts)
            if frac is not None and ratio > frac:
                return Drop(f"gopher_repetition.dup_{unit}_frac", f"{ratio:.3f} > {frac:g}")
            ratio = dup_chars / total
            if char_frac is not None and ratio > char_frac:
                return Drop(
                    f"gopher_repetition.dup_{unit}_char_frac", f"{ratio:.3f} > {char_frac:g}"
                )

        words = _WORD.findall(text)
        for n, frac in sorted(self.top_n_grams.items()):
            ratio = _top_ngram_chars(words, n) / total
            if ratio > frac:
                return Drop(f"gopher_repetition.top_{n}_gram", f"{ratio:.3f} > {frac:g}")

        prefix = [0, *accumulate(map(len, words))]
        for n, frac in sorted(self.dup_n_grams.items()):
            chars = _dup_ngram_chars(words, prefix, n)
            if chars == 0:
                break  # no repeated n-gram means no repeated longer n-gram either
            ratio = chars / total
            if ratio > frac:
                return Drop(f"gopher_repetition.dup_{n}_gram", f"{ratio:.3f} > {frac:g}")
        return doc


# ---------------------------------------------------------------- C4

_CITATION = re.compile(r"\[(?:\d*|edit|citation needed)\]", re.IGNORECASE)
# Sentence ends inside a line, counted without a language-specific tokenizer: CJK full
# stops end a sentence anywhere (no space follows them); other marks need whitespace or
# the end of the line after them (and after any closing quotes/brackets).
_SENTENCE_END = re.compile(
    r"[。！？｡]+[”’」』）]*"
    r"|[.!?．؟۔।॥։።‼⁉]+[\"'”’“»」』)\]]*(?=\s|$)"
)
POLICY_SUBSTRINGS: tuple[str, ...] = (
    "terms of use",
    "privacy policy",
    "cookie policy",
    "uses cookies",
    "use of cookies",
    "use cookies",
)


@register
class C4(DocStep):
    """C4's line rules (Raffel et al. 2020, as in the TFDS/datatrove implementation).

    Keeps only lines that look like sentences (terminal punctuation, at least
    ``min_words_per_line`` words) and drop boilerplate lines (javascript notices, cookie and
    policy banners); a page with "lorem ipsum" or a curly bracket in a kept line is dropped
    whole, and so is a page with fewer than ``min_num_sentences`` sentences left. As in the
    reference implementation, the page-level rules look only at lines that passed the
    punctuation and length rules. Paragraph breaks (blank lines) between kept lines stay.
    """

    kind: ClassVar[str] = "c4"

    remove_citations: bool = True
    filter_no_terminal_punct: bool = True
    min_words_per_line: int | None = 3
    max_word_length: int | None = 1000
    filter_lorem_ipsum: bool = True
    filter_javascript: bool = True
    filter_curly_bracket: bool = True
    filter_policy: bool = True
    min_num_sentences: int | None = 5

    def apply(self, doc: Doc) -> StepResult:
        kept: list[str] = []
        n_lines = n_removed = n_citations = n_sentences = 0
        pending_break = False
        for raw in doc.text.split("\n"):
            line = raw.strip()
            if not line:
                pending_break = bool(kept)
                continue
            n_lines += 1
            words = line.split()
            if self.max_word_length is not None and any(
                len(w) > self.max_word_length for w in words
            ):
                n_removed += 1
                continue
            if self.remove_citations and "[" in line:
                line, k = _CITATION.subn("", line)
                n_citations += k
            if self.filter_no_terminal_punct and not _ends_sentence(line):
                n_removed += 1
                continue
            if self.min_words_per_line is not None and len(words) < self.min_words_per_line:
                n_removed += 1
                continue
            lower = line.lower()
            if self.filter_lorem_ipsum and "lorem ipsum" in lower:
                return Drop("c4.lorem_ipsum", f"line {n_lines}")
            if self.filter_javascript and "javascript" in lower:
                n_removed += 1
                continue
            if self.filter_curly_bracket and "{" in line:
                return Drop("c4.curly_bracket", f"line {n_lines}")
            if self.filter_policy and any(p in lower for p in POLICY_SUBSTRINGS):
                n_removed += 1
                continue
            n_sentences += max(1, len(_SENTENCE_END.findall(line)))
            if pending_break:
                kept.append("")
                pending_break = False
            kept.append(line)

        if self.min_num_sentences is not None and n_sentences < self.min_num_sentences:
            return Drop("c4.too_few_sentences", f"{n_sentences} < {self.min_num_sentences}")
        if not kept:
            return Drop("c4.empty", f"0 of {n_lines} lines kept")
        if n_removed:
            return Edit(
                _replace_text(doc, "\n".join(kept)),
                "c4.lines_removed",
                f"{n_removed} of {n_lines} lines",
            )
        if n_citations:
            return Edit(
                _replace_text(doc, "\n".join(kept)),
                "c4.citations_removed",
                f"{n_citations} citations",
            )
        return doc  # only whitespace would change: not worth an edit


# ---------------------------------------------------------------- FineWeb


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
            n_words = len(_WORD.findall(doc.text))
            ratio = (n - 1) / max(n_words, 1)
            if ratio > self.new_line_ratio:
                return Drop("fineweb.list_ratio", f"{ratio:.3f} > {self.new_line_ratio:g}")
        return doc


# ---------------------------------------------------------------- PII

# Starts only at the beginning of a run of local-part characters, so a long run without
# "@" is scanned once, not once per start position.
_EMAIL = re.compile(
    r"(?<![A-Za-z0-9._%+-])[A-Za-z0-9._%+-]+@"
    r"(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z]{2,24}(?![A-Za-z0-9-])"
)
# Four dotted numbers, not part of a longer dotted/word sequence ("1.2.3.4.5", "v1.2.3.4").
_IPV4 = re.compile(r"(?<![\w.])(?:\d{1,3}\.){3}\d{1,3}(?!\w|\.\w)")
# Hex groups with 2+ colons, validated by ``ipaddress`` afterwards ("12:30:45" is not one).
_IPV6 = re.compile(r"(?<![\w:.])(?:[0-9A-Fa-f]{0,4}:){2,7}[0-9A-Fa-f]{0,4}(?![\w:])")
# Global unicast space; other "valid" IPv6 strings are mostly code ("dead::beef", "a::b").
_IPV6_GLOBAL_UNICAST = ipaddress.ip_network("2000::/3")


@register
class Pii(DocStep):
    """Replace e-mail addresses and public IP addresses with placeholders.

    A model trained on them can recite them. Private, loopback and reserved addresses
    (192.168.0.1, 127.0.0.1, 10.0.0.0/8, documentation ranges) are not personal data and
    are common in technical text, so they stay unless ``only_public_ips`` is False.
    Candidates are validated with the stdlib ``ipaddress``, so "999.1.1.1" and version
    numbers like "3.11.7" are left alone.
    """

    kind: ClassVar[str] = "pii"

    emails: bool = True
    ips: bool = True
    only_public_ips: bool = True
    email_placeholder: str = "<EMAIL>"
    ip_placeholder: str = "<IP>"

    def _ip_ok(self, candidate: str) -> bool:
        try:
            ip = ipaddress.ip_address(candidate)
        except ValueError:
            return False
        if isinstance(ip, ipaddress.IPv6Address) and ip not in _IPV6_GLOBAL_UNICAST:
            return False
        return ip.is_global or not self.only_public_ips

    def apply(self, doc: Doc) -> StepResult:
        text = doc.text
        n_email = n_ip = 0
        if self.emails and "@" in text:
            text, n_email = _EMAIL.subn(self.email_placeholder, text)

        if self.ips:
            count = 0

            def sub_ip(m: re.Match[str]) -> str:
                nonlocal count
                if self._ip_ok(m.group()):
                    count += 1
                    return self.ip_placeholder
                return m.group()

            if "." in text:
                text = _IPV4.sub(sub_ip, text)
            if "::" in text or text.count(":") >= 7:
                text = _IPV6.sub(sub_ip, text)
            n_ip = count

        if not n_email and not n_ip:
            return doc
        reason = "pii.email+ip" if n_email and n_ip else "pii.email" if n_email else "pii.ip"
        return Edit(_replace_text(doc, text), reason, f"{n_email} emails, {n_ip} ips")
