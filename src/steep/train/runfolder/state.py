"""What a run tells the outside while it goes: status.json (running, a phase before the
first step, done, failed, cancelled), SIGTERM turned into a clean stop, and SIGUSR1 into a
checkpoint and a stop (Slurm's warning before a time limit or a preemption)."""

from __future__ import annotations

import signal
import threading
import time
from typing import Any

from steep.artifacts.runstatus import State, write_status
from steep.train.runfolder.lock import RunLock


class RunState:
    """The run's status.json, written by rank 0 once the run folder exists."""

    def __init__(self, enabled: bool) -> None:
        self.enabled, self.run_dir = enabled, None
        self.lock: RunLock | None = None  # held from the start to the end of the run
        self.created = False  # this call made the run folder
        self.shown = False  # a phase is in status.json
        self._what: str | None = None  # the phase last written, since when, and when
        self._since = self._at = 0.0
        self.started = False  # the first record is about to be written: a run, not a start

    def set(self, state: State, error: str | None = None) -> None:
        if self.enabled and self.run_dir is not None:
            write_status(self.run_dir, state, error)

    def phase(self, what: str | None, done: int = 0, total: int = 0) -> None:
        """What a running run does before its first step (None: training), for the studio;
        progress within a phase is written at most every 2 s."""
        now, self.shown = time.time(), what is not None
        same = what == self._what
        if same and 0 < done < total and now - self._at < 2:
            return
        if not same:
            self._since = now
        self._at, self._what = now, what
        if self.enabled and self.run_dir is not None:
            phase = (
                {"what": what, "done": done, "total": total, "started": self._since, "time": now}
                if what
                else None
            )
            write_status(self.run_dir, "running", phase=phase)


class RunCancelled(KeyboardInterrupt):
    """SIGTERM (the studio's cancel, Slurm's scancel, a plain kill): the run stops through
    its normal exits, so the lock is released and status.json says cancelled."""


class RunStopped(Exception):
    """SIGUSR1: the run finished its step, wrote a checkpoint and stopped; a resume (a
    requeued Slurm job) continues from it. Not a failure: status.json says cancelled."""

    EXIT_CODE = 75  # sysexits' EX_TEMPFAIL: stopped for now, try again (resume)

    def __init__(self, step: int) -> None:
        super().__init__(
            f"stopped by SIGUSR1 after step {step} (a time limit or preemption ahead): "
            f"checkpoint step_{step:07d} written; steep train --resume continues from it"
        )
        self.step = step


_stop_asked = threading.Event()  # set by SIGUSR1; the loop reads it once a step
_cancelled = threading.Event()  # set by SIGTERM, before its RunCancelled is raised


def stop_asked() -> bool:
    """Has SIGUSR1 arrived since the run started? The loop sums this over the ranks each
    step, so all of them checkpoint the same step whichever got the signal."""
    return _stop_asked.is_set()


def cancel_asked() -> bool:
    """Has SIGTERM arrived since the run started? Its RunCancelled may be raised inside a
    library that swallows it and fails on its own terms (torch's zip writer: "unexpected
    pos"); a write that fails after it is the cancel, not a broken disk."""
    return _cancelled.is_set()


def stop_on_sigterm() -> Any:
    """In the main thread: SIGTERM raises RunCancelled; SIGUSR1 asks for a checkpoint and a
    stop after the current step (``stop_asked``). Returns what ``restore_signals`` needs."""
    if threading.current_thread() is not threading.main_thread():
        return None

    def stop(signum: int, frame: Any) -> None:
        _cancelled.set()
        raise RunCancelled("cancelled (SIGTERM)")

    def checkpoint_and_stop(signum: int, frame: Any) -> None:
        _stop_asked.set()

    _stop_asked.clear()
    _cancelled.clear()
    return (
        signal.signal(signal.SIGTERM, stop),
        signal.signal(signal.SIGUSR1, checkpoint_and_stop),
    )


def restore_signals(previous: Any) -> None:
    """Put back the handlers ``stop_on_sigterm`` replaced (None: it replaced none)."""
    if previous is not None:
        signal.signal(signal.SIGTERM, previous[0])
        signal.signal(signal.SIGUSR1, previous[1])
