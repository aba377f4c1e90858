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
from collections.abc import Iterator
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


def runs_setup(folder: str):
    """A module fixture named ``setup``: a tiny base, two ranks' corpora and a workspace under
    a fresh ``folder``, shared by a Slurm test module's runs (``setup = runs_setup("x")``)."""
    import pytest

    @pytest.fixture(scope="module", name="setup")
    def _setup(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict]:
        from tests.conftest import make_tiny_model, two_ranks_corpora

        root = tmp_path_factory.mktemp(folder)
        base = make_tiny_model(root / "base")
        with pytest.MonkeyPatch.context() as mp:  # module fixtures run before each test's home
            mp.setenv("STEEP_HOME", str(root / "home"))
            yield {"root": root, "corpora": two_ranks_corpora(root), "base": base}

    return _setup


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


def signal_mid_run(ranks, send, sig: signal.Signals, tick=lambda: None) -> None:
    """Send ``sig`` (``send()``: a scancel, the studio's Cancel) while the training ranks
    (``ranks()``: their PIDs, [] until all are there) stand still (SIGSTOP) once each
    catches it (steep's handlers are set: it asks for a checkpoint, it does not end them);
    wait until it is pending at each (or Slurm let them go: its kill sends SIGCONT, then
    SIGTERM), then let them go. It lands mid-run, wherever the
    machine's speed would have put it. ``tick`` runs while waiting (a studio's runner)."""

    def caught() -> list[int]:
        pids = ranks()
        return pids if pids and all(_has(pid, sig, "SigCgt") for pid in pids) else []

    pids = _poll(f"the ranks' {sig.name} handlers", caught, 120)
    for pid in pids:
        os.kill(pid, signal.SIGSTOP)
    try:
        send()
        # pending; or running again: Slurm's kill sends SIGCONT just before its SIGTERM
        arrived = lambda p: _has(p, sig, "ShdPnd", "SigPnd") or _state(p) != "T"  # noqa: E731
        _poll(f"{sig.name} at the ranks", lambda: tick() or all(map(arrived, pids)), 60)
    finally:
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGCONT)


def _poll(what: str, ok, timeout: float):
    deadline = time.time() + timeout
    while not (value := ok()):
        if time.time() > deadline:
            raise TimeoutError(f"waited {timeout:.0f}s for {what}")
        time.sleep(0.05)
    return value


def _state(pid: int) -> str:
    """The kernel's state of ``pid`` (T: stopped); "" once it is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return ""
    return stat[stat.rindex(")") + 2 :].split()[0]


def _has(pid: int, sig: signal.Signals, *fields: str) -> bool:
    """Is ``sig`` in any of ``pid``'s /proc signal masks ``fields`` (SigCgt: caught;
    ShdPnd, SigPnd: pending, as it stays while the process is stopped)?"""
    try:
        lines = Path(f"/proc/{pid}/status").read_text().splitlines()
    except OSError:
        return False
    masks = [int(line.split()[1], 16) for line in lines if line.split(":")[0] in fields]
    return any(mask & (1 << (sig - 1)) for mask in masks)


def ranks_of(run: Path, count: int) -> list[int]:
    """The PIDs of the ``count`` training ranks (torchrun's ``python -u -m steep train``
    children) of the run in ``run``; [] until all of them are there."""
    found = []
    for proc in Path("/proc").iterdir():
        try:
            argv = (proc / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if argv[1:5] == [b"-u", b"-m", b"steep", b"train"] and str(run).encode() in argv:
            found.append(int(proc.name))
    return found if len(found) == count else []
