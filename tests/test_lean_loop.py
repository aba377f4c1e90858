"""The lean loop's host work (#19 item 5): batches read ahead in a thread, checkpoints
written in the background; both leave the losses and resumes exactly as they were."""

from __future__ import annotations

import errno
import json
from concurrent.futures import Future

import numpy as np
import pytest
import torch

import steep.train.checkpoint as ckpt
from steep.config import parse_config
from steep.train.loop import train
from steep.train.prefetch import Prefetcher
from tests.conftest import resume_matches, tiny_config


def test_prefetcher_yields_every_batch_in_order_and_raises_in_the_loop():
    reads: list[int] = []

    def load(i: int) -> np.ndarray:
        reads.append(i)
        if i == 3:
            raise OSError("shard gone")
        return np.full((2, 4), i)

    pre = Prefetcher(load, torch.device("cpu"))
    got = [int(b[0, 0]) for b in pre.batches([0, 1, 2])]
    assert got == [0, 1, 2] and reads == [0, 1, 2]
    with pytest.raises(OSError, match="shard gone"):
        list(pre.batches([2, 3]))
    pre.close()


def test_async_checkpoints_resume_exactly_and_record_the_stall(tmp_path, corpora, tiny_model):
    raw = tiny_config(tmp_path, corpora, tiny_model, steps=8)
    raw["checkpoint"] = {"every_steps": 2, "keep_last": 2, "async_save": True}
    result = train(parse_config(raw))
    dirs = ckpt.checkpoint_dirs(result.run_dir / "checkpoints")
    assert [d.name for d in dirs] == ["step_0000006", "step_0000008"]
    state = json.loads((dirs[-1] / "state.json").read_text())
    assert state["stall_s"] >= 0 and "wait_s" in state
    assert not list((result.run_dir / "checkpoints").glob(".step_*"))
    resume_matches(result.run_dir, tmp_path)


def test_a_background_write_that_fails_keeps_the_last_good(tmp_path, monkeypatch):
    model = torch.nn.Linear(4, 4)
    optimizer = torch.optim.AdamW(model.parameters())
    root = tmp_path / "checkpoints"
    good = ckpt.save_checkpoint(root, 2, model, optimizer, {}, keep_last=2)

    def full_disk(*args, **kwargs) -> Future:
        failed: Future = Future()
        failed.set_exception(OSError(errno.ENOSPC, "No space left on device"))
        return failed

    monkeypatch.setattr(ckpt.dcp, "async_save", full_disk)
    pending = ckpt.start_checkpoint(root, 4, model, optimizer, {}, 2, background=True)
    with pytest.raises(ckpt.CheckpointError, match="No space left.*step_0000002.*untouched"):
        pending.wait()
    assert ckpt.checkpoint_dirs(root) == [good]
    assert not list(root.glob(".step_*"))
