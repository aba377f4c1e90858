"""Submit a steep sbatch script and follow the job until it leaves the queue.

``python -m steep.launch.slurmjob --run-dir RUN --output LOG SCRIPT`` is what ``steep
sweep --slurm`` and a studio configured for Slurm run in place of ``steep train``: it
lives as long as the job (requeues included), copies the job's log to its own output, and
exits 0 only when the run folder's status.json says done, so both keep tracking a local
process exactly as before. SIGTERM (the studio's cancel) becomes ``scancel``. No
accounting database is needed: ``squeue`` says whether the job is still there, the run
folder says how it ended.
"""

from __future__ import annotations

import argparse
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from steep.artifacts.runstatus import read_status
from steep.errors import SteepError

# squeue states after which the job will not run again (PREEMPTED is missing on purpose:
# a --requeue job goes back to PENDING after it)
ENDED = {
    "BOOT_FAIL", "CANCELLED", "COMPLETED", "DEADLINE", "FAILED", "NODE_FAIL",
    "OUT_OF_MEMORY", "REVOKED", "SPECIAL_EXIT", "TIMEOUT",
}  # fmt: skip
CANCEL_WAIT_S = 8.0  # the studio sends SIGKILL 10 s after its SIGTERM


class SlurmError(SteepError):
    """sbatch refused the script, or a Slurm tool is missing."""


def _run(argv: list[str]) -> subprocess.CompletedProcess:
    try:
        return subprocess.run(argv, capture_output=True, text=True, timeout=60)
    except FileNotFoundError:
        raise SlurmError(f"{argv[0]} not found: is this a Slurm login node?") from None


def submit(script: Path, output: Path | None = None) -> str:
    """``sbatch`` the script; the job id. ``output``: the job's log, in place of its own."""
    flags = [f"--output={output}"] if output is not None else []
    done = _run(["sbatch", "--parsable", *flags, str(script)])
    if done.returncode != 0:
        raise SlurmError(f"sbatch {script}: {done.stderr.strip() or done.stdout.strip()}")
    return done.stdout.strip().split(";")[0]  # "id" or "id;cluster"


def job_state(job: str) -> str | None:
    """The job's squeue state (PENDING, RUNNING, ...); None once it has ended or is gone.
    A failed query (slurmctld busy) reads as still there: better late than lost."""
    done = _run(["squeue", "-h", "-j", job, "-t", "all", "-o", "%T"])
    if done.returncode != 0:
        return None if "Invalid job id" in done.stderr else "UNKNOWN"
    state = done.stdout.strip().split("\n")[0].strip()
    return None if not state or state in ENDED else state


def cancel(job: str) -> None:
    _run(["scancel", job])


class _Tail:
    """Copies what the job's log gained since the last look to our stdout."""

    def __init__(self, path: Path | None) -> None:
        self.path, self.at = path, 0

    def pump(self) -> None:
        if self.path is None:
            return
        try:
            with open(self.path, "rb") as f:
                f.seek(self.at)
                data = f.read()
        except OSError:
            return
        self.at += len(data)
        if data:
            sys.stdout.write(data.decode("utf-8", errors="replace"))
            sys.stdout.flush()


def follow(script: Path, run_dir: Path, output: Path | None, poll_s: float = 2.0) -> int:
    """Submit, wait until the job is gone, then: 0 (the run is done), 1, or 130 (cancelled)."""
    asked: list[float] = []
    job = ""

    def on_term(signum: int, frame: Any) -> None:
        if not asked:
            asked.append(time.time())
            if job:  # else: cancelled as soon as sbatch answers
                print(f"steep: cancelling Slurm job {job}", flush=True)
                cancel(job)

    # before sbatch: a cancel that comes while it runs must not leave the job behind
    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGINT, on_term)
    job = submit(script, output)
    print(f"steep: submitted Slurm job {job} ({script}); run {run_dir}", flush=True)
    if asked:
        cancel(job)
    tail, last = _Tail(output), None
    while True:
        state = job_state(job)
        tail.pump()
        if state is None or (asked and time.time() - asked[0] > CANCEL_WAIT_S):
            break
        if state != last:
            print(f"steep: Slurm job {job} {state}", flush=True)
            last = state
        time.sleep(poll_s)
    tail.pump()
    status = read_status(run_dir)
    what = status.state if status is not None else "no status.json"
    print(f"steep: Slurm job {job} ended; run {what}", flush=True)
    if asked:
        return 130
    return 0 if status is not None and status.state == "done" else 1


def slurm_job_command(script: Path, run_dir: Path, output: Path, python: str) -> list[str]:
    """argv that submits ``script`` and follows it (this module, run by ``python``)."""
    return [
        python, "-m", "steep.launch.slurmjob",
        "--run-dir", str(run_dir), "--output", str(output), str(script),
    ]  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m steep.launch.slurmjob", description=__doc__)
    p.add_argument("script", type=Path)
    p.add_argument("--run-dir", type=Path, required=True)
    p.add_argument("--output", type=Path, help="the job's log (sbatch --output)")
    p.add_argument("--poll", type=float, default=2.0, help="seconds between squeue calls")
    args = p.parse_args(argv)
    try:
        return follow(args.script, args.run_dir, args.output, args.poll)
    except SteepError as exc:
        print(f"steep: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
