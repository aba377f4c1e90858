"""``steep launch``: the torchrun command (or Slurm script) that runs ``steep train`` on many GPUs.

Nothing here starts a process. It validates the config first, so that a typo or a batch
that cannot split across the ranks fails here, in seconds, and not after a job waited in
a queue; then it prints a command or writes an sbatch script. The pure parts return
strings so tests can check them without a GPU or a cluster.
"""

from __future__ import annotations

import argparse
import os
import re
import shlex
import sys
import tempfile
from pathlib import Path

from steep.config import ConfigError, RunConfig, load_config, steep_home
from steep.train.parallel import check_batch_divides

DEFAULT_PORT = 29500
DEFAULT_TIME = "24:00:00"
CPUS_PER_GPU = 4  # data loading is memory-mapped token shards: a few cores per GPU are plenty


class ShellVar(str):
    """An argument the shell must expand on the node (``$NODE_RANK``): quoted with "", not ''."""


def shell_join(cmd: list[str]) -> str:
    """Quote for a POSIX shell; ShellVar arguments stay expandable."""
    return " ".join(f'"{a}"' if isinstance(a, ShellVar) else shlex.quote(a) for a in cmd)


def default_torchrun() -> str:
    """The torchrun of steep's own environment: a bare ``torchrun`` could be another Python's."""
    here = Path(sys.executable).parent / "torchrun"
    return str(here) if here.is_file() else "torchrun"


def visible_gpus() -> int:
    """CUDA devices this process can see; CUDA_VISIBLE_DEVICES first, as CUDA reads it."""
    env = os.environ.get("CUDA_VISIBLE_DEVICES")
    if env is not None:
        count = 0
        for item in env.split(","):
            item = item.strip()
            if not item or item.startswith("-"):  # CUDA ignores this entry and all after it
                break
            count += 1
        return count
    import torch

    return torch.cuda.device_count()


def micro_batches_per_rank(config: RunConfig, nodes: int, gpus_per_node: int) -> int:
    """Gradient-accumulation steps per rank; ConfigError when the global batch does not split."""
    layout = f"{nodes} node(s) x {gpus_per_node} GPU(s)"
    return check_batch_divides(config, nodes * gpus_per_node, layout)


def torchrun_command(
    config_path: str,
    overrides: list[str],
    *,
    gpus_per_node: int,
    nodes: int = 1,
    port: int = DEFAULT_PORT,
    rdzv_id: str = "steep",
    slurm: bool = False,
    torchrun: str = "torchrun",
) -> list[str]:
    """argv for torchrun: standalone on one node, c10d rendezvous at $MASTER_ADDR otherwise."""
    endpoint = ShellVar(f"$MASTER_ADDR:{port}")
    if slurm:
        launcher = [
            "--nnodes", ShellVar("$SLURM_NNODES"),
            "--nproc-per-node", str(gpus_per_node),
            "--rdzv-id", ShellVar("$SLURM_JOB_ID"),
            "--rdzv-backend", "c10d",
            "--rdzv-endpoint", endpoint,
        ]  # fmt: skip
    elif nodes > 1:
        launcher = [
            "--nnodes", str(nodes),
            "--node-rank", ShellVar("$NODE_RANK"),
            "--nproc-per-node", str(gpus_per_node),
            "--rdzv-backend", "c10d",
            "--rdzv-endpoint", endpoint,
            "--rdzv-id", rdzv_id,
        ]  # fmt: skip
    else:
        launcher = ["--standalone", "--nproc-per-node", str(gpus_per_node)]
    sets = [a for item in overrides for a in ("--set", item)]
    return [torchrun, *launcher, "-m", "steep", "train", config_path, *sets]


def _multiline(cmd: list[str]) -> str:
    """One launcher flag per line and the steep call last, so a user can edit the script."""
    cut = cmd.index("-m")
    head, lines, i = cmd[:cut], [shell_join(cmd[:1])], 1
    while i < cut:
        n = 2 if i + 1 < cut and not head[i + 1].startswith("--") else 1
        lines.append(shell_join(head[i : i + n]))
        i += n
    lines.append(shell_join(cmd[cut:]))
    return " \\\n    ".join(lines)


_SBATCH_VALUE = re.compile(r"^[\w.,:+-]+$")
_SLURM_TIME = re.compile(r"^(\d+-)?\d+(:\d\d){0,2}$")


def _sbatch_value(flag: str, value: str) -> str:
    """Refuse values that would break (or inject lines into) the #SBATCH header."""
    if not _SBATCH_VALUE.match(value):
        raise ConfigError(f"--{flag} {value!r}: use letters, digits and . , : + - _ only")
    return value


