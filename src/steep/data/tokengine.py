"""Which engine turns text into token ids: a fast one only where it gives HF's ids exactly.

HF ``tokenizers`` is the reference: a tokenizer's ids are what it says they are. fastokens
(a Rust BPE that loads the same ``tokenizer.json``) runs ~70x faster on one core but,
like every re-implementation, may differ on some tokenizer's normaliser, pre-tokeniser or
added tokens. So it is used for a tokenizer only after a conformance set (Unicode
normalisation forms, whitespace runs, tabs, emoji, CJK, Vietnamese, code, numbers, added
and special tokens, very long documents, lone surrogates) gives ids identical to HF's; a
refusal or a missing engine means HF, with the reason printed once per tokenizer. Units
also compare a sample of their documents with HF at tokenize time
(``steep.data.tokenunits``), so a difference the set missed falls back too, never mixes.
"""

from __future__ import annotations

import inspect
import os
import sys
import textwrap
import unicodedata
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version
from typing import Any

import numpy as np
from transformers import PreTrainedTokenizerBase

from steep.artifacts.fingerprint import tokenizer_fingerprint

HF, FAST = "hf", "fastokens"
ENGINE_ENV = "STEEP_TOKENIZE_ENGINE"  # "hf" forces HF tokenizers; unset or "auto": fastest exact
Encode = Callable[[list[str]], Sequence[Sequence[int]]]  # a batch of texts -> ids per text


@dataclass(frozen=True)
class Engine:
    """The engine a source is tokenized with, as ``source.json`` records it."""

    name: str  # HF or FAST
    version: str
    reason: str | None = None  # why HF is used when the fast engine is not (None: chosen)
    fallback: dict[str, Any] | None = None  # a source's units differed: what fell back, why

    def record(self) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name, "version": self.version}
        if self.reason:
            out["reason"] = self.reason
        if self.fallback:
            out["fallback"] = self.fallback
        return out


def _version(package: str) -> str:
    try:
        return version(package)
    except PackageNotFoundError:
        return "unknown"


def hf_engine(reason: str | None = None, fallback: dict[str, Any] | None = None) -> Engine:
    return Engine(HF, _version("tokenizers"), reason, fallback)


def hf_encoder(tokenizer: PreTrainedTokenizerBase) -> Encode:
    """HF's ids of a batch of texts, no special tokens, as fast as the tokenizer allows.

    A fast tokenizer's ``encode_batch_fast`` skips the character offsets that ``__call__``
    computes and steep never uses: ~20% less time. Some tokenizer classes preprocess text in
    Python before the Rust call, so the first batch is encoded both ways and the fast path
    is kept only if the ids agree.
    """

    def plain(texts: list[str]) -> list[list[int]]:
        return tokenizer(texts, add_special_tokens=False)["input_ids"]

    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is None or not hasattr(backend, "encode_batch_fast"):
        return plain

    def fast(texts: list[str]) -> list[list[int]]:
        return [e.ids for e in backend.encode_batch_fast(texts, add_special_tokens=False)]

    chosen: list[Encode] = []

    def encode(texts: list[str]) -> Sequence[Sequence[int]]:
        if not chosen:
            ids = fast(texts)
            chosen.append(fast if ids[:16] == plain(texts[:16]) else plain)
            return ids if chosen[0] is fast else plain(texts)
        return chosen[0](texts)

    return encode


def fast_encoder(tokenizer: PreTrainedTokenizerBase) -> Encode:
    """fastokens on the tokenizer's own ``tokenizer.json`` (its live state: added tokens
    included); ids come back as views of one flat array, no per-token Python objects."""
    import fastokens  # deferred: an optional engine, imported only where it is chosen

    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is None:
        raise ValueError(f"{type(tokenizer).__name__} has no tokenizer.json (a slow tokenizer)")
    engine = fastokens.Tokenizer.from_json_str(backend.to_str())

    def encode(texts: list[str]) -> list[np.ndarray]:
        flat, offsets = engine.encode_batch_flat(texts, add_special_tokens=False)
        ids = np.frombuffer(flat, dtype=np.uint32)
        ends = np.frombuffer(offsets, dtype=np.uint64).astype(np.int64)
        return [ids[a:b] for a, b in zip(ends[:-1], ends[1:], strict=True)]

    return encode


