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
    result = run_sweep(spec, out, max_reg, slurm)
    return 1 if result.failed else 0


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
    add_slurm_options(w)
    w.set_defaults(func=cmd_sweep)
