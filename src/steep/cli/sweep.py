"""``steep sweep``: short runs over a grid, a Pareto plot and a pick."""

from __future__ import annotations

import argparse
from pathlib import Path

from steep.cli.common import fraction, positive, quiet_libraries
from steep.cli.launch import add_slurm_options, slurm_options
from steep.config import ConfigError


def cmd_sweep(args: argparse.Namespace) -> int:
    # deferred: keeps `steep --help` light (no torch until a command runs)
    from steep.sweep import (
        DEFAULT_MAX_REGRESSION,
        Spec,
        load_spec,
        parse_grid,
        read_sweep,
        run_sweep,
    )

    quiet_libraries()
    max_reg = args.max_regression
    if args.predict:
        return _predict_only(args)
    if args.at is not None:
        raise ConfigError("--at goes with --predict SWEEP_DIR; a new sweep takes --predict-at")
    if args.resume:
        if args.config or args.grid or args.set or args.budget_tokens is not None:
            raise ConfigError(
                "--resume continues a sweep with its own sweep.json: give no CONFIG, --grid, "
                "--set or --budget-tokens"
            )
        out = Path(args.resume)
        spec = load_spec(out)
        if max_reg is None:
            max_reg = read_sweep(out)["max_regression"]
    else:
        if not args.config:
            raise ConfigError("steep sweep needs CONFIG.yaml and --grid KEY=V1,V2 (or --resume)")
        out = Path(args.out) if args.out else None
        spec = Spec(args.config, parse_grid(args.grid), args.set, args.budget_tokens)
    slurm = None
    if args.slurm:
        slurm = slurm_options(args, nodes=args.nodes, gpus_per_node=args.gpus_per_node)
    max_reg = DEFAULT_MAX_REGRESSION if max_reg is None else max_reg
    if args.predict_at is not None:
        _need_scipy()
        _check_factor(args.predict_at, spec.budget_tokens, args.force)
    result = run_sweep(spec, out, max_reg, slurm)
    if args.predict_at is not None and result.finished:
        # deferred: keeps `steep --help` light, as above
        from steep.sweep.predreport import run_prediction

        run_prediction(
            result.sweep_dir, args.predict_at, max_reg, args.force, args.bootstrap, args.at_size
        )
    return 1 if result.failed else 0


def _need_scipy() -> None:
    """The law is fitted with scipy (the ``predict`` extra): say so before any work."""
    try:
        import scipy.optimize  # noqa: F401
    except ImportError:
        raise ConfigError(
            "--predict needs scipy: pip install 'steep[predict]' (or pip install scipy)"
        ) from None


def _check_factor(target: int, budget: int | None, force: bool) -> None:
    """Refuse a target too far beyond the budget before the sweep runs, not after."""
    # deferred: keeps `steep --help` light (the sweep package loads torch)
    from steep.sweep.predict import MAX_FACTOR

    if budget and target / budget > MAX_FACTOR and not force:
        raise ConfigError(
            f"--predict-at {target:,} is {target / budget:.0f}x --budget-tokens {budget:,}: "
            f"more than {MAX_FACTOR:g}x beyond what the fit will see; give --force to "
            "predict anyway"
        )


def _predict_only(args: argparse.Namespace) -> int:
    """``steep sweep --predict SWEEP_DIR --at TOKENS``: refit a finished sweep, no runs."""
    # deferred: keeps `steep --help` light (the sweep package loads torch)
    from steep.sweep import read_sweep

    if args.config or args.grid or args.set or args.resume or args.predict_at is not None:
        raise ConfigError(
            "--predict refits a finished sweep: give only SWEEP_DIR, --at, --at-size, "
            "--max-regression and --force"
        )
    if args.at is None:
        raise ConfigError("--predict SWEEP_DIR needs --at TOKENS (the big run's tokens)")
    _need_scipy()
    from steep.sweep.predreport import run_prediction  # deferred: as read_sweep above

    sweep_dir = Path(args.predict).resolve()
    max_reg = args.max_regression
    if max_reg is None:
        max_reg = read_sweep(sweep_dir)["max_regression"]
    run_prediction(sweep_dir, args.at, max_reg, args.force, args.bootstrap, args.at_size)
    return 0


def tokens(text: str) -> int:
    """A token count: 400000000, 4e8, 400M, 1.5B (K, M, B, T: powers of 1000)."""
    units = {"K": 1e3, "M": 1e6, "B": 1e9, "T": 1e12}
    raw = text.strip().upper()
    try:
        value = float(raw[:-1]) * units[raw[-1]] if raw[-1:] in units else float(raw)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"not a token count: {text!r} (e.g. 4e8 or 400M)"
        ) from None
    if not value >= 1:
        raise argparse.ArgumentTypeError(f"a token count must be at least 1, got {text!r}")
    return int(value)


def add_parsers(sub: argparse._SubParsersAction) -> None:
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
        type=fraction,
        metavar="X",
        help="general-regression budget for the pick, a fraction or a percent (default 1%%)",
    )
    w.add_argument("--out", metavar="SWEEP_DIR", help="default STEEP_HOME/sweeps/<name>-<time>")
    w.add_argument("--resume", metavar="SWEEP_DIR", help="continue a sweep: finished points skip")
    w.add_argument(
        "--slurm",
        action="store_true",
        help="run each point as a Slurm job (sbatch), and collect them as they end",
    )
    w.add_argument("--nodes", type=positive, default=1, metavar="M", help="with --slurm")
    w.add_argument(
        "--gpus-per-node",
        type=positive,
        default=1,
        metavar="N",
        help="with --slurm: ranks per node (GPUs, or processes on a CPU run)",
    )
    w.add_argument(
        "--predict-at",
        type=tokens,
        metavar="TOKENS",
        help="after the grid, fit the CPT law on every eval and predict each point (and mixes "
        "between grid values) at TOKENS, e.g. 1B: results.md 'Prediction', sweep.json",
    )
    w.add_argument(
        "--predict", metavar="SWEEP_DIR", help="refit a finished sweep for --at TOKENS, no runs"
    )
    w.add_argument("--at", type=tokens, metavar="TOKENS", help="with --predict: the target")
    w.add_argument(
        "--at-size",
        type=tokens,
        metavar="PARAMS",
        help="with --predict-at or --predict: predict a model of PARAMS parameters (e.g. 1B), "
        "from a sweep that spans at least three model sizes (a model.* grid key)",
    )
    w.add_argument(
        "--force",
        action="store_true",
        help="predict a target more than 16x the sweep's tokens (the output states the factor)",
    )
    w.add_argument(
        "--bootstrap",
        type=positive,
        default=60,
        metavar="N",
        help="refits over resampled points for the prediction's intervals (default 60)",
    )
    add_slurm_options(w)
    w.set_defaults(func=cmd_sweep)