def encoder(tokenizer: PreTrainedTokenizerBase, engine: str) -> Encode:
    return fast_encoder(tokenizer) if engine == FAST else hf_encoder(tokenizer)


def first_difference(ours: Sequence[int], theirs: Sequence[int]) -> str | None:
    """Where two id lists part, in words (None: the same ids)."""
    a, b = np.asarray(ours, dtype=np.int64), np.asarray(theirs, dtype=np.int64)
    if len(a) == len(b) and np.array_equal(a, b):
        return None
    n = min(len(a), len(b))
    at = int(np.argmax(a[:n] != b[:n])) if n and not np.array_equal(a[:n], b[:n]) else n
    got = int(a[at]) if at < len(a) else "the end"
    want = int(b[at]) if at < len(b) else "the end"
    return f"token {at} is {got}, HF's is {want} ({len(a)} vs {len(b)} tokens)"


# --- the conformance set ----------------------------------------------------------------

_SAMPLES = {  # short texts of kinds a tokenizer's rules treat specially
    "vietnamese": "Tiếng Việt có sáu thanh điệu: ngang, huyền, sắc, hỏi, ngã, nặng. "
    "Người Việt viết chữ Quốc ngữ, ví dụ: Hà Nội, Thành phố Hồ Chí Minh, Đà Nẵng.",
    "cjk": "自然语言处理是人工智能的一个分支。日本語の文章、カタカナとひらがな。"
    "한국어 문장도 있습니다。全角：ＡＢＣ１２３",
    "emoji": "ok 👍🏽 family 👨‍👩‍👧‍👦 flag 🇻🇳 heart ❤️ keycap 1️⃣ 🤖🤖🤖 end",
    "numbers": "0 7 42 1234 12345678901234567890 3.14159 -2.5e-10 1,000,000 0x1F ½ ① ٣٤٥ २०२६",
    "accents": "café naïve Ångström Øre façade résumé ﬁ ﬂ ẞ ǅ Ⅻ ㎏ ｶﾀｶﾅ",
    "controls": "zero\u200bwidth\u200dnbsp\u00a0ideographic\u3000bom\ufeffsoft\u00adhyphen",
}


def _whitespace_cases() -> list[tuple[str, str]]:
    runs = [" " * n for n in (1, 2, 3, 4, 7, 16, 33)] + ["\t", "\t\t", "\t \t  \t"]
    runs += ["\n", "\n\n", "\n\n\n\n", "\r\n", "\r\n\r\n", " \n ", "\n \n  \n", "\x0b\x0c"]
    words = ["alpha", "beta", "gamma", "delta"]
    return [
        ("whitespace runs", "".join(w + r for w in words for r in runs)),
        ("leading and trailing whitespace", "   \n\t lead and trail \t\n   "),
        ("only whitespace", " \n\t  \n\n"),
        ("tabs", "\tcol1\tcol2\t\tcol4\n\t\tindented\n"),
    ]


def _code_and_prose() -> list[tuple[str, str]]:
    """Real text from the standard library: a module's source and its docstrings."""
    source = inspect.getsource(textwrap)
    return [("code", source[:6000]), ("docstrings", inspect.getdoc(textwrap.TextWrapper) or "")]


def _long_cases() -> list[tuple[str, str]]:
    """Documents far longer than a batch's usual ones, and pathological runs."""
    source = inspect.getsource(textwrap)
    return [
        ("very long document", source * 8),
        ("long run of one letter", "a" * 20_000),
        ("long run of spaces", "x" + " " * 20_000 + "y"),
        ("long run of newlines", "\n" * 5_000),
        ("long word of mixed scripts", ("abcĐêẫ中文😀" * 2_000)),
        ("long number", "9" * 5_000),
    ]


