"""``steep launch``: validate, then print the torchrun command or write a Slurm script.

Nothing here starts a process: a typo, a batch that cannot split across the ranks, a
missing data path or an unknown base peak LR (``steep.train.preflight``, the check
``steep validate`` runs) fails here, in seconds, not after a job waited in a queue.
"""

from __future__ import annotations

import argparse
import os
import shlex
from pathlib import Path

from steep.cli.common import positive
from steep.config import ConfigError, RunConfig, load_config
from steep.launch.command import shell_join, tokenize_command
from steep.launch.slurm import (
    CPUS_PER_GPU,
    DEFAULT_SIGNAL_S,
    DEFAULT_TIME,
    SlurmOptions,
    job_name_for,
    run_script,
    write_script,
)
from steep.launch.torchrun import (
    DEFAULT_PORT,
    default_torchrun,
    rank_layout,
    torchrun_command,
    torchrun_forwards_signals,
    visible_gpus,
)
from steep.workspace import CONFIG_FILE, Workspace, steep_home


def _count(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}es" if word.endswith("h") else f"{n} {word}s"


def cmd_launch(args: argparse.Namespace) -> int:
    # deferred: the preflight loads torch and transformers; `steep --help` does not need them
    from steep.plan.estimate import launch_device, make_plan
    from steep.plan.text import summary_line
    from steep.train.preflight import preflight

    config = load_config(args.config, args.set)  # a typo fails here, before anything is written
    found = args.gpus_per_node is None
    gpus = args.gpus_per_node or max(visible_gpus(), 1)
    # base LR, schedule, batch split, data: what steep validate checks, before anything is written
    facts = preflight(config, world_size=args.nodes * gpus, layout=rank_layout(args.nodes, gpus))
    accum = facts.grad_accum
    config_path = os.path.abspath(args.config)
    job_name = args.job_name or job_name_for(config.run.name)
    torchrun = default_torchrun()
    world = args.nodes * gpus
    summary = (
        f"# {_count(args.nodes, 'node')} x {_count(gpus, 'GPU')} = {_count(world, 'rank')}"
        + (" (GPUs per node: what this machine shows; --gpus-per-node to change)" if found else "")
        + f"; per step and rank: {_count(accum, 'micro-batch')} of "
        f"{config.train.micro_batch_size} x {config.data.seq_len} tokens; "
        f"{config.train.global_batch_tokens} tokens per step in all"
        f"\n# {facts.summary(config)}" + "".join(f"\n# warning: {w}" for w in facts.warnings)
    )
    device = launch_device(args.gpu)  # a typo in --gpu fails here
    try:
        plan = summary_line(make_plan(config, world, device))
    except (ConfigError, OSError, ValueError) as exc:  # a base it cannot size: launch anyway
        plan = f"unavailable: {exc}"
    summary += f"\n# plan: {plan}"
    if args.slurm:
        out = Path(args.slurm)
        log_dir = out.parent.resolve() / "logs"
        run_dir = launch_run_dir(config)
        options = slurm_options(args, nodes=args.nodes, gpus_per_node=gpus)
        text = run_script(
            config,
            config_path,
            args.set,
            run_dir,
            options,
            job_name=job_name,
            log_dir=log_dir,
            port=args.port,
            pretokenize=args.pretokenize,
        )
        try:
            write_script(out, text)
            log_dir.mkdir(parents=True, exist_ok=True)  # Slurm does not create --output's folder
        except OSError as exc:
            raise ConfigError(f"cannot write {out}: {exc.strerror}") from None
        print(summary)
        print(f"# wrote {out.resolve()} (logs go to {log_dir}/); the run goes to {run_dir}")
        if not torchrun_forwards_signals():
            print(
                "# warning: this torch's torchrun cannot pass SIGUSR1 to the ranks: before the "
                "time limit the job stops without a checkpoint (a requeue resumes from the "
                "newest regular one)"
            )
        if (run_dir / CONFIG_FILE).exists():
            print(f"# {run_dir} holds this run already: the job resumes it")
        print("# submit it with (again after a scancel: the run resumes):")
        print(f"sbatch {shlex.quote(str(out))}")
        return 0
    cmd = torchrun_command(
        config_path,
        args.set,
        gpus_per_node=gpus,
        nodes=args.nodes,
        port=args.port,
        rdzv_id=job_name,
        torchrun=torchrun,
    )
    print(summary)
    if args.pretokenize:
        print("# First, on one machine that sees the data (tokenizes into the shared cache):")
        print(shell_join(tokenize_command(config_path, args.set)))
    if args.nodes > 1:
        print(
            f"# Run this on every node, with NODE_RANK set (0..{args.nodes - 1}) and MASTER_ADDR "
            f"set to one node's address that all nodes can reach on port {args.port}:"
        )
    print(shell_join(cmd))
    return 0


