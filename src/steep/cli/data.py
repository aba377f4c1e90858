"""``steep data ...``: the Data Hub's commands (add, list, show, prepare, classifier, mine)."""

from __future__ import annotations

import argparse
from pathlib import Path

from steep.artifacts.fmt import num
from steep.errors import UsageError
from steep.workspace import Workspace


def cmd_add(args: argparse.Namespace) -> int:
    # deferred: keeps `steep --help` light (no torch until a command runs)
    from steep.data.executor import make_executor
    from steep.data.formats.template import load_template
    from steep.datahub.describe import show_dataset
    from steep.datahub.ingest import add_dataset

    template = load_template(args.template) if args.template else None  # one line, first
    executor = make_executor(args.executor, args.workers, args.ray_address)
    ds = add_dataset(
        args.name,
        args.paths,
        text_field=args.text_field,
        langid=not args.no_langid,
        unit_bytes=int(args.unit_mb * (1 << 20)),
        executor=executor,
        max_input_bytes=int(args.max_input_mb * (1 << 20)) if args.max_input_mb else None,
        max_input_ratio=args.max_input_ratio,
        template=template,
        code=args.code,
    )
    print(show_dataset(ds, examples=1))
    _where(executor)
    return 0


def cmd_list(args: argparse.Namespace) -> int:
    # deferred: keeps `steep --help` light (no torch until a command runs)
    from steep.datahub.catalog import Catalog
    from steep.datahub.describe import list_datasets

    print(list_datasets(Catalog()))
    return 0


def cmd_show(args: argparse.Namespace) -> int:
    # deferred: keeps `steep --help` light (no torch until a command runs)
    from steep.datahub.catalog import Catalog
    from steep.datahub.describe import show_dataset

    print(show_dataset(Catalog().get(args.ref), examples=args.examples))
    return 0


def cmd_prepare(args: argparse.Namespace) -> int:
    # deferred: keeps `steep --help` light (no torch until a command runs)
    from steep.data.executor import make_executor
    from steep.datahub.describe import show_dataset
    from steep.datahub.pipeline import load_recipe, prepare

    specs = load_recipe(args.recipe)
    executor = make_executor(args.executor, args.workers, args.ray_address)
    ds = prepare(
        args.ref,
        specs,
        into=args.into,
        recipe_path=str(args.recipe),
        executor=executor,
    )
    print(show_dataset(ds, examples=1))
    _where(executor)
    return 0


def cmd_classifier_train(args: argparse.Namespace) -> int:
    # deferred: keeps `steep --help` light (no torch until a command runs)
    from steep.datahub.mine import language_mismatch, train_domain_classifier

    path, m = train_domain_classifier(
        args.positive, args.negative, args.name, args.heldout_fraction, args.seed
    )
    print(f"classifier {args.name}: {path}")
    warning = language_mismatch(m["languages"]["positive"], m["languages"]["negative"])
    if warning:
        print(f"warning: {warning}")
    print(
        f"held out ({m['n_heldout']['positive']} domain / {m['n_heldout']['negative']} general): "
        + "  ".join(
            f"{k} {num(m[k], '.3f', 'n/a')}"
            for k in ("precision", "recall", "f1", "accuracy", "auc")
        )
    )
    return 0


def cmd_mine(args: argparse.Namespace) -> int:
    # deferred: keeps `steep --help` light (no torch until a command runs)
    from steep.data.executor import make_executor
    from steep.datahub.describe import show_dataset
    from steep.datahub.mine import mine

    into = args.into or f"{args.ref.partition('@')[0]}-mined"
    languages = [c for c in (args.languages or "").split(",") if c.strip()] or None
    executor = make_executor(args.executor, args.workers, args.ray_address)
    ds, warnings = mine(
        args.ref,
        args.classifier,
        args.threshold,
        into,
        executor,
        languages=languages,
        labelled=args.labelled,
    )
    print(show_dataset(ds, examples=1))
    _where(executor)
    sample = ds.manifest["created_by"].get("labelled")
    if sample:
        print(
            f"on the labelled sample {sample['sample']} ({sample['documents']} documents): "
            + "  ".join(f"{k} {num(sample[k], '.3f', 'n/a')}" for k in ("precision", "recall"))
        )
    for warning in warnings:
        print(f"warning: {warning}")
    return 0


