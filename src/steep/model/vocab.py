"""Teach a base a new language: extend its tokenizer, grow its embeddings, measure the gain.

Why: SmolLM2's and Llama's tokenizers cut Vietnamese into ~1.5 characters per token, so
training and inference on it are slow and waste context. Chinese-LLaMA, Swallow and ChipNeMo
first add target-language tokens and initialise each new embedding row as the mean of the
rows of the pieces the old tokenizer cut it into.

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

import copy
import json
import random
import re
import tempfile
import time
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Literal

import torch
from transformers import AutoTokenizer, PreTrainedModel, PreTrainedTokenizerBase

from steep.errors import MissingInputError, SteepError

Init = Literal["mean", "mean_resizing", "random"]
INITS: tuple[str, ...] = ("mean", "mean_resizing", "random")
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
    from steep.datahub.steps.langid import detect

    step = max(1, len(texts) // LANG_SAMPLE)
    sample = texts[::step][:LANG_SAMPLE]
    counts = Counter(detect(t)[0] for t in sample)
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
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers

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


# --------------------------------------------------------------------------- embeddings


def sub_token_ids(old: PreTrainedTokenizerBase, token: str) -> list[int]:
    """The old ids a new token string is cut into by the old BPE model (no pre-tokenizer:
    the string is already one byte-level word piece)."""
    return [t.id for t in old.backend_tokenizer.model.tokenize(token)]


def tied(model: PreTrainedModel) -> bool:
    out = model.get_output_embeddings()
    return out is not None and out.weight is model.get_input_embeddings().weight


def grow_embeddings(
    model: PreTrainedModel,
    old: PreTrainedTokenizerBase,
    new_tokens: dict[int, str],
    init: str,
    seed: int = 0,
) -> None:
    """Resize input and output embeddings to hold ``new_tokens`` and initialise their rows.

    ``mean``: each new row is the mean of its sub-token rows (input and, if untied, output);
    ``mean_resizing``: transformers' own, a draw around the mean of all old rows;
    ``random``: transformers' ``_init_weights`` (normal, std ``initializer_range``).
    Old rows are untouched, so logits over old ids on old-token text do not change.
    """
    if init not in INITS:
        raise VocabError(f"--init must be one of {', '.join(INITS)}, got {init!r}")
    was_tied = tied(model)
    old_rows = model.get_input_embeddings().weight.shape[0]
    rows = max(old_rows, max(new_tokens) + 1)
    torch.manual_seed(seed)
    if rows > old_rows:
        model.resize_token_embeddings(rows, mean_resizing=init == "mean_resizing")
    if was_tied and not tied(model):
        raise VocabError("resizing untied the input and output embeddings")
    weights = [model.get_input_embeddings().weight]
    if not was_tied and model.get_output_embeddings() is not None:
        weights.append(model.get_output_embeddings().weight)
    padded = [i for i in new_tokens if i < old_rows]  # rows the base kept as vocab padding
    with torch.no_grad():
        for w in weights:
            if init == "mean":
                for i, token in new_tokens.items():
                    w[i] = w[sub_token_ids(old, token)].mean(0)
            elif padded:  # resize only initialised the rows it added
                fill = w[:old_rows].mean(0) if init == "mean_resizing" else None
                for i in padded:
                    if fill is not None:
                        w[i] = fill
                    else:
                        w[i].normal_(0.0, getattr(model.config, "initializer_range", 0.02))


# --------------------------------------------------------------------------- measuring


def fertility(tokenizer: PreTrainedTokenizerBase, texts: Sequence[str]) -> dict[str, float]:
    """Tokens per character and per whitespace word (lower is better) on ``texts``."""
    ids = tokenizer(list(texts), add_special_tokens=False)["input_ids"]
    tokens = sum(len(x) for x in ids)
    chars = sum(len(t) for t in texts)
    words = sum(len(t.split()) for t in texts)
    return {
        "tokens": tokens,
        "characters": chars,
        "words": words,
        "tokens_per_char": tokens / max(chars, 1),
        "tokens_per_word": tokens / max(words, 1),
        "chars_per_token": chars / max(tokens, 1),
    }


def new_token_usage(ext: Extension, texts: Sequence[str]) -> dict[str, float]:
    """How much of the held-out text the new tokens cover, and how many of them appear."""
    ids = ext.tokenizer(list(texts), add_special_tokens=False)["input_ids"]
    flat = [i for x in ids for i in x]
    first = ext.first_new_id
    used = {i for i in flat if i >= first}
    return {
        "new_token_share": sum(1 for i in flat if i >= first) / max(len(flat), 1),
        "new_tokens_seen": len(used),
        "new_tokens": len(ext.new_tokens),
    }


def initial_bpb(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    texts: Sequence[str],
    seq_len: int = 512,
    batch_size: int = 4,
) -> float:
    """Bits per byte of ``texts`` under ``model``: comparable across tokenizers."""
    from steep.eval.heldout import TextSet, evaluate_set, tokenize_set

    tset = tokenize_set(TextSet("heldout", [], list(texts), 0), tokenizer, seq_len)
    return evaluate_set(model, tset, batch_size, torch.device("cpu"))["bpb"]


# --------------------------------------------------------------------------- the command


@dataclass
class ExtendSpec:
    """Everything ``steep tokenizer extend`` was asked to do."""

    base: str
    corpus: list[str]
    add: int
    out: Path
    init: str = "mean"
    heldout: list[str] | None = None  # default: the corpus's own held-out split
    heldout_fraction: float = 0.05
    lang: str | None = None
    min_frequency: int = 2
    compare_inits: bool = True
    eval_chars: int = 20_000  # held-out characters scored for the initial bpb
    seq_len: int = 512
    base_max_lr: float | None = None
    seed: int = 0
    text_field: str = "text"


@dataclass
class ExtendResult:
    out: Path
    report: dict[str, Any] = field(default_factory=dict)


def read_corpus(spec: list[str], text_field: str = "text") -> tuple[list[str], dict[str, Any]]:
    """Documents of files/folders, or of a Data Hub dataset NAME[@VERSION]; plus lineage."""
    from steep.data.documents import SkipLog, expand_paths, read_documents
    from steep.model.io import file_sha256

    paths: list[str] = []
    lineage: dict[str, Any] = {"paths": spec}
    for item in spec:
        if Path(item).exists():
            paths.append(item)
            continue
        from steep.datahub.catalog import Catalog, CatalogError

        try:
            ds = Catalog().get(item)
        except CatalogError as exc:
            raise MissingInputError(
                f"--corpus {item}: no such file or folder, and not a Data Hub dataset ({exc})"
            ) from None
        paths += [str(p) for p in ds.shards]
        lineage.setdefault("datasets", []).append(ds.ref)
    lineage["files"] = [{"path": str(p), "sha256": file_sha256(p)} for p in expand_paths(paths)]
    skips = SkipLog()
    texts = [d.text for d in read_documents(paths, skips, text_field)]
    if not texts:
        raise VocabError(
            f"--corpus {', '.join(spec)} holds no documents"
            + (f" ({skips.summary()})" if skips.skips else "")
        )
    return texts, lineage


def extend_model(spec: ExtendSpec, progress: bool = True) -> ExtendResult:
    """Extend BASE's tokenizer on the corpus, grow and initialise the model, measure, save.

    Writes a plain HF directory at ``spec.out`` with steep.json lineage and
    ``vocab_report.json`` (fertility of old and new tokenizer, initial bits per byte of
    each initialisation), and prints the same as a table.
    """
    from steep import __version__
    from steep.config import ModelSection
    from steep.data.tokenize import is_heldout
    from steep.model.base_lr import UnknownBaseLR, lookup_peak_lr
    from steep.model.io import base_names, load_base, save_hf
    from steep.workspace import steep_home

    say = print if progress else (lambda *a, **k: None)
    started = time.time()
    if spec.init not in INITS:
        raise VocabError(f"--init must be one of {', '.join(INITS)}, got {spec.init!r}")
    texts, corpus_lineage = read_corpus(spec.corpus, spec.text_field)
    where = ", ".join(spec.corpus)
    if spec.heldout:
        train_texts = texts
        heldout, _ = read_corpus(spec.heldout, spec.text_field)
    else:
        train_texts = [t for t in texts if not is_heldout(t, spec.heldout_fraction)]
        heldout = [t for t in texts if is_heldout(t, spec.heldout_fraction)]
        if not heldout:
            raise VocabError(
                f"--corpus {where}: its held-out split ({spec.heldout_fraction:g} of "
                f"{len(texts)} documents) is empty; give --heldout FILES"
            )
    langs = check_language(train_texts, spec.lang, where) if spec.lang else {}

    cfg = ModelSection(base=spec.base)
    base = load_base(cfg, steep_home())
    old_tok = base.tokenizer
    backend_json(old_tok)  # fail on the tokenizer type before reading the corpus twice
    say(f"learning {spec.add:,} tokens from {len(train_texts):,} documents ...", flush=True)
    ext = extend_tokenizer(old_tok, train_texts, spec.add, spec.min_frequency, where)

    report: dict[str, Any] = {
        "base": spec.base,
        "corpus": corpus_lineage,
        "added": len(ext.new_tokens),
        "merges_added": len(ext.merges),
        "merges_reusing_old_tokens": ext.reused,
        "heldout_documents": len(heldout),
        "fertility": {"old": fertility(old_tok, heldout), "new": fertility(ext.tokenizer, heldout)},
        "usage": new_token_usage(ext, heldout),
        "examples": [_readable(t) for t in list(ext.new_tokens.values())[:20]],
    }
    eval_texts = _first_chars(heldout, spec.eval_chars)
    bpb: dict[str, float] = {}
    if spec.eval_chars > 0:
        say("initial bits per byte on held-out text ...", flush=True)
        bpb["base"] = _safe_bpb(base.model, old_tok, eval_texts, spec.seq_len)
    inits = [spec.init] + ([i for i in INITS if i != spec.init] if spec.compare_inits else [])
    chosen: PreTrainedModel | None = None
    for init in inits:
        model = (
            base.model
            if init == spec.init and not spec.compare_inits
            else copy.deepcopy(base.model)
        )
        grow_embeddings(model, old_tok, ext.new_tokens, init, spec.seed)
        if spec.eval_chars > 0:
            bpb[init] = _safe_bpb(model, ext.tokenizer, eval_texts, spec.seq_len)
        if init == spec.init:
            chosen = model
        else:
            del model
    assert chosen is not None
    report["initial_bpb"] = bpb
    report["eval_characters"] = sum(len(t) for t in eval_texts)
    if langs:
        report["corpus_languages"] = langs

    names = base_names(cfg) or base.info.get("lineage", {}).get("base_names", [])
    peak: dict[str, Any] | None = None
    if spec.base_max_lr is not None:
        peak = {"value": spec.base_max_lr, "source": "--base-max-lr"}
    else:
        try:
            lr, key, ref = lookup_peak_lr(*names)
            peak = {"value": lr, "source": f"{key} peak ({ref})"}
        except UnknownBaseLR:
            pass
    lineage = {
        "kind": "vocab_extension",
        "steep_version": __version__,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "base": base.info,
        "base_names": names,
        "base_peak_lr": peak,
        "corpus": corpus_lineage,
        "vocab_extension": {
            "added": len(ext.new_tokens),
            "init": spec.init,
            "old_vocab_size": len(old_tok),
            "first_new_id": ext.first_new_id,
            "new_vocab_size": len(ext.tokenizer),
            "min_frequency": spec.min_frequency,
            "learnt_merges": ext.learnt,
            "lang": spec.lang,
        },
        "report": report,
    }
    out = save_hf(chosen, ext.tokenizer, spec.out, lineage)
    (out / REPORT_FILE).write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n")
    say(format_report(report))
    say(f"model: {out} ({(time.time() - started) / 60:.1f} min)")
    return ExtendResult(out, report)


REPORT_FILE = "vocab_report.json"


def _safe_bpb(
    model: PreTrainedModel, tok: PreTrainedTokenizerBase, texts: list[str], seq_len: int
) -> float:
    from steep.eval.heldout import EvalSetError

    try:
        return initial_bpb(model, tok, texts, seq_len)
    except EvalSetError:
        return initial_bpb(model, tok, texts, seq_len=64)  # short held-out text: small windows


def _first_chars(texts: Sequence[str], limit: int) -> list[str]:
    """Whole documents, spread over the set, until ``limit`` characters (at least one)."""
    order = list(range(len(texts)))
    random.Random(0).shuffle(order)
    out: list[str] = []
    total = 0
    for i in order:
        if out and total + len(texts[i]) > limit:
            continue
        out.append(texts[i][: max(limit, 1)])
        total += len(out[-1])
        if total >= limit:
            break
    return out


def _readable(token: str) -> str:
    """Byte-level token string ('Ġthá»ĥ') as the text it stands for (' thể')."""
    from tokenizers.decoders import ByteLevel

    return ByteLevel().decode([token])


def format_report(report: dict[str, Any]) -> str:
    """The extension report as a plain-text table."""
    old, new = report["fertility"]["old"], report["fertility"]["new"]
    lines = [
        f"added {report['added']:,} tokens ({report['merges_added']:,} merges); "
        f"held-out: {report['heldout_documents']:,} documents",
        "",
        f"{'tokenizer':<12}{'tokens/char':>12}{'tokens/word':>12}{'chars/token':>12}{'tokens':>10}",
    ]
    for name, f in (("old", old), ("new", new)):
        lines.append(
            f"{name:<12}{f['tokens_per_char']:>12.3f}{f['tokens_per_word']:>12.3f}"
            f"{f['chars_per_token']:>12.2f}{f['tokens']:>10,}"
        )
    cut = 1 - new["tokens"] / max(old["tokens"], 1)
    usage = report["usage"]
    lines.append(
        f"{cut:.1%} fewer tokens; new tokens are {usage['new_token_share']:.1%} of the held-out "
        f"tokens ({usage['new_tokens_seen']:,} of {usage['new_tokens']:,} seen)"
    )
    if report.get("initial_bpb"):
        lines += ["", f"{'initial model':<20}{'bits/byte':>10}"]
        for name, value in report["initial_bpb"].items():
            label = "base (old tok.)" if name == "base" else f"init {name}"
            lines.append(f"{label:<20}{value:>10.4f}")
        lines.append(f"(on {report['eval_characters']:,} held-out characters)")
    if report.get("examples"):
        lines.append("first new tokens: " + " | ".join(repr(t) for t in report["examples"][:12]))
    return "\n".join(lines)
