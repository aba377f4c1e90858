"""Starts queued jobs as separate processes and keeps their status true to what happened.

``tick()`` is the whole algorithm, called every second by a background thread (and
directly by tests):

1. reconcile every job the queue says is starting or running: an ``exit.json`` means it
   ended (done / failed / cancelled); a dead wrapper without one means it died (failed,
   log kept); a live one is left alone -- a restarted studio adopts it, never relaunches;
2. claim queued jobs (compare-and-set, see jobs.py) while fewer than ``max_jobs`` run.

Processes start in their own session so they outlive a studio restart, and cancel can
signal the whole group (wrapper, ``steep train`` or torchrun and its workers).
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path

from steep.artifacts.runstatus import read_status, write_status
from steep.config import load_config
from steep.launch import command as launch_command
from steep.launch.slurm import SlurmOptions, run_script, write_script
from steep.launch.slurmjob import slurm_job_command
from steep.studio.jobs import Job, JobQueue, read_exit
from steep.train.runfolder.lock import held_last_by
from steep.workspace import CONFIG_FILE

CANCEL_GRACE_S = 10.0  # SIGTERM first; SIGKILL the group if it is still there after this
START_GRACE_S = 30.0  # a 'starting' job with no pid file after this never started

CommandFor = Callable[[Job], list[str]]


def train_command(job: Job) -> list[str]:
    """``steep train`` on one device, torchrun for several; both argv from
    ``steep.launch.command.train_command``, as ``steep launch`` and ``steep sweep`` build it."""
    if job.resume:  # its own config.yaml and newest checkpoint, on one process
        return launch_command.train_command(None, resume=job.run_dir)
    return start_command(job.config_path, job.nproc)


def start_command(config_path: str | Path, nproc: int) -> list[str]:
    """A new run's argv on ``nproc`` processes: what a job runs, and what the New run
    page's "preview command" shows (one builder, so the preview is the command)."""
    if nproc > 1:
        # deferred: torchrun.py imports torch (for the batch-split check), the studio need not
        from steep.launch.torchrun import default_torchrun, torchrun_command

        return torchrun_command(
            str(config_path), [], gpus_per_node=nproc, torchrun=default_torchrun()
        )
    return launch_command.train_command(config_path)


def slurm_command(options: SlurmOptions) -> CommandFor:
    """Jobs as Slurm jobs (``steep studio --slurm``): each writes an sbatch script into its
    job folder and runs ``steep.launch.slurmjob``, which submits it and lives as long as
    the Slurm job, so the runner tracks, logs and cancels it as it does a local process."""

    def command(job: Job) -> list[str]:
        config_path = job.run_dir / CONFIG_FILE if job.resume else job.config_path
        opts = dataclasses.replace(options, gpus_per_node=max(job.nproc, 1))
        script = job.job_dir / "job.sbatch"
        text = run_script(
            load_config(config_path), str(config_path), [], job.run_dir, opts, log_dir=job.job_dir
        )
        write_script(script, text)
        return slurm_job_command(script, job.run_dir, job.job_dir / "slurm.out", sys.executable)

    return command