def _added_token_cases(tokenizer: PreTrainedTokenizerBase) -> list[tuple[str, str]]:
    """Every added or special token (at most 64) where a text meets it, as data holds it."""
    decoder = getattr(tokenizer, "added_tokens_decoder", {}) or {}
    contents = [t.content for _, t in sorted(decoder.items())]
    picked = contents if len(contents) <= 64 else contents[:32] + contents[-32:]
    cases = []
    for tok in picked:
        text = f"x{tok}y {tok} z\n{tok}{tok}\t{tok}\n\n{tok}end {tok}"
        cases.append((f"added token {tok!r}", text))
    return cases


def conformance_set(tokenizer: PreTrainedTokenizerBase) -> list[tuple[str, str]]:
    """(case, text) pairs; every text also in NFC, NFD, NFKC and NFKD forms."""
    base = list(_SAMPLES.items()) + _whitespace_cases() + _code_and_prose()
    forms = [
        (f"{name} ({form})", unicodedata.normalize(form, text))
        for name, text in base
        for form in ("NFC", "NFD", "NFKC", "NFKD")
    ]
    return base + forms + _added_token_cases(tokenizer) + _long_cases()


LONE_SURROGATES = ["abc\ud800def", "\udfff", "emoji half \ud83d here"]


def conformance_problem(tokenizer: PreTrainedTokenizerBase, encode: Encode) -> str | None:
    """Why ``encode`` is not HF's tokenizer on the conformance set (None: identical)."""
    reference = hf_encoder(tokenizer)
    cases = conformance_set(tokenizer)
    texts = [text for _, text in cases]
    for (case, _), ours, theirs in zip(cases, encode(texts), reference(texts), strict=True):
        if (where := first_difference(ours, theirs)) is not None:
            return f"other ids than HF tokenizers on {case}: {where}"
    for text in LONE_SURROGATES:  # HF refuses text that is not valid Unicode; so must it
        try:
            ids = encode([text])
        except (TypeError, ValueError):  # UnicodeEncodeError is a ValueError
            continue
        return f"accepts a lone surrogate HF refuses ({list(ids[0])[:8]}...)"
    return None


_CHOSEN: dict[str, Engine] = {}  # by tokenizer fingerprint: checked and said once a process


def choose_engine(tokenizer: PreTrainedTokenizerBase) -> Engine:
    """The fastest engine that gives HF's ids for this tokenizer; the reason when HF."""
    key = tokenizer_fingerprint(tokenizer)
    if key not in _CHOSEN:
        engine = _choose(tokenizer)
        if engine.reason:
            print(f"tokenizing with HF tokenizers: {engine.reason}", file=sys.stderr, flush=True)
        _CHOSEN[key] = engine
    return _CHOSEN[key]


def _choose(tokenizer: PreTrainedTokenizerBase) -> Engine:
    wanted = os.environ.get(ENGINE_ENV, "auto").strip().lower() or "auto"
    if wanted == HF:
        return hf_engine()
    if wanted not in ("auto", FAST):
        return hf_engine(f"{ENGINE_ENV}={wanted!r} is not one of auto, hf, fastokens")
    try:
        import fastokens  # noqa: F401  deferred: an optional engine
    except ImportError:
        return hf_engine(
            "fastokens is not installed (pip install 'steep[fast]': ~25x faster end to end)"
        )
    try:
        encode = fast_encoder(tokenizer)
        problem = conformance_problem(tokenizer, encode)
    except Exception as exc:  # the engine cannot load or run this tokenizer: HF does
        problem = f"cannot load this tokenizer ({type(exc).__name__}: {exc})"
    if problem:
        return hf_engine(f"fastokens refused for this tokenizer: {problem}")
    return Engine(FAST, _version("fastokens"))
