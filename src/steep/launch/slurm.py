"""An sbatch script that runs ``steep train`` under torchrun on every allocated node, and
resumes the run when Slurm requeues the job or a user submits it again."""

from __future__ import annotations

import os
import re
import shlex
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from steep.config import ConfigError, RunConfig
from steep.launch.command import ShellVar, shell_join, tokenize_command, train_args
from steep.launch.torchrun import (
    DEFAULT_PORT,
    default_torchrun,
    multiline,
    steep_at,
    torchrun_command,
    torchrun_forwards_signals,
)
from steep.workspace import steep_home

DEFAULT_TIME = "24:00:00"
DEFAULT_SIGNAL_S = 300  # SIGUSR1 this long before --time: a step and a checkpoint fit in it
FORWARDED = "SIGTERM,SIGINT,SIGHUP,SIGQUIT,SIGUSR1"  # torchrun's own four, and SIGUSR1


CPUS_PER_GPU = 4  # data loading is memory-mapped token shards: a few cores per GPU are plenty


_SBATCH_VALUE = re.compile(r"^[\w.,:+-]+$")


_SLURM_TIME = re.compile(r"^(\d+-)?\d+(:\d\d){0,2}$")


def _sbatch_value(flag: str, value: str) -> str:
    """Refuse values that would break (or inject lines into) the #SBATCH header."""
    if not _SBATCH_VALUE.match(value):
        raise ConfigError(f"--{flag} {value!r}: use letters, digits and . , : + - _ only")
    return value


def _check_time(time: str, signal_s: int) -> None:
    if not _SLURM_TIME.match(time):
        raise ConfigError(f"--time {time!r}: expected HH:MM:SS or D-HH:MM:SS, e.g. 24:00:00")
    if signal_s < 0:
        raise ConfigError(f"--signal-before {signal_s}: seconds before the time limit, 0 or more")


def slurm_script(
    config_path: str,
    overrides: list[str],
    *,
    nodes: int,
    gpus_per_node: int,
    job_name: str,
    run_dir: str,
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
    cpu: bool = False,
    signal_s: int = DEFAULT_SIGNAL_S,
    forward_usr1: bool = True,
) -> str:
    """An sbatch script: one task per node runs torchrun, which starts one rank per GPU
    (``cpu``: one rank per ``gpus_per_node`` on the node's cores, no GPUs asked for).

    The run lives in ``run_dir``: the job starts it, and a requeued or resubmitted job
    resumes it from its newest checkpoint. ``signal_s`` seconds before ``--time`` runs out
    Slurm sends SIGUSR1 to the script, which passes it to every rank (torchrun forwards it
    when ``forward_usr1``): they write a checkpoint after the current step and stop, and the
    script requeues the job. ``pretokenize``: the batch step first tokenizes the run's
    data on one node, so no rank waits for it inside the job."""
    _check_time(time, signal_s)
    sbatch = _sbatch_options(
        job_name, nodes, gpus_per_node, time, partition, account, cpus_per_task, log_dir, cpu,
        signal_s,
    )  # fmt: skip
    cmd = torchrun_command(
        config_path,
        overrides,
        gpus_per_node=gpus_per_node,
        port=port,
        slurm=nodes > 1,  # one node: --standalone, so jobs sharing a node never share a port
        torchrun=torchrun,
        python=python,
    )
    cmd = cmd[: steep_at(cmd)]
    if forward_usr1:  # torchrun passes SIGUSR1 on to the ranks and gives them time to save
        cmd += ["--signals-to-handle", FORWARDED, "--shutdown-timeout", str(max(signal_s, 30))]
    cmd += ["-m", "steep", "train", ShellVar("${STEEP_ARGS[@]}")]
    start = train_args(config_path, overrides, run_dir=run_dir)
    resume = train_args(None, resume=run_dir)
    lines = [
        "#!/bin/bash",
        f"# Written by steep launch: {nodes} node(s) x {gpus_per_node} "
        f"{'CPU rank(s)' if cpu else 'GPU(s)'} for {config_path}",
        "# Submit with: sbatch THIS_FILE. Submitting it again (or Slurm requeueing it)",
        f"# continues the run in {run_dir} from its newest checkpoint.",
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
        *_thread_lines(cpu, gpus_per_node),
        "# Output reaches the log file as it is printed.",
        "export PYTHONUNBUFFERED=1",
        "",
        "# A run folder with a config.yaml is this run, started before: resume it.",
        f"RUN_DIR={shlex.quote(run_dir)}",
        'if [ -f "$RUN_DIR/config.yaml" ]; then',
        f"    STEEP_ARGS=({shell_join(resume)})",
        "else",
        f"    STEEP_ARGS=({shell_join(start)})",
        "fi",
        'echo "steep: job $SLURM_JOB_ID, start ${SLURM_RESTART_COUNT:-0}: steep train '
        '${STEEP_ARGS[*]}"',
        "",
        *_USR1_TRAP,
        "",
    ]
    if pretokenize:
        lines += [
            "# Tokenize the run's data once, on this node, before any GPU rank starts.",
            shell_join(tokenize_command(config_path, overrides, python=python)),
            "",
        ]
    lines += [
        "# srun runs in the background so the trap above runs as soon as the signal comes.",
        "srun --kill-on-bad-exit=1 " + multiline(cmd) + " &",
        *_WAIT_THEN_REQUEUE,
    ]
    return "\n".join(lines)


