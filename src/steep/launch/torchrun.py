"""torchrun argv for ``steep train`` on one node or many (c10d rendezvous)."""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path

from steep.config import RunConfig
from steep.launch.command import ShellVar, shell_join, train_command

DEFAULT_PORT = 29500
ELASTIC = "steep.launch.elastic"  # torchrun with a bounded, one-line rendezvous failure


def default_torchrun() -> str:
    """The torchrun of steep's own environment: a bare ``torchrun`` could be another Python's."""
    here = Path(sys.executable).parent / "torchrun"
    return str(here) if here.is_file() else "torchrun"


def torchrun_forwards_signals() -> bool:
    """Does this torch's torchrun take --signals-to-handle (and so pass SIGUSR1 on to its
    ranks)? Read from its source, so writing a script does not import torch."""
    spec = importlib.util.find_spec("torch")
    if spec is None or spec.origin is None:
        return False
    run = Path(spec.origin).parent / "distributed" / "run.py"
    try:
        return "--signals-to-handle" in run.read_text(encoding="utf-8")
    except OSError:
        return False


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
    import torch  # deferred: torch is slow to import and only this path needs it

    return torch.cuda.device_count()


def rank_layout(nodes: int, gpus_per_node: int) -> str:
    """How the ranks are laid out, as batch-split messages name them."""
    return f"{nodes} node(s) x {gpus_per_node} GPU(s)"


def micro_batches_per_rank(config: RunConfig, nodes: int, gpus_per_node: int) -> int:
    """Gradient-accumulation steps per rank; ConfigError when the global batch does not split."""
    split = config.batch_split(nodes * gpus_per_node)
    return split.check(rank_layout(nodes, gpus_per_node))


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
    python: str = sys.executable,
) -> list[str]:
    """argv for torchrun: standalone on one node, c10d rendezvous at $MASTER_ADDR otherwise.
    Across nodes torchrun runs as ``python -m steep.launch.elastic``: a node that cannot
    reach the rendezvous ends with one line naming it (``steep.launch.elastic``)."""
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
    first = [python, "-m", ELASTIC] if slurm or nodes > 1 else [torchrun]
    # torchrun runs the module itself: it takes the place of python in steep's own argv
    return [*first, *launcher, *train_command(config_path, overrides)[1:]]


def steep_at(cmd: list[str]) -> int:
    """Where ``-m steep ...`` starts in a launcher's argv (after its own flags)."""
    return next(i for i in range(len(cmd) - 1) if cmd[i : i + 2] == ["-m", "steep"])


def multiline(cmd: list[str]) -> str:
    """One launcher flag per line and the steep call last, so a user can edit the script."""
    cut = steep_at(cmd)
    lead = 3 if cmd[1:3] == ["-m", ELASTIC] else 1  # python -m steep.launch.elastic, or torchrun
    head, lines, i = cmd[:cut], [shell_join(cmd[:lead])], lead
    while i < cut:
        n = 2 if i + 1 < cut and not head[i + 1].startswith("--") else 1
        lines.append(shell_join(head[i : i + n]))
        i += n
    lines.append(shell_join(cmd[cut:]))
    return " \\\n    ".join(lines)
