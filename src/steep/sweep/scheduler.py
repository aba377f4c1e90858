"""Running a sweep's points: one ``steep train`` subprocess each, on the devices there are.

Every point is a normal ``steep train`` run (argv from ``steep.launch.command``) in its own
subprocess, so a crash or an out-of-memory in one point cannot take the sweep down. Points
with a saved model are skipped, points with a checkpoint continue from it (``steep train
--resume``), the rest start again. On CPU the points run one after another (each already
uses every core); with several CUDA GPUs visible, one point per GPU runs at a time
(``CUDA_VISIBLE_DEVICES``). With ``--slurm`` every point is a Slurm job instead (a script
from ``steep.launch.slurm``, followed by ``steep.launch.slurmjob``), all in the queue at
once after the first, which fills the token and base caches. A thread pool of
subprocesses is enough for that; Ray Tune or Optuna would add a scheduler, a database and
their own result format for what is a fixed grid of a dozen runs.
"""

from __future__ import annotations

import os
import queue
import shutil
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import torch

from steep.config import RunConfig, load_config
from steep.launch.command import train_command
from steep.launch.slurm import SlurmOptions, job_name_for, run_script, write_script
from steep.launch.slurmjob import slurm_job_command
from steep.sweep.pareto import DEFAULT_MAX_REGRESSION, pct
from steep.sweep.plan import Spec, plan
from steep.sweep.report import SweepResult, finish, score_point
from steep.sweep.state import State, now, open_sweep
from steep.train.checkpoint import latest_checkpoint
from steep.workspace import CHECKPOINTS_DIR, LINEAGE_FILE, MODEL_DIR

MODEL_MARKER = Path(MODEL_DIR) / LINEAGE_FILE  # a point is done once its model is saved


def run_sweep(
    spec: Spec,
    out: Path | None = None,
    max_regression: float = DEFAULT_MAX_REGRESSION,
    slurm: SlurmOptions | None = None,
) -> SweepResult:
    """Validate the whole grid, then run (or skip, or resume) every point, then pick.
    ``slurm``: each point is a Slurm job with these options, not a local process."""
    spec = Spec(str(Path(spec.config).resolve()), spec.grid, list(spec.sets), spec.budget_tokens)
    points = plan(spec)
    base = load_config(Path(spec.config), spec.sets)
    devices = _devices(base) if slurm is None else [None] * len(points)
    state = open_sweep(spec, points, out, max_regression)
    run_on = (
        "one Slurm job each"
        if slurm is not None
        else "cpu/one device, one point at a time"
        if devices == [None]
        else f"GPUs {devices}"
    )
    shape = " x ".join(str(len(a.values)) for a in spec.grid)
    print(f"sweep {state.root}: {len(points)} points ({shape}), {run_on}", flush=True)
    _run_all(state, devices, slurm)
    return finish(state)


def _devices(cfg: RunConfig) -> list[str | None]:
    """GPU ids to run points on, one point each; [None] = one at a time, devices as they are."""
    if cfg.train.device == "cpu":
        return [None]
    n = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if n < 2:
        return [None]
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    ids = [v.strip() for v in visible.split(",")] if visible else [str(i) for i in range(n)]
    return list(ids[:n])