def cmd_tokenize(args: argparse.Namespace) -> int:
    if args.config:
        return _tokenize_run(args)
    # deferred: keeps `steep --help` light (no torch until a command runs)
    from steep.data.executor import make_executor
    from steep.data.selection import DatasetSelection
    from steep.data.tokenize import tokenize_source
    from steep.datahub.catalog import Catalog
    from steep.model.io import gguf_to_hf, load_tokenizer, resolve_base

    if not args.ref or not args.base:
        raise UsageError(
            "steep data tokenize needs NAME[@VERSION] --base BASE, or --config RUN.yaml"
        )
    ds = Catalog().get(args.ref)
    spec = args.base if args.base == "bytes" else resolve_base(args.base)
    if spec.endswith(".gguf"):
        spec = str(gguf_to_hf(Path(spec), Workspace.current().base_models))
    tokenizer = load_tokenizer(spec)
    selection = DatasetSelection.of(ds.ref, ds.manifest, args.languages, args.exclude_languages)
    executor = make_executor(args.executor, args.workers, args.ray_address)
    ts = tokenize_source(
        ds.name,
        [str(p) for p in ds.shards],
        tokenizer,
        Workspace.current().token_cache,
        heldout_fraction=args.heldout_fraction,
        separator=args.separator,
        dataset=selection,
        executor=executor,
        unit_bytes=int(args.unit_mb * (1 << 20)),
    )
    print(f"{ds.ref} -> {ts.dir}\n{_splits(ts.info)}")
    _where(executor)
    return 0


def _tokenize_run(args: argparse.Namespace) -> int:
    """Every source and eval set of a run config, into the cache the run will read: run it
    on a CPU node before a multi-GPU job, so no GPU waits for tokenizing."""
    # deferred: keeps `steep --help` light (no torch until a command runs)
    from steep.config import load_config
    from steep.data.executor import make_executor
    from steep.model.io import run_tokenizer
    from steep.train.inputs import build_inputs

    if args.ref or args.base:
        raise UsageError("--config tokenizes a run's own sources: give no NAME or --base")
    config = load_config(args.config, args.set)
    home = Workspace.current().home
    executor = make_executor(args.executor, args.workers, args.ray_address)
    inputs = build_inputs(
        config,
        run_tokenizer(config.model, home),
        home,
        executor=executor,
        unit_bytes=int(args.unit_mb * (1 << 20)),
    )
    for ts in inputs.sources:
        print(f"{ts.name} -> {ts.dir}\n  {_splits(ts.info)}")
    _where(executor)
    print(f"ready: `steep train {args.config}` reads these without tokenizing")
    return 0


def _splits(info: dict) -> str:
    splits = ", ".join(
        f"{k} {v['tokens']:,} tokens / {v['documents']:,} docs" for k, v in info["splits"].items()
    )
    engine = info.get("engine")  # none in a cache written before the engine was recorded
    return f"{splits} (by {engine['name']} {engine['version']})" if engine else splits


