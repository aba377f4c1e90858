"""A cancelled run says so everywhere (#18 usability 4): SIGTERM (the studio's cancel,
scancel, kill) stops `steep train` through its normal exits, status.json says cancelled,
the hub agrees, and the run folder is free for a resume."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import yaml

from steep.artifacts.runstatus import read_status
from steep.hub import Hub
from steep.train.runfolder.lock import RunLock
from tests.conftest import tiny_config


def test_sigterm_cancels_a_run_and_every_listing_says_cancelled(
    tmp_path: Path, corpora, tiny_model, _steep_home: Path
) -> None:
    raw = tiny_config(tmp_path, corpora, tiny_model, steps=100_000)
    raw["data"]["max_epochs"] = 1e6
    run = _steep_home / "runs" / "long"
    raw["run"]["out_dir"] = str(run)
    cfg = tmp_path / "long.yaml"
    cfg.write_text(yaml.safe_dump(raw))
    env = {**os.environ, "STEEP_HOME": str(_steep_home)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "steep", "train", str(cfg)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    deadline = time.time() + 120
    while time.time() < deadline:
        metrics = run / "metrics.jsonl"
        if metrics.is_file() and '"kind": "train"' in metrics.read_text():
            break
        assert proc.poll() is None, proc.stdout.read()
        time.sleep(0.2)
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 130, out
    assert read_status(run).state == "cancelled"
    lock = RunLock(run)
    lock.acquire()  # released on the way out: a resume can take it
    lock.release()
    assert Hub(_steep_home).run("long")["status"] == "cancelled"
    records = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    assert records and records[0]["kind"] in ("eval", "train")


HOLD = """
import sys, time
from steep.artifacts.runstatus import write_status
from steep.train.runfolder.lock import RunLock
lock = RunLock(sys.argv[1])
lock.acquire()
write_status(sys.argv[1], sys.argv[2])
print("held", flush=True)
time.sleep(120)
"""


def _writer(run: Path, state: str = "running") -> subprocess.Popen:
    """A run's writer in its own session, as the studio starts a job: it holds the run's
    lock and wrote status.json."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLD, str(run), state],
        stdout=subprocess.PIPE,
        text=True,
        start_new_session=True,
        env=env,
    )
    assert proc.stdout is not None and proc.stdout.readline().strip() == "held"
    return proc


def _kill(proc: subprocess.Popen) -> None:
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()


def test_a_run_killed_after_its_grace_is_recorded_cancelled(tmp_path: Path) -> None:
    """The studio SIGKILLs a job that outlives its grace: the run never wrote its end."""
    from steep.artifacts.runstatus import write_status
    from steep.studio.runner import _record_cancel

    run = tmp_path / "run"
    run.mkdir()
    job = _writer(run)  # the job's session: its process was the run's writer
    _kill(job)
    _record_cancel(run, job.pid)
    assert read_status(run).state == "cancelled"
    write_status(run, "done")
    _record_cancel(run, job.pid)  # a run that finished before the signal landed stays done
    assert read_status(run).state == "done"


def test_a_cancelled_job_that_never_held_the_lock_leaves_the_run_s_status(
    tmp_path: Path,
) -> None:
    """Before (#29.10): cancelling a studio resume job that lost the run lock to a CLI
    resume rewrote the running run's status.json to cancelled. Only the lock holder writes
    status: another process holds it, or held it last (its run failed), or nobody ever did."""
    from steep.studio.runner import _record_cancel

    run = tmp_path / "run"
    run.mkdir()
    cli = _writer(run)  # the CLI resume, running
    lost = subprocess.Popen(["sleep", "60"], start_new_session=True)  # the refused job
    try:
        before = (run / "status.json").read_bytes()
        _record_cancel(run, lost.pid)
        assert (run / "status.json").read_bytes() == before
        _kill(cli)  # the CLI run dies, its lock freed: its last status still is not ours
        _record_cancel(run, lost.pid)
        assert (run / "status.json").read_bytes() == before
        (run / ".lock").unlink()  # a run folder whose lock nobody ever took
        _record_cancel(run, lost.pid)
        assert (run / "status.json").read_bytes() == before
    finally:
        _kill(lost)


def test_cancelling_a_studio_job_that_lost_the_lock_leaves_the_run_s_status(
    tmp_path: Path, _steep_home: Path
) -> None:
    """The studio's whole cancel path: request, SIGTERM, the job's end, its record."""
    import pytest

    pytest.importorskip("fastapi", reason="studio extra not installed")
    from steep.studio.jobs import JobQueue
    from steep.studio.runner import Runner

    run = _steep_home / "runs" / "r"
    run.mkdir(parents=True)
    cli = _writer(run)
    try:
        before = (run / "status.json").read_bytes()
        queue = JobQueue(_steep_home)
        job_id = queue.submit("r", "train: {}\n", run, resume=True).id
        runner = Runner(queue, command_for=lambda job: ["sleep", "60"])  # refused, waiting
        runner.tick()
        assert queue.get(job_id).status == "running"
        queue.request_cancel(job_id)
        deadline = time.time() + 30
        while queue.get(job_id).status == "running" and time.time() < deadline:
            runner.tick()
            time.sleep(0.1)
        assert queue.get(job_id).status == "cancelled"
        assert (run / "status.json").read_bytes() == before
    finally:
        _kill(cli)