def process_start_time(pid: int) -> str | None:
    """Kernel start time of ``pid`` (clock ticks since boot), or None if it is gone/zombie."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat[stat.rindex(")") + 2 :].split()  # the name in () may contain spaces
    if fields[0] in ("Z", "X"):  # exited, not yet reaped: as good as dead
        return None
    return fields[19]


def alive(pid: int | None, start: str | None) -> bool:
    """Is this the same process we started, still running? (pid reuse is checked)."""
    if not pid:
        return False
    now = process_start_time(pid)
    return now is not None and (start is None or now == start)


class Runner:
    """Supervises the queue of one workspace; safe to run in several studios at once."""

    def __init__(
        self,
        queue: JobQueue,
        max_jobs: int = 1,
        command_for: CommandFor = train_command,
        env: dict[str, str] | None = None,
        poll_s: float = 1.0,
        on_finish: Callable[[Job], None] | None = None,
    ) -> None:
        self.queue = queue
        self.max_jobs = max_jobs
        self.command_for = command_for
        self.env = env
        self.poll_s = poll_s
        self.on_finish = on_finish
        self.owner = f"{os.uname().nodename}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self._children: dict[int, subprocess.Popen] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # --- background loop --------------------------------------------------------------------

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="steep-studio-runner", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop supervising; running jobs keep running and are adopted by the next studio."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                self.tick()
            except Exception as exc:  # keep supervising; the error is shown in the log
                print(f"steep studio: runner error: {exc!r}", file=sys.stderr)
            self._stop.wait(self.poll_s)

    # --- one pass ---------------------------------------------------------------------------

    def tick(self, launch: bool = True) -> None:
        """Reconcile the running jobs and start queued ones. A request thread passes
        ``launch=False``: a job inherits the priority of the thread that forks it, and
        request threads run lowered (``app.yield_to_jobs``)."""
        with self._lock:
            for job in self.queue.jobs(("starting", "running")):
                self._reconcile(job)
            if not launch:
                return
            running = len(self.queue.jobs(("starting", "running")))
            while running < self.max_jobs:
                job = self.queue.claim_next(self.owner)
                if job is None:
                    break
                self._launch(job)
                running += 1

    def _reap(self, pid: int | None) -> None:
        child = self._children.get(pid or -1)
        if child is not None and child.poll() is not None:
            del self._children[child.pid]

    def _reconcile(self, job: Job) -> None:
        self._reap(job.pid)
        record = read_exit(job.exit_path)
        if record is not None:
            self._finish(job, int(record["code"]))
            return
        pid, start = job.pid, job.pid_start
        if pid is None and job.pid_path.exists():  # launched, but the row missed the pid
            pid = int(job.pid_path.read_text() or 0) or None
            start = None
        if pid is None:
            if job.status == "starting" and time.time() - (job.started or 0) > START_GRACE_S:
                # claimed by a studio that stopped before starting it: nothing ran, queue again
                self.queue.transition(job.id, ("starting",), status="queued", claimed_by=None)
            return
        if alive(pid, start):
            if job.status == "starting":
                self.queue.transition(job.id, ("starting",), status="running", pid=pid)
            if job.cancel_requested:
                sig = (
                    signal.SIGKILL
                    if time.time() - job.cancel_requested > CANCEL_GRACE_S
                    else signal.SIGTERM
                )
                _signal_group(pid, sig)
            return
        record = read_exit(job.exit_path)  # it may have finished between the two looks
        if record is not None:
            self._finish(job, int(record["code"]))
            return
        _signal_group(pid, signal.SIGKILL)  # the wrapper died: take its orphans with it
        self._mark(
            job,
            "cancelled" if job.cancel_requested else "failed",
            None,
            "the job's process died without recording an exit status (killed, out of "
            "memory, or the machine restarted); its log is kept",
        )

    def _finish(self, job: Job, code: int) -> None:
        if job.cancel_requested:
            status, error = "cancelled", "cancelled"
        elif code == 0:
            status, error = "done", None
        else:
            status, error = "failed", f"exited with code {code}; see the log"
        self._mark(job, status, code, error)

    def _mark(self, job: Job, status: str, code: int | None, error: str | None) -> None:
        if self.queue.transition(
            job.id,
            ("starting", "running"),
            status=status,
            exit_code=code,
            error=error,
            finished=time.time(),
        ):
            self._log(job, f"[steep studio] job {status}" + (f": {error}" if error else ""))
            if status == "cancelled" and job.pid is not None:
                _record_cancel(job.run_dir, job.pid)
            if self.on_finish is not None:
                try:
                    self.on_finish(self.queue.get(job.id))
                except Exception as exc:
                    self._log(job, f"[steep studio] after-run hook failed: {exc!r}")

    def _log(self, job: Job, line: str) -> None:
        with open(job.log_path, "a", encoding="utf-8") as f:
            f.write(line + "\n")

    def _launch(self, job: Job) -> None:
        env = dict(self.env if self.env is not None else os.environ)
        env["PYTHONUNBUFFERED"] = "1"
        env.setdefault("TQDM_MININTERVAL", "2")  # progress bars: a line per 2 s in the log
        if job.cuda_visible_devices is not None:
            env["CUDA_VISIBLE_DEVICES"] = job.cuda_visible_devices
        cmd = [sys.executable, "-m", "steep.studio.wrap", str(job.job_dir), "--"]
        try:
            cmd += self.command_for(job)
            with open(job.log_path, "ab") as log:  # the wrapper's own errors, if any
                proc = subprocess.Popen(
                    cmd,
                    env=env,
                    cwd=str(job.job_dir),
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=log,
                    start_new_session=True,  # survives the studio; cancel signals the group
                )
        except Exception as exc:
            self._log(job, f"[steep studio] could not start: {exc}")
            self._mark(job, "failed", None, f"could not start: {exc}")
            return
        self._children[proc.pid] = proc
        self.queue.transition(
            job.id,
            ("starting",),
            status="running",
            pid=proc.pid,
            pid_start=process_start_time(proc.pid),
        )


def _record_cancel(run_dir: Path, session: int) -> None:
    """A run killed past its grace period never wrote its own end: say it was cancelled,
    so the hub and ``steep`` listings agree with the job (a finished run is left alone).
    Only the lock's holder writes status: when the job's process (its session, ``session``)
    never held the run's lock (a resume refused because a CLI resume holds it), the status
    is another run's. A Slurm job's run holds it on another host: its own SIGTERM handler
    (scancel) writes its end."""
    with held_last_by(run_dir, session) as ours:
        status = read_status(run_dir) if ours else None
        if status is not None and status.state in ("running", "failed"):
            write_status(run_dir, "cancelled", "cancelled from the studio")


def _signal_group(pid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, sig)
