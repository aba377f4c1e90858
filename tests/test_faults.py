"""Injected faults while a run writes its folder (#16 finding 6): a full disk while
appending metrics.jsonl, while rewriting it on resume, while saving the model, and a
folder that cannot be written at resume. Each ends with one line saying what, where, what
is intact and how to go on, and the run then resumes to the same result.

Faults are injected (an OSError / SafetensorError from the write): a real small tmpfs
needs mount rights these tests cannot assume; as root, a read-only mode would not stop the
write either.
"""

from __future__ import annotations

import errno
import json

import pytest
from safetensors import SafetensorError

import steep.train.finish as finish
import steep.train.loop as loop
import steep.train.runfolder.lock as runlock
import steep.train.track as track
from steep.cli import main
from steep.config import parse_config
from steep.train.runfolder.write_errors import RunFolderError
from tests.conftest import tiny_config

ENOSPC = OSError(errno.ENOSPC, "No space left on device")


def _losses(run):
    lines = (run / "metrics.jsonl").read_text().splitlines()
    return [(r["kind"], r["step"], r.get("loss")) for r in map(json.loads, lines)]


@pytest.fixture()
def reference(tmp_path, corpora, tiny_model):
    cfg = tiny_config(tmp_path / "ref", corpora, tiny_model, steps=4)
    return _losses(loop.train(parse_config(cfg)).run_dir)


def _cfg(tmp_path, corpora, tiny_model):
    return parse_config(tiny_config(tmp_path, corpora, tiny_model, steps=4))


class _FillsUp:
    """A file that takes ``room`` writes, then raises ENOSPC (as a full disk does)."""

    def __init__(self, f, room: int):
        self.f, self.room = f, room

    def write(self, text):
        if self.room <= 0:
            self.f.write(text[: len(text) // 2])  # a line cut short, as a full disk leaves it
            raise ENOSPC
        self.room -= 1
        return self.f.write(text)

    def __getattr__(self, name):
        return getattr(self.f, name)


def test_disk_full_while_appending_metrics(tmp_path, corpora, tiny_model, monkeypatch, reference):
    monkeypatch.setattr(track, "open", lambda *a, **k: _FillsUp(open(*a, **k), 3), raising=False)
    with pytest.raises(RunFolderError) as err:
        loop.train(_cfg(tmp_path, corpora, tiny_model))
    run = tmp_path / "run"
    assert str(err.value) == (
        f"could not append to {run / 'metrics.jsonl'} (ENOSPC, No space left on device); "
        f"the checkpoints are intact: free space (or fix the permission), then "
        f"`steep train --resume {run}`"
    )
    monkeypatch.undo()
    loop.resume_run(run)
    assert _losses(run) == reference


def test_disk_full_while_rewriting_metrics_on_resume(
    tmp_path, corpora, tiny_model, monkeypatch, reference
):
    run = loop.train(_cfg(tmp_path, corpora, tiny_model)).run_dir
    before = (run / "metrics.jsonl").read_bytes()

    def full(*a, **k):
        raise ENOSPC

    monkeypatch.setattr(track.os, "replace", full)
    with pytest.raises(RunFolderError, match=r"could not rewrite .*metrics.jsonl \(ENOSPC"):
        loop.resume_run(run)
    assert (run / "metrics.jsonl").read_bytes() == before  # unchanged
    assert not (run / "metrics.jsonl.tmp").exists()  # no stray .tmp
    monkeypatch.undo()
    loop.resume_run(run)
    assert _losses(run) == reference


def test_disk_full_while_saving_the_model(tmp_path, corpora, tiny_model, monkeypatch, capsys):
    def full(*a, **k):
        raise SafetensorError(
            "Error while serializing: IoError(Os { code: 28, kind: StorageFull })"
        )

    monkeypatch.setattr(finish, "save_hf", full)  # the finish phase saves the model
    cfg = tiny_config(tmp_path, corpora, tiny_model, steps=4)
    (tmp_path / "run.yaml").write_text(json.dumps(cfg))
    assert main(["train", str(tmp_path / "run.yaml")]) == 2
    last = capsys.readouterr().err.strip().splitlines()[-1]
    run = tmp_path / "run"
    assert last == (
        f"steep train: error: could not save the model to {run / 'model'} (ENOSPC, No space "
        "left on device); checkpoint step_0000004 is intact and a resume saves the model "
        f"again: free space (or fix the permission), then `steep train --resume {run}`"
    )
    monkeypatch.undo()
    loop.resume_run(run)
    assert (run / "model" / "model.safetensors").exists()


def test_a_run_folder_that_cannot_be_written_at_resume(tmp_path, corpora, tiny_model, monkeypatch):
    run = loop.train(_cfg(tmp_path, corpora, tiny_model)).run_dir
    before = {p.name: p.read_bytes() for p in run.iterdir() if p.is_file()}

    def denied(*a, **k):
        raise PermissionError(errno.EACCES, "Permission denied")

    monkeypatch.setattr(runlock, "open", denied, raising=False)
    with pytest.raises(
        RunFolderError,
        match=r"could not write the run folder .* \(EACCES, Permission denied\); nothing in it changed",
    ):
        loop.resume_run(run)
    assert {p.name: p.read_bytes() for p in run.iterdir() if p.is_file()} == before
