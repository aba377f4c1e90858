"""``steep data add``: raw files or folders -> a named dataset's version 1.

Each input file becomes one document shard, read and written in a worker process, so
memory is bounded by one file's batch, not the corpus. Whatever cannot be used (malformed
lines, bad encodings, empty or giant documents, binary files, duplicate input files) is
counted and kept in the exclusions with file and line.
"""

from __future__ import annotations

import hashlib
import json
import sys
from collections import Counter
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from steep.artifacts.fingerprint import file_sha256
from steep.data.documents import SkipLog, expand_paths, read_documents
from steep.datahub.catalog import Catalog, CatalogError, DatasetVersion, check_name
from steep.datahub.exclusions import Exclusion, write_exclusions
from steep.datahub.executor import Executor, LocalExecutor
from steep.datahub.steps.base import Doc, write_docs
from steep.datahub.steps.langid import detect

MAX_DOC_BYTES = 10 * 1024 * 1024


@dataclass(frozen=True)
class IngestTask:
    index: int
    path: str
    shard: str
    exclusions: str
    text_field: str
    max_doc_bytes: int
    langid: bool
    result: str  # a finished file's FileResult as JSON: a rerun after a crash skips it


@dataclass
class FileResult:
    index: int
    path: str
    sha256: str
    size: int
    documents: int = 0
    bytes: int = 0
    skipped: dict[str, int] = field(default_factory=dict)
    languages: dict[str, int] = field(default_factory=dict)


def _language_tagger(enabled: bool):
    if not enabled:
        return None

    return detect


def ingest_file(task: IngestTask) -> FileResult:
    """Read one input file into one shard; runs in a worker."""
    path = Path(task.path)
    try:
        sha, size = file_sha256(path), path.stat().st_size
    except OSError as exc:
        write_exclusions(
            Path(task.exclusions),
            [Exclusion(None, "ingest", "skip", "unreadable file", str(exc), task.path)],
        )
        return FileResult(task.index, task.path, "", 0, skipped={"unreadable file": 1})
    result = FileResult(task.index, task.path, sha, size)
    skips = SkipLog()
    giant: list[Exclusion] = []
    tag = _language_tagger(task.langid)
    langs: Counter[str] = Counter()

    def docs() -> Iterator[Doc]:
        for d in read_documents([path], skips, task.text_field):
            doc_id = f"{sha[:12]}:{d.line}"
            n_bytes = len(d.text.encode("utf-8"))
            if n_bytes > task.max_doc_bytes:
                detail = f"{n_bytes:,} bytes > {task.max_doc_bytes:,}"
                giant.append(
                    Exclusion(doc_id, "ingest", "skip", "giant document", detail, d.path, d.line)
                )
                continue
            meta: dict[str, Any] = {"source": d.path, "line": d.line}
            if tag is not None:
                meta["lang"], meta["lang_score"] = tag(d.text)
                langs[meta["lang"]] += 1
            result.bytes += n_bytes
            yield Doc(doc_id, d.text, meta)

    result.documents = write_docs(Path(task.shard), docs())
    rows = [
        Exclusion(None, "ingest", "skip", s.reason.split(":")[0], s.reason, s.path, s.line)
        for s in skips.skips
    ] + giant
    write_exclusions(Path(task.exclusions), rows)
    result.skipped = dict(Counter(r.reason for r in rows))
    result.languages = dict(langs)
    Path(task.result).write_text(json.dumps(asdict(result)))
    return result


def add_dataset(
    name: str,
    paths: list[str],
    *,
    text_field: str = "text",
    langid: bool = True,
    max_doc_bytes: int = MAX_DOC_BYTES,
    catalog: Catalog | None = None,
    executor: Executor | None = None,
) -> DatasetVersion:
    """Ingest files and folders as ``name@1``; a name already taken is refused."""
    catalog = catalog or Catalog()
    check_name(name)
    if catalog.versions(name):
        raise CatalogError(
            f"dataset {name!r} exists (latest {catalog.get(name).ref}); pick another name, "
            f"or `steep data prepare {name}` to make a new version from it"
        )
    files = expand_paths(paths)  # raises FileNotFoundError naming a missing path
    if not files:
        raise CatalogError(f"no files found in {', '.join(paths)}")
    options = [[str(f) for f in files], text_field, langid, max_doc_bytes]
    key = hashlib.sha256(json.dumps(options).encode()).hexdigest()[:16]
    staging = catalog.staging(name, f"add-{key}")
    (staging / "shards").mkdir(exist_ok=True)
    (staging / "exclusions").mkdir(exist_ok=True)
    (staging / "work").mkdir(exist_ok=True)
    tasks = [
        IngestTask(
            i,
            str(p),
            str(staging / "shards" / f"{i:05d}.parquet"),
            str(staging / "exclusions" / f"ingest-{i:05d}.parquet"),
            text_field,
            max_doc_bytes,
            langid,
            str(staging / "work" / f"ingest-{i:05d}.json"),
        )
        for i, p in enumerate(files)
    ]
    done = [FileResult(**json.loads(Path(t.result).read_text())) for t in tasks if _done(t)]
    todo = [t for t in tasks if not _done(t)]
    if done:
        print(f"add {name}: {len(done)} of {len(tasks)} files already done, resuming")
    executor = executor or LocalExecutor()
    results = sorted(
        done + list(executor.run(ingest_file, todo, f"add {name}", lambda r: r.documents)),
        key=lambda r: r.index,
    )
    _drop_duplicate_files(results, tasks)
    skipped: Counter[str] = Counter()
    languages: Counter[str] = Counter()
    for r in results:
        skipped.update(r.skipped)
        languages.update(r.languages)
    manifest = {
        "created_by": {
            "command": "add",
            "argv": sys.argv[1:],
            "paths": paths,
            "text_field": text_field,
            "langid": langid,
            "max_doc_bytes": max_doc_bytes,
        },
        "parent": None,
        "inputs": [
            {
                "path": r.path,
                "sha256": r.sha256,
                "size": r.size,
                "documents": r.documents,
                "skipped": r.skipped,
            }
            for r in results
        ],
        "documents": sum(r.documents for r in results),
        "bytes": sum(r.bytes for r in results),
        "languages": dict(languages.most_common()),
        "skipped": dict(skipped.most_common()),
        "funnel": [],
    }
    return catalog.publish(name, staging, manifest)


def _done(task: IngestTask) -> bool:
    return Path(task.result).is_file() and Path(task.shard).is_file()


def _drop_duplicate_files(results: list[FileResult], tasks: list[IngestTask]) -> None:
    """The same file given twice (or under two names) is ingested once."""
    first: dict[str, FileResult] = {}
    for r in results:
        if not r.sha256:
            continue
        if r.sha256 not in first:
            first[r.sha256] = r
            continue
        task = tasks[r.index]
        Path(task.shard).unlink(missing_ok=True)
        detail = f"same bytes as {first[r.sha256].path}"
        write_exclusions(
            Path(task.exclusions),
            [Exclusion(None, "ingest", "skip", "duplicate file", detail, r.path)],
        )
        r.documents, r.bytes, r.languages = 0, 0, {}
        r.skipped = {"duplicate file": 1}
