"""``steep tokenizer extend``: arguments to an ``ExtendSpec``; the work is in ``steep.model.vocab``."""

from __future__ import annotations

import argparse
from pathlib import Path


def cmd_extend(args: argparse.Namespace) -> int:
    # deferred: keeps `steep --help` light (no torch until a command runs)
    from steep.cli.common import quiet_libraries
    from steep.model.vocab import ExtendSpec, extend_model

    quiet_libraries()
    spec = ExtendSpec(
        base=args.base,
        corpus=list(args.corpus),
        add=args.add,
        out=Path(args.out),
        init=args.init,
        heldout=list(args.heldout) or None,
        heldout_fraction=args.heldout_fraction,
        lang=args.lang,
        min_frequency=args.min_frequency,
        compare_inits=not args.no_compare,
        eval_chars=args.eval_chars,
        seq_len=args.seq_len,
        base_max_lr=args.base_max_lr,
        seed=args.seed,
        text_field=args.text_field,
    )
    extend_model(spec)
    # deferred: keeps `steep --help` light (no torch until a command runs)
    from steep.hub import Hub

    try:  # the Model Hub lists it as a base to train from, with its card
        print(f"model hub: registered as {Hub().register_model(spec.out, None)!r}")
    except Exception as exc:  # the extended model is saved; the registry is a convenience
        print(f"warning: model hub: could not register {spec.out}: {exc}")
    return 0


def add_parsers(sub: argparse._SubParsersAction) -> None:

    t = sub.add_parser("tokenizer", help="extend a base's vocabulary for a new language")
    tsub = t.add_subparsers(dest="tokenizer_command", required=True)
    e = tsub.add_parser(
        "extend",
        help="learn N new BPE tokens on a corpus, grow and initialise the embeddings, report",
        description="Learns N new byte-level BPE merges on top of BASE's own (existing ids "
        "unchanged), resizes the input and output embeddings, initialises the new rows, and "
        "saves a plain HF model directory usable as model.base. Prints (and writes "
        "OUT/vocab_report.json) the fertility of old and new tokenizer on held-out text and "
        "the initial bits per byte of each initialisation.",
    )
    e.add_argument("base", help="base model: HF directory, .gguf file, pkg://... or hub id")
    e.add_argument(
        "--corpus",
        nargs="+",
        required=True,
        metavar="PATH_OR_DATASET",
        help="target-language text: jsonl/parquet/txt files or folders, or a Data Hub dataset",
    )
    e.add_argument("--add", type=int, required=True, metavar="N", help="new tokens to add")
    e.add_argument("-o", "--out", required=True, metavar="DIR", help="model directory to write")
    e.add_argument(
        "--init",
        default="mean",  # checked by extend_model before any work (one list, model.vocab)
        help="new rows: mean of their sub-token rows (default), HF's mean_resizing, or random",
    )
    e.add_argument(
        "--heldout",
        nargs="+",
        default=[],
        metavar="PATH",
        help="held-out text for the report (default: the corpus documents a training config "
        "with heldout_fraction would hold out; they are not used to learn the tokens)",
    )
    e.add_argument("--heldout-fraction", type=float, default=0.05)
    e.add_argument(
        "--lang", metavar="CODE", help="refuse a corpus not mostly in this language (e.g. vi)"
    )
    e.add_argument(
        "--min-frequency", type=int, default=2, help="a merge must be seen this often (default 2)"
    )
    e.add_argument(
        "--eval-chars",
        type=int,
        default=20_000,
        help="held-out characters scored for the initial bits per byte (0: skip)",
    )
    e.add_argument("--seq-len", type=int, default=512, help="scoring window (default 512)")
    e.add_argument("--no-compare", action="store_true", help="score only the chosen --init")
    e.add_argument(
        "--base-max-lr",
        type=float,
        help="the base's pretraining peak LR, stored in lineage for lr_fraction (bases not in "
        "steep's table)",
    )
    e.add_argument("--seed", type=int, default=0)
    e.add_argument("--text-field", default="text", help="jsonl/parquet field with the text")
    e.set_defaults(func=cmd_extend)
