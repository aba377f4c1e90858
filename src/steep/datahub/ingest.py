"""``steep data add``: raw files or folders -> a named dataset's version 1.

Two stages on the executor (local pool or Ray): plan (hash each file, cut a big one into
line-aligned spans, ``steep.data.spans``), then ingest each unit into its own document
shard, so memory is bounded by one unit's batch and one huge file keeps every worker busy.
Whatever cannot be used (malformed lines, bad encodings, empty or giant documents, binary
files, duplicate input files) is counted and kept in the exclusions with file and line.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import sys
from collections import Counter
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from steep.artifacts import atomic
from steep.data.documents import MAX_DOC_BYTES, SkipLog, _format_of, expand_paths
from steep.data.executor import Executor, LocalExecutor
from steep.data.formats import format_for, missing_libraries
from steep.data.formats.template import RecordTemplate
from steep.data.input_caps import file_cap
from steep.data.locations import as_input
from steep.data.spans import UNIT_BYTES, Span, plan_file, plan_repo, read_span
from steep.datahub.catalog import Catalog, CatalogError, DatasetVersion, check_name
from steep.datahub.exclusions import Exclusion, write_exclusions
from steep.datahub.name_lock import adding
from steep.datahub.steps.base import Doc, write_docs
from steep.datahub.steps.langid import identify
from steep.errors import DataError


@dataclass(frozen=True)
class PlanTask:
    index: int
    path: str
    unit_bytes: int
    result: str  # the plan as JSON: a rerun after a crash does not read the file again
    code: str | None = None  # "file" or "repo": the path is a code repository


@dataclass
class FilePlanResult:
    index: int
    path: str
    sha256: str
    size: int
    spans: list[dict[str, Any]]
    error: str | None = None  # the file could not be read: one unit records why


@dataclass(frozen=True)
class IngestTask:
    index: int  # the input file
    part: int  # the span of that file
    path: str
    span: dict[str, Any]
    sha256: str
    error: str | None
    shard: str
    exclusions: str
    text_field: str
    max_doc_bytes: int
    langid: bool
    result: str  # a finished unit's UnitResult as JSON: a rerun after a crash skips it
    max_input_bytes: int | None = None  # what a (compressed) file may decompress to
    template: RecordTemplate | None = None  # records' text made of their fields


@dataclass
class UnitResult:
    index: int
    part: int
    documents: int = 0
    bytes: int = 0
    skipped: dict[str, int] = field(default_factory=dict)
    languages: dict[str, int] = field(default_factory=dict)


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


def plan_input(task: PlanTask) -> FilePlanResult:
    """Hash one input file and cut it into spans; runs in a worker (a big file is read by
    one worker here, so planning many files is as parallel as reading them)."""
    try:
        path = as_input(task.path)
        if task.code:
            plan = plan_repo(path, task.code, task.unit_bytes)
        else:
            plan = plan_file(path, task.unit_bytes)
        result = FilePlanResult(
            task.index, task.path, plan.sha256, plan.size, [asdict(s) for s in plan.spans]
        )
    except OSError as exc:
        whole = asdict(Span(task.path, "whole"))
        result = FilePlanResult(task.index, task.path, "", 0, [whole], str(exc))
    atomic.write_text(
        Path(task.result), json.dumps(asdict(result))
    )  # the done-marker: whole or absent
    return result


def ingest_unit(task: IngestTask) -> UnitResult:
    """Read one span of an input file into one shard; runs in a worker."""
    result = UnitResult(task.index, task.part)
    if task.error is not None:
        write_exclusions(
            Path(task.exclusions),
            [Exclusion(None, "ingest", "skip", "unreadable file", task.error, task.path)],
        )
        result.skipped = {"unreadable file": 1}
        atomic.write_text(Path(task.result), json.dumps(asdict(result)))
        return result
    skips = SkipLog()
    giant: list[Exclusion] = []
    tag = identify if task.langid else None
    langs: Counter[str] = Counter()
    sha = task.sha256

    def docs() -> Iterator[Doc]:
        source = task.template or task.text_field
        for d in read_span(Span(**task.span), skips, source, task.max_input_bytes):
            doc_id = f"{sha[:12]}:{d.line}"
            n_bytes = len(d.text.encode("utf-8"))
            if n_bytes > task.max_doc_bytes:
                detail = f"{n_bytes:,} bytes > {task.max_doc_bytes:,}"
                giant.append(
                    Exclusion(doc_id, "ingest", "skip", "giant document", detail, d.path, d.line)
                )
                continue
            meta: dict[str, Any] = {"source": d.path, "line": d.line, **(d.meta or {})}
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
    atomic.write_text(Path(task.result), json.dumps(asdict(result)))
    return result


def add_dataset(
    name: str,
    paths: list[str],
    *,
    text_field: str = "text",
    langid: bool = True,
    max_doc_bytes: int = MAX_DOC_BYTES,
    unit_bytes: int = UNIT_BYTES,
    catalog: Catalog | None = None,
    executor: Executor | None = None,
    max_input_bytes: int | None = None,
    max_input_ratio: float | None = None,
    template: RecordTemplate | None = None,
    code: str | None = None,
) -> DatasetVersion:
    """Ingest files and folders as ``name@1``; a name already taken is refused, and so is
    input that yields no document (nothing is published; the reasons are in the error).
    One ``add`` of a name runs at a time: a second, whatever its input, is refused at once
    naming the first (``name_lock``); a new version of a dataset is ``prepare``'s.

    Work runs in units of about ``unit_bytes`` of input (spans of a big file, or a whole
    small one), each into its own shard, so one huge file keeps every worker busy.
    ``max_input_bytes`` skips, whole, a file that decompresses past it, and
    ``max_input_ratio`` one past that multiple of its own size (``input_caps.file_cap``):
    the studio sets both for uploads; the CLI neither unless asked. ``template`` makes
    each record's text of its fields (``steep.data.formats.template``), recorded in the
    manifest. ``code`` ("file" or "repo") reads each path as a code repository, one
    document per file or per repository (``steep.data.formats.code``).
    """
    catalog = catalog or Catalog()
    check_name(name)
    with adding(catalog.root, name):  # one add per name at once (name_lock)
        return _add(
            name,
            paths,
            text_field,
            langid,
            max_doc_bytes,
            unit_bytes,
            catalog,
            executor or LocalExecutor(),
            (max_input_bytes, max_input_ratio),
            template,
            code,
        )


def _add(
    name: str,
    paths: list[str],
    text_field: str,
    langid: bool,
    max_doc_bytes: int,
    unit_bytes: int,
    catalog: Catalog,
    executor: Executor,
    caps: tuple[int | None, float | None],
    template: RecordTemplate | None = None,
    code: str | None = None,
) -> DatasetVersion:
    """``add_dataset``'s work, under the name's lock: the name is checked free again here."""
    if catalog.versions(name):
        raise CatalogError(
            f"dataset {name!r} exists (latest {catalog.get(name).ref}); pick another name, "
            f"or `steep data prepare {name}` to make a new version from it"
        )
    files = repositories(paths) if code else expand_paths(paths)  # MissingInputError
    if not files:
        raise CatalogError(f"no files found in {', '.join(paths)}")
    lacking = missing_libraries((f, "code" if code else _format_of(f)) for f in files)
    if lacking:  # before any work: not after hours of reading the other files
        raise DataError(lacking)
    options = [[str(f) for f in files], text_field, langid, max_doc_bytes, unit_bytes]
    options += [template.describe() if template else None, code]
    key = hashlib.sha256(json.dumps(options).encode()).hexdigest()[:16]
    staging = catalog.staging(name, f"add-{key}")
    for sub in ("shards", "exclusions", "work"):
        (staging / sub).mkdir(exist_ok=True)

    plan_tasks = [
        PlanTask(i, str(p), unit_bytes, str(staging / "work" / f"plan-{i:05d}.json"), code)
        for i, p in enumerate(files)
    ]
    plans = [
        FilePlanResult(**json.loads(Path(t.result).read_text()))
        for t in plan_tasks
        if Path(t.result).is_file()
    ]
    todo_plans = [t for t in plan_tasks if not Path(t.result).is_file()]
    plans = sorted(
        plans + list(executor.run(plan_input, todo_plans, f"plan {name}")), key=lambda r: r.index
    )

    dupes = _duplicate_files(plans)  # known from the plans: such a file is never read again
    tasks = [
        replace(
            _unit_task(staging, plan, j, text_field, max_doc_bytes, langid),
            max_input_bytes=file_cap(plan.size, *caps),
            template=template,
        )
        for plan in plans
        if plan.index not in dupes
        for j in range(len(plan.spans))
    ]
    done = [UnitResult(**json.loads(Path(t.result).read_text())) for t in tasks if _done(t)]
    todo = [t for t in tasks if not _done(t)]
    if done:
        print(f"add {name}: {len(done)} of {len(tasks)} units already done, resuming")
    units = done + list(executor.run(ingest_unit, todo, f"add {name}", lambda r: r.documents))
    results = _file_results(plans, units)
    for r in results:
        if r.index in dupes:
            _record_duplicate(staging, r, dupes[r.index])
    skipped: Counter[str] = Counter()
    languages: Counter[str] = Counter()
    for r in results:
        skipped.update(r.skipped)
        languages.update(r.languages)
    if not sum(r.documents for r in results):
        shutil.rmtree(staging, ignore_errors=True)
        why = ", ".join(f"{n} {reason}" for reason, n in skipped.most_common()) or "no records"
        raise DataError(
            f"dataset {name!r}: no usable document in {', '.join(paths)} ({why}); nothing "
            "was published"
        )
    manifest = {
        "created_by": {
            "command": "add",
            "argv": sys.argv[1:],
            "paths": paths,
            "text_field": text_field,
            "langid": langid,
            "max_doc_bytes": max_doc_bytes,
            "template": template.describe() if template else None,
            "code": code,
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
        "formats": format_funnel(results, code),
        "funnel": [],
    }
    return catalog.publish(name, staging, manifest, executor)


def repositories(paths: list[str]) -> list[Path]:
    """The code repositories named (folders); anything else is one line."""
    out = [as_input(p) for p in paths]
    for raw, p in zip(paths, out, strict=True):
        if not p.is_dir():
            raise DataError(f"--code reads folders (a checkout or a source tree): {raw} is not one")
    return out


def format_funnel(results: list[FileResult], code: str | None = None) -> dict[str, dict[str, Any]]:
    """Per input format: files read, documents extracted, records skipped by reason."""
    out: dict[str, dict[str, Any]] = {}
    for r in results:
        suffix = "code" if code else _format_of(Path(r.path))
        fmt = format_for(suffix)
        name = fmt.name if fmt else (suffix or "unknown").lstrip(".")
        row = out.setdefault(name, {"files": 0, "documents": 0, "skipped": {}})
        row["files"] += 1
        row["documents"] += r.documents
        row["skipped"] = dict(Counter(row["skipped"]) + Counter(r.skipped))
    return out


def _unit_paths(staging: Path, index: int, j: int, units: int) -> tuple[str, str, str]:
    """(shard, exclusions, result) of unit j of file ``index``; a file of one unit keeps
    the names a whole-file ingest used."""
    tag = f"{index:05d}" if units == 1 else f"{index:05d}-{j:04d}"
    return (
        str(staging / "shards" / f"{tag}.parquet"),
        str(staging / "exclusions" / f"ingest-{tag}.parquet"),
        str(staging / "work" / f"ingest-{tag}.json"),
    )


def _unit_task(
    staging: Path, plan: FilePlanResult, j: int, text_field: str, max_doc_bytes: int, langid: bool
) -> IngestTask:
    shard, exclusions, result = _unit_paths(staging, plan.index, j, len(plan.spans))
    return IngestTask(
        plan.index,
        j,
        plan.path,
        plan.spans[j],
        plan.sha256,
        plan.error,
        shard,
        exclusions,
        text_field,
        max_doc_bytes,
        langid,
        result,
    )


def _file_results(plans: list[FilePlanResult], units: list[UnitResult]) -> list[FileResult]:
    """One result per input file: its units' counts added up, in input order."""
    out = {p.index: FileResult(p.index, p.path, p.sha256, p.size) for p in plans}
    for u in sorted(units, key=lambda u: (u.index, u.part)):
        r = out[u.index]
        r.documents += u.documents
        r.bytes += u.bytes
        r.skipped = dict(Counter(r.skipped) + Counter(u.skipped))
        r.languages = dict(Counter(r.languages) + Counter(u.languages))
    return [out[i] for i in sorted(out)]


def _done(task: IngestTask) -> bool:
    return Path(task.result).is_file() and Path(task.shard).is_file()


def _duplicate_files(plans: list[FilePlanResult]) -> dict[int, str]:
    """Files whose bytes an earlier input already has (the same file given twice, or under
    two names): index -> the path of that earlier file. Each is ingested once."""
    first: dict[str, str] = {}
    dupes: dict[int, str] = {}
    for plan in plans:
        if not plan.sha256:
            continue
        if plan.sha256 in first:
            dupes[plan.index] = first[plan.sha256]
        else:
            first[plan.sha256] = plan.path
    return dupes


def _record_duplicate(staging: Path, r: FileResult, first_path: str) -> None:
    """A duplicate file has no shard and one exclusion row saying whose bytes it repeats."""
    shard, exclusions, _ = _unit_paths(staging, r.index, 0, 1)
    Path(shard).unlink(missing_ok=True)
    detail = f"same bytes as {first_path}"
    rows = [Exclusion(None, "ingest", "skip", "duplicate file", detail, r.path)]
    write_exclusions(Path(exclusions), rows)
    r.documents, r.bytes, r.languages = 0, 0, {}
    r.skipped = {"duplicate file": 1}
