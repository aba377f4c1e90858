"""One unit of tokenization work: a span of an input file -> a train and a held-out shard.

Units are independent tasks for the executor (a local process pool or Ray). Each writes
into the source's partial folder under names of its own (``train/NNNNNN``,
``heldout/NNNNNN``, ``skipped/NNNNNN.jsonl``) and finishes by writing
``units/NNNNNN.json``, its completion marker: a unit whose marker exists is done, so a
killed tokenization resumes where it stopped and a unit retried after its worker died
rewrites its own files and never adds a second copy.
"""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import shutil
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from transformers import PreTrainedTokenizerBase

from steep.artifacts.atomic import write_text
from steep.data.docshards import read_docs
from steep.data.documents import SkipLog
from steep.data.locations import as_input
from steep.data.selection import UNKNOWN, DatasetSelection
from steep.data.shards import ShardWriter
from steep.data.spans import Span, read_span

BATCH_DOCS = 256
SPLITS = ("train", "heldout")
TOKENIZER_FILE = "tokenizer.pkl"
# tokenizers by partial folder, one load per worker process: a unit names its tokenizer by
# that file instead of carrying it, so a task is bytes, not a vocabulary, on the wire
_TOKENIZERS: dict[str, PreTrainedTokenizerBase] = {}


def share_tokenizer(out: Path, tokenizer: PreTrainedTokenizerBase) -> None:
    """Write the tokenizer beside the units (pickle: the exact object, not a re-load that
    could normalise differently) and keep it loaded in this process."""
    path = Path(out) / TOKENIZER_FILE
    blob = pickle.dumps(tokenizer)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_bytes(blob)
    os.replace(tmp, path)
    _TOKENIZERS[str(out)] = tokenizer


def _tokenizer(unit: TokenizeUnit) -> PreTrainedTokenizerBase:
    tok = _TOKENIZERS.get(unit.out)
    if tok is None:
        # the file was written by this source's driver into its own partial folder
        tok = _TOKENIZERS[unit.out] = pickle.loads((Path(unit.out) / TOKENIZER_FILE).read_bytes())
    return tok


def unit_name(index: int) -> str:
    return f"{index:06d}"


@dataclass(frozen=True)
class TokenizeUnit:
    index: int  # position in the source: shards are read back in this order
    span: Span
    out: str  # the source's partial folder
    tok_meta: dict[str, Any]
    name: str  # the source
    text_field: str
    heldout_fraction: float
    dataset: DatasetSelection | None  # set when the span is of a Data Hub document shard
    one_thread: bool = False  # a worker among others: one core each, no Rust thread pool


@dataclass(frozen=True)
class UnitResult:
    index: int
    splits: dict[str, dict[str, int]]  # split -> documents, tokens
    skipped: dict[str, int]  # by reason
    bytes: int  # of input covered (for progress)
    # with a language filter: {"kept": {lang: documents}, "dropped": {lang: documents}}
    languages: dict[str, dict[str, int]] = field(default_factory=dict)


def batch_encoder(tokenizer: PreTrainedTokenizerBase) -> Callable[[list[str]], list[list[int]]]:
    """Token ids of a batch of texts, no special tokens, as fast as the tokenizer allows.

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

    chosen: list[Callable[[list[str]], list[list[int]]]] = []

    def encode(texts: list[str]) -> list[list[int]]:
        if not chosen:
            ids = fast(texts)
            chosen.append(fast if ids[:16] == plain(texts[:16]) else plain)
            return ids if chosen[0] is fast else plain(texts)
        return chosen[0](texts)

    return encode


def is_heldout(text: str, fraction: float) -> bool:
    """Stable split by content hash: the same document lands on the same side every time."""
    if fraction <= 0:
        return False
    h = int.from_bytes(hashlib.blake2b(text.encode("utf-8"), digest_size=8).digest(), "big")
    return h / 2**64 < fraction


def _texts(unit: TokenizeUnit, skips: SkipLog, langs: dict[str, Counter[str]]) -> Iterator[str]:
    """The unit's texts; with a language filter, ``langs`` counts what it kept and dropped."""
    span = unit.span
    if unit.dataset is None:
        for doc in read_span(span, skips, unit.text_field):
            yield doc.text
        return
    groups = range(span.start, span.end) if span.kind == "rows" and span.end is not None else None
    selection = unit.dataset
    for doc in read_docs(as_input(span.path), row_groups=groups):
        lang = doc.meta.get("lang", UNKNOWN)
        kept = selection.keep(lang)
        if selection.filtered:
            langs["kept" if kept else "dropped"][lang] += 1
        if kept:
            yield doc.text


