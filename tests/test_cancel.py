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


def test_a_run_killed_after_its_grace_is_recorded_cancelled(tmp_path: Path) -> None:
    """The studio SIGKILLs a job that outlives its grace: the run never wrote its end."""
    from steep.artifacts.runstatus import write_status
    from steep.studio.runner import _record_cancel

    run = tmp_path / "run"
    run.mkdir()
    write_status(run, "running")
    _record_cancel(run)
    assert read_status(run).state == "cancelled"
    write_status(run, "done")
    _record_cancel(run)  # a run that finished before the signal landed stays done
    assert read_status(run).state == "done"


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
