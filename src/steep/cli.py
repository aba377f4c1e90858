"""Command line: ``steep train | validate | demo | sweep | launch | data | eval | models``.

Errors a user can fix (bad config, missing data, unknown base LR) print one clear message
and exit 2; anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from steep.config import ConfigError, load_config, steep_home

TRAINING_COMMANDS = ("train", "demo", "sweep")  # restarted on a caching malloc on CPU
USER_ERRORS: tuple[type[BaseException], ...] = (ConfigError, FileNotFoundError, FileExistsError)


def _user_errors() -> tuple[type[BaseException], ...]:
    from steep.data.catalog import CatalogError
    from steep.data.shards import ShardError
    from steep.eval.harness import HarnessError
    from steep.hub import HubError
    from steep.model.base_lr import UnknownBaseLR
    from steep.model.io import ModelLoadError
    from steep.train.checkpoint import CheckpointError
    from steep.train.inputs import DataError

    return (
        *USER_ERRORS,
        ShardError,
        CatalogError,
        UnknownBaseLR,
        ModelLoadError,
        CheckpointError,
        DataError,
        HarnessError,
        HubError,
        ValueError,
    )


def _quiet_libraries() -> None:
    import transformers

    transformers.logging.set_verbosity_error()
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "true")


def cmd_train(args: argparse.Namespace) -> int:
    from steep.train.loop import resume_run, train

    _quiet_libraries()
    if args.resume:
        if args.config or args.set:
            raise ConfigError(
                "--resume continues a run with its own config.yaml: give no CONFIG or --set"
            )
        resume_run(Path(args.resume))
        return 0
    if not args.config:
        raise ConfigError("steep train needs CONFIG.yaml (or --resume RUN_DIR)")
    config = load_config(args.config, args.set)
    train(config, run_dir=Path(args.out) if args.out else None)
    return 0


def cmd_validate(args: argparse.Namespace) -> int:
    from steep.config import dump_config
    from steep.train.loop import resolve_max_lr

    config = load_config(args.config, args.set)
    max_lr, source = resolve_max_lr(config)
    print(dump_config(config), end="")
    print(
        f"# ok: max LR {max_lr:.3g} = {config.train.lr_fraction:g} x {source}; "
        f"{config.train.steps} steps x {config.train.global_batch_tokens:,} tokens = "
        f"{config.train.steps * config.train.global_batch_tokens:,} tokens"
    )
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from steep.demo import run_demo

    _quiet_libraries()
    run_demo(overrides=args.set, recipe=args.recipe)
    return 0


def _fraction(text: str) -> float:
    """'1%' or '0.01' -> 0.01, for --max-regression."""
    try:
        value = float(text[:-1]) / 100 if text.endswith("%") else float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected a fraction or a percent, got {text!r}"
        ) from None
    return value


def cmd_sweep(args: argparse.Namespace) -> int:
    from steep.pareto import DEFAULT_MAX_REGRESSION
    from steep.sweep import Spec, load_spec, parse_grid, run_sweep

    _quiet_libraries()
    max_reg = args.max_regression
    if args.resume:
        if args.config or args.grid or args.set or args.budget_tokens is not None:
            raise ConfigError(
                "--resume continues a sweep with its own sweep.json: give no CONFIG, --grid, "
                "--set or --budget-tokens"
            )
        out = Path(args.resume)
        spec = load_spec(out)
        if max_reg is None:
            import json

            max_reg = json.loads((out / "sweep.json").read_text())["max_regression"]
    else:
        if not args.config:
            raise ConfigError("steep sweep needs CONFIG.yaml and --grid KEY=V1,V2 (or --resume)")
        out = Path(args.out) if args.out else None
        spec = Spec(args.config, parse_grid(args.grid), args.set, args.budget_tokens)
    result = run_sweep(spec, out, DEFAULT_MAX_REGRESSION if max_reg is None else max_reg)
    return 1 if result.failed else 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="steep", description="continued pretraining of open LLMs")
    sub = p.add_subparsers(dest="command", required=True)

    t = sub.add_parser("train", help="run a training job from a YAML config")
    t.add_argument("config", nargs="?", help="run config (YAML)")
    t.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a config value, e.g. --set train.steps=100 (repeatable)",
    )
    t.add_argument("--resume", metavar="RUN_DIR", help="continue a run from its last checkpoint")
    t.add_argument("--out", metavar="RUN_DIR", help="run directory (default under STEEP_HOME/runs)")
    t.set_defaults(func=cmd_train)

    v = sub.add_parser("validate", help="check a config and print it resolved, without running")
    v.add_argument("config")
    v.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    v.set_defaults(func=cmd_validate)

    d = sub.add_parser("demo", help="adapt SmolLM2-135M to Python docs, offline (~10 min on CPU)")
    d.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a value of examples/demo.yaml",
    )
    d.add_argument(
        "--recipe",
        choices=("python-docs", "vietnamese"),
        default="python-docs",
        help="python-docs: domain CPT (examples/demo.yaml); vietnamese: SmolLM2 learns "
        "Vietnamese with and without vocabulary extension (examples/demo-vi.yaml, ~20 min)",
    )
    d.set_defaults(func=cmd_demo)

    w = sub.add_parser(
        "sweep", help="short runs over a grid (e.g. LR x domain share), Pareto plot and a pick"
    )
    w.add_argument("config", nargs="?", help="base run config (YAML)")
    w.add_argument(
        "--grid",
        action="append",
        default=[],
        metavar="KEY=V1,V2,...",
        help="a config key and its values, e.g. --grid train.lr_fraction=0.03,0.1 (repeatable; "
        "every combination runs)",
    )
    w.add_argument(
        "--set", action="append", default=[], metavar="KEY=VALUE", help="override for every point"
    )
    w.add_argument(
        "--budget-tokens",
        type=int,
        metavar="N",
        help="training tokens per point: train.steps = N // train.global_batch_tokens",
    )
    w.add_argument(
        "--max-regression",
        type=_fraction,
        metavar="X",
        help="general-regression budget for the pick, a fraction or a percent (default 1%%)",
    )
    w.add_argument("--out", metavar="SWEEP_DIR", help="default STEEP_HOME/sweeps/<name>-<time>")
    w.add_argument("--resume", metavar="SWEEP_DIR", help="continue a sweep: finished points skip")
    w.set_defaults(func=cmd_sweep)

    from steep.launch import add_launch_parser

    add_launch_parser(sub)

    from steep.data_cli import add_data_parser

    add_data_parser(sub)

    from steep.eval_cli import add_eval_parser

    add_eval_parser(sub)

    from steep.models_cli import add_models_parser

    add_models_parser(sub)

    from steep.studio.cli import add_studio_parser

    add_studio_parser(sub)

    from steep.tokenizer_cli import add_tokenizer_parser

    add_tokenizer_parser(sub)
    return p


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("STEEP_HOME", str(steep_home()))
    args = build_parser().parse_args(argv)
    try:
        if argv is None and args.command in TRAINING_COMMANDS:  # not when embedded (tests)
            from steep.train.allocator import reexec_with_allocator

            reexec_with_allocator()
        return args.func(args)
    except _user_errors() as exc:
        print(f"steep {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