def _yaml_quote(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _command(config: str, point: dict[str, Any], run_dir: Path, resume: bool) -> list[str]:
    """The point's ``steep train`` argv: its overrides, its own run folder (or a resume)."""
    if resume:
        return train_command(None, resume=run_dir)
    sets = [*point["overrides"], f"run.out_dir={_yaml_quote(str(run_dir))}"]
    return train_command(config, sets, run_dir=run_dir)


def _slurm_command(state: State, pid: str, run_dir: Path, options: SlurmOptions) -> list[str]:
    """Write the point's sbatch script (it starts the run, or resumes it if it is there) and
    return the argv that submits it and follows the job."""
    point, config_path = state.point(pid), state.data["spec"]["config"]
    sets = [*point["overrides"], f"run.out_dir={_yaml_quote(str(run_dir))}"]
    config = load_config(Path(config_path), sets)
    jobs, stem = state.root / "slurm", job_name_for(pid)  # a file name without = or ,
    script = jobs / f"{stem}.sbatch"
    name = job_name_for(f"{config.run.name}-{pid}")
    write_script(
        script, run_script(config, config_path, sets, run_dir, options, job_name=name, log_dir=jobs)
    )
    return slurm_job_command(script, run_dir, jobs / f"{stem}.out", sys.executable)


def _prepare(run_dir: Path) -> str:
    """'done', 'resume' (a checkpoint to continue from) or 'fresh' (any partial run cleared)."""
    if (run_dir / MODEL_MARKER).exists():
        return "done"
    if run_dir.exists():
        if latest_checkpoint(run_dir / CHECKPOINTS_DIR) is not None:
            return "resume"
        shutil.rmtree(run_dir)  # died before its first checkpoint: nothing worth keeping
    return "fresh"


def _tail(path: Path, lines: int = 5) -> str:
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return ""
    shown = [ln for ln in text.splitlines() if ln.strip()]  # also splits progress-bar \r
    return "\n".join("    " + ln for ln in shown[-lines:])


class _Counter:
    def __init__(self, total: int):
        self.total, self._n, self._lock = total, 0, threading.Lock()

    def next(self) -> int:
        with self._lock:
            self._n += 1
            return self._n


def _run_point(
    state: State,
    pid: str,
    device: str | None,
    counter: _Counter,
    slurm: SlurmOptions | None = None,
) -> None:
    point = state.point(pid)
    run_dir = state.root / point["run_dir"]
    log_path = state.root / point["log"]
    mode = _prepare(run_dir)
    n = counter.next()
    total = counter.total
    if mode == "done":
        state.update(pid, status="finished", **score_point(run_dir, point["roles"]))
        _progress(state, pid, f"[{n}/{total}] {pid}: already finished, skipped")
        return
    where = f" on GPU {device}" if device is not None else ""
    verb = "resuming" if mode == "resume" else "running"
    print(f"[{n}/{total}] {pid}: {verb} ({point['steps']} steps){where}", flush=True)
    state.update(pid, status="running", device=device, started=now())
    if slurm is not None:
        cmd = _slurm_command(state, pid, run_dir, slurm)
    else:
        cmd = _command(state.data["spec"]["config"], point, run_dir, resume=mode == "resume")
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    if device is not None:
        env["CUDA_VISIBLE_DEVICES"] = device
    started = time.perf_counter()
    with open(log_path, "a", encoding="utf-8") as log:
        log.write(f"# {now()} steep sweep {verb}: {' '.join(cmd)}\n")
        log.flush()
        rc = subprocess.run(cmd, stdout=log, stderr=subprocess.STDOUT, env=env).returncode
    seconds = round(time.perf_counter() - started, 1)
    if rc == 0 and (run_dir / MODEL_MARKER).exists():
        scores = score_point(run_dir, point["roles"])
        state.update(pid, status="finished", returncode=rc, seconds=seconds, **scores)
        _progress(state, pid, f"[{n}/{total}] {pid}: finished in {seconds:.0f}s")
    else:
        state.update(pid, status="failed", returncode=rc, seconds=seconds)
        print(
            f"[{n}/{total}] {pid}: FAILED (exit {rc}) after {seconds:.0f}s; log {log_path}\n"
            + _tail(log_path),
            flush=True,
        )


def _progress(state: State, pid: str, head: str) -> None:
    p = state.point(pid)
    gain, reg = p.get("domain_gain"), p.get("general_regression")
    if gain is not None and reg is not None:
        head += f": domain {pct(-gain)}, general {pct(reg)}"
    print(head, flush=True)


def _run_all(state: State, devices: list[str | None], slurm: SlurmOptions | None = None) -> None:
    ids = [p["id"] for p in state.points]
    counter = _Counter(len(ids))
    if len(devices) == 1:
        for pid in ids:
            _run_point(state, pid, devices[0], counter, slurm)
        return
    # the first point to train runs alone so it fills the shared token and base caches
    # once, instead of several points tokenizing the same sources at the same time
    first = next((i for i in ids if not _done(state, i)), None)
    rest = list(ids)
    if first is not None:
        rest.remove(first)
        _run_point(state, first, devices[0], counter, slurm)
    free: queue.Queue[str | None] = queue.Queue()
    for d in devices:
        free.put(d)

    def job(pid: str) -> None:
        device = free.get()
        try:
            _run_point(state, pid, device, counter, slurm)
        finally:
            free.put(device)

    with ThreadPoolExecutor(max_workers=len(devices)) as pool:
        list(pool.map(job, rest))


def _done(state: State, pid: str) -> bool:
    return (state.root / state.point(pid)["run_dir"] / MODEL_MARKER).exists()
