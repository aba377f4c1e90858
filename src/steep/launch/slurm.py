"""An sbatch script that runs ``steep train`` under torchrun on every allocated node."""

from __future__ import annotations

import os
import re
import shlex
import sys
import tempfile
from pathlib import Path

from steep.config import ConfigError
from steep.launch.command import shell_join, tokenize_command
from steep.launch.torchrun import DEFAULT_PORT, multiline, torchrun_command

DEFAULT_TIME = "24:00:00"


CPUS_PER_GPU = 4  # data loading is memory-mapped token shards: a few cores per GPU are plenty


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
    pretokenize: bool = False,
    python: str = sys.executable,
) -> str:
    """An sbatch script: one task per node runs torchrun, which starts one rank per GPU.
    ``pretokenize``: the batch step first tokenizes the run's data on one node, so no rank
    waits for it inside the job."""
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
    ]
    if pretokenize:
        lines += [
            "# Tokenize the run's data once, on this node, before any GPU rank starts.",
            shell_join(tokenize_command(config_path, overrides, python=python)),
            "",
        ]
    lines += [
        "srun " + multiline(cmd),
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
