"""``steep data prepare``: run a recipe of steps over a dataset version -> a new version.

Consecutive per-document steps are fused into one pass per shard; each corpus-wide step
(dedup, decontamination) first decides what to drop from all shards, then a pass per shard
applies it. Shards run in parallel through an ``Executor``. Every finished shard leaves a
result file, so a rerun after a crash (same dataset version, same recipe) skips it.
"""

from __future__ import annotations

import hashlib
import importlib
import json
import shutil
from collections import Counter
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from pydantic import ValidationError

from steep.artifacts import atomic
from steep.artifacts.yamlload import load_yaml
from steep.config import ConfigError
from steep.data.executor import Executor, LocalExecutor
from steep.datahub.catalog import Catalog, DatasetRef, DatasetVersion, check_name
from steep.datahub.exclusions import Exclusion, write_exclusions
from steep.datahub.name_lock import preparing
from steep.datahub.steps.base import (
    STEP_TYPES,
    CorpusStep,
    Doc,
    DocStep,
    Drop,
    Edit,
    Step,
    StepResult,
    read_docs,
    write_docs,
)
from steep.datahub.steps.drops import DONE as DROPS_DONE
from steep.datahub.steps.drops import drop_file, load_drops
from steep.errors import DataError, MissingInputError

# the recipes shipped in the package (package data): `--recipe web` in any install
RECIPES = Path(__file__).resolve().parent / "recipes"
# modules whose import registers steps: every family in datahub/steps/, and the classifier's
STEP_MODULES = ("steep.datahub.steps", "steep.datahub.classify")


def load_step_types() -> dict[str, type[Step]]:
    """Import every module that registers steps; their optional libraries load lazily."""
    for module in STEP_MODULES:
        importlib.import_module(module)
    return STEP_TYPES


# ---------------------------------------------------------------- recipes

StepSpec = tuple[str, dict[str, Any]]


def parse_recipe(data: Any, where: str = "recipe") -> list[StepSpec]:
    """``steps:`` is a list of ``kind`` or ``{kind: {param: value}}``; validated here."""
    if not isinstance(data, dict) or not isinstance(data.get("steps"), list) or not data["steps"]:
        raise ConfigError(f"{where}: expected a mapping with a non-empty list 'steps:'")
    extra = set(data) - {"steps", "description"}
    if extra:
        raise ConfigError(f"{where}: unknown top-level field(s) {sorted(extra)}: use 'steps'")
    types = load_step_types()
    specs: list[StepSpec] = []
    for i, item in enumerate(data["steps"]):
        at = f"{where}: steps[{i}]"
        if isinstance(item, str):
            kind, params = item, {}
        elif isinstance(item, dict) and len(item) == 1:
            kind, params = next(iter(item.items()))
            params = params or {}
        else:
            raise ConfigError(f"{at}: expected a step name or {{name: {{params}}}}, got {item!r}")
        if kind not in types:
            raise ConfigError(f"{at}: unknown step {kind!r}; steps: {', '.join(sorted(types))}")
        if not isinstance(params, dict):
            raise ConfigError(f"{at} ({kind}): parameters must be a mapping, got {params!r}")
        build_step((kind, params), at)
        specs.append((kind, params))
    return specs


def load_recipe(recipe: str | Path) -> list[StepSpec]:
    """The steps of a recipe: a YAML file's path, or a packaged recipe's name (``web``)."""
    path = recipe_file(recipe)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read recipe {path}: {exc.strerror}") from None
    return parse_recipe(load_yaml(text, str(path)), str(path))


def packaged_recipes() -> dict[str, str]:
    """Name -> description of each recipe shipped with steep: what ``--recipe NAME`` takes
    and what the studio's Prepare picker lists."""
    out = {}
    for path in sorted(RECIPES.glob("*.yaml")):
        data = load_yaml(path.read_text(encoding="utf-8"), str(path))
        out[path.stem] = str(data.get("description") or "") if isinstance(data, dict) else ""
    return out


def recipe_file(recipe: str | Path) -> Path:
    """A recipe file: the path given when it is a file, else the packaged recipe of that
    name; neither is one line listing the packaged recipes."""
    path = Path(recipe)
    if path.is_file():
        return path
    packaged = RECIPES / f"{recipe}.yaml"
    if str(recipe) and "/" not in str(recipe) and packaged.is_file():
        return packaged
    raise MissingInputError(
        f"recipe {str(recipe)!r} not found: give a recipe YAML file or a packaged recipe "
        f"({', '.join(packaged_recipes()) or 'none'})"
    )


def build_step(spec: StepSpec, where: str = "recipe") -> Step:
    kind, params = spec
    try:
        return load_step_types()[kind](**params)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(map(str, e['loc'])) or kind}: {e['msg']}" for e in exc.errors()
        )
        raise ConfigError(f"{where} ({kind}): {problems}") from None


# ---------------------------------------------------------------- per-shard work


