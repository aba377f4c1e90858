"""Documents -> a tokenized source (token shards per split), cached by content.

The cache key covers the input files' bytes, the tokenizer's vocabulary, the separator and
the split settings, so the same data is tokenized once and any change re-tokenizes it.
The work is cut into units (``steep.data.spans``: byte ranges of a big jsonl, row-group
runs of parquet), tokenized in parallel on an executor (a local pool or Ray) into a shard
each (``steep.data.tokenunits``) and read back as one stream (``steep.data.tokensource``).
The unit size changes how the work is spread, never the tokens: it is not in the key.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import shutil
import sys
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from transformers import PreTrainedTokenizerBase

from steep.artifacts.atomic import write_text
from steep.artifacts.fingerprint import tokenizer_fingerprint
from steep.data.documents import expand_paths
from steep.data.executor import Executor
from steep.data.locations import as_input
from steep.data.selection import DatasetSelection, slice_report
from steep.data.shards import VERSION
from steep.data.spans import UNIT_BYTES, FilePlan, plan_file
from steep.data.tokengine import FAST, HF, Engine, choose_engine, hf_engine
from steep.data.tokensource import (
    SOURCE_FORMAT,
    SOURCE_VERSION,
    TokenStream,
    open_split,
    read_source_info,
)
from steep.data.tokenunits import (
    SPLITS,
    TokenizeUnit,
    UnitResult,
    clear_unit_leftovers,
    share_tokenizer,
    tokenize_unit,
    unit_name,
)
from steep.errors import ConfigError, DataError
from steep.workspace import PLACEMENT_FILE


@dataclass
class TokenizedSource:
    name: str
    dir: Path
    train: TokenStream
    heldout: TokenStream | None
    info: dict[str, Any]  # files + hashes, counts per split and shard, skipped records


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
# above this, tokenizing inside a training job earns a hint: ~15 minutes of one core at the
# engine's end-to-end rate measured on a slow 2-core VM (BENCHMARKS.md, "An exact fast
# tokenizer engine"): HF ~900 CPU s/GB, fastokens ~15 (32 GB leaves a 2x margin)
LARGE_SOURCE_BYTES = {HF: 1 << 30, FAST: 32 << 30}


def large_source_bytes(engine: str) -> int:
    return LARGE_SOURCE_BYTES.get(engine, LARGE_SOURCE_BYTES[HF])


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
    executor: Executor | None = None,
    unit_bytes: int = UNIT_BYTES,
) -> TokenizedSource:
    """Tokenize one source into ``train`` (and ``heldout``) shards, or reuse the cached ones.

    With ``dataset``, ``paths`` are a Data Hub version's document shards: the cache key is
    the version (immutable) instead of a hash of every file, and language filters apply.
    ``progress(what, bytes_done, bytes_total)`` hears how tokenizing goes (other ranks
    print it while they wait). With no ``executor`` the units run here, one after another
    (as inside a training job); with one, as its tasks.
    """
    files = expand_paths(paths)
    tok_meta = tokenizer_meta(tokenizer, separator)
    plans = _plan(name, files, unit_bytes, digest=dataset is None, executor=executor)
    if dataset is None:
        file_info = [
            {"path": str(f), "bytes": p.size, "sha256": p.sha256}
            for f, p in zip(files, plans, strict=True)
        ]
    else:
        file_info = [{"path": str(f), "bytes": p.size} for f, p in zip(files, plans, strict=True)]
    key_src = json.dumps(
        [
            VERSION,
            file_info if dataset is None else dataset.cache_fields(),
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
    with _locked(out):  # one writer per cache entry; the others wait, then read its result
        if (out / "source.json").exists():
            return _open_source(name, out)
        partial = out.with_name(f".{out.name}.partial")  # kept on failure: the rerun resumes
        partial.mkdir(exist_ok=True)
        share_tokenizer(partial, tokenizer)
        spans = [span for plan in plans for span in plan.spans]
        engine = fallen_back(partial) or choose_engine(tokenizer)

        def units_for(engine: str) -> list[TokenizeUnit]:
            return [
                TokenizeUnit(
                    i, span, str(partial), tok_meta, name, text_field, heldout_fraction,
                    dataset, one_thread=executor is not None, engine=engine,
                )
                for i, span in enumerate(spans)
            ]  # fmt: skip

        units = units_for(engine.name)
        results = _run_units(name, units, executor, progress, engine)
        if problems := [r.mismatch for r in results if r.mismatch]:
            engine = fall_back(partial, name, engine, problems)
            units = units_for(engine.name)
            results = _run_units(name, units, executor, progress, engine)
        info = _source_info(name, partial, results, file_info, tok_meta, dataset)
        info.update(text_field=text_field, heldout_fraction=heldout_fraction)
        info["engine"] = engine.record()
        _check_counts(name, files, info, heldout_fraction)
        _merge_skips(partial, len(units))
        clear_unit_leftovers(partial)
        (partial / FALLBACK_FILE).unlink(missing_ok=True)  # source.json records it
        write_text(partial / "source.json", json.dumps(info, indent=2) + "\n")
        if (placement := getattr(executor, "placement", None)) is not None:
            record = placement.record(only=(f"plan {name}", f"tokenize {name}"))
            write_text(partial / PLACEMENT_FILE, json.dumps(record, indent=2) + "\n")
        if out.exists():
            shutil.rmtree(out)
        os.replace(partial, out)
    return _open_source(name, out)


def _plan_one(task: tuple[str, int, bool]) -> FilePlan:
    path, unit_bytes, digest = task
    return plan_file(as_input(path), unit_bytes, digest=digest)


def _plan(
    name: str, files: list[Path], unit_bytes: int, *, digest: bool, executor: Executor | None
) -> list[FilePlan]:
    """Each file's hash, size and spans: hashing reads every byte, so it runs on the
    executor too when there is one."""
    tasks = [(str(f), unit_bytes, digest) for f in files]
    try:
        if executor is None or len(files) < 2:
            return [_plan_one(t) for t in tasks]
        by_path = {p.spans[0].path: p for p in executor.run(_plan_one, tasks, f"plan {name}")}
        return [by_path[str(f)] for f in files]
    except OSError as exc:
        raise DataError(f"cannot read {exc.filename}: {exc.strerror or exc}") from None


def _run_units(
    name: str,
    units: list[TokenizeUnit],
    executor: Executor | None,
    progress: Progress | None,
    engine: Engine,
) -> list[UnitResult]:
    total = sum(u.span.size for u in units)  # input bytes (uncompressed, for parquet)
    if total > large_source_bytes(engine.name) and executor is None:
        print(
            f"tokenizing source '{name}' ({total / 1e9:.1f} GB) inside this job; on a "
            "cluster, tokenize first with `steep data tokenize --config RUN.yaml` (the run "
            "then reads the cache) so the GPUs do not wait",
            flush=True,
        )
    what, results, done = f"tokenizing {name}", [], 0

    def report(n: int) -> None:
        if progress is not None:
            progress(what, min(done + n, total), total)

    if executor is None:  # here, unit after unit, reporting inside each unit as well
        for unit in units:
            results.append(tokenize_unit(unit, report))
            done += unit.span.size
        return results
    for result in executor.run(tokenize_unit, units, f"tokenize {name}", _docs):
        results.append(result)
        done += result.bytes
        report(0)
    return sorted(results, key=lambda r: r.index)


def _docs(result: UnitResult) -> int:
    return sum(s["documents"] for s in result.splits.values())


def _source_info(
    name: str,
    partial: Path,
    results: list[UnitResult],
    file_info: list[dict],
    tok_meta: dict[str, Any],
    dataset: DatasetSelection | None,
) -> dict[str, Any]:
    splits: dict[str, dict[str, Any]] = {}
    for split in SPLITS:
        shards = [
            {"path": f"{split}/{unit_name(r.index)}", **r.splits[split]}
            for r in results
            if r.splits[split]["documents"]
        ]
        for r in results:  # a unit with nothing on this side leaves no shard to list
            if not r.splits[split]["documents"]:
                shutil.rmtree(partial / split / unit_name(r.index), ignore_errors=True)
        splits[split] = {
            "documents": sum(s["documents"] for s in shards),
            "tokens": sum(s["tokens"] for s in shards),
            "shards": shards,
        }
    skipped: Counter[str] = Counter()
    langs: dict[str, Counter[str]] = {"kept": Counter(), "dropped": Counter()}
    for r in results:
        skipped.update(r.skipped)
        for side, counts in r.languages.items():
            langs[side].update(counts)
    return {
        "format": SOURCE_FORMAT,
        "version": SOURCE_VERSION,
        "name": name,
        "dataset": asdict(dataset) if dataset else None,
        "files": file_info,
        "tokenizer": tok_meta,
        "units": len(results),
        "splits": splits,
        "skipped": sum(skipped.values()),
        "skipped_by_reason": dict(skipped),
        **({"languages": language_counts(langs)} if dataset and dataset.filtered else {}),
    }


def language_counts(langs: dict[str, Counter[str]]) -> dict[str, dict[str, int]]:
    """Kept and dropped documents by tag, most first (what a language slice reports)."""
    return {side: dict(counts.most_common()) for side, counts in langs.items()}


def _check_counts(name: str, files: list[Path], info: dict, heldout_fraction: float) -> None:
    train, heldout = info["splits"]["train"], info["splits"]["heldout"]
    if train["documents"] == 0:
        reasons = ", ".join(f"{n} {r}" for r, n in info["skipped_by_reason"].items())
        where = (info.get("dataset") or {}).get("ref") or [str(f) for f in files]
        sliced = slice_report(info)
        raise DataError(
            f"source '{name}': no usable documents in {where} "
            f"({info['skipped']} records skipped{': ' + reasons if reasons else ''})"
            + (f"; its {sliced}" if sliced else "")
        )
    if heldout_fraction > 0 and heldout["documents"] == 0:
        raise DataError(
            f"source '{name}': heldout_fraction={heldout_fraction} picked none of its "
            f"{train['documents']} documents; raise it or add documents"
        )


FALLBACK_FILE = "engine-fallback.json"  # in a partial source: its units re-run by HF


def fall_back(partial: Path, name: str, engine: Engine, problems: list[str]) -> Engine:
    """A sampled document's ids differed from HF's: every shard of the source goes and HF
    writes them all again (a source is never a mix of engines). Recorded in the partial
    folder, so a resumed run stays on HF, and in ``source.json``."""
    print(
        f"warning: source '{name}': {engine.name} {engine.version} gave other ids than HF "
        f"tokenizers in {len(problems)} unit(s) ({problems[0]}); re-tokenizing '{name}' "
        "with HF tokenizers",
        file=sys.stderr,
        flush=True,
    )
    record = {"from": engine.record(), "units": len(problems), "problem": problems[0]}
    write_text(partial / FALLBACK_FILE, json.dumps(record, indent=2) + "\n")
    for folder in (*SPLITS, "units", "skipped"):
        shutil.rmtree(partial / folder, ignore_errors=True)
    return fallen_back(partial) or hf_engine()


def fallen_back(partial: Path) -> Engine | None:
    """The HF engine of a source that fell back before (None: it did not)."""
    path = partial / FALLBACK_FILE
    if not path.exists():
        return None
    record = json.loads(path.read_text())
    was = record["from"]
    reason = f"fell back from {was['name']} {was['version']}: {record['problem']}"
    return hf_engine(reason, fallback=record)


def _merge_skips(partial: Path, units: int) -> None:
    """One skipped.jsonl in input order, as a single pass over the files writes it."""
    with open(partial / "skipped.jsonl", "wb") as out:
        for i in range(units):
            part = partial / "skipped" / f"{unit_name(i)}.jsonl"
            if part.exists():
                out.write(part.read_bytes())
    shutil.rmtree(partial / "skipped", ignore_errors=True)


@contextlib.contextmanager
def _locked(out: Path) -> Iterator[None]:
    """An exclusive lock on the cache entry, released by the kernel if this process dies.

    The lock file goes once the entry is whole: whoever waited on it, or locks a new one,
    finds ``source.json`` and reads the entry instead of writing it.
    """
    lock = out.with_name(f".{out.name}.lock")
    with open(lock, "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
            lock.unlink(missing_ok=True)
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def _open_source(name: str, out: Path) -> TokenizedSource:
    info = read_source_info(out)
    train = open_split(out, info, "train")
    if train is None:
        raise DataError(f"{out}: the tokenized source has no training tokens")
    return TokenizedSource(name, out, train, open_split(out, info, "heldout"), info)
