"""Slurm across two hosts on one machine (network namespaces, tests/netns_cluster.py).

With a tiny model on the CPU (gloo), as root:
- time to first step: ``steep launch --slurm`` with 1 node x 2 ranks against 2 nodes x 1
  rank, from sbatch to the first train record;
- SIGTERM (scancel): from the signal to the checkpoint of the step it landed in, and to the
  job gone;
- a lost node: SIGKILL to the second host's rank, from the kill to the job gone, then from
  a new sbatch to the first step after the resume (and whether the losses still match the
  uninterrupted 2-host run);
- SIGUSR1 (``scancel --signal=USR1 --batch``, what ``--signal`` sends before the time
  limit): from the signal to the checkpoint, and to training again after the job requeued
  itself;
- a rendezvous out of reach: the second host's launcher (``steep.launch.elastic``) with a
  10 s ``read_timeout`` and nothing at the address, until its one line;
- the Data Hub: ``steep data add`` + ``prepare`` (tests/test_ray.py's corpus) on the local
  pool (2 workers) against Ray with its head on one host and 2 CPUs on the other; then the
  worker node lost (raylet and workers SIGKILLed) while it holds units of an add: from the
  kill to a new node in, and to the add done.

    .venv/bin/python -m benchmarks.multinode [--steps 10]
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from steep.cli import main
from steep.train.checkpoint import checkpoint_dirs
from tests import netns_cluster
from tests.conftest import make_tiny_model, two_ranks_corpora
from tests.slurm_cluster import last_step, run_config, train_losses


def _script(setup: dict, name: str, steps: int, nodes: int, per_node: int, every: int) -> Path:
    script = setup["root"] / "jobs" / f"{name}.sbatch"
    config = run_config(setup, name, steps, every, eval_every=1000)
    argv = ["launch", str(config), "--slurm", str(script), "--time", "10:00"]
    assert main([*argv, "--nodes", str(nodes), "--gpus-per-node", str(per_node)]) == 0
    return script


def _first_step(hosts: netns_cluster.Hosts, script: Path, run: Path, after: int = 0) -> str:
    """sbatch, then the seconds until the run records a step past ``after``; the job id."""
    assert hosts.cluster is not None
    started = time.time()
    job = hosts.cluster.sbatch(script)
    if after:  # a resume: steps past ``after`` from before it count once it truncated them
        log = script.parent / "logs" / f"{script.stem}-{job}.out"
        resumed = lambda: log.exists() and "resumed from" in log.read_text()  # noqa: E731
        netns_cluster.wait_for("the resume", resumed, 600, every=0.05)
        truncated = lambda: last_step(run) <= after  # noqa: E731
        netns_cluster.wait_for("the records cut to the checkpoint", truncated, 60, every=0.01)
    netns_cluster.wait_for("a step", lambda: last_step(run) > after, 600, every=0.05)
    print(f"  {script.stem}: first step {time.time() - started:.1f} s after sbatch")
    return job


def _datahub(hosts: netns_cluster.Hosts, root: Path) -> tuple[str, list[str]]:
    """Seconds for add + prepare: the local pool here, then Ray across the two hosts."""
    from tests.test_ray import RECIPE, _corpus

    started = time.time()
    head = netns_cluster.start_ray(hosts, root / "ray.out")
    print(f"  Ray up on 2 hosts in {time.time() - started:.1f} s")
    files = _corpus(root / "in")
    env = {**os.environ, **netns_cluster.RAY_ENV}
    for name, engine in (("loc", ["--executor", "local", "--workers", "2"]),
                         ("ray", ["--executor", "ray", "--ray-address", head])):  # fmt: skip
        started = time.time()
        for argv in (["add", name, *files], ["prepare", name, "--recipe", RECIPE]):
            cmd = [sys.executable, "-m", "steep", "data", *argv, *engine]
            if name == "ray":  # the driver on the head's host
                cmd = hosts.exec_argv(next(iter(hosts.names)), *cmd)
            subprocess.run(cmd, env=env, check=True, capture_output=True, timeout=600)
        print(f"  {name}: add + prepare {time.time() - started:.1f} s")
    return head, files


def _usr1(hosts: netns_cluster.Hosts, setup: dict, steps: int) -> None:
    """SIGUSR1 to the batch script mid-run: to the checkpoint, and to training again."""
    cluster = hosts.cluster
    assert cluster is not None
    script = _script(setup, "usr1", steps, 2, 1, 1000)
    run_dir = setup["root"] / "usr1" / "run"
    job = _first_step(hosts, script, run_dir)
    netns_cluster.wait_for("step 2", lambda: last_step(run_dir) >= 2, 600, every=0.05)
    sent = time.time()
    cluster.run("scancel", "--signal=USR1", "--batch", job)
    ckpts = lambda: checkpoint_dirs(run_dir / "checkpoints")  # noqa: E731
    netns_cluster.wait_for("the checkpoint", ckpts, 120, every=0.05)
    print(f"  checkpoint {time.time() - sent:.1f} s after SIGUSR1", end="")
    kept = int(ckpts()[-1].name.split("_")[1])
    netns_cluster.wait_for("the requeue", lambda: cluster.state(job) == "PENDING", 120)
    print(f", requeued after {time.time() - sent:.1f} s", end="")
    netns_cluster.wait_for("a step", lambda: last_step(run_dir) > kept, 600, every=0.05)
    print(f", training again after {time.time() - sent:.1f} s")
    cluster.wait_gone(job, 600)


def _rendezvous(hosts: netns_cluster.Hosts) -> None:
    """The second host's launcher, nothing at the rendezvous: seconds to its one line."""
    from steep.launch.torchrun import steep_at, torchrun_command

    endpoint = f"{hosts.names[hosts.first]}:29599"
    cmd = torchrun_command("unused.yaml", [], gpus_per_node=1, nodes=2, port=29599)
    cmd = [{"$NODE_RANK": "1", "$MASTER_ADDR:29599": endpoint}.get(a, a) for a in cmd]
    at = steep_at(cmd)
    cmd[at:at] = ["--rdzv-conf", "read_timeout=10"]
    started = time.time()
    done = subprocess.run(hosts.exec_argv(list(hosts.names)[1], *cmd), capture_output=True,
                          text=True, timeout=120)  # fmt: skip
    lines = done.stderr.strip().splitlines()
    print(f"  ended in {time.time() - started:.1f} s (code {done.returncode}), {len(lines)} line")