def slurm_script(
    config_path: str,
    overrides: list[str],
    *,
    nodes: int,
    gpus_per_node: int,
    job_name: str,
    time: str = DEFAULT_TIME,
    port: int = DEFAULT_PORT,
    partition: str | None = None,
    account: str | None = None,
    cpus_per_task: int | None = None,
    log_dir: str = "logs",
    workdir: str | None = None,
    home: str | None = None,
    torchrun: str = "torchrun",
) -> str:
    """An sbatch script: one task per node runs torchrun, which starts one rank per GPU."""
    if not _SLURM_TIME.match(time):
        raise ConfigError(f"--time {time!r}: expected HH:MM:SS or D-HH:MM:SS, e.g. 24:00:00")
    sbatch = [
        f"--job-name={_sbatch_value('job-name', job_name)}",
        f"--nodes={nodes}",
        "--ntasks-per-node=1",
        f"--gpus-per-node={gpus_per_node}",
        f"--cpus-per-task={cpus_per_task or CPUS_PER_GPU * gpus_per_node}",
        f"--time={time}",
    ]
    if partition:
        sbatch.append(f"--partition={_sbatch_value('partition', partition)}")
    if account:
        sbatch.append(f"--account={_sbatch_value('account', account)}")
    sbatch.append(f"--output={os.path.join(log_dir, '%x-%j.out')}")
    cmd = torchrun_command(
        config_path,
        overrides,
        gpus_per_node=gpus_per_node,
        port=port,
        slurm=True,
        torchrun=torchrun,
    )
    lines = [
        "#!/bin/bash",
        f"# Written by steep launch: {nodes} node(s) x {gpus_per_node} GPU(s) for {config_path}",
        "# Submit with: sbatch THIS_FILE",
        *(f"#SBATCH {s}" for s in sbatch),
        "",
        "set -eu",
        "",
    ]
    if workdir:
        lines += [
            "# Where steep launch ran, so relative paths mean what they meant there.",
            f"cd {shlex.quote(workdir)}",
        ]
    if home:
        lines.append(f"export STEEP_HOME={shlex.quote(home)}")
    lines += [
        "",
        "# Every node's torchrun meets the others at the allocation's first node.",
        'MASTER_ADDR=$(scontrol show hostnames "$SLURM_JOB_NODELIST" | head -n 1)',
        "export MASTER_ADDR",
        "# One CPU thread per rank: the GPU does the math and more threads oversubscribe the",
        "# cores (torchrun sets this too, with a warning).",
        "export OMP_NUM_THREADS=1",
        "# A failed or timed-out NCCL collective ends the job instead of hanging until --time.",
        "export TORCH_NCCL_ASYNC_ERROR_HANDLING=1",
        "# Output reaches the log file as it is printed.",
        "export PYTHONUNBUFFERED=1",
        "",
        "srun " + _multiline(cmd),
        "",
    ]
    return "\n".join(lines)


def write_script(path: Path, text: str) -> None:
    """Write atomically and executable: a half-written script must never be submitted."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.chmod(tmp, 0o755)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _count(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}es" if word.endswith("h") else f"{n} {word}s"


def cmd_launch(args: argparse.Namespace) -> int:
    config = load_config(args.config, args.set)  # a typo fails here, before anything is written
    found = args.gpus_per_node is None
    gpus = args.gpus_per_node or max(visible_gpus(), 1)
    accum = micro_batches_per_rank(config, args.nodes, gpus)
    config_path = os.path.abspath(args.config)
    job_name = args.job_name or re.sub(r"[^\w.-]+", "-", config.run.name).strip("-") or "steep"
    torchrun = default_torchrun()
    world = args.nodes * gpus
    summary = (
        f"# {_count(args.nodes, 'node')} x {_count(gpus, 'GPU')} = {_count(world, 'rank')}"
        + (" (GPUs per node: what this machine shows; --gpus-per-node to change)" if found else "")
        + f"; per step and rank: {_count(accum, 'micro-batch')} of "
        f"{config.train.micro_batch_size} x {config.data.seq_len} tokens; "
        f"{config.train.global_batch_tokens} tokens per step in all"
    )
    if args.slurm:
        out = Path(args.slurm)
        log_dir = out.parent.resolve() / "logs"
        text = slurm_script(
            config_path,
            args.set,
            nodes=args.nodes,
            gpus_per_node=gpus,
            job_name=job_name,
            time=args.time,
            port=args.port,
            partition=args.partition,
            account=args.account,
            cpus_per_task=args.cpus_per_task,
            log_dir=str(log_dir),
            workdir=os.getcwd(),
            home=str(steep_home()),
            torchrun=torchrun,
        )
        try:
            write_script(out, text)
            log_dir.mkdir(parents=True, exist_ok=True)  # Slurm does not create --output's folder
        except OSError as exc:
            raise ConfigError(f"cannot write {out}: {exc.strerror}") from None
        print(summary)
        print(f"# wrote {out.resolve()} (logs go to {log_dir}/); submit it with:")
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
    if args.nodes > 1:
        print(
            f"# Run this on every node, with NODE_RANK set (0..{args.nodes - 1}) and MASTER_ADDR "
            f"set to one node's address that all nodes can reach on port {args.port}:"
        )
    print(shell_join(cmd))
    return 0


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be 1 or more, got {value}")
    return value


def _port(text: str) -> int:
    value = int(text)
    if not 1 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"must be a TCP port (1-65535), got {value}")
    return value


def add_launch_parser(sub: argparse._SubParsersAction) -> None:
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
        type=_positive,
        metavar="N",
        help="default: the CUDA devices visible here, or 1",
    )
    p.add_argument("--nodes", type=_positive, default=1, metavar="M")
    p.add_argument("--port", type=_port, default=DEFAULT_PORT, help="rendezvous port")
    p.add_argument("--job-name", help="Slurm job name / rendezvous id (default: run.name)")
    p.add_argument("--slurm", metavar="OUT.sbatch", help="write an sbatch script instead")
    p.add_argument("--partition", help="Slurm partition")
    p.add_argument("--account", help="Slurm account")
    p.add_argument(
        "--time",
        default=DEFAULT_TIME,
        metavar="HH:MM:SS",
        help="Slurm time limit (default %(default)s)",
    )
    p.add_argument(
        "--cpus-per-task",
        type=_positive,
        help=f"CPU cores per node for Slurm (default {CPUS_PER_GPU} per GPU)",
    )
    p.set_defaults(func=cmd_launch)
