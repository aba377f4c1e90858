"""Documents -> token shards, with a held-out split per source, cached by content.

The cache key covers the input files' bytes, the tokenizer's vocabulary, the separator and
the split settings, so the same data is tokenized once and any change re-tokenizes it.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from tqdm import tqdm
from transformers import PreTrainedTokenizerBase

from steep.artifacts.fingerprint import file_sha256, tokenizer_fingerprint
from steep.data.docshards import read_docs
from steep.data.documents import SkipLog, expand_paths, read_documents
from steep.data.shards import VERSION, Shard, ShardWriter
from steep.errors import ConfigError, DataError

BATCH_DOCS = 256


@dataclass
class TokenizedSource:
    name: str
    dir: Path
    train: Shard
    heldout: Shard | None
    info: dict[str, Any]  # files + hashes, counts, skipped records


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


def tokenizer_meta(tokenizer: PreTrainedTokenizerBase, separator: str | None) -> dict[str, Any]:
    sep = separator or tokenizer.eos_token
    if sep is None:
        raise ConfigError("the tokenizer has no EOS token: set model.document_separator")
    sep_id = tokenizer.convert_tokens_to_ids(sep)
    unknown = sep_id == tokenizer.unk_token_id and sep != tokenizer.unk_token
    if sep_id is None or unknown:  # SmolLM2's <|endoftext|> is also its unk token
        raise ConfigError(f"model.document_separator {sep!r} is not a token of this tokenizer")
    return {
        "name": str(getattr(tokenizer, "name_or_path", "") or type(tokenizer).__name__),
        "sha256": tokenizer_fingerprint(tokenizer),
        "vocab_size": len(tokenizer),
        "separator": sep,
        "separator_id": int(sep_id),
    }


Progress = Callable[[str, int, int], None]  # (what, bytes done, bytes in all)
LARGE_SOURCE_BYTES = 1 << 30  # above this, tokenizing inside a training job earns a hint


@dataclass(frozen=True)
class DatasetSelection:
    """Which documents of a Data Hub version a source reads (part of the cache key)."""

    ref: str  # NAME@VERSION, resolved: versions never change, so the ref identifies the text
    created: str
    languages: tuple[str, ...] | None = None
    exclude_languages: tuple[str, ...] | None = None
    text_bytes: int = 0  # for the progress bar (shard files are compressed)

    @classmethod
    def of(
        cls,
        ref: str,
        manifest: dict[str, Any],
        languages: Sequence[str] | None = None,
        exclude_languages: Sequence[str] | None = None,
    ) -> DatasetSelection:
        """The selection for a dataset version (its ref and manifest) and language filter."""
        return cls(
            ref,
            manifest["created"],
            tuple(languages) if languages else None,
            tuple(exclude_languages) if exclude_languages else None,
            manifest["bytes"],
        )

    def keep(self, lang: str) -> bool:
        if self.languages is not None and lang not in self.languages:
            return False
        return not (self.exclude_languages and lang in self.exclude_languages)

    def texts(self, shards: list[Path]) -> Iterator[str]:
        for shard in shards:
            for doc in read_docs(shard):
                if self.keep(doc.meta.get("lang", "und")):
                    yield doc.text


def is_heldout(text: str, fraction: float) -> bool:
    """Stable split by content hash: the same document lands on the same side every time."""
    if fraction <= 0:
        return False
    h = int.from_bytes(hashlib.blake2b(text.encode("utf-8"), digest_size=8).digest(), "big")
    return h / 2**64 < fraction


def tokenize_source(
    name: str,
    paths: list[str],
    tokenizer: PreTrainedTokenizerBase,
    cache_root: Path,
    *,
    text_field: str = "text",
    heldout_fraction: float = 0.0,
    separator: str | None = None,
    dataset: DatasetSelection | None = None,
    progress: Progress | None = None,
) -> TokenizedSource:
    """Tokenize one source into ``train`` (and ``heldout``) shards, or reuse the cached ones.

    With ``dataset``, ``paths`` are a Data Hub version's document shards: the cache key is
    the version (immutable) instead of a hash of every file, and language filters apply.
    ``progress(what, bytes_done, bytes_total)`` hears how tokenizing goes (other ranks
    print it while they wait).
    """
    files = expand_paths(paths)
    tok_meta = tokenizer_meta(tokenizer, separator)
    if dataset is None:
        file_info = [
            {"path": str(f), "bytes": f.stat().st_size, "sha256": file_sha256(f)} for f in files
        ]
    else:
        file_info = [{"path": str(f), "bytes": f.stat().st_size} for f in files]
    key_src = json.dumps(
        [
            VERSION,
            file_info if dataset is None else asdict(dataset),
            tok_meta["sha256"],
            tok_meta["separator_id"],
            text_field,
            heldout_fraction,
        ],
        sort_keys=True,
    )
    key = hashlib.sha256(key_src.encode()).hexdigest()[:16]
    # a dataset version is cached under its own name, so any run (or `steep data tokenize`)
    # that reads it with the same tokenizer and split finds the same shards
    prefix = name if dataset is None else dataset.ref.replace("@", "-v")
    out = Path(cache_root) / f"{prefix}-{key}"
    if (out / "source.json").exists():
        return _open_source(name, out)

    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        _write_source(
            name,
            files,
            tokenizer,
            tok_meta,
            tmp,
            text_field,
            heldout_fraction,
            file_info,
            dataset,
            progress,
        )
        if out.exists():
            shutil.rmtree(out)
        os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return _open_source(name, out)


def _write_source(
    name: str,
    files: list[Path],
    tokenizer: PreTrainedTokenizerBase,
    tok_meta: dict[str, Any],
    out: Path,
    text_field: str,
    heldout_fraction: float,
    file_info: list[dict],
    dataset: DatasetSelection | None = None,
    progress: Progress | None = None,
) -> None:
    skips = SkipLog()
    writers = {
        "train": ShardWriter(out / "train", tok_meta, {"source": name, "split": "train"}),
        "heldout": ShardWriter(out / "heldout", tok_meta, {"source": name, "split": "heldout"}),
    }
    total_bytes = sum(f["bytes"] for f in file_info)
    if dataset is not None and dataset.text_bytes:
        total_bytes = dataset.text_bytes
    if total_bytes > LARGE_SOURCE_BYTES:
        print(
            f"tokenizing source '{name}' ({total_bytes / 1e9:.1f} GB) inside this job; on a "
            "cluster, tokenize first with `steep data tokenize --config RUN.yaml` (the run "
            "then reads the cache) so the GPUs do not wait",
            flush=True,
        )
    bar = tqdm(
        total=total_bytes,
        unit="B",
        unit_scale=True,
        desc=f"tokenize {name}",
        leave=False,
        dynamic_ncols=True,
    )
    batch: list[str] = []
    encode = batch_encoder(tokenizer)

    def flush() -> None:
        ids = encode(batch)
        for text, doc_ids in zip(batch, ids, strict=True):
            split = "heldout" if is_heldout(text, heldout_fraction) else "train"
            writers[split].add(doc_ids)
            bar.update(len(text.encode("utf-8")))
        if progress is not None:
            progress(f"tokenizing {name}", bar.n, total_bytes)
        batch.clear()

    try:
        texts = (
            (d.text for d in read_documents(files, skips, text_field))
            if dataset is None
            else dataset.texts(files)
        )
        for text in texts:
            batch.append(text)
            if len(batch) >= BATCH_DOCS:
                flush()
        if batch:
            flush()
    finally:
        bar.close()
    if writers["train"].documents == 0:
        for w in writers.values():
            w.abort()
        raise DataError(
            f"source '{name}': no usable documents in {[str(f) for f in files]} ({skips.summary()})"
        )
    if heldout_fraction > 0 and writers["heldout"].documents == 0:
        for w in writers.values():
            w.abort()
        raise DataError(
            f"source '{name}': heldout_fraction={heldout_fraction} picked none of its "
            f"{writers['train'].documents} documents; raise it or add documents"
        )
    counts = {split: {"documents": w.documents, "tokens": w.tokens} for split, w in writers.items()}
    for w in writers.values():
        w.close()
    skips.write(out / "skipped.jsonl")
    info = {
        "name": name,
        "dataset": asdict(dataset) if dataset else None,
        "files": file_info,
        "tokenizer": tok_meta,
        "text_field": text_field,
        "heldout_fraction": heldout_fraction,
        "splits": counts,
        "skipped": len(skips.skips),
        "skipped_by_reason": dict(skips.counts()),
    }
    (out / "source.json").write_text(json.dumps(info, indent=2) + "\n")


def _open_source(name: str, out: Path) -> TokenizedSource:
    info = json.loads((out / "source.json").read_text())
    heldout = Shard.open(out / "heldout")
    return TokenizedSource(
        name=name,
        dir=out,
        train=Shard.open(out / "train"),
        heldout=heldout if len(heldout) else None,
        info=info,
    )