@dataclass
class StepStats:
    docs_in: int = 0
    docs_out: int = 0
    chars_in: int = 0
    chars_out: int = 0
    dropped: Counter = field(default_factory=Counter)
    edited: Counter = field(default_factory=Counter)

    def add(self, other: dict[str, Any]) -> None:
        for key in ("docs_in", "docs_out", "chars_in", "chars_out"):
            setattr(self, key, getattr(self, key) + other[key])
        self.dropped.update(other["dropped"])
        self.edited.update(other["edited"])


@dataclass(frozen=True)
class ShardTask:
    shard_in: str
    shard_out: str
    exclusions: str
    result: str
    steps: tuple[tuple[str, str], ...]  # (kind, params as JSON): picklable and hashable
    drops: str | None = None  # parquet of this shard's ids a corpus step chose to drop
    drop_step: str = ""


BATCH = 256  # documents per step call: lets model-backed steps score a batch at once


class _DropChosen(DocStep):
    """Applies a corpus step's decision (id -> reason) shard by shard."""

    kind: ClassVar[str] = "_drop_chosen"
    drops: dict[str, tuple[str, str]]

    def apply(self, doc: Doc) -> StepResult:
        if doc.id in self.drops:
            return Drop(*self.drops[doc.id])
        return doc


def run_shard(task: ShardTask) -> dict[str, Any]:
    """Apply steps to one shard; write its output, exclusions and a result file."""
    if task.drops:
        steps: list[Step] = [_DropChosen(drops=load_drops(Path(task.drops)))]
        names = [task.drop_step]
    else:
        steps = [build_step((k, json.loads(p))) for k, p in task.steps]
        names = [k for k, _ in task.steps]
    stats = {name: StepStats() for name in names}
    excluded: list[Exclusion] = []
    langs: Counter[str] = Counter()
    out_bytes = 0

    def kept_docs() -> Iterator[Doc]:
        nonlocal out_bytes
        for batch in _batches(read_docs(Path(task.shard_in)), BATCH):
            for doc in _apply(batch, steps, names, stats, excluded):
                langs[doc.meta.get("lang", "und")] += 1
                out_bytes += len(doc.text.encode("utf-8"))
                yield doc

    n = write_docs(Path(task.shard_out), kept_docs())
    write_exclusions(Path(task.exclusions), excluded)
    result = {
        "shard": Path(task.shard_out).name,
        "documents": n,
        "bytes": out_bytes,
        "languages": dict(langs),
        "steps": {name: _stats_dict(s) for name, s in stats.items()},
    }
    atomic.write_text(Path(task.result), json.dumps(result))  # the done-marker: whole or absent
    return result


def _batches(docs: Iterator[Doc], size: int) -> Iterator[list[Doc]]:
    batch: list[Doc] = []
    for doc in docs:
        batch.append(doc)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


def _apply(
    docs: list[Doc],
    steps: list[Step],
    names: list[str],
    stats: dict[str, StepStats],
    excluded: list[Exclusion],
) -> list[Doc]:
    """Run a batch through the steps in order; record every drop and edit with its text."""
    for step, name in zip(steps, names, strict=True):
        assert isinstance(step, DocStep)
        s = stats[name]
        s.docs_in += len(docs)
        s.chars_in += sum(len(d.text) for d in docs)
        survivors: list[Doc] = []
        for doc, out in zip(docs, step.apply_batch(docs), strict=True):
            if isinstance(out, Drop | Edit):
                action, counter = (
                    ("drop", s.dropped) if isinstance(out, Drop) else ("edit", s.edited)
                )
                counter[out.reason] += 1
                excluded.append(
                    Exclusion(
                        doc.id,
                        name,
                        action,
                        out.reason,
                        out.detail,
                        doc.meta.get("source"),
                        doc.meta.get("line"),
                        doc.text,
                    )
                )
                if isinstance(out, Drop):
                    continue
                out = out.doc
            survivors.append(out)
        docs = survivors
        s.docs_out += len(docs)
        s.chars_out += sum(len(d.text) for d in docs)
    return docs


def _stats_dict(s: StepStats) -> dict[str, Any]:
    d = asdict(s)
    d["dropped"], d["edited"] = dict(s.dropped), dict(s.edited)
    return d


# ---------------------------------------------------------------- the pipeline


def _stages(specs: list[StepSpec]) -> list[list[StepSpec]]:
    """Fuse consecutive per-document steps; each corpus step is a stage of its own."""
    stages: list[list[StepSpec]] = []
    for spec in specs:
        corpus = issubclass(load_step_types()[spec[0]], CorpusStep)
        if corpus or not stages or _is_corpus(stages[-1]):
            stages.append([spec])
        else:
            stages[-1].append(spec)
    return stages


def _is_corpus(stage: list[StepSpec]) -> bool:
    return issubclass(load_step_types()[stage[0][0]], CorpusStep)