def _lost_ray_node(hosts: netns_cluster.Hosts, head: str, root: Path, files: list[str]) -> None:
    """The worker node lost while it holds units of a Ray add: to a new node, to the end."""
    from tests import held_datahub

    hold = root / "hold"
    hold.mkdir()
    env = {**os.environ, **netns_cluster.RAY_ENV, held_datahub.ENV: str(hold)}
    argv = held_datahub.argv("data", "add", "lost", *files, "--executor", "ray",
                             "--ray-address", head)  # fmt: skip
    proc = hosts.popen(hosts.first, *argv, env=env, stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL)  # fmt: skip
    netns_cluster.wait_for("held units", lambda: list(hold.glob("working-*")), 300, 0.05)
    killed = time.time()
    netns_cluster.lose_ray_node(hosts, list(hosts.names)[1])  # with its units half done
    (hold / "go").touch()  # their retries go straight on
    temp = Path(tempfile.mkdtemp(prefix="sray", dir="/tmp"))
    hosts.scratch.append(temp)
    netns_cluster.join_ray(hosts, head, root / "ray.out", temp)
    print(f"  Ray worker node lost: a new node in {time.time() - killed:.1f} s", end="")
    assert proc.wait(timeout=600) == 0
    print(f", the add done {time.time() - killed:.1f} s after the kill")


def run(steps: int) -> None:
    root = Path(tempfile.mkdtemp(prefix="steep-multinode-"))
    os.environ["STEEP_HOME"] = str(root / "home")
    setup = {"root": root, "corpora": two_ranks_corpora(root), "base": make_tiny_model(root / "b")}
    hosts = netns_cluster.start(root / "hosts")
    assert hosts.cluster is not None
    os.environ["SLURM_CONF"] = str(hosts.cluster.conf)
    cluster = hosts.cluster
    try:
        print("time to first step")
        for name, nodes, per_node in (("one-host", 1, 2), ("two-hosts", 2, 1)):
            script = _script(setup, name, steps, nodes, per_node, 1000)
            job = _first_step(hosts, script, root / name / "run")
            cluster.wait_gone(job, 600)
        full = train_losses(root / "two-hosts" / "run")

        print("SIGTERM (scancel) mid-run")
        script = _script(setup, "term", steps, 2, 1, 1000)
        run_dir = root / "term" / "run"
        job = _first_step(hosts, script, run_dir)
        netns_cluster.wait_for("step 2", lambda: last_step(run_dir) >= 2, 600, every=0.05)
        sent = time.time()
        cluster.run("scancel", job)
        netns_cluster.wait_for(
            "the checkpoint", lambda: checkpoint_dirs(run_dir / "checkpoints"), 120, every=0.05
        )
        print(f"  checkpoint {time.time() - sent:.1f} s after SIGTERM", end="")
        cluster.wait_gone(job, 120)
        print(f", job gone after {time.time() - sent:.1f} s")

        print("a lost node: SIGKILL to the second host's rank")
        script = _script(setup, "lost", steps, 2, 1, 2)
        run_dir = root / "lost" / "run"
        job = _first_step(hosts, script, run_dir)
        netns_cluster.wait_for("step 3", lambda: last_step(run_dir) >= 3, 600, every=0.05)
        killed = time.time()
        pid = hosts.rank_pid(list(hosts.names)[1])
        assert pid is not None, "no rank on the second host"
        os.kill(pid, signal.SIGKILL)
        cluster.wait_gone(job, 300)
        print(f"  job gone {time.time() - killed:.1f} s after the kill")
        kept = int(checkpoint_dirs(run_dir / "checkpoints")[-1].name.split("_")[1])
        job = _first_step(hosts, script, run_dir, after=kept)
        print(f"  training again {time.time() - killed:.1f} s after the kill (resumed at {kept})")
        cluster.wait_gone(job, 600)
        same = [round(x, 5) for _, x in train_losses(run_dir)] == [round(x, 5) for _, x in full]
        print(f"  losses equal to the uninterrupted 2-host run (5 decimals): {same}")

        print("SIGUSR1 (a time limit ahead) mid-run")
        _usr1(hosts, setup, steps)
        print("a rendezvous out of reach (read_timeout=10)")
        _rendezvous(hosts)
        print("Data Hub: local pool vs Ray on two hosts")
        head, files = _datahub(hosts, root)
        _lost_ray_node(hosts, head, root, files)
    finally:
        hosts.stop()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=10)
    run(parser.parse_args().steps)