def _sbatch_options(
    job_name: str,
    nodes: int,
    gpus_per_node: int,
    time: str,
    partition: str | None,
    account: str | None,
    cpus_per_task: int | None,
    log_dir: str,
    cpu: bool,
    signal_s: int,
) -> list[str]:
    """The #SBATCH options: the allocation, the log, requeue, and SIGUSR1 before --time."""
    sbatch = [
        f"--job-name={_sbatch_value('job-name', job_name)}",
        f"--nodes={nodes}",
        "--ntasks-per-node=1",
        *([] if cpu else [f"--gpus-per-node={gpus_per_node}"]),
        f"--cpus-per-task={cpus_per_task or (1 if cpu else CPUS_PER_GPU) * gpus_per_node}",
        f"--time={time}",
    ]
    if partition:
        sbatch.append(f"--partition={_sbatch_value('partition', partition)}")
    if account:
        sbatch.append(f"--account={_sbatch_value('account', account)}")
    return sbatch + [
        f"--output={os.path.join(log_dir, '%x-%j.out')}",
        "--open-mode=append",  # a requeued job adds to its log
        "--requeue",  # preempted or its node failed: Slurm queues it again
        f"--signal=B:USR1@{signal_s}",
    ]


def _thread_lines(cpu: bool, gpus_per_node: int) -> list[str]:
    """CPU threads per rank (and NCCL's error handling on GPUs)."""
    if cpu:
        return [
            "# CPU ranks share the task's cores.",
            f"OMP_NUM_THREADS=$(( ${{SLURM_CPUS_PER_TASK:-1}} / {gpus_per_node} ))",
            '[ "$OMP_NUM_THREADS" -ge 1 ] || OMP_NUM_THREADS=1',
            "export OMP_NUM_THREADS",
        ]
    return [
        "# One CPU thread per rank: the GPU does the math and more threads oversubscribe the",
        "# cores (torchrun sets this too, with a warning).",
        "export OMP_NUM_THREADS=1",
        "# A failed or timed-out NCCL collective ends the job instead of hanging until --time.",
        "export TORCH_NCCL_ASYNC_ERROR_HANDLING=1",
    ]


# The script's SIGUSR1 handler: it remembers the stop and passes the signal to the job step.
_USR1_TRAP = [
    "# SIGUSR1 (--signal above, a preemption with send_user_signal, or",
    "# scancel --signal=USR1 --batch): every rank checkpoints after its step and stops;",
    "# then this job requeues itself and its next start resumes.",
    "STOPPING=0",
    "STEP=",
    "on_usr1() {",
    "    STOPPING=1",
    '    echo "steep: SIGUSR1: checkpointing, then requeueing job $SLURM_JOB_ID"',
    '    if [ -n "$STEP" ]; then kill -USR1 "$STEP" 2>/dev/null || true; fi',
    "}",
    "trap on_usr1 USR1",
]

# After srun starts in the background: wait for it through any trap, then requeue or exit.
_WAIT_THEN_REQUEUE = [
    "STEP=$!",
    "RC=0",
    "while :; do",
    '    wait "$STEP" && RC=0 || RC=$?',
    '    kill -0 "$STEP" 2>/dev/null || break  # wait came back for the trap: still running',
    "done",
    'if [ "$STOPPING" = 1 ]; then',
    '    scontrol requeue "$SLURM_JOB_ID"',
    "    exit 0",
    "fi",
    'exit "$RC"',
    "",
]


@dataclass(frozen=True)
class SlurmOptions:
    """What a Slurm user sets once for all of a command's jobs (steep launch, the points of
    steep sweep --slurm, the studio's runs with --slurm)."""

    partition: str | None = None
    account: str | None = None
    time: str = DEFAULT_TIME
    cpus_per_task: int | None = None
    signal_s: int = DEFAULT_SIGNAL_S
    nodes: int = 1
    gpus_per_node: int = 1  # ranks per node: GPUs, or processes on a CPU run

    def __post_init__(self) -> None:  # a typo fails when the command starts, not per job
        _check_time(self.time, self.signal_s)
        for flag in ("partition", "account"):
            if getattr(self, flag):
                _sbatch_value(flag, getattr(self, flag))


def run_script(
    config: RunConfig,
    config_path: str,
    overrides: list[str],
    run_dir: Path,
    options: SlurmOptions,
    *,
    job_name: str | None = None,
    log_dir: Path,
    **extra: Any,
) -> str:
    """``slurm_script`` for one run, with what every caller decides the same way: CPU or
    GPU from ``train.device``, this environment's torchrun, this folder and workspace."""
    return slurm_script(
        config_path,
        overrides,
        nodes=options.nodes,
        gpus_per_node=options.gpus_per_node,
        job_name=job_name or job_name_for(config.run.name),
        run_dir=str(run_dir.resolve()),
        time=options.time,
        partition=options.partition,
        account=options.account,
        cpus_per_task=options.cpus_per_task,
        signal_s=options.signal_s,
        log_dir=str(log_dir),
        workdir=os.getcwd(),
        home=str(steep_home()),
        torchrun=default_torchrun(),
        forward_usr1=torchrun_forwards_signals(),
        cpu=config.train.device == "cpu",
        **extra,
    )


def job_name_for(name: str) -> str:
    """A run name as a Slurm job name (letters, digits, . - _)."""
    return re.sub(r"[^\w.-]+", "-", name).strip("-") or "steep"


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