def prepare(
    ref: str,
    specs: list[StepSpec],
    *,
    into: str | None = None,
    recipe_path: str | None = None,
    catalog: Catalog | None = None,
    executor: Executor | None = None,
    created_by: dict[str, Any] | None = None,
) -> DatasetVersion:
    """Run ``specs`` over dataset ``ref`` and publish the result as the next version.

    ``into`` names a different dataset to publish into (e.g. mining a general corpus into a
    domain dataset); by default the result is the next version of the same dataset.
    ``created_by`` replaces the manifest's record of the command (``steep data mine``'s).
    """
    catalog = catalog or Catalog()
    executor = executor or LocalExecutor()
    parent = catalog.get(DatasetRef.parse(ref))
    target = check_name(into or parent.name)
    key = hashlib.sha256(json.dumps([parent.ref, specs], sort_keys=True).encode()).hexdigest()
    what, stage = f"{parent.ref} with {recipe_path or 'these steps'}", f"prepare-{key[:16]}"
    with preparing(catalog.root, target, stage, what):  # the lock is named as the staging
        staging = catalog.staging(target, stage)
        shards, funnel, languages, out_bytes = _run_stages(parent, specs, staging, executor)
        documents = funnel[-1]["docs_out"] if funnel else parent.manifest["documents"]
        if not documents:  # as ``add``: a version of nothing is refused, with the step to blame
            shutil.rmtree(staging, ignore_errors=True)
            raise DataError(f"prepare {parent.ref}: {_emptied_by(funnel)}; nothing was published")
        for shard in shards:
            shutil.move(str(shard), staging / "shards" / shard.name)
        manifest = {
            "created_by": created_by
            or {"command": "prepare", "recipe": recipe_path, "steps": specs},
            "parent": parent.ref,
            "inputs": parent.manifest.get("inputs", []),
            "documents": documents,
            "bytes": out_bytes,
            "languages": dict(languages.most_common()),
            "funnel": funnel,
        }
        return catalog.publish(target, staging, manifest, executor)


def _run_stages(
    parent: DatasetVersion, specs: list[StepSpec], staging: Path, executor: Executor
) -> tuple[list[Path], list[dict[str, Any]], Counter[str], int]:
    """Each stage over the shards (a killed run resumes from the shards a stage finished):
    the last stage's shards, the funnel, the languages and the bytes kept."""
    for sub in ("shards", "exclusions", "work"):
        (staging / sub).mkdir(exist_ok=True)

    shards = parent.shards
    funnel: list[dict[str, Any]] = []
    languages: Counter[str] = Counter()
    out_bytes = 0
    stages = _stages(specs)
    for si, stage in enumerate(stages):
        out_dir = staging / "work" / f"stage-{si}"
        out_dir.mkdir(exist_ok=True)
        corpus = _is_corpus(stage)
        label = "+".join(k for k, _ in stage)
        drops_dir = out_dir / "drops"  # one file per shard: a task reads only its own
        if corpus and not (drops_dir / DROPS_DONE).exists():  # a resumed run reuses it
            step = build_step(stage[0])
            assert isinstance(step, CorpusStep)
            print(f"{label}: scanning {len(shards)} shards")
            scratch = out_dir / "scratch"
            scratch.mkdir(exist_ok=True)
            step.write_drops(shards, scratch, drops_dir, executor)
            shutil.rmtree(scratch, ignore_errors=True)
        tasks = [
            ShardTask(
                shard_in=str(shard),
                shard_out=str(out_dir / shard.name),
                exclusions=str(staging / "exclusions" / f"s{si}-{shard.stem}.parquet"),
                result=str(out_dir / f"{shard.stem}.json"),
                steps=() if corpus else tuple((k, json.dumps(p, sort_keys=True)) for k, p in stage),
                drops=str(drop_file(drops_dir, i)) if corpus else None,
                drop_step=stage[0][0] if corpus else "",
            )
            for i, shard in enumerate(shards)
        ]
        results = [json.loads(Path(t.result).read_text()) for t in tasks if _done(t)]
        todo = [t for t in tasks if not _done(t)]
        if results:
            print(f"{label}: {len(results)} of {len(tasks)} shards already done, resuming")
        results += list(
            executor.run(
                run_shard, todo, f"stage {si + 1}/{len(stages)} {label}", lambda r: r["documents"]
            )
        )
        totals = {k: StepStats() for k, _ in stage}
        languages, out_bytes = Counter(), 0
        for r in results:
            languages.update(r["languages"])
            out_bytes += r["bytes"]
            for name, st in r["steps"].items():
                totals[name].add(st)
        for kind, params in stage:
            funnel.append({"step": kind, "params": params, **_stats_dict(totals[kind])})
        shards = [Path(t.shard_out) for t in tasks]

    return shards, funnel, languages, out_bytes


def _emptied_by(funnel: list[dict[str, Any]]) -> str:
    """Which step left no document, and why (its most common drop reasons)."""
    for f in funnel:
        if f["docs_in"] and not f["docs_out"]:
            top = Counter(f["dropped"]).most_common(3)
            why = ", ".join(f"{n} {reason}" for reason, n in top) or "no reason recorded"
            return f"step '{f['step']}' dropped all {f['docs_in']} documents ({why})"
    return "no document is left"


def _done(task: ShardTask) -> bool:
    return Path(task.result).is_file() and Path(task.shard_out).is_file()
