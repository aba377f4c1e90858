"""SIGUSR1 (Slurm's warning before a time limit, or a preemption): the run finishes its
step, writes a checkpoint, says cancelled (not failed) and exits 75; a resume then ends
exactly where an uninterrupted run ends. A plain SIGTERM in the step loop (scancel, a
preemption without send_user_signal, a Kubernetes eviction) does the same within
train.preempt_grace_s and exits 130; a checkpoint that cannot finish in that time is
dropped and the last whole one stays."""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

import pytest
import yaml

from steep.artifacts.runstatus import read_status
from steep.cli import main
from steep.config import parse_config
from steep.train import checkpoint, loop
from steep.train.checkpoint import checkpoint_dirs
from steep.train.loop import resume_run, train
from steep.train.runfolder.state import RunStopped
from tests.conftest import tiny_config


def _losses(run: Path) -> list[float]:
    lines = (run / "metrics.jsonl").read_text().splitlines()
    return [r["loss"] for r in map(json.loads, lines) if r["kind"] == "train"]


@pytest.mark.parametrize(
    ("sig", "code"), [(signal.SIGUSR1, RunStopped.EXIT_CODE), (signal.SIGTERM, 130)]
)
def test_a_signal_checkpoints_the_current_step_and_a_resume_matches(
    tmp_path, corpora, tiny_model, monkeypatch, capsys, sig, code
) -> None:
    ref_cfg = tiny_config(tmp_path / "ref", corpora, tiny_model, steps=8)
    ref = train(parse_config(ref_cfg)).run_dir

    cfg = tiny_config(tmp_path / "cut", corpora, tiny_model, steps=8)
    path = tmp_path / "cut.yaml"
    path.write_text(yaml.safe_dump(cfg))
    real, calls = loop.clip_grad_norm, []

    def signalled(model, max_norm):  # the signal lands in step 6, between two checkpoints
        calls.append(1)
        if len(calls) == 6:
            os.kill(os.getpid(), sig)
        return real(model, max_norm)

    monkeypatch.setattr(loop, "clip_grad_norm", signalled)
    before = signal.getsignal(sig)  # a library loaded by an earlier test may have set one
    assert main(["train", str(path)]) == code
    name = signal.Signals(sig).name
    assert f"stopped by {name} after step 6" in capsys.readouterr().err
    run = Path(cfg["run"]["out_dir"])
    status = read_status(run)
    assert status is not None and status.state == "cancelled"
    assert "checkpoint step_0000006 written" in (status.error or "")
    assert [p.name for p in checkpoint_dirs(run / "checkpoints")][-1] == "step_0000006"
    assert not (run / "model").exists()
    assert signal.getsignal(sig) is before  # the handler is put back

    monkeypatch.setattr(loop, "clip_grad_norm", real)
    resume_run(run)
    assert _losses(run) == _losses(ref)  # exact: the same arithmetic in the same order
    assert read_status(run).state == "done"


def test_a_checkpoint_past_the_grace_is_dropped_and_the_last_whole_one_stays(
    tmp_path, corpora, tiny_model, monkeypatch
) -> None:
    """SIGTERM in step 3; writing step 3's checkpoint outlasts train.preempt_grace_s: the
    run stops cancelled, step 2's checkpoint is whole, and a resume from it matches."""
    ref = train(parse_config(tiny_config(tmp_path / "ref", corpora, tiny_model, steps=6)))
    cfg = tiny_config(tmp_path / "cut", corpora, tiny_model, steps=6)
    cfg["train"]["preempt_grace_s"] = 0.5
    cfg["checkpoint"] = {"every_steps": 2, "keep_last": 5}
    real_clip, real_save, calls = loop.clip_grad_norm, checkpoint.dcp.save, []

    def signalled(model, max_norm):
        calls.append(1)
        if len(calls) == 3:
            os.kill(os.getpid(), signal.SIGTERM)
        return real_clip(model, max_norm)

    def slow_save(state, **kw):  # step 3's write goes on past the grace period
        real_save(state, **kw)
        if len(calls) >= 3:
            time.sleep(30)

    monkeypatch.setattr(loop, "clip_grad_norm", signalled)
    monkeypatch.setattr(checkpoint.dcp, "save", slow_save)
    with pytest.raises(KeyboardInterrupt, match="preempt_grace_s"):
        train(parse_config(cfg))
    run = Path(cfg["run"]["out_dir"])
    assert read_status(run).state == "cancelled"
    assert [p.name for p in checkpoint_dirs(run / "checkpoints")] == ["step_0000002"]
    monkeypatch.setattr(loop, "clip_grad_norm", real_clip)
    monkeypatch.setattr(checkpoint.dcp, "save", real_save)
    resume_run(run)
    assert _losses(run) == _losses(ref.run_dir)