def tokenize_unit(unit: TokenizeUnit, on_bytes: Callable[[int], None] | None = None) -> UnitResult:
    """Tokenize one span into this unit's shards (or report the finished unit as it was).

    ``on_bytes(text bytes so far)`` hears progress inside the unit (when run in-process).
    """
    out, name = Path(unit.out), unit_name(unit.index)
    marker = out / "units" / f"{name}.json"
    if marker.exists():
        done = json.loads(marker.read_text())
        return UnitResult(
            unit.index, done["splits"], done["skipped"], done["bytes"], done.get("languages", {})
        )
    if unit.one_thread:
        # read by tokenizers at each batch call. A forked pool worker must not touch the
        # Rust thread pool it inherited without its threads (it hangs, and a parent that
        # set TOKENIZERS_PARALLELISM=true keeps tokenizers from guarding it), and a worker
        # given one CPU by its executor should use one
        os.environ["TOKENIZERS_PARALLELISM"] = "false"
    skips = SkipLog()
    writers = {
        split: ShardWriter(
            out / split / name,
            unit.tok_meta,
            {"source": unit.name, "split": split, "unit": asdict(unit.span)},
        )
        for split in SPLITS
    }
    encode = batch_encoder(_tokenizer(unit))
    batch: list[str] = []
    seen = 0
    langs: dict[str, Counter[str]] = {"kept": Counter(), "dropped": Counter()}

    def flush() -> None:
        nonlocal seen
        for text, ids in zip(batch, encode(batch), strict=True):
            writers["heldout" if is_heldout(text, unit.heldout_fraction) else "train"].add(ids)
            seen += len(text.encode("utf-8"))
        batch.clear()
        if on_bytes is not None:
            on_bytes(seen)

    try:
        for text in _texts(unit, skips, langs):
            batch.append(text)
            if len(batch) >= BATCH_DOCS:
                flush()
        if batch:
            flush()
    except BaseException:
        for w in writers.values():
            w.abort()
        raise
    splits = {s: {"documents": w.documents, "tokens": w.tokens} for s, w in writers.items()}
    for w in writers.values():
        w.close()
    (out / "skipped").mkdir(exist_ok=True)
    skips.write(out / "skipped" / f"{name}.jsonl")
    counted = (
        {k: dict(v) for k, v in langs.items()} if unit.dataset and unit.dataset.filtered else {}
    )
    result = UnitResult(unit.index, splits, dict(skips.counts()), unit.span.size, counted)
    (out / "units").mkdir(exist_ok=True)
    write_text(marker, json.dumps(asdict(result)) + "\n")
    return result


def clear_unit_leftovers(out: Path) -> None:
    """Remove the temporary folders of units that died while writing (never read), and the
    shared tokenizer (the source's ``tokenizer`` meta says which it was)."""
    (Path(out) / TOKENIZER_FILE).unlink(missing_ok=True)
    _TOKENIZERS.pop(str(out), None)
    for split in SPLITS:
        folder = Path(out) / split
        if folder.is_dir():
            for entry in folder.iterdir():
                if entry.name.startswith("."):
                    shutil.rmtree(entry, ignore_errors=True)
