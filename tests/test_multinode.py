"""steep across two real hosts: network namespaces on this machine (tests/netns_cluster.py),
each with its own address and hostname and a slurmd, the disk shared.

The claims: ``steep launch --slurm --nodes 2 --gpus-per-node 1`` runs one rank on each host,
meeting at torchrun's c10d rendezvous on the first node of the allocation (no
``--standalone``); the job trains, checkpoints and saves, only rank 0 writes the run's
records, and its losses are those of the run on one process (which tests/test_distributed.py
shows equal to 2 ranks on one host, to 1e-5). A plain SIGTERM to the job (scancel, Slurm's
preemption without send_user_signal, a Kubernetes eviction) makes both ranks checkpoint the
same step and record cancelled, and the job submitted again resumes from that step to the
same losses; SIGUSR1 (a time limit ahead) does the same and the job requeues itself. A node
that cannot reach the rendezvous ends in the rendezvous timeout with one line naming it.
Skipped, with the reason, where namespaces or Slurm cannot be made here.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from steep.artifacts.runstatus import read_status
from steep.cli import main
from steep.config import load_config
from steep.launch.torchrun import steep_at, torchrun_command
from steep.train.checkpoint import checkpoint_dirs
from steep.train.loop import train
from tests import netns_cluster, slurm_cluster
from tests.slurm_cluster import ClusterUnavailable

STEPS = 8
EVERY = 1000  # no checkpoint but SIGTERM's: the resume starts from the step it stopped


@pytest.fixture(scope="module")
def hosts(tmp_path_factory: pytest.TempPathFactory) -> Iterator[netns_cluster.Hosts]:
    """Two hosts and their Slurm, once for the module; all of it undone at the end."""
    try:
        made = netns_cluster.start(tmp_path_factory.mktemp("hosts"))
    except ClusterUnavailable as exc:
        pytest.skip(f"no two hosts here: {exc}")
    assert made.cluster is not None
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("SLURM_CONF", str(made.cluster.conf))  # sbatch, squeue, scancel
        try:
            yield made
        finally:
            made.stop()


setup = slurm_cluster.runs_setup("multinode-runs")


def _config(setup: dict, name: str, steps: int = STEPS, every: int = EVERY) -> Path:
    return slurm_cluster.run_config(setup, name, steps, every, eval_every=1000)


_train_losses, _last_step = slurm_cluster.train_losses, slurm_cluster.last_step


def _launch(setup: dict, name: str, capsys, **kw) -> Path:
    """``steep launch --slurm --nodes 2 --gpus-per-node 1``: the script it wrote."""
    script = setup["root"] / "jobs" / f"{name}.sbatch"
    argv = ["launch", str(_config(setup, name, **kw)), "--slurm", str(script)]
    argv += ["--nodes", "2", "--gpus-per-node", "1", "--time", "10:00"]
    assert main(argv) == 0
    assert f"sbatch {script}" in capsys.readouterr().out
    return script


def _log(setup: dict, name: str, job: str) -> str:
    path = setup["root"] / "jobs" / "logs" / f"{name}-{job}.out"
    return path.read_text() if path.exists() else ""


@pytest.fixture(scope="module")
def reference(setup) -> Path:
    """The same run on one process, uninterrupted."""
    return train(load_config(_config(setup, "reference"))).run_dir


def _nodes(hosts: netns_cluster.Hosts, job: str) -> list[str]:
    """The hosts Slurm gave the running job, one name each."""
    assert hosts.cluster is not None
    listed = hosts.cluster.run("squeue", "-h", "-j", job, "-o", "%N", check=False).stdout
    names = hosts.cluster.run("scontrol", "show", "hostnames", listed.strip(), check=False)
    return names.stdout.split()


def test_two_hosts_train_a_sigterm_checkpoints_and_a_lost_rank_resumes(
    hosts, setup, reference, capsys
) -> None:
    """One rank a host at the first node's c10d rendezvous; a plain SIGTERM (scancel: what
    Slurm's preemption and Kubernetes send too) makes both checkpoint the same step and say
    cancelled; the same script submitted again resumes, loses a host's rank (SIGKILL) and
    ends; submitted once more it resumes from that checkpoint, checkpoints again on
    SIGUSR1 and requeues itself; submitted again it ends as the uninterrupted run."""
    cluster = hosts.cluster
    assert cluster is not None
    script = _launch(setup, "two", capsys)
    text = script.read_text()
    assert "--standalone" not in text and '--rdzv-endpoint "$MASTER_ADDR:' in text
    assert "--rdzv-backend c10d" in text and '--nnodes "$SLURM_NNODES"' in text
    assert "scontrol show hostnames" in text  # MASTER_ADDR: the allocation's first node
    run = setup["root"] / "two" / "run"

    def ranks() -> list[int]:  # the training rank on each host
        pids = [hosts.rank_pid(host) or 0 for host in hosts.names]
        return pids if all(pids) else []

    job = cluster.sbatch(script)
    netns_cluster.wait_for("the job to run", lambda: cluster.state(job) == "RUNNING", 120)
    assert _nodes(hosts, job) == list(hosts.names)  # one task (one torchrun) a host
    netns_cluster.wait_for("2 steps", lambda: _last_step(run) >= 2, 240)
    # SIGTERM to every process of the job (SIGKILL 30 s later)
    slurm_cluster.signal_mid_run(ranks, lambda: cluster.run("scancel", job), signal.SIGTERM)
    cluster.wait_gone(job, timeout=120)
    status = read_status(run)
    assert status.state == "cancelled", _log(setup, "two", job)
    assert "stopped by SIGTERM after step" in status.error
    stopped = int(checkpoint_dirs(run / "checkpoints")[-1].name.split("_")[1])
    assert 2 <= stopped < STEPS - 2 and stopped == _last_step(run)  # the step it stopped at
    ckpt = checkpoint_dirs(run / "checkpoints")[-1]
    assert {"__0_0.distcp", "__1_0.distcp"} <= {p.name for p in ckpt.iterdir()}  # both ranks

    # submitted again (the run folder has a config: the script resumes it), it loses the
    # second host's rank (SIGKILL) once resumed, with steps still to go: the job ends
    job = cluster.sbatch(script)
    resumed = f"resumed from step_{stopped:07d}"
    netns_cluster.wait_for("the resume", lambda: resumed in _log(setup, "two", job), 240, 0.05)
    second = list(hosts.names)[1]
    netns_cluster.wait_for("the rank", lambda: hosts.rank_pid(second) is not None, 30, 0.05)
    os.kill(hosts.rank_pid(second) or 0, signal.SIGKILL)
    cluster.wait_gone(job, timeout=120)
    assert read_status(run).state == "failed", _log(setup, "two", job)
    assert not (run / "model").exists()

    # once more: from the same checkpoint; SIGUSR1 (what --signal sends before the time
    # limit) reaches both hosts' ranks, which checkpoint the same step, and the job
    # requeues itself (its requeued start resuming is tests/test_slurm.py's: Slurm holds it
    # 30-70 s here); submitted again instead, it trains from that step to the end
    job = cluster.sbatch(script)
    netns_cluster.wait_for("the resume", lambda: resumed in _log(setup, "two", job), 240, 0.05)
    netns_cluster.wait_for("a step", lambda: _last_step(run) > stopped, 120, 0.05)
    to_script = ["scancel", "--signal=USR1", "--batch", job]  # the script passes it on
    slurm_cluster.signal_mid_run(ranks, lambda: cluster.run(*to_script), signal.SIGUSR1)
    netns_cluster.wait_for("the requeue", lambda: cluster.state(job) == "PENDING", 120)
    status = read_status(run)
    assert status.state == "cancelled" and "stopped by SIGUSR1" in status.error
    usr1 = checkpoint_dirs(run / "checkpoints")[-1]
    assert stopped < int(usr1.name.split("_")[1]) < STEPS
    assert {"__0_0.distcp", "__1_0.distcp"} <= {p.name for p in usr1.iterdir()}
    assert "SIGUSR1: checkpointing" in _log(setup, "two", job)
    cluster.run("scancel", job)  # the requeued job, pending
    cluster.wait_gone(job, timeout=120)
    job = cluster.sbatch(script)
    cluster.wait_gone(job, timeout=240)
    log = _log(setup, "two", job)
    assert f"resumed from {usr1.name}" in log, log
    assert read_status(run).state == "done", log
    lineage = json.loads((run / "model" / "steep.json").read_text())
    assert lineage["world_size"] == 2
    a, b = _train_losses(reference), _train_losses(run)
    assert [s for s, _ in b] == list(range(1, STEPS + 1))  # one record a step: rank 0's
    assert [x for _, x in b] == pytest.approx([x for _, x in a], abs=1e-5)


def test_a_rendezvous_that_cannot_be_reached_ends_in_time_with_one_line(hosts) -> None:
    """A node whose first node never answers (nothing listens at that address and port):
    the launcher steep's scripts run on every node ends within the rendezvous timeout
    (torchrun's read_timeout, 3 s here), with one line naming the address."""
    first, second = hosts.names
    endpoint = f"{hosts.names[first]}:29599"  # nothing listens there
    cmd = torchrun_command("unused.yaml", [], gpus_per_node=1, nodes=2, port=29599)
    cmd = [{"$NODE_RANK": "1", "$MASTER_ADDR:29599": endpoint}.get(a, a) for a in cmd]
    at = steep_at(cmd)
    cmd[at:at] = ["--rdzv-conf", "read_timeout=3"]
    began = time.monotonic()
    done = subprocess.run(hosts.exec_argv(second, *cmd), capture_output=True, text=True,
                          timeout=120)  # fmt: skip
    took = time.monotonic() - began
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert done.returncode == 1 and len(lines) == 1, done.stderr[-3000:]
    assert lines[0].startswith(f"steep: error: the rendezvous at {endpoint} did not answer")
    assert "within 3 s" in lines[0] and not done.stdout
    assert took < 60  # torch's own default wait; the 3 s bound plus Python's start


@pytest.fixture(scope="module")
def ray_head(hosts, tmp_path_factory: pytest.TempPathFactory) -> str:
    """A Ray head on the first host (no CPUs), a worker node on the second (2 CPUs)."""
    pytest.importorskip("ray", reason="Ray is not installed (pip install 'steep[ray]')")
    return netns_cluster.start_ray(hosts, tmp_path_factory.mktemp("ray") / "ray.out")


def test_ray_on_two_hosts_gives_the_local_pool_s_datasets(hosts, ray_head, tmp_path) -> None:
    """``steep data add`` and ``prepare`` with ``--executor ray --ray-address HEAD``, run on
    the head's host, every unit on the other host: the datasets are byte for byte the
    local pool's. The worker node is lost (its raylet and workers SIGKILLed) while it holds
    units of the add half done: a new node joins, Ray runs them again, and the dataset is
    still the local pool's, no document twice."""
    from steep.datahub.catalog import Catalog
    from steep.workspace import Workspace
    from tests import held_datahub
    from tests.held_steep import wait_until
    from tests.test_ray import RECIPE, _corpus, _digest, _strip

    home, hold = tmp_path / "home", tmp_path / "hold"
    hold.mkdir()
    files = _corpus(tmp_path / "in")  # on the shared disk: both hosts read them
    env = {**os.environ, "STEEP_HOME": str(home), **netns_cluster.RAY_ENV}
    first, second = hosts.names
    ray = ["--executor", "ray", "--ray-address", ray_head]
    local = ["--executor", "local", "--workers", "2"]
    steep = [sys.executable, "-m", "steep", "data"]

    add = held_datahub.argv("data", "add", "ray", *files, *ray)
    held = hosts.popen(first, *add, env={**env, held_datahub.ENV: str(hold)},
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)  # fmt: skip
    try:
        working = wait_until("units held on the worker node", lambda: list(hold.glob("working-*")),
                             held, 180)  # fmt: skip
        killed = netns_cluster.lose_ray_node(hosts, second)
        assert {int(p.name.split("-")[1]) for p in working} <= set(killed)
        scratch = Path(tempfile.mkdtemp(prefix="sray", dir="/tmp"))
        hosts.scratch.append(scratch)
        netns_cluster.join_ray(hosts, ray_head, tmp_path / "ray.out", scratch)
    finally:
        (hold / "go").touch()  # the held units were killed; their retries go straight on
        out, _ = held.communicate(timeout=300)
    assert held.returncode == 0, out[-3000:]
    runs = len(list(hold.glob("working-*")))
    assert runs > len(working)  # the lost units ran again (with the ones not started yet)
    prepare = ["prepare", "{}", "--recipe", RECIPE]
    done = subprocess.run(hosts.exec_argv(first, *steep, *[a.replace("{}", "ray") for a in prepare], *ray),
                          env=env, capture_output=True, text=True, timeout=300)  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    for argv in (["add", "loc", *files], ["prepare", "loc", "--recipe", RECIPE]):
        here = subprocess.run([*steep, *argv, *local], env=env, capture_output=True, text=True,
                              timeout=300)  # fmt: skip
        assert here.returncode == 0, here.stderr[-3000:]
    catalog = Catalog(Workspace(home).datasets)
    for version in (1, 2):
        loc, on_ray = catalog.get(f"loc@{version}"), catalog.get(f"ray@{version}")
        assert _strip(on_ray.manifest) == _strip(loc.manifest)
        assert _digest(on_ray.shards) == _digest(loc.shards)
        assert _digest(on_ray.exclusions) == _digest(loc.exclusions)
    assert catalog.get("ray@1").manifest["documents"] == catalog.get("loc@1").manifest["documents"]