def test_a_cancel_that_lands_while_a_checkpoint_is_written_stays_a_cancel(
    tmp_path: Path, monkeypatch
) -> None:
    """Found by a clean-clone run: SIGTERM inside dcp.save came back wrapped in DCP's
    CheckpointException and was reported as a failed write (exit 2, status failed)."""
    import pytest
    import torch
    from torch.distributed.checkpoint import CheckpointException

    import steep.train.checkpoint as ckpt
    from steep.train.runfolder.state import RunCancelled

    def interrupted(*args, **kwargs):
        raise CheckpointException("save", {0: RunCancelled("cancelled (SIGTERM)")})

    monkeypatch.setattr(ckpt.dcp, "save", interrupted)
    model = torch.nn.Linear(2, 2)
    optimizer = torch.optim.AdamW(model.parameters())
    with pytest.raises(RunCancelled, match="SIGTERM"):
        ckpt.save_checkpoint(tmp_path / "checkpoints", 4, model, optimizer, {}, keep_last=1)
    assert not list((tmp_path / "checkpoints").glob(".step_*"))  # the partial one is gone


def test_a_cancel_that_breaks_the_writer_mid_file_stays_a_cancel(
    tmp_path: Path, monkeypatch
) -> None:
    """Found by a clean-clone run: SIGTERM inside torch's zip writer came back as its own
    RuntimeError ("unexpected pos 704 vs 598"), the cancel lost, and the run reported a
    failed write (exit 2). Once SIGTERM has arrived, a write that fails is the cancel."""
    import pytest
    import torch
    from torch.distributed.checkpoint import CheckpointException

    import steep.train.checkpoint as ckpt
    from steep.train.runfolder import state

    previous = state.stop_on_sigterm()

    def interrupted(*args, **kwargs):
        try:
            os.kill(os.getpid(), signal.SIGTERM)  # the handler raises inside the writer ...
        except state.RunCancelled:  # ... which swallows it and fails on its own terms
            raise CheckpointException(
                "save", {0: RuntimeError("unexpected pos 704 vs 598")}
            ) from None

    monkeypatch.setattr(ckpt.dcp, "save", interrupted)
    model = torch.nn.Linear(2, 2)
    optimizer = torch.optim.AdamW(model.parameters())
    try:
        with pytest.raises(state.RunCancelled, match="SIGTERM"):
            ckpt.save_checkpoint(tmp_path / "checkpoints", 4, model, optimizer, {}, keep_last=1)
    finally:
        state.restore_signals(previous)
    assert not list((tmp_path / "checkpoints").glob(".step_*"))  # the partial one is gone
    # a failure with no SIGTERM behind it is still a failed write

    def broken(*args, **kwargs):
        raise CheckpointException("save", {0: RuntimeError("unexpected pos 704 vs 598")})

    monkeypatch.setattr(ckpt.dcp, "save", broken)
    previous = state.stop_on_sigterm()  # a new run: no cancel asked yet
    try:
        with pytest.raises(ckpt.CheckpointError, match="could not write checkpoint"):
            ckpt.save_checkpoint(tmp_path / "checkpoints", 4, model, optimizer, {}, keep_last=1)
    finally:
        state.restore_signals(previous)


def test_any_failure_after_sigterm_is_the_cancel(
    tmp_path: Path, corpora, tiny_model, monkeypatch
) -> None:
    """The same for any library that turns the SIGTERM into its own error (here the final
    save): the run says cancelled, exits as a cancel, and never reports a failure."""
    import pytest

    from steep.config import parse_config
    from steep.train import finish
    from steep.train.loop import train
    from steep.train.runfolder.state import RunCancelled

    def save_broken_by_sigterm(*args, **kwargs):
        try:
            os.kill(os.getpid(), signal.SIGTERM)
        except RunCancelled:
            raise ValueError("the writer's own complaint") from None

    monkeypatch.setattr(finish, "save_hf", save_broken_by_sigterm)
    config = parse_config(tiny_config(tmp_path, corpora, tiny_model, steps=4))
    with pytest.raises(RunCancelled, match="broke ValueError"):
        train(config)
    status = read_status(tmp_path / "run")
    assert status.state == "cancelled" and "SIGTERM" in status.error
