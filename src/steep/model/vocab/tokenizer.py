"""Extend a byte-level BPE tokenizer with merges learnt on a corpus in the new language.

How the new tokens are learnt. A token only helps if the tokenizer actually produces it.
``add_tokens`` entries bypass the BPE model (they match as literal strings before
pre-tokenization, so "Ġthì" would never be produced inside a word) and a BPE model trained
from scratch has merges that do not line up with the old merges, which run first.
So the new merges are learnt *on top of the old segmentation*: every word of the corpus is
cut by the old BPE model, each old token is written as one private-use character, and HF
``tokenizers``' own ``BpeTrainer`` learns merges over those characters. Its merges, mapped
back to token strings, are appended after the old merges. At inference the old merges all
rank first, so they rebuild exactly the old segmentation, after which the new merges apply
in the order they were learnt: the tokenizer reproduces what the trainer counted, and the
first N new tokens in merge order are the N most frequent pairs (BPE's own greedy notion
of "most useful"). Existing tokens keep their ids; new ones are numbered after them.

Only byte-level BPE tokenizers (GPT-2 style ``tokenizer.json``: a BPE model behind a
ByteLevel pre-tokenizer, as in SmolLM2, Llama 3, Qwen2, OLMo, Pythia) can be extended this
way; the error for any other kind says so.
"""

from __future__ import annotations

import json
import re
import tempfile
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from transformers import AutoTokenizer, PreTrainedTokenizerBase

from steep.datahub.steps.langid import identify
from steep.errors import SteepError

EXTENDABLE = (
    "byte-level BPE tokenizers (a tokenizer.json with a BPE model behind a ByteLevel "
    "pre-tokenizer: GPT-2, SmolLM/SmolLM2, Llama 3, Qwen2/2.5/3, OLMo, Pythia)"
)
_PUA = 0xF0000  # Unicode planes 15-16: private use, never in real text; one char per old token
_PUA_SIZE = 0x110000 - _PUA
_DIGIT = re.compile(r"[0-9]")
LANG_SAMPLE = 200  # documents sampled for the corpus language check


class VocabError(SteepError, ValueError):
    """The tokenizer cannot be extended as asked; the message says why and what would work."""


# --------------------------------------------------------------------------- checks