def add_parsers(sub: argparse._SubParsersAction) -> None:
    data = sub.add_parser("data", help="Data Hub: named, versioned, explained datasets")
    dsub = data.add_subparsers(dest="data_command", required=True)
    workers = {"type": int, "default": None, "help": "worker processes (default: all cores)"}

    def engine(p: argparse.ArgumentParser, units: bool = False) -> None:
        p.add_argument("--workers", **workers)
        if units:
            p.add_argument(
                "--unit-mb",
                type=float,
                default=64,
                help="work unit: a big jsonl or parquet file is split into pieces of about "
                "this many MB, processed in parallel (default 64)",
            )
        p.add_argument(
            "--executor",
            choices=("local", "ray"),
            default="local",
            help="local: a process pool here; ray: Ray tasks (pip install 'steep[ray]')",
        )
        p.add_argument(
            "--ray-address",
            metavar="auto|HOST:PORT",
            help="a running Ray cluster (default: $RAY_ADDRESS, else a local Ray instance)",
        )

    a = dsub.add_parser("add", help="ingest files or folders as a new dataset (version 1)")
    a.add_argument("name")
    a.add_argument(
        "paths",
        nargs="+",
        metavar="PATH",
        help="files or folders: jsonl, json, parquet, arrow, txt, md, html, warc, MediaWiki "
        "xml dumps, pdf, epub, docx, csv/tsv, optionally .gz .zst .bz2 (docs/formats.md)",
    )
    a.add_argument("--text-field", default="text", help="jsonl/parquet field with the text")
    a.add_argument("--no-langid", action="store_true", help="skip language identification")
    a.add_argument(
        "--code",
        choices=("file", "repo"),
        help="each PATH is a code repository: one document per file, or per repository "
        "(its files concatenated in path order); vendored, generated, binary and oversized "
        "files are skipped by rule",
    )
    a.add_argument(
        "--template",
        metavar="TEMPLATE|FILE.j2|NAME",
        help="make each CSV/jsonl/parquet record's text of its fields: 'Title: {title}\\n"
        "{description}', a Jinja file, or a packaged one (listing, review, qa); a record "
        "missing a field the template needs is skipped with its name",
    )
    a.add_argument(
        "--max-input-mb",
        type=float,
        metavar="MB",
        help="skip, whole, a file that decompresses past this (default: no cap; the studio sets one)",
    )
    a.add_argument(
        "--max-input-ratio",
        type=float,
        metavar="X",
        help="skip, whole, a file that decompresses past X times its own size (at least 16 MB)",
    )
    engine(a, units=True)
    a.set_defaults(func=cmd_add)

    ls = dsub.add_parser("list", help="list datasets (latest version of each)")
    ls.set_defaults(func=cmd_list)

    s = dsub.add_parser("show", help="manifest, funnel and drop examples of NAME[@VERSION]")
    s.add_argument("ref", metavar="NAME[@VERSION]")
    s.add_argument("--examples", type=int, default=2, help="examples per drop reason")
    s.set_defaults(func=cmd_show)

    p = dsub.add_parser("prepare", help="run a recipe of steps -> a new version")
    p.add_argument("ref", metavar="NAME[@VERSION]")
    p.add_argument(
        "--recipe",
        required=True,
        metavar="NAME|FILE",
        help="a packaged recipe (web: crawled pages; docs: documentation and code) or a "
        "recipe YAML file",
    )
    p.add_argument("--into", metavar="NAME", help="publish into another dataset name")
    engine(p)
    p.set_defaults(func=cmd_prepare)

    t = dsub.add_parser(
        "tokenize",
        help="tokenize a version for a base, or every source of a run config (cached; "
        "training reuses it)",
    )
    t.add_argument("ref", nargs="?", metavar="NAME[@VERSION]")
    t.add_argument("--base", help="HF folder, hub id, GGUF, pkg://... or 'bytes'")
    t.add_argument("--config", metavar="RUN.yaml", help="tokenize this run's sources and eval sets")
    t.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="as steep train")
    t.add_argument(
        "--heldout-fraction", type=float, default=0.05, help="as data.sources[].heldout_fraction"
    )
    t.add_argument("--separator", default=None, help="as model.document_separator (default: EOS)")
    t.add_argument("--languages", nargs="+", default=None)
    t.add_argument("--exclude-languages", nargs="+", default=None)
    engine(t, units=True)
    t.set_defaults(func=cmd_tokenize)

    c = dsub.add_parser("classifier", help="domain classifiers for mining")
    csub = c.add_subparsers(dest="classifier_command", required=True)
    ct = csub.add_parser("train", help="train DOMAIN-vs-GENERAL, report held-out precision/recall")
    ct.add_argument("--positive", required=True, metavar="DOMAIN", help="domain dataset")
    ct.add_argument("--negative", required=True, metavar="GENERAL", help="general dataset")
    ct.add_argument("--name", required=True, help="saved under STEEP_HOME/classifiers/NAME")
    ct.add_argument("--heldout-fraction", type=float, default=0.2)
    ct.add_argument("--seed", type=int, default=0)
    ct.set_defaults(func=cmd_classifier_train)

    m = dsub.add_parser("mine", help="pull domain-like documents out of a general dataset")
    m.add_argument("ref", metavar="GENERAL[@VERSION]")
    m.add_argument("--classifier", required=True, help="classifier name or folder")
    m.add_argument("--threshold", type=float, default=0.5, help="keep docs scoring >= this")
    m.add_argument("--into", metavar="NAME", help="new dataset (default: GENERAL-mined)")
    m.add_argument(
        "--languages",
        metavar="CODES",
        help="mine only documents tagged with these languages (comma-separated, e.g. en)",
    )
    m.add_argument(
        "--labelled",
        type=Path,
        metavar="FILE.jsonl",
        help='held-out rows {"text": ..., "label": 1|0}: report the mined precision and recall',
    )
    engine(m)
    m.set_defaults(func=cmd_mine)


def _where(executor: object) -> None:
    """On a cluster, which hosts ran the units (each version keeps the whole record in its
    placement.json); on the local pool it is this machine, not worth a line."""
    placement = getattr(executor, "placement", None)
    if placement is not None and placement.kind != "local":
        print(placement.line())
