"""The loop in phases (#28 item 7): the side jobs decide their own "when" and the step loop
asks them, so a cadence lives in one place."""

from __future__ import annotations

from contextlib import nullcontext

import torch

from steep.artifacts.metrics import read_metrics
from steep.config import CheckpointSection, parse_config
from steep.train.checkpoint import Checkpointer, checkpoint_dirs
from steep.train.evaluate import Evaluator
from steep.train.loop import train
from steep.train.parallel import Dist
from tests.conftest import tiny_config


def test_side_jobs_say_when_they_are_due(tmp_path) -> None:
    model = torch.nn.Linear(2, 2)
    optimizer = torch.optim.AdamW(model.parameters())
    section = CheckpointSection(every_steps=4, keep_last=2)
    saver = Checkpointer(tmp_path / "checkpoints", section, 10, model, optimizer, Dist())
    assert [s for s in range(1, 11) if saver.due(s)] == [4, 8, 10]  # and always the last
    assert saver.due(5, stopping=True)  # SIGUSR1: this step, whatever the cadence
    evaluator = Evaluator(model, 2, torch.device("cpu"), nullcontext, 3, 10)
    assert [s for s in range(1, 11) if evaluator.due(s)] == [3, 6, 9, 10]


def test_the_loop_asks_the_side_jobs_when(tmp_path, corpora, tiny_model, monkeypatch) -> None:
    """Other answers from ``due`` give other steps: the loop computes no cadence itself."""
    monkeypatch.setattr(Evaluator, "due", lambda self, step: step == 3)
    monkeypatch.setattr(Checkpointer, "due", lambda self, step, stopping=False: step in (2, 5))
    run = train(parse_config(tiny_config(tmp_path, corpora, tiny_model, steps=6))).run_dir
    trains, evals = read_metrics(run / "metrics.jsonl")
    assert [r["step"] for r in trains] == [1, 2, 3, 4, 5, 6]
    assert [r["step"] for r in evals] == [0, 3]  # step 0 is the base, always
    assert [p.name for p in checkpoint_dirs(run / "checkpoints")] == [
        "step_0000002",
        "step_0000005",
    ]
