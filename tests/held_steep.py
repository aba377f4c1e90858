"""``steep`` whose training loop a test can hold at a chosen step: signals land where the
test wants them, never after the run has already finished.

Run as a child's entry point in place of ``python -m steep``, with ``STEEP_TEST_HOLD=DIR``
in its environment (``argv`` below builds the command)::

    python tests/held_steep.py train CONFIG

Before the loop computes step N + 1 (steps 1..N done, with their records, eval and
checkpoint written), it looks for ``DIR/hold-N``: when the test made that file, the run
writes ``DIR/held-N`` and waits until the test removes ``hold-N`` (``release``); a SIGTERM
while it waits ends the wait as the end of a step would: the run does that step, writes
its checkpoint and stops cancelled (``train.preempt_grace_s``). Nothing in steep changes:
``steep.train.loop.train_step`` is wrapped in this process only, and ``steep train``'s
restart on a caching malloc runs this same script again. A ``steep studio`` started this
way starts its jobs' ``steep train`` this way too (``steep.launch.command.train_command``
is wrapped), so they see the same DIR.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

ENV = "STEEP_TEST_HOLD"
SCRIPT = Path(__file__).resolve()


def argv(*args: str) -> list[str]:
    """The command line of ``steep ARGS...`` run through this script."""
    return [sys.executable, str(SCRIPT), *args]


def hold(folder: Path, step: int) -> None:
    """Ask the run to stop before the step after ``step``."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"hold-{step}").touch()


def release(folder: Path, step: int) -> None:
    (folder / f"hold-{step}").unlink(missing_ok=True)


def is_held(folder: Path, step: int) -> bool:
    return (folder / f"held-{step}").exists()


def wait_until(what: str, ok, proc: subprocess.Popen | None = None, timeout: float = 300):
    """Poll ``ok()`` until it is true; fail if ``proc`` ends first. The timeout only guards
    against a hang: nothing here depends on how fast the machine is."""
    deadline = time.monotonic() + timeout
    while True:
        value = ok()
        if value:
            return value
        if proc is not None and proc.poll() is not None:
            out = proc.stdout.read() if proc.stdout else ""
            raise AssertionError(f"the process ended (code {proc.returncode}) before {what}\n{out}")
        if time.monotonic() > deadline:
            raise AssertionError(f"waited {timeout:.0f} s for {what}")
        time.sleep(0.05)


def _hold_the_loop(folder: Path) -> None:
    import steep.train.loop as loop  # imports torch: only in a process that trains
    from steep.train.runfolder.state import cancel_asked

    real = loop.train_step

    def held_step(run, prefetch, lr):
        gate = folder / f"hold-{run.step}"
        if gate.exists():
            (folder / f"held-{run.step}").touch()
            while gate.exists() and not cancel_asked():  # a SIGTERM: the step goes on
                time.sleep(0.02)
        return real(run, prefetch, lr)

    loop.train_step = held_step


def _start_training_here() -> None:
    """Every ``steep train`` this process starts (a studio's jobs) runs this script."""
    import steep.launch.command as command

    real_command = command.train_command

    def held_command(*args, **kwargs) -> list[str]:
        cmd = real_command(*args, **kwargs)
        return [cmd[0], str(SCRIPT), *cmd[3:]] if cmd[1:3] == ["-m", "steep"] else cmd

    command.train_command = held_command


if __name__ == "__main__":
    if sys.path and Path(sys.path[0]).resolve() == SCRIPT.parent:
        del sys.path[0]  # the script's folder (tests/): import steep as `python -m` does
    if os.environ.get(ENV):
        if sys.argv[1:2] == ["train"]:
            _hold_the_loop(Path(os.environ[ENV]))
        _start_training_here()
    from steep.cli import main

    sys.exit(main())
