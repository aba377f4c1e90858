"""steep across two real hosts: network namespaces on this machine (tests/netns_cluster.py),
each with its own address and hostname and a slurmd, the disk shared.

The claims: ``steep launch --slurm --nodes 2 --gpus-per-node 1`` runs one rank on each host,
meeting at torchrun's c10d rendezvous on the first node of the allocation (no
``--standalone``); the job trains, checkpoints and saves, only rank 0 writes the run's
records, and its losses are those of the run on one process (which tests/test_distributed.py
shows equal to 2 ranks on one host, to 1e-5). A plain SIGTERM to the job (scancel, Slurm's
preemption without send_user_signal, a Kubernetes eviction) makes both ranks checkpoint the
same step and record cancelled, and the job submitted again resumes from that step to the
same losses. Skipped, with the reason, where namespaces or Slurm cannot be made here.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from steep.artifacts.runstatus import read_status
from steep.cli import main
from steep.config import load_config
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
    ends; submitted once more it resumes from that checkpoint and ends as the
    uninterrupted run."""
    cluster = hosts.cluster
    assert cluster is not None
    script = _launch(setup, "two", capsys)
    text = script.read_text()
    assert "--standalone" not in text and '--rdzv-endpoint "$MASTER_ADDR:' in text
    assert "--rdzv-backend c10d" in text and '--nnodes "$SLURM_NNODES"' in text
    assert "scontrol show hostnames" in text  # MASTER_ADDR: the allocation's first node
    run = setup["root"] / "two" / "run"

    job = cluster.sbatch(script)
    netns_cluster.wait_for("the job to run", lambda: cluster.state(job) == "RUNNING", 120)
    assert _nodes(hosts, job) == list(hosts.names)  # one task (one torchrun) a host
    netns_cluster.wait_for("2 steps", lambda: _last_step(run) >= 2, 240)
    cluster.run("scancel", job)  # SIGTERM to every process of the job, SIGKILL 30 s later
    cluster.wait_gone(job, timeout=120)
    status = read_status(run)
    assert status.state == "cancelled", _log(setup, "two", job)
    assert "stopped by SIGTERM after step" in status.error
    stopped = int(checkpoint_dirs(run / "checkpoints")[-1].name.split("_")[1])
    assert 2 <= stopped < STEPS and stopped == _last_step(run)  # the step it stopped at
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

    job = cluster.sbatch(script)  # and once more: from the same checkpoint, to the end
    cluster.wait_gone(job, timeout=240)
    log = _log(setup, "two", job)
    assert resumed in log, log
    assert read_status(run).state == "done", log
    lineage = json.loads((run / "model" / "steep.json").read_text())
    assert lineage["world_size"] == 2
    a, b = _train_losses(reference), _train_losses(run)
    assert [s for s, _ in b] == list(range(1, STEPS + 1))  # one record a step: rank 0's
    assert [x for _, x in b] == pytest.approx([x for _, x in a], abs=1e-5)


@pytest.fixture(scope="module")
def ray_head(hosts, tmp_path_factory: pytest.TempPathFactory) -> str:
    """A Ray head on the first host (no CPUs), a worker node on the second (2 CPUs)."""
    pytest.importorskip("ray", reason="Ray is not installed (pip install 'steep[ray]')")
    return netns_cluster.start_ray(hosts, tmp_path_factory.mktemp("ray") / "ray.out")


def test_ray_on_two_hosts_gives_the_local_pool_s_datasets(hosts, ray_head, tmp_path) -> None:
    """``steep data add`` and ``prepare`` with ``--executor ray --ray-address HEAD``, run on
    the head's host, every unit on the other host: the datasets are byte for byte the
    local pool's."""
    from steep.datahub.catalog import Catalog
    from steep.workspace import Workspace
    from tests.test_ray import RECIPE, _corpus, _digest, _strip

    home = tmp_path / "home"
    files = _corpus(tmp_path / "in")  # on the shared disk: both hosts read them
    env = {**os.environ, "STEEP_HOME": str(home), **netns_cluster.RAY_ENV}
    first = next(iter(hosts.names))
    ray = ["--executor", "ray", "--ray-address", ray_head]
    local = ["--executor", "local", "--workers", "2"]
    for argv in (["add", "{}", *files], ["prepare", "{}", "--recipe", RECIPE]):
        steep = [sys.executable, "-m", "steep", "data"]
        on_ray = [a.replace("{}", "ray") for a in argv] + ray
        done = subprocess.run(hosts.exec_argv(first, *steep, *on_ray), env=env,
                              capture_output=True, text=True, timeout=300)  # fmt: skip
        assert done.returncode == 0, done.stderr[-3000:]
        here = subprocess.run([*steep, *(a.replace("{}", "loc") for a in argv), *local],
                              env=env, capture_output=True, text=True, timeout=300)  # fmt: skip
        assert here.returncode == 0, here.stderr[-3000:]
    catalog = Catalog(Workspace(home).datasets)
    for version in (1, 2):
        loc, on_ray = catalog.get(f"loc@{version}"), catalog.get(f"ray@{version}")
        assert _strip(on_ray.manifest) == _strip(loc.manifest)
        assert _digest(on_ray.shards) == _digest(loc.shards)
        assert _digest(on_ray.exclusions) == _digest(loc.exclusions)
