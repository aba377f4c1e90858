"""A real one-node Slurm for tests: munged, slurmctld and slurmd started as root in a tmp dir.

Debian's ``slurm-wlm`` + ``munge`` (``make slurm-deps``). No cgroups, no accounting: the
node is this machine with 2 CPUs, jobs are tracked by ``squeue`` and the run folders.
``start`` returns a ``Cluster`` or raises ``ClusterUnavailable`` with the reason (and the
daemons' log tails), which the fixture turns into a skip.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

DAEMONS = ("munged", "slurmctld", "slurmd", "sbatch", "squeue", "scontrol", "scancel")


class ClusterUnavailable(RuntimeError):
    """Slurm cannot run here; the message says why."""


@dataclass
class Cluster:
    root: Path
    conf: Path
    env: dict[str, str]
    pids: list[int] = field(default_factory=list)

    def run(self, *argv: str, check: bool = True) -> subprocess.CompletedProcess:
        return subprocess.run(argv, env=self.env, capture_output=True, text=True, check=check)

    def sbatch(self, script: Path, *flags: str) -> str:
        """Submit; the job id."""
        out = self.run("sbatch", "--parsable", *flags, str(script)).stdout
        return out.strip().split(";")[0]

    def state(self, job: str) -> str | None:
        """squeue's state (PENDING, RUNNING, ...), or None once the job has left the queue."""
        out = self.run("squeue", "-h", "-j", job, "-o", "%T", check=False).stdout.strip()
        return out or None

    def wait_gone(self, job: str, timeout: float = 300) -> None:
        deadline = time.time() + timeout
        while self.state(job) is not None:
            if time.time() > deadline:
                raise TimeoutError(f"job {job} still {self.state(job)} after {timeout:.0f}s")
            time.sleep(0.5)

    def stop(self) -> None:
        for pid in reversed(self.pids):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
        for pid in self.pids:
            for _ in range(50):
                if _gone(pid):
                    break
                time.sleep(0.1)


def _gone(pid: int) -> bool:
    """Has ``pid`` exited? A child of ours is reaped here: a zombie still answers kill 0."""
    with contextlib.suppress(ChildProcessError):
        if os.waitpid(pid, os.WNOHANG)[0] == pid:
            return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


def _tail(path: Path, lines: int = 8) -> str:
    try:
        text = path.read_text(errors="replace").splitlines()
    except OSError:
        return f"({path.name}: no log)"
    return f"{path.name}: " + " | ".join(text[-lines:])


def _conf(root: Path, host: str, nodes: dict[str, str] | None = None) -> str:
    """One node, 2 CPUs, no cgroups (a container may not delegate them), no accounting.
    ``nodes``: name -> address, one slurmd each (tests/netns_cluster.py), the first of
    which also runs slurmctld; the daemons' files are per node (%n)."""
    names = ",".join(nodes) if nodes else host
    ctld = f"{host}({nodes[host]})" if nodes else host
    node_lines = (
        [
            f"NodeName={n} NodeAddr={a} CPUs=2 RealMemory=4000 State=UNKNOWN"
            for n, a in nodes.items()
        ]
        if nodes
        else [f"NodeName={host} CPUs=2 RealMemory=4000 State=UNKNOWN"]
    )
    per_node = "-%n" if nodes else ""
    return "\n".join(
        [
            "ClusterName=steeptest",
            f"SlurmctldHost={ctld}",
            "SlurmUser=root",
            "SlurmdUser=root",
            "AuthType=auth/munge",
            # cred_expire: how long a requeued job waits before it may start again
            # (120 s by default; Slurm refuses under 5); starting it sooner kills it
            # ("credential revoked"). One host: 5 s, the requeue test's wait.
            f"AuthInfo=socket={root / 'munge' / 'munge.socket'},cred_expire={10 if nodes else 5}",
            f"StateSaveLocation={root / 'state'}",
            f"SlurmdSpoolDir={root / 'spool'}{per_node}",
            f"SlurmctldPidFile={root / 'slurmctld.pid'}",
            f"SlurmdPidFile={root / 'slurmd'}{per_node}.pid",
            f"SlurmctldLogFile={root / 'slurmctld.log'}",
            f"SlurmdLogFile={root / 'slurmd'}{per_node}.log",
            "SlurmctldPort=16817",
            "SlurmdPort=16818",
            "ProctrackType=proctrack/linuxproc",
            "TaskPlugin=task/none",
            "SelectType=select/cons_tres",
            "SelectTypeParameters=CR_CPU",
            "JobAcctGatherType=jobacct_gather/none",
            "AccountingStorageType=accounting_storage/none",
            "MpiDefault=none",
            "ReturnToService=2",
            "SchedulerType=sched/backfill",
            # the main loop every second (60 s by default): a requeued job's begin time
            # passes with no event to schedule on, and backfill only runs after one, so
            # it waited for the main loop (25-56 s measured; 7 s with this and cred_expire 5)
            "SchedulerParameters=sched_interval=1",
            # SIGTERM to SIGKILL: Slurm's default 30 s on two hosts, whose ranks checkpoint
            # on SIGTERM within train.preempt_grace_s (25 s)
            f"KillWait={30 if nodes else 10}",
            "MinJobAge=2",  # a finished job leaves squeue within seconds
            "JobRequeue=1",
            *node_lines,
            f"PartitionName=debug Nodes={names} Default=YES MaxTime=INFINITE State=UP",
            "",
        ]
    )


