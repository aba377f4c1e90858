"""The one check before a run: everything a config needs that parsing it cannot know.

``steep validate``, each point of ``steep sweep``, the studio's New-run form and
``steep launch`` call ``preflight``; training itself resolves the same LR and builds the same
schedule, so a config that passes here does not fail on them a minute (or a queue) later.

Checked, each problem reported with the field it is about:

- the base peak LR and so the max LR (``steep.model.base_lr.resolve_max_lr``);
- the LR schedule, built as the training loop builds it (``steep.train.schedule``);
- the global batch split over the ranks (``steep.config.batch``);
- the data: every path exists (folders hold text files), every Data Hub dataset ref
  resolves in the catalog;
- the context: ``data.seq_len`` within what the base covers with ``model.rope_scaling``,
  and RoPE settings only on a RoPE base (``steep.config.context``).

The config itself was validated when it was loaded (``load_config`` / ``parse_config``).
Every check runs; a failure raises one ``PreflightError`` (a ``ConfigError``) listing all
problems, one line each. This module sits above the rest of ``steep.config`` (it imports the
model, train and datahub pieces it checks with), so ``steep.config`` does not import it and
stays importable without torch.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from steep.config.context import (
    context_parallel_problem,
    context_problem,
    not_rotary_problem,
)
from steep.config.schema import EvalDataset, RunConfig, eval_set_roles
from steep.data.documents import expand_paths
from steep.data.locations import is_url
from steep.datahub.catalog import Catalog, CatalogError
from steep.errors import ConfigError, MissingInputError, SteepError
from steep.model.base_lr import resolve_max_lr
from steep.plan.context import base_context
from steep.train.schedule import schedule_for, warmup_steps_for
from steep.workspace import Workspace, steep_home


class PreflightError(ConfigError):
    """A config that would fail once started; ``problems`` holds one line per problem."""

    def __init__(self, problems: Iterable[str]):
        self.problems = list(problems)
        super().__init__("\n".join(self.problems))


@dataclass(frozen=True)
class Preflight:
    """What a config resolves to, for a summary line (validate, launch, the studio)."""

    max_lr: float
    lr_source: str  # where the base's peak LR came from
    total_tokens: int  # train.steps x train.global_batch_tokens
    grad_accum: int  # micro-batches per rank and optimizer step
    warmup_steps: int
    world_size: int = 1
    datasets: dict[str, str] = field(default_factory=dict)  # source name -> NAME@VERSION
    warnings: list[str] = field(default_factory=list)  # runs, but the numbers may mislead

    def summary(self, config: RunConfig) -> str:
        t = config.train
        return (
            f"max LR {self.max_lr:.3g} = {t.lr_fraction:g} x {self.lr_source}; "
            f"{t.steps} steps x {t.global_batch_tokens:,} tokens = {self.total_tokens:,} tokens; "
            f"warmup {self.warmup_steps} steps"
        )


def preflight(
    config: RunConfig,
    *,
    world_size: int = 1,
    layout: str | None = None,
    home: Path | None = None,
    check_data: bool = True,
) -> Preflight:
    """Check ``config`` for a run on ``world_size`` ranks (``layout`` describes them, e.g.
    '2 node(s) x 4 GPU(s)'); datasets are looked up under ``home`` (default STEEP_HOME).

    Returns the resolved facts; raises PreflightError listing every problem found.
    """
    problems: list[str] = []
    max_lr, lr_source = _max_lr(config, problems)
    warmup = _schedule(config, problems)
    try:
        accum = config.batch_split(world_size).check(layout or "")
    except ConfigError as exc:  # the message names train.global_batch_tokens and the fix
        problems.append(str(exc))
        accum = 0
    datasets = _data(config, home, problems) if check_data else {}
    problems += context_problems(config, home)
    if problems:
        raise PreflightError(problems)
    return Preflight(
        max_lr=max_lr,
        lr_source=lr_source,
        total_tokens=config.train.steps * config.train.global_batch_tokens,
        grad_accum=accum,
        warmup_steps=warmup,
        world_size=world_size,
        datasets=datasets,
        warnings=[w for w in (forgetting_warning(config),) if w],
    )


def forgetting_warning(config: RunConfig) -> str | None:
    """A warning when no general-role eval set is independent of the training sources.

    A held-out split of a replay source is the distribution the run trains on: its loss
    falls with training, so "general regression" measured there understates forgetting
    and a regression budget never bites. Independent means an extra eval set
    (``data.eval_sets``) with role general that shares no file with a training source.
    """
    roles = eval_set_roles(config)
    trained: set[str] = set()
    for src in config.data.sources:
        trained |= _files(src.paths) if src.paths else _dataset_key(src.dataset or "")
    independent = [
        name
        for name, value in config.data.eval_sets.items()
        if roles.get(name) == "general" and not _eval_files(value) & trained
    ]
    if independent:
        return None
    replay = [name for name, role in roles.items() if role == "general"]
    measured = (
        f"general regression is measured on {', '.join(replay)}: text from the replay the "
        "run trains on, which understates forgetting"
        if replay
        else "no eval set measures general regression"
    )
    return (
        f"no general eval set is independent of the training data: {measured}. Add text the "
        "run never trains on: data.eval_sets: {NAME: [FILES]} or {NAME: {dataset: NAME@V}} "
        "(the New run form's eval sets) with data.eval_roles: {NAME: general}"
    )


def _eval_files(value: list[str] | EvalDataset) -> set[str]:
    return _files(value) if isinstance(value, list) else _dataset_key(value.dataset)


def _dataset_key(ref: str) -> set[str]:
    """A Data Hub dataset by its name: its versions share text, so none is independent."""
    return {f"dataset:{ref.partition('@')[0]}"}


def _files(paths: Iterable[str]) -> set[str]:
    try:
        return {str(f) if is_url(str(f)) else os.path.realpath(f) for f in expand_paths(paths)}
    except (SteepError, OSError):  # missing paths are the data check's to report
        return set()


def _max_lr(config: RunConfig, problems: list[str]) -> tuple[float, str]:
    where = "model.random_init" if config.model.random_init is not None else "model.base"
    try:
        return resolve_max_lr(config)
    except SteepError as exc:  # no published peak, base package missing, ...
        problems.append(f"{where}: {exc}")
    except OSError as exc:  # the base's config.json / steep.json / GGUF cannot be read
        problems.append(f"{where}: cannot read {exc.filename or config.model.base}: {exc.strerror}")
    return 0.0, ""


def context_problems(config: RunConfig, home: Path | None = None) -> list[str]:
    """RoPE settings on a base without rotary positions; ``data.seq_len`` past what the
    base covers with ``model.rope_scaling`` (the factor that would cover it named). Read
    from the base's files (``steep.plan.context``); a base none describe is checked once
    it loads (``steep.model.rope``)."""
    model = config.model
    parallel = context_parallel_problem(config.train.context_parallel)
    if parallel:
        return [parallel]
    known = base_context(model, home)
    where = known.source
    if (model.rope_scaling or model.rope_theta) and known.rotary is False:
        return [not_rotary_problem(known.model_type, where)]
    problem = context_problem(config.data.seq_len, known.positions, where, model.rope_scaling)
    return [problem] if problem else []


def _schedule(config: RunConfig, problems: list[str]) -> int:
    """Build the schedule exactly as the training loop does; return its warmup steps."""
    t = config.train
    warmup = warmup_steps_for(t.steps, t.warmup_steps, t.warmup_fraction)
    try:
        schedule_for(t, max_lr=1.0)  # the LR does not change what can fail
    except ConfigError as exc:
        key = "train.warmup_steps" if t.warmup_steps is not None else "train.warmup_fraction"
        problems.append(
            f"{key}: {exc}; lower {key} (e.g. --set train.warmup_steps=1) or raise train.steps"
        )
    return warmup


def _data(config: RunConfig, home: Path | None, problems: list[str]) -> dict[str, str]:
    """Paths as training expands them; dataset refs as the catalog resolves them."""
    catalog = Catalog(Workspace(home or steep_home()).datasets)
    datasets: dict[str, str] = {}
    for i, src in enumerate(config.data.sources):
        if src.paths is not None:
            problems += _missing(src.paths, f"data.sources.{i}.paths (source {src.name!r})")
        elif src.dataset:
            try:
                version = catalog.get(src.dataset)
            except CatalogError as exc:
                problems.append(f"data.sources.{i}.dataset (source {src.name!r}): {exc}")
                continue
            datasets[src.name] = version.ref
            problem = language_problem(src.languages, version.manifest.get("languages") or {})
            if problem:
                problems.append(f"data.sources.{i}.languages (source {src.name!r}): {problem}")
    for name, value in config.data.eval_sets.items():
        if isinstance(value, list):
            problems += _missing(value, f"data.eval_sets.{name}")
            continue
        try:
            datasets[name] = catalog.get(value.dataset).ref
        except CatalogError as exc:
            problems.append(f"data.eval_sets.{name}.dataset: {exc}")
    return datasets


def language_problem(wanted: Iterable[str] | None, tags: dict[str, int]) -> str | None:
    """Why a ``languages`` filter would keep nothing of a dataset (tags it does not have)."""
    if not wanted:
        return None
    unknown = [lang for lang in wanted if lang not in tags]
    if len(unknown) < len(list(wanted)):
        return None  # some tag exists: the slice keeps those documents
    have = ", ".join(f"{t} ({n:,} docs)" for t, n in sorted(tags.items(), key=lambda x: -x[1]))
    return (
        f"{', '.join(unknown)}: no document has these tags; the dataset's tags are "
        f"{have or 'none (ingested without language ID)'}"
    )


def _missing(paths: Iterable[str], where: str) -> list[str]:
    out = []
    for p in paths:
        try:
            expand_paths([p])
        except MissingInputError as exc:
            out.append(f"{where}: {exc}")
    return out