def launch_run_dir(config: RunConfig) -> Path:
    """The run folder a script writes, fixed now so every start of the job finds it:
    ``run.out_dir``, or a new folder under the workspace's runs/."""
    if config.run.out_dir:
        return Path(config.run.out_dir).resolve()
    return Workspace(steep_home()).new_run_dir(config.run.name).resolve()


def add_slurm_options(p: argparse.ArgumentParser, prefix: str = "") -> None:
    """The Slurm job options; ``prefix`` ("slurm-") where the command has its own --time."""
    p.add_argument(f"--{prefix}partition", help="Slurm partition")
    p.add_argument(f"--{prefix}account", help="Slurm account")
    p.add_argument(
        f"--{prefix}time",
        default=DEFAULT_TIME,
        metavar="HH:MM:SS",
        help="Slurm time limit (default %(default)s)",
    )
    p.add_argument(
        f"--{prefix}cpus-per-task",
        type=positive,
        help=f"CPU cores per node for Slurm (default {CPUS_PER_GPU} per GPU, 1 per CPU rank)",
    )
    p.add_argument(
        f"--{prefix}signal-before",
        type=int,
        default=DEFAULT_SIGNAL_S,
        metavar="SECONDS",
        help="SIGUSR1 this long before the time limit: the ranks checkpoint, the job requeues "
        "and resumes (default %(default)s)",
    )


def slurm_options(
    args: argparse.Namespace, prefix: str = "", nodes: int = 1, gpus_per_node: int = 1
) -> SlurmOptions:
    """The options ``add_slurm_options`` added, as the launch package takes them."""
    key = prefix.replace("-", "_")
    return SlurmOptions(
        partition=getattr(args, f"{key}partition"),
        account=getattr(args, f"{key}account"),
        time=getattr(args, f"{key}time"),
        cpus_per_task=getattr(args, f"{key}cpus_per_task"),
        signal_s=getattr(args, f"{key}signal_before"),
        nodes=nodes,
        gpus_per_node=gpus_per_node,
    )


def _port(text: str) -> int:
    value = int(text)
    if not 1 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"must be a TCP port (1-65535), got {value}")
    return value


def add_parsers(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "launch",
        help="print the torchrun command (or write a Slurm script) for multi-GPU training",
    )
    p.add_argument("config", help="run config (YAML)")
    p.add_argument(
        "--set", action="append", default=[], metavar="KEY=VALUE", help="passed on to steep train"
    )
    p.add_argument(
        "--gpus-per-node",
        type=positive,
        metavar="N",
        help="default: the CUDA devices visible here, or 1",
    )
    p.add_argument("--nodes", type=positive, default=1, metavar="M")
    p.add_argument(
        "--gpu",
        metavar="NAME",
        help="the GPU the job gets (H100, A100, ...), for the memory plan; default: this "
        "machine's (steep plan CONFIG --gpus N for the whole plan)",
    )
    p.add_argument("--port", type=_port, default=DEFAULT_PORT, help="rendezvous port")
    p.add_argument("--job-name", help="Slurm job name / rendezvous id (default: run.name)")
    p.add_argument("--slurm", metavar="OUT.sbatch", help="write an sbatch script instead")
    p.add_argument(
        "--pretokenize",
        action="store_true",
        help="tokenize the run's data before the ranks start (steep data tokenize --config)",
    )
    add_slurm_options(p)
    p.set_defaults(func=cmd_launch)
