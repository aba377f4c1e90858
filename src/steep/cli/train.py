"""``steep train``, ``steep validate`` and ``steep demo``.

Feature modules are imported inside each command (here and in every cli module): building
the parser for ``steep --help`` must not load torch.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from steep.cli.common import positive, quiet_libraries
from steep.config import ConfigError, load_config


def cmd_train(args: argparse.Namespace) -> int:
    from steep.hub import record_run  # deferred: keeps `steep --help` light (no torch)
    from steep.train.loop import resume_run, train

    quiet_libraries()
    if args.resume:
        result = resume_run(
            Path(args.resume),
            args.allow_data_change,
            args.force,
            new_data=Path(args.config) if args.config else None,
            overrides=args.set,
            allow_mixture_change=args.allow_mixture_change,
        )
        record_run(result.run_dir)
        return 0
    if args.allow_data_change or args.allow_mixture_change:
        flag = "data" if args.allow_data_change else "mixture"
        raise ConfigError(f"--allow-{flag}-change goes with --resume RUN_DIR")
    if not args.config:
        raise ConfigError("steep train needs CONFIG.yaml (or --resume RUN_DIR)")
    config = load_config(args.config, args.set)
    result = train(config, run_dir=Path(args.out) if args.out else None, force=args.force)
    record_run(result.run_dir)  # the Model Hub row and the model card, now
    return 0


def cmd_train_or_stop(args: argparse.Namespace) -> int:
    """``cmd_train``; a run that SIGUSR1 stopped after writing its checkpoint exits 75
    (EX_TEMPFAIL): not a failure but a run to resume, which a requeued Slurm job does.
    SIGTERM's checkpointed stop exits 130, as a cancel."""
    from steep.train.runfolder.state import RunStopped  # deferred with the rest of training

    try:
        return cmd_train(args)
    except RunStopped as exc:
        print(f"steep train: {exc}", file=sys.stderr)
        return exc.exit_code


def cmd_validate(args: argparse.Namespace) -> int:
    # deferred: keeps `steep --help` light (no torch until a command runs)
    from steep.config import dump_config
    from steep.launch.torchrun import rank_layout
    from steep.train.preflight import preflight

    config = load_config(args.config, args.set)
    world = args.nodes * args.gpus_per_node
    facts = preflight(config, world_size=world, layout=rank_layout(args.nodes, args.gpus_per_node))
    print(dump_config(config), end="")
    accum = facts.grad_accum
    print(
        f"# ok: {facts.summary(config)}; {accum} micro-batch{'es' if accum != 1 else ''} "
        f"per step on each of {world} rank{'s' if world != 1 else ''}"
    )
    for warning in facts.warnings:
        print(f"# warning: {warning}")
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    # deferred: keeps `steep --help` light (no torch until a command runs)
    from steep.demos.demo import run_demo

    quiet_libraries()
    run_demo(overrides=args.set, recipe=args.recipe)
    return 0


def add_parsers(sub: argparse._SubParsersAction) -> None:
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
    t.add_argument(
        "--allow-data-change",
        action="store_true",
        help="with --resume: go on although the data changed since the checkpoint (recorded "
        "in the lineage, baseline measured again); without it such a resume is refused",
    )
    t.add_argument(
        "--allow-mixture-change",
        action="store_true",
        help="with --resume: go on with another mix (--set data.sources.N.weight=W, or a "
        "CONFIG whose data section adds or removes sources); kept sources continue where "
        "they were, new ones start at their beginning, the change is recorded",
    )
    t.add_argument("--out", metavar="RUN_DIR", help="run directory (default under STEEP_HOME/runs)")
    t.add_argument(
        "--force",
        action="store_true",
        help="start although `steep plan` says the run does not fit in the devices' memory",
    )
    t.set_defaults(func=cmd_train_or_stop)

    v = sub.add_parser("validate", help="check a config and print it resolved, without running")
    v.add_argument("config")
    v.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    v.add_argument(
        "--gpus-per-node",
        type=positive,
        default=1,
        metavar="N",
        help="check the batch split for this many GPUs per node, as steep launch does",
    )
    v.add_argument("--nodes", type=positive, default=1, metavar="M")
    v.set_defaults(func=cmd_validate)

    d = sub.add_parser(
        "demo", help="adapt SmolLM2-135M to Python docs on the CPU, no model or dataset hub"
    )
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
        "Vietnamese with and without vocabulary extension (examples/demo-vi.yaml)",
    )
    d.set_defaults(func=cmd_demo)