def start(root: Path, timeout: float = 60) -> Cluster:
    """Start munged, slurmctld and slurmd under ``root``; wait until the node is idle."""
    if os.geteuid() != 0:
        raise ClusterUnavailable("needs root to start slurmctld, slurmd and munged")
    missing = [d for d in DAEMONS if shutil.which(d) is None]
    if missing:
        raise ClusterUnavailable(
            f"not installed: {', '.join(missing)} (make slurm-deps: apt-get install slurm-wlm munge)"
        )
    root.mkdir(parents=True, exist_ok=True)
    for sub in ("state", "spool", "munge"):
        (root / sub).mkdir(exist_ok=True)
    host = socket.gethostname().split(".")[0]
    conf = root / "slurm.conf"
    conf.write_text(_conf(root, host))
    env = {**os.environ, "SLURM_CONF": str(conf)}
    cluster = Cluster(root, conf, env)
    logs = [root / "munged.log", root / "slurmctld.log", root / "slurmd.log"]

    def fail(why: str) -> ClusterUnavailable:
        cluster.stop()
        return ClusterUnavailable(why + "; " + "; ".join(_tail(p) for p in logs))

    munge = start_munged(root)
    if munge.returncode != 0:
        raise fail(f"munged did not start: {munge.stderr.strip()}")
    cluster.pids.append(int((root / "munged.pid").read_text()))
    with open(root / "daemons.out", "ab") as out:
        for daemon in ("slurmctld", "slurmd"):
            proc = subprocess.Popen(
                [daemon, "-D", "-f", str(conf)], env=env, stdout=out, stderr=out
            )
            cluster.pids.append(proc.pid)
    return wait_idle(cluster, "idle", timeout, fail)


def wait_idle(cluster: Cluster, idle: str, timeout: float, fail) -> Cluster:
    """Poll sinfo until every node is idle (``idle``: what sinfo prints then)."""
    deadline = time.time() + timeout
    state = None
    while time.time() < deadline:
        state = cluster.run("sinfo", "-h", "-o", "%T", check=False)
        if state.stdout.strip() == idle:
            return cluster
        time.sleep(0.5)
    seen = state.stdout.strip() if state else ""
    raise fail(f"the nodes did not come up idle in {timeout:.0f}s (sinfo: {seen!r})")


def start_munged(root: Path) -> subprocess.CompletedProcess:
    """munged with a fresh key; its socket under ``root`` (a path, so any network
    namespace on this machine reaches it)."""
    key, sock = root / "munge" / "munge.key", root / "munge" / "munge.socket"
    key.write_bytes(os.urandom(1024))
    key.chmod(0o400)
    os.chmod(root / "munge", 0o700)
    return subprocess.run(
        [
            "munged",
            "--force",
            f"--key-file={key}",
            f"--socket={sock}",
            f"--pid-file={root / 'munged.pid'}",
            f"--log-file={root / 'munged.log'}",
            f"--seed-file={root / 'munge' / 'seed'}",
        ],
        capture_output=True,
        text=True,
    )


def run_config(setup: dict, name: str, steps: int, every: int, eval_every: int = 20) -> Path:
    """A CPU run config for a Slurm job: ``setup`` is a test module's root, corpora, base."""
    import yaml

    from tests.conftest import tiny_config

    raw = tiny_config(setup["root"] / name, setup["corpora"], setup["base"], steps=steps)
    raw["run"]["name"] = name
    raw["train"].update(global_batch_tokens=512, device="cpu")
    raw["checkpoint"] = {"every_steps": every, "keep_last": 20}
    raw["eval"] = {"every_steps": eval_every, "max_windows": 4}
    path = setup["root"] / f"{name}.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def train_losses(run: Path) -> list[tuple[int, float]]:
    """(step, loss) of each train record in the run's metrics.jsonl."""
    lines = (run / "metrics.jsonl").read_text().splitlines()
    return [(r["step"], r["loss"]) for r in map(json.loads, lines) if r["kind"] == "train"]


def last_step(run: Path) -> int:
    """The newest step the run recorded; 0 before its first (or while the file is cut)."""
    try:
        steps = train_losses(run)
    except (OSError, json.JSONDecodeError):
        return 0
    return steps[-1][0] if steps else 0
