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
from collections.abc import Callable, Iterator, Sequence
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
from steep.data.tokengine import HF, Encode, encoder, first_difference, hf_encoder

BATCH_DOCS = 256
SPLITS = ("train", "heldout")
TOKENIZER_FILE = "tokenizer.pkl"
SAMPLE_SHARE = 0.002  # of a unit's text that HF encodes too, to check a fast engine
# tokenizers by partial folder, one load per worker process: a unit names its tokenizer by
# that file instead of carrying it, so a task is bytes, not a vocabulary, on the wire
_TOKENIZERS: dict[str, PreTrainedTokenizerBase] = {}
_ENCODERS: dict[tuple[str, str], Encode] = {}  # by (partial folder, engine), per process


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
    engine: str = HF  # steep.data.tokengine: the engine chosen for this source's tokenizer


@dataclass(frozen=True)
class UnitResult:
    index: int
    splits: dict[str, dict[str, int]]  # split -> documents, tokens
    skipped: dict[str, int]  # by reason
    bytes: int  # of input covered (for progress)
    # with a language filter: {"kept": {lang: documents}, "dropped": {lang: documents}}
    languages: dict[str, dict[str, int]] = field(default_factory=dict)
    engine: str = HF
    # set when a sampled document's ids differ from HF's: the unit wrote nothing, and its
    # source falls back to HF whole
    mismatch: str | None = None


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


def _encoder(unit: TokenizeUnit) -> Encode:
    key = (unit.out, unit.engine)
    if key not in _ENCODERS:
        _ENCODERS[key] = encoder(_tokenizer(unit), unit.engine)
    return _ENCODERS[key]


class _Sample:
    """A sample of a unit's documents encoded by HF as well (only for an engine other than
    HF, whose ids these are): the unit's first document, then one document of a batch
    whenever the sample is under ``SAMPLE_SHARE`` of the bytes seen. HF is ~50x slower,
    so 0.2% of the bytes costs ~10% of the fast engine's time."""

    def __init__(self, unit: TokenizeUnit):
        self.reference = hf_encoder(_tokenizer(unit)) if unit.engine != HF else None
        self.batches, self.seen, self.sampled = 0, 0, 0

    def problem(self, texts: list[str], ids: Sequence[Sequence[int]]) -> str | None:
        if self.reference is None or not texts:
            return None
        batch, self.batches = self.batches, self.batches + 1
        self.seen += sum(len(t) for t in texts)  # characters: the share needs no exactness
        if batch and self.sampled >= SAMPLE_SHARE * self.seen:
            return None
        i = batch * 37 % len(texts)
        self.sampled += len(texts[i])
        if (where := first_difference(ids[i], self.reference([texts[i]])[0])) is not None:
            return f"document {i} of batch {batch}: {where}"
        return None


def _done(marker: Path, unit: TokenizeUnit) -> UnitResult | None:
    """The unit's result if it finished before with this engine (a source never mixes)."""
    if not marker.exists():
        return None
    done = json.loads(marker.read_text())
    if done.get("engine", HF) != unit.engine:
        return None
    return UnitResult(
        unit.index, done["splits"], done["skipped"], done["bytes"], done.get("languages", {}),
        unit.engine,
    )  # fmt: skip


def tokenize_unit(unit: TokenizeUnit, on_bytes: Callable[[int], None] | None = None) -> UnitResult:
    """Tokenize one span into this unit's shards (or report the finished unit as it was).

    ``on_bytes(text bytes so far)`` hears progress inside the unit (when run in-process).
    With a fast engine a sample is checked against HF; on a difference the unit writes
    nothing and says so (``mismatch``), and the driver re-tokenizes its source with HF.
    """
    out, name = Path(unit.out), unit_name(unit.index)
    marker = out / "units" / f"{name}.json"
    if (done := _done(marker, unit)) is not None:
        return done
    if unit.one_thread:
        # read by tokenizers at each batch call. A forked pool worker must not touch the
        # Rust thread pool it inherited without its threads (it hangs, and a parent that
        # set TOKENIZERS_PARALLELISM=true keeps tokenizers from guarding it), and a worker
        # given one CPU by its executor should use one (fastokens reads its own variable)
        os.environ["TOKENIZERS_PARALLELISM"] = "false"
        os.environ.setdefault("FASTOKENS_BPE_THREADS", "1")
    skips = SkipLog()
    writers = {
        split: ShardWriter(
            out / split / name,
            unit.tok_meta,
            {"source": unit.name, "split": split, "unit": asdict(unit.span)},
        )
        for split in SPLITS
    }
    encode, sample = _encoder(unit), _Sample(unit)
    batch: list[str] = []
    seen = 0
    langs: dict[str, Counter[str]] = {"kept": Counter(), "dropped": Counter()}

    def flush() -> str | None:
        nonlocal seen
        ids = encode(batch)
        if (problem := sample.problem(batch, ids)) is not None:
            return problem
        for text, one in zip(batch, ids, strict=True):
            writers["heldout" if is_heldout(text, unit.heldout_fraction) else "train"].add(one)
            seen += len(text.encode("utf-8"))
        batch.clear()
        if on_bytes is not None:
            on_bytes(seen)
        return None

    mismatch = None
    try:
        for text in _texts(unit, skips, langs):
            batch.append(text)
            if len(batch) >= BATCH_DOCS and (mismatch := flush()) is not None:
                break
        if batch and mismatch is None:
            mismatch = flush()
    except BaseException:
        for w in writers.values():
            w.abort()
        raise
    if mismatch is not None:
        for w in writers.values():
            w.abort()
        return UnitResult(unit.index, {}, {}, 0, {}, unit.engine, f"unit {name}, {mismatch}")
    splits = {s: {"documents": w.documents, "tokens": w.tokens} for s, w in writers.items()}
    for w in writers.values():
        w.close()
    (out / "skipped").mkdir(exist_ok=True)
    skips.write(out / "skipped" / f"{name}.jsonl")
    counted = (
        {k: dict(v) for k, v in langs.items()} if unit.dataset and unit.dataset.filtered else {}
    )
    result = UnitResult(
        unit.index, splits, dict(skips.counts()), unit.span.size, counted, unit.engine
    )
    (out / "units").mkdir(exist_ok=True)
    write_text(marker, json.dumps(asdict(result)) + "\n")
    return result


def clear_unit_leftovers(out: Path) -> None:
    """Remove the temporary folders of units that died while writing (never read), and the
    shared tokenizer (the source's ``tokenizer`` meta says which it was)."""
    (Path(out) / TOKENIZER_FILE).unlink(missing_ok=True)
    _TOKENIZERS.pop(str(out), None)
    for key in [k for k in _ENCODERS if k[0] == str(out)]:
        del _ENCODERS[key]
    for split in SPLITS:
        folder = Path(out) / split
        if folder.is_dir():
            for entry in folder.iterdir():
                if entry.name.startswith("."):
                    shutil.rmtree(entry, ignore_errors=True)
