"""SIGUSR1 (Slurm's warning before a time limit, or a preemption): the run finishes its
step, writes a checkpoint, says cancelled (not failed) and exits 75; a resume then ends
exactly where an uninterrupted run ends."""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path

import yaml

from steep.artifacts.runstatus import read_status
from steep.cli import main
from steep.config import parse_config
from steep.train import loop
from steep.train.checkpoint import checkpoint_dirs
from steep.train.loop import resume_run, train
from steep.train.runfolder.state import RunStopped
from tests.conftest import tiny_config


def _losses(run: Path) -> list[float]:
    lines = (run / "metrics.jsonl").read_text().splitlines()
    return [r["loss"] for r in map(json.loads, lines) if r["kind"] == "train"]


def test_sigusr1_checkpoints_the_current_step_and_a_resume_matches(
    tmp_path, corpora, tiny_model, monkeypatch, capsys
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
            os.kill(os.getpid(), signal.SIGUSR1)
        return real(model, max_norm)

    monkeypatch.setattr(loop, "clip_grad_norm", signalled)
    assert main(["train", str(path)]) == RunStopped.EXIT_CODE
    assert "stopped by SIGUSR1 after step 6" in capsys.readouterr().err
    run = Path(cfg["run"]["out_dir"])
    status = read_status(run)
    assert status is not None and status.state == "cancelled"
    assert "checkpoint step_0000006 written" in (status.error or "")
    assert [p.name for p in checkpoint_dirs(run / "checkpoints")][-1] == "step_0000006"
    assert not (run / "model").exists()
    assert signal.getsignal(signal.SIGUSR1) is signal.SIG_DFL  # the handler is put back

    monkeypatch.setattr(loop, "clip_grad_norm", real)
    resume_run(run)
    assert _losses(run) == _losses(ref)  # exact: the same arithmetic in the same order
    assert read_status(run).state == "done"
