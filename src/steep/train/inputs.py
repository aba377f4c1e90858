"""Everything the loop reads: tokenized sources, the mixture over them, fixed eval sets.

All checks that can fail on the data (tokenizer mismatch, too little data, eval sets too
short) run here, before the first step, so a bad run fails in seconds rather than hours.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from transformers import PreTrainedTokenizerBase

from steep.config import RunConfig, SourceSection
from steep.config.schema import phase_weights
from steep.data.doclength import SourceLengths, heldout_view
from steep.data.executor import Executor
from steep.data.mixture import Mixture, Phase
from steep.data.selection import DatasetSelection, slice_report
from steep.data.spans import UNIT_BYTES
from steep.data.tokenize import Progress, TokenizedSource, tokenize_source, tokenizer_meta
from steep.data.tokensource import TokenStream, Windows
from steep.datahub.catalog import Catalog
from steep.errors import DataError
from steep.train.evaluate import EvalSet, fixed_windows
from steep.train.preflight import language_problem
from steep.train.runfolder.drift import identity
from steep.workspace import Workspace


@dataclass
class Inputs:
    mixture: Mixture
    eval_sets: list[EvalSet]
    sources: list[TokenizedSource]
    separator_id: int
    lineage: list[dict[str, Any]] = field(default_factory=list)
    identity: dict[str, dict[str, Any]] = field(default_factory=dict)  # train.datadrift
    heldout: dict[str, TokenStream] = field(default_factory=dict)  # each eval set's stream
    lengths: dict[str, SourceLengths] = field(default_factory=dict)  # documents by length


def _source_files(
    src: SourceSection, quiet: bool = False
) -> tuple[list[str], DatasetSelection | None]:
    """A source's files; for a Data Hub dataset, its version's shards and language filter."""
    if src.paths is not None:
        return src.paths, None

    ds = Catalog().get(src.dataset or "")
    problem = language_problem(src.languages, ds.manifest.get("languages") or {})
    if problem:  # before tokenizing: the filter, not the data, is what is wrong
        raise DataError(f"source '{src.name}': languages {problem}")
    selection = DatasetSelection.of(ds.ref, ds.manifest, src.languages, src.exclude_languages)
    if not quiet:
        print(f"source '{src.name}': dataset {ds.ref} ({ds.manifest['documents']:,} documents)")
    return [str(p) for p in ds.shards], selection


def build_inputs(
    config: RunConfig,
    tokenizer: PreTrainedTokenizerBase,
    home: Path,
    quiet: bool = False,
    progress: Progress | None = None,
    executor: Executor | None = None,
    unit_bytes: int = UNIT_BYTES,
) -> Inputs:
    """Tokenize (or reuse) every source, build the mixture and the fixed eval windows.

    ``quiet`` keeps ranks other than 0 from repeating rank 0's messages; ``progress``
    hears how tokenizing goes (``steep.train.rendezvous``); ``executor`` (``steep data
    tokenize``) spreads tokenizing over a pool or a Ray cluster instead of this process.
    """
    cache = Workspace(home).token_cache
    seq_len = config.data.seq_len
    sep = config.model.document_separator
    meta = tokenizer_meta(tokenizer, sep)
    sources: list[TokenizedSource] = []
    for src in config.data.sources:
        ts = _tokenize(src, config, tokenizer, cache, meta, quiet, progress, executor, unit_bytes)
        sliced = slice_report(ts.info)
        if sliced and not quiet:
            print(f"source '{src.name}': {sliced}")
        if ts.info["skipped"] and not quiet:
            print(
                f"source '{src.name}': {ts.info['skipped']} records skipped "
                f"{ts.info['skipped_by_reason']}; see {ts.dir / 'skipped.jsonl'}"
            )
        sources.append(ts)

    lengths = {
        ts.name: SourceLengths(ts.train, src.length)
        for ts, src in zip(sources, config.data.sources, strict=True)
    }
    windows = [Windows(lengths[ts.name].stream, seq_len) for ts in sources]
    for ts, w in zip(sources, windows, strict=True):
        if len(w) == 0:
            kept = f" as data.sources length reads it ({lengths[ts.name].spread()})"
            raise DataError(
                f"source '{ts.name}' has {w.stream.num_tokens} training tokens"
                f"{kept if lengths[ts.name].rule else ''}, fewer than one sequence of {seq_len + 1}"
            )
    layouts = [lengths[ts.name].describe() for ts in sources]
    mixture = build_mixture(config, [s.name for s in sources], windows, layouts)
    _check_enough_data(config, mixture)

    ident = {ts.name: identity(ts.info, ts.dir.name) for ts in sources}
    eval_sets = [
        fixed_windows(
            ts.name, heldout_view(ts.heldout, src.length), seq_len, config.eval.max_windows
        )
        for ts, src in zip(sources, config.data.sources, strict=True)
        if ts.heldout is not None
    ]
    extra, extra_ident, streams = _extra_eval_sets(
        config, tokenizer, cache, meta, progress, executor
    )
    eval_sets += extra
    ident.update(extra_ident)
    heldout = {ts.name: ts.heldout for ts in sources if ts.heldout is not None} | streams
    if not eval_sets and not quiet:
        print(
            "warning: no held-out data (every heldout_fraction is 0 and no data.eval_sets): "
            "the run cannot show gain or forgetting"
        )

    lineage = [
        {
            "name": ts.name,
            "weight": cfg.weight,
            "share": float(share),  # in the first phase (all of them: tokens_by_phase)
            "dataset": ts.info.get("dataset"),
            "files": ts.info["files"],
            # counts only: the shard list (tens of thousands at scale) stays in source.json
            "splits": {
                k: {"documents": v["documents"], "tokens": v["tokens"]}
                for k, v in ts.info["splits"].items()
            },
            "skipped": ts.info["skipped"],
            "length": lengths[ts.name].record(),  # tokens by document-length bucket
            **({"languages": ts.info["languages"]} if "languages" in ts.info else {}),
            "shards": str(ts.dir),
        }
        for ts, cfg, share in zip(sources, config.data.sources, mixture.shares, strict=True)
    ]
    return Inputs(
        mixture, eval_sets, sources, meta["separator_id"], lineage, ident, heldout, lengths
    )


def build_mixture(
    config: RunConfig, names: list[str], windows: list[Windows], layouts: list[str] | None = None
) -> Mixture:
    """The run's mixture: its phases (``data.phases``) in sequences drawn, or one mix
    (``data.domain_share``, when set, rescales the roles); ``layouts``: which documents each
    source reads (``data.sources[].length`` in words), what a resume compares."""
    per_step = config.sequences_per_step
    phases = [Phase(n, start * per_step, tuple(w)) for n, start, w in phase_weights(config)]
    return Mixture(
        names, windows, phases[0].weights, seed=config.run.seed, phases=phases,
        layouts=layouts, seq_len=config.data.seq_len,
    )  # fmt: skip


def _tokenize(
    src: SourceSection,
    config: RunConfig,
    tokenizer: PreTrainedTokenizerBase,
    cache: Path,
    meta: dict[str, Any],
    quiet: bool = False,
    progress: Progress | None = None,
    executor: Executor | None = None,
    unit_bytes: int = UNIT_BYTES,
) -> TokenizedSource:
    """One source tokenized (or its cache reused), its splits checked against the tokenizer."""
    paths, selection = _source_files(src, quiet)
    ts = tokenize_source(
        src.name,
        paths,
        tokenizer,
        cache,
        text_field=src.text_field,
        heldout_fraction=src.heldout_fraction,
        separator=config.model.document_separator,
        dataset=selection,
        progress=progress,
        executor=executor,
        unit_bytes=unit_bytes,
    )
    for split in (ts.train, ts.heldout):
        if split is not None:
            split.check_tokenizer(meta["sha256"], f"'{meta['name']}'")
    return ts


def _extra_eval_sets(
    config: RunConfig,
    tokenizer: PreTrainedTokenizerBase,
    cache: Path,
    meta: dict[str, Any],
    progress: Progress | None = None,
    executor: Executor | None = None,
) -> tuple[list[EvalSet], dict[str, dict[str, Any]], dict[str, TokenStream]]:
    """The fixed windows of ``data.eval_sets`` (every token is held out), their identity
    and their token streams."""
    sets, ident, streams = [], {}, {}
    for name, value in config.data.eval_sets.items():
        paths, selection = (
            (value, None)
            if isinstance(value, list)  # a Data Hub dataset: its shards, as a source's
            else _source_files(SourceSection(name=name, dataset=value.dataset), quiet=True)
        )
        ts = tokenize_source(
            name,
            paths,
            tokenizer,
            cache,
            separator=config.model.document_separator,
            dataset=selection,
            progress=progress,
            executor=executor,
        )
        ts.train.check_tokenizer(meta["sha256"], f"'{meta['name']}'")
        sets.append(fixed_windows(name, ts.train, config.data.seq_len, config.eval.max_windows))
        ident[f"eval:{name}"] = identity(ts.info, ts.dir.name)
        streams[name] = ts.train
    return sets, ident, streams


def run_eval_sets(
    config: RunConfig, tokenizer: PreTrainedTokenizerBase, home: Path
) -> tuple[list[EvalSet], int]:
    """A run's eval sets exactly as its training evaluated them (the same cached shards,
    windows and order), and the separator id: for ``steep eval --run-windows``."""
    cache = Workspace(home).token_cache
    meta = tokenizer_meta(tokenizer, config.model.document_separator)
    sets = []
    for src in config.data.sources:
        if src.heldout_fraction <= 0:
            continue
        ts = _tokenize(src, config, tokenizer, cache, meta, quiet=True)
        if ts.heldout is not None:
            held = heldout_view(ts.heldout, src.length)
            sets.append(fixed_windows(src.name, held, config.data.seq_len, config.eval.max_windows))
    sets += _extra_eval_sets(config, tokenizer, cache, meta)[0]
    return sets, meta["separator_id"]


def _check_enough_data(config: RunConfig, mixture: Mixture) -> None:
    total = config.train.steps * config.sequences_per_step
    limit = config.data.max_epochs
    need = mixture.sequences_needed(total)
    for (name, epochs), w, k in zip(
        mixture.epochs_needed(total).items(), mixture.windows, need, strict=True
    ):
        if epochs > limit:
            have = len(w) * config.data.seq_len
            phased = " over its phases" if len(mixture.phases) > 1 else ""
            raise DataError(
                f"source '{name}' has {have:,} training tokens ({len(w)} sequences of "
                f"{config.data.seq_len}); {config.train.steps} steps x "
                f"{config.train.global_batch_tokens:,} tokens at a {k / total:.0%} share"
                f"{phased} need {epochs:.2f} passes over it, above data.max_epochs={limit:g}. "
                "Lower train.steps or the global batch, add data, or raise data.max_epochs"
            )
