"""What a run tells the outside while it goes: status.json (running, a phase before the
first step, done, failed, cancelled), SIGTERM turned into a clean stop (in the step loop:
a checkpoint first, within train.preempt_grace_s), and SIGUSR1 into a checkpoint and a
stop (Slurm's warning before a time limit or a preemption)."""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
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
    """SIGUSR1, or SIGTERM in the step loop: the run finished its step, wrote a checkpoint
    and stopped; a resume (a requeued Slurm job) continues from it. Not a failure:
    status.json says cancelled. SIGTERM's stop exits as a cancel (130), SIGUSR1's as 75."""

    EXIT_CODE = 75  # sysexits' EX_TEMPFAIL: stopped for now, try again (resume)

    def __init__(self, step: int, by: str = "SIGUSR1") -> None:
        why = "a time limit or preemption ahead" if by == "SIGUSR1" else "preempted or cancelled"
        super().__init__(
            f"stopped by {by} after step {step} ({why}): "
            f"checkpoint step_{step:07d} written; steep train --resume continues from it"
        )
        self.step, self.by = step, by
        self.exit_code = 130 if by == "SIGTERM" else self.EXIT_CODE


_stop_asked = threading.Event()  # set by SIGUSR1 (or SIGTERM in the steps); read each step
_cancelled = threading.Event()  # set by SIGTERM, before its RunCancelled is raised
_in_steps = threading.Event()  # the step loop runs: a SIGTERM checkpoints before it stops
_stop_by: list[str] = []  # the signal that asked for the stop
_grace_s = [0.0]  # train.preempt_grace_s of the run in this process


def stop_asked() -> bool:
    """Has SIGUSR1 (or SIGTERM during the steps) arrived since the run started? The loop
    sums this over the ranks each step, so all of them checkpoint the same step whichever
    got the signal."""
    return _stop_asked.is_set()


def stop_signal() -> str:
    """The signal that asked this rank to stop; another rank's when this one got none."""
    return _stop_by[0] if _stop_by else "a signal on another rank"


def cancel_asked() -> bool:
    """Has SIGTERM arrived since the run started? Its RunCancelled may be raised inside a
    library that swallows it and fails on its own terms (torch's zip writer: "unexpected
    pos"); a write that fails after it is the cancel, not a broken disk."""
    return _cancelled.is_set()


@contextmanager
def preemptible(grace_s: float) -> Iterator[None]:
    """The step loop: here a SIGTERM asks for a checkpoint of the current step and a stop
    (as SIGUSR1 does) within ``grace_s`` seconds; past them it raises RunCancelled, and
    the half-written checkpoint goes while the last whole one stays. 0: SIGTERM stops at
    once. Outside (loading, the final save) there is no step worth saving: it stops at once."""
    _grace_s[0] = grace_s
    _in_steps.set()
    try:
        yield
    finally:
        _in_steps.clear()


def stop_on_sigterm() -> Any:
    """In the main thread: SIGTERM raises RunCancelled (in ``preemptible``: a checkpoint and
    a stop first); SIGUSR1 asks for a checkpoint and a stop after the current step
    (``stop_asked``). Returns what ``restore_signals`` needs."""
    if threading.current_thread() is not threading.main_thread():
        return None

    def stop(signum: int, frame: Any) -> None:
        grace, first = _grace_s[0], not _cancelled.is_set()
        _cancelled.set()
        if _in_steps.is_set() and grace > 0:
            if first:  # a second SIGTERM (torchrun passing Slurm's on) changes nothing
                _stop_by[:] = ["SIGTERM"]
                _stop_asked.set()
                signal.setitimer(signal.ITIMER_REAL, grace)
            return
        raise RunCancelled("cancelled (SIGTERM)")

    def too_late(signum: int, frame: Any) -> None:
        raise RunCancelled(
            f"cancelled (SIGTERM): no checkpoint within train.preempt_grace_s "
            f"({_grace_s[0]:g} s); the last whole checkpoint is kept"
        )

    def checkpoint_and_stop(signum: int, frame: Any) -> None:
        _stop_by[:] = ["SIGUSR1"]
        _stop_asked.set()

    _stop_asked.clear()
    _cancelled.clear()
    _in_steps.clear()
    _stop_by.clear()
    return (
        signal.signal(signal.SIGTERM, stop),
        signal.signal(signal.SIGUSR1, checkpoint_and_stop),
        signal.signal(signal.SIGALRM, too_late),
    )


def restore_signals(previous: Any) -> None:
    """Put back the handlers ``stop_on_sigterm`` replaced (None: it replaced none), and
    drop a grace period still counting."""
    if previous is not None:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGTERM, previous[0])
        signal.signal(signal.SIGUSR1, previous[1])
        signal.signal(signal.SIGALRM, previous[2])
