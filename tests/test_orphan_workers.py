"""Data Hub pool workers die with their parent (#29.4): a SIGKILLed ``steep data add``
(the OOM killer, a job scheduler) must not leave one busy, then idle, worker per core."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests import held_datahub
from tests.held_steep import wait_until

psutil = pytest.importorskip("psutil")  # finds the pool's workers; not a steep dependency
SRC = Path(__file__).resolve().parents[1] / "src"

pytestmark = pytest.mark.skipif(
    not sys.platform.startswith("linux"), reason="the parent-death signal is Linux's"
)


def _gone(pid: int) -> bool:
    """Ended: no such process, or a zombie (dead, waiting for whoever reaps it)."""
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def test_killed_add_leaves_no_pool_workers(tmp_path: Path) -> None:
    raw = tmp_path / "raw"
    raw.mkdir()
    for name in ("a", "b"):  # two files: two units, one per worker
        lines = (f'{{"text": "document {name} {i} about rivers"}}\n' for i in range(200))
        (raw / f"{name}.jsonl").write_text("".join(lines))
    held = tmp_path / "held"
    held.mkdir()
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(SRC), os.environ.get("PYTHONPATH", "")]),
        held_datahub.ENV: str(held),
    }
    cmd = held_datahub.argv("data", "add", "raw", str(raw), "--no-langid", "--workers", "2")
    proc = subprocess.Popen(
        cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    workers: list[int] = []
    try:
        # both workers are inside a unit (held there): the kill lands while they work
        found = wait_until(
            "both workers start a unit",
            lambda: (
                len(ids := [int(p.name.split("-")[1]) for p in held.glob("working-*")]) == 2 and ids
            ),
            proc,
        )
        workers = list(found)
        children = {c.pid for c in psutil.Process(proc.pid).children()}
        assert set(workers) <= children, (workers, children)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=60)
        wait_until("every pool worker ends", lambda: all(_gone(pid) for pid in workers), None, 60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        for pid in workers:  # a failed run must not leak them either
            if not _gone(pid):
                os.kill(pid, signal.SIGKILL)