def backend_json(tokenizer: PreTrainedTokenizerBase) -> dict[str, Any]:
    """The tokenizer's ``tokenizer.json`` as a dict, after checking it can be extended."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is None:
        raise VocabError(
            f"{type(tokenizer).__name__} is a slow (Python or SentencePiece) tokenizer with no "
            f"tokenizer.json; only {EXTENDABLE} can be extended"
        )
    data = json.loads(backend.to_str())
    model = data.get("model") or {}
    kind = model.get("type")
    if kind != "BPE":
        raise VocabError(
            f"the tokenizer's model is {kind}, not BPE; only {EXTENDABLE} can be extended"
        )
    if not _has_byte_level(data.get("pre_tokenizer")):
        pre = (data.get("pre_tokenizer") or {}).get("type", "none")
        raise VocabError(
            f"the tokenizer is BPE but its pre-tokenizer is {pre}, not ByteLevel (SentencePiece-"
            f"style BPE with byte fallback, as in Llama 2, Mistral or Gemma, is not supported); "
            f"only {EXTENDABLE} can be extended"
        )
    if model.get("continuing_subword_prefix") or model.get("end_of_word_suffix"):
        raise VocabError(
            "the BPE model uses a subword prefix or end-of-word suffix; only "
            f"{EXTENDABLE} without them can be extended"
        )
    if len(tokenizer) >= _PUA_SIZE:
        raise VocabError(f"vocabularies of {_PUA_SIZE:,}+ tokens are not supported")
    return data


def _has_byte_level(pre: dict[str, Any] | None) -> bool:
    if not pre:
        return False
    if pre.get("type") == "ByteLevel":
        return True
    return any(_has_byte_level(p) for p in pre.get("pretokenizers") or [])


def check_language(texts: Sequence[str], lang: str, where: str) -> dict[str, float]:
    """Refuse a corpus whose documents are mostly not in ``lang`` (fastText lid.176)."""

    step = max(1, len(texts) // LANG_SAMPLE)
    sample = texts[::step][:LANG_SAMPLE]
    counts = Counter(identify(t)[0] for t in sample)
    shares = {k: v / len(sample) for k, v in counts.most_common()}
    if shares.get(lang, 0.0) < 0.5:
        top, share = next(iter(shares.items()))
        raise VocabError(
            f"corpus {where} does not look like '{lang}': {share:.0%} of {len(sample)} sampled "
            f"documents read as '{top}' and {shares.get(lang, 0.0):.0%} as '{lang}'. Give text "
            f"in the target language (or a different --lang)"
        )
    return shares


# --------------------------------------------------------------------------- learning merges


@dataclass
class Extension:
    """What ``extend_tokenizer`` added; ids count on from the old vocabulary."""

    tokenizer: PreTrainedTokenizerBase
    new_tokens: dict[int, str]  # id -> token string (byte-level form)
    merges: list[tuple[str, str]]  # appended after the old merges, in order
    reused: int  # merges whose result already was a token (no new row needed)
    learnt: int  # merges the trainer found in the corpus
    words: int  # word occurrences in the corpus
    min_frequency: int

    @property
    def first_new_id(self) -> int:
        return min(self.new_tokens) if self.new_tokens else len(self.tokenizer)


def corpus_words(tokenizer: PreTrainedTokenizerBase, texts: Iterable[str]) -> Counter[str]:
    """Pre-token ("word") counts, as the tokenizer's own normalizer and pre-tokenizer cut them.

    Words with a digit are left out: how numbers are cut is the base's own design (SmolLM2
    keeps single digits, Llama 3 groups of up to three), not something a language adds,
    and digit merges learnt here would also fire on every number in English text.
    """
    backend = tokenizer.backend_tokenizer
    normalizer, pre = backend.normalizer, backend.pre_tokenizer
    counts: Counter[str] = Counter()
    for text in texts:
        if normalizer is not None:
            text = normalizer.normalize_str(text)
        counts.update(word for word, _ in pre.pre_tokenize_str(text) if not _DIGIT.search(word))
    return counts


def learn_merges(
    tokenizer: PreTrainedTokenizerBase, words: Counter[str], budget: int, min_frequency: int
) -> list[tuple[str, str]]:
    """Up to ``budget`` merges continuing the old BPE on ``words``, most frequent first.

    Each word is cut by the old model, each old token becomes one private-use character and
    ``tokenizers.trainers.BpeTrainer`` learns merges over them (HF's trainer, not a
    hand-written one); the merges come back as pairs of old-vocabulary strings.
    """
    from tokenizers import (  # deferred: only where a tokenizer is built
        Tokenizer,
        models,
        pre_tokenizers,
        trainers,
    )

    model = tokenizer.backend_tokenizer.model
    id_to_token = {i: t for t, i in tokenizer.backend_tokenizer.get_vocab(False).items()}
    encoded: dict[str, str] = {}
    for word in words:
        encoded[word] = "".join(chr(_PUA + t.id) for t in model.tokenize(word))
    alphabet = {ch for enc in encoded.values() if len(enc) > 1 for ch in enc}
    trainer = trainers.BpeTrainer(
        vocab_size=len(alphabet) + budget,
        min_frequency=min_frequency,
        show_progress=False,
        special_tokens=[],
    )
    scratch = Tokenizer(models.BPE())
    scratch.pre_tokenizer = pre_tokenizers.WhitespaceSplit()

    def lines() -> Iterator[str]:
        for word, count in words.items():
            if len(encoded[word]) > 1:  # a single old token has nothing left to merge
                for start in range(0, count, 1000):
                    yield " ".join([encoded[word]] * min(1000, count - start))

    scratch.train_from_iterator(lines(), trainer)
    merges = json.loads(scratch.to_str())["model"]["merges"][:budget]

    def decode(symbols: str) -> str:
        return "".join(id_to_token[ord(ch) - _PUA] for ch in symbols)

    out = []
    for merge in merges:
        left, right = merge.split(" ", 1) if isinstance(merge, str) else merge
        out.append((decode(left), decode(right)))
    return out


def extend_tokenizer(
    tokenizer: PreTrainedTokenizerBase,
    texts: Sequence[str],
    n: int,
    min_frequency: int = 2,
    where: str = "the corpus",
) -> Extension:
    """A copy of ``tokenizer`` with ``n`` new tokens learnt from ``texts`` (see module doc)."""
    if n < 1:
        raise VocabError(f"--add must be at least 1, got {n}")
    data = backend_json(tokenizer)
    words = corpus_words(tokenizer, texts)
    occurrences = sum(words.values())
    vocab: dict[str, int] = dict(tokenizer.get_vocab())
    old_merges = {
        tuple(m.split(" ", 1)) if isinstance(m, str) else tuple(m) for m in data["model"]["merges"]
    }
    next_id = max(vocab.values()) + 1
    budget = n + n // 4 + 16
    while True:
        learnt = learn_merges(tokenizer, words, budget, min_frequency)
        new_tokens: dict[int, str] = {}
        merges: list[tuple[str, str]] = []
        seen = set(old_merges)
        known = dict(vocab)
        reused = 0
        for left, right in learnt:
            if len(new_tokens) == n:
                break
            if (left, right) in seen or left not in known or right not in known:
                continue
            seen.add((left, right))
            merges.append((left, right))
            token = left + right
            if token in known:
                reused += 1  # the pair now merges into a token the base already has
                continue
            known[token] = next_id + len(new_tokens)
            new_tokens[known[token]] = token
        if len(new_tokens) == n or len(learnt) < budget:
            break
        budget *= 2  # many merges rebuilt existing tokens: ask the trainer for more
    if len(new_tokens) < n:
        chars = sum(len(t) for t in texts)
        raise VocabError(
            f"{where} ({len(texts):,} documents, {chars:,} characters, {occurrences:,} words) "
            f"supports only {len(new_tokens):,} new tokens, not {n:,}: BPE learnt "
            f"{len(learnt):,} merges seen at least {min_frequency} times ({reused} of them "
            f"rebuild tokens the base has). Lower --add to at most {len(new_tokens):,}, lower "
            "--min-frequency, or give more text in the target language"
        )
    data["model"]["vocab"].update({tok: i for i, tok in new_tokens.items()})
    as_strings = bool(data["model"]["merges"]) and isinstance(data["model"]["merges"][0], str)
    data["model"]["merges"] += [f"{a} {b}" if as_strings else [a, b] for a, b in merges]
    new = _rebuild(tokenizer, data)
    ext = Extension(new, new_tokens, merges, reused, len(learnt), occurrences, min_frequency)
    _check_extension(tokenizer, ext)
    return ext


def _rebuild(tokenizer: PreTrainedTokenizerBase, data: dict[str, Any]) -> PreTrainedTokenizerBase:
    """The same transformers tokenizer (class, special tokens, chat template) on new JSON."""
    with tempfile.TemporaryDirectory(prefix="steep-tok-") as tmp:
        tokenizer.save_pretrained(tmp)
        Path(tmp, "tokenizer.json").write_text(json.dumps(data, ensure_ascii=False), "utf-8")
        return AutoTokenizer.from_pretrained(tmp)


def _check_extension(old: PreTrainedTokenizerBase, ext: Extension) -> None:
    """Old ids unchanged, new ids where promised: a rebuilt tokenizer must not renumber."""
    new_vocab = ext.tokenizer.get_vocab()
    moved = [t for t, i in old.get_vocab().items() if new_vocab.get(t) != i]
    missing = [t for i, t in ext.new_tokens.items() if new_vocab.get(t) != i]
    if moved or missing or len(ext.tokenizer) != len(old) + len(ext.new_tokens):
        raise VocabError(
            f"the rebuilt tokenizer ({type(ext.tokenizer).__name__}) renumbered tokens "
            f"(moved: {moved[:3]}, missing: {missing[:3]}); transformers did not load the "
            "extended tokenizer.json as written"
        )


def _readable(token: str) -> str:
    """Byte-level token string ('Ġthá»ĥ') as the text it stands for (' thể')."""
    from tokenizers.decoders import ByteLevel  # deferred: only where a tokenizer is built

    return ByteLevel().decode([token])
