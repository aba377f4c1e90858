"""One writer per run folder (#16, finding 1): a second `steep train --resume` on a folder
that another process is writing is refused, naming who holds it, and changes nothing; a
holder killed with SIGKILL frees it (the kernel drops the lock), so a killed run resumes."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from steep.config import parse_config
from steep.train.loop import resume_run, train
from steep.train.runfolder.lock import RunLock, RunLockedError, holder
from tests.conftest import tiny_config

HOLD = """
import sys, time
from steep.train.runfolder.lock import RunLock
lock = RunLock(sys.argv[1])
lock.acquire()
print("held", flush=True)
time.sleep(120)
"""


def _hold(run_dir: Path) -> subprocess.Popen:
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLD, str(run_dir)], stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout is not None and proc.stdout.readline().strip() == "held"
    return proc


def test_a_second_writer_is_refused_and_a_killed_one_frees_the_folder(
    tmp_path, corpora, tiny_model
):
    run = train(parse_config(tiny_config(tmp_path, corpora, tiny_model, steps=4))).run_dir
    proc = _hold(run)
    before = {p.name: p.read_bytes() for p in run.iterdir() if p.is_file()}
    try:
        who = holder(run)
        assert who is not None and who["pid"] == proc.pid
        with pytest.raises(RunLockedError, match=rf"in use by pid {proc.pid} on "):
            resume_run(run)
        after = {p.name: p.read_bytes() for p in run.iterdir() if p.is_file()}
        assert after == before  # status.json, metrics.jsonl, the lock's owner: untouched
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    assert holder(run) is None  # the kernel released it with the process
    resume_run(run)  # and the run folder is usable again


def test_the_lock_is_released_when_a_run_ends(tmp_path):
    lock = RunLock(tmp_path)
    lock.acquire()
    with pytest.raises(RunLockedError, match="in use by pid"):
        RunLock(tmp_path).acquire()
    lock.release()
    again = RunLock(tmp_path)
    again.acquire()  # free once released
    again.release()


def test_a_refused_or_sigtermed_second_writer_leaves_the_holder_s_status(
    tmp_path, corpora, tiny_model, monkeypatch
):
    """#29.10: only the lock's holder writes status.json. A resume refused for the lock,
    or SIGTERMed (the studio's cancel) while it asks for it, leaves the holder's words."""
    from steep.artifacts.runstatus import write_status
    from steep.train.runfolder.state import RunCancelled

    run = train(parse_config(tiny_config(tmp_path, corpora, tiny_model, steps=3))).run_dir
    proc = _hold(run)
    try:
        write_status(run, "running", phase={"what": "the holder's phase"})
        before = (run / "status.json").read_bytes()
        with pytest.raises(RunLockedError):
            resume_run(run)
        assert (run / "status.json").read_bytes() == before
        refuse = RunLock.acquire

        def sigterm_then_ask(self):
            os.kill(os.getpid(), signal.SIGTERM)  # the handler raises RunCancelled here
            refuse(self)

        monkeypatch.setattr(RunLock, "acquire", sigterm_then_ask)
        with pytest.raises(RunCancelled):
            resume_run(run)
        assert (run / "status.json").read_bytes() == before
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
