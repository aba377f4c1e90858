"""Slurm across two hosts on one machine (network namespaces, tests/netns_cluster.py).

With a tiny model on the CPU (gloo), as root:
- time to first step: ``steep launch --slurm`` with 1 node x 2 ranks against 2 nodes x 1
  rank, from sbatch to the first train record;
- SIGTERM (scancel): from the signal to the checkpoint of the step it landed in, and to the
  job gone;
- a lost node: SIGKILL to the second host's rank, from the kill to the job gone, then from
  a new sbatch to the first step after the resume (and whether the losses still match the
  uninterrupted 2-host run);
- the Data Hub: ``steep data add`` + ``prepare`` (tests/test_ray.py's corpus) on the local
  pool (2 workers) against Ray with its head on one host and 2 CPUs on the other.

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


def _datahub(hosts: netns_cluster.Hosts, root: Path) -> None:
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

        print("Data Hub: local pool vs Ray on two hosts")
        _datahub(hosts, root)
    finally:
        hosts.stop()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=10)
    run(parser.parse_args().steps)
