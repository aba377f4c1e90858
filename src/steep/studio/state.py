"""What every studio page shares: the settings, the hub, the job queue and the runner."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from fastapi import HTTPException, Request
from fastapi.responses import HTMLResponse
from fastapi.templating import Jinja2Templates

from steep.hub import Hub, HubError
from steep.launch.slurm import SlurmOptions
from steep.studio.jobs import Job, JobError, JobQueue
from steep.studio.runner import Runner
from steep.studio.uploads import DEFAULT_WORKSPACE_UPLOAD_BYTES
from steep.workspace import CHECKPOINTS_DIR

MAX_ID = 2**63 - 1  # SQLite's largest integer: a bigger id or offset is no job's


@dataclass
class Settings:
    """How the studio runs; the CLI fills it from its flags."""

    home: Path
    token: str | None = None
    trust_remote_code: bool = False
    max_upload_bytes: int = 512 << 20  # one upload (a PUT of each of its files)
    max_workspace_upload_bytes: int = DEFAULT_WORKSPACE_UPLOAD_BYTES  # all of uploads/
    max_body_bytes: int = 1 << 20  # any other request body (JSON): a form is a few KB
    max_jobs: int = 1
    poll_s: float = 1.0
    run_jobs: bool = True  # tests drive Runner.tick() themselves
    allowed_hosts: tuple[str, ...] | None = None  # Host header check (DNS rebinding)
    gpus_available: int | None = None
    slurm: SlurmOptions | None = None  # runs go to Slurm (sbatch) instead of local processes


@dataclass
class Studio:
    """One studio's shared state, handed to every route module (``steep.studio.routes``)."""

    settings: Settings
    home: Path  # resolved
    hub: Hub
    queue: JobQueue
    runner: Runner
    templates: Jinja2Templates
    _runs: tuple[float, dict[str, dict[str, Any]]] | None = field(default=None, init=False)
    _runs_lock: threading.Lock = field(default_factory=threading.Lock, init=False)

    def page(self, request: Request, name: str, **context: Any) -> HTMLResponse:
        context.setdefault("title", name.removesuffix(".html"))
        context.setdefault("page", name.removesuffix(".html"))  # studio.js starts it (CSP)
        status = context.pop("status_code", 200)
        return self.templates.TemplateResponse(
            request, name, {"settings": self.settings, **context}, status_code=status
        )

    def job_or_404(self, job_id: int) -> Job:
        if not 0 <= job_id <= MAX_ID:  # SQLite would overflow: a 500, not a 404
            raise HTTPException(404, f"no job {job_id}")
        try:
            return self.queue.get(job_id)
        except JobError as exc:
            raise HTTPException(404, str(exc)) from None

    def hub_call(self, fn: Any, *args: Any) -> Any:
        try:
            return fn(*args)
        except HubError as exc:
            raise HTTPException(404, str(exc)) from None

    def runs_by_path(self) -> dict[str, dict[str, Any]]:
        """The hub's runs by resolved folder, synced at most once a second: every open Runs
        page polls, and a sync stats every run folder, so clients share one (finding 10)."""
        with self._runs_lock:
            now = time.monotonic()
            if self._runs is None or now - self._runs[0] > RUNS_CACHE_S:
                self._runs = (now, {str(Path(r["path"]).resolve()): r for r in self.hub.runs()})
            return self._runs[1]  # shared: callers read it, never change it

    def forget_runs(self) -> None:
        """After a change the next list must show (a resume, an archive)."""
        with self._runs_lock:
            self._runs = None


RUNS_CACHE_S = 1.0


def resumable(run_dir: Path) -> bool:
    """A finished checkpoint exists (``checkpoints/step_*``; one being written is hidden)."""
    folder = Path(run_dir) / CHECKPOINTS_DIR
    return folder.is_dir() and any(p.name.startswith("step_") for p in folder.iterdir())


def job_view(job: Job, runs: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """A job as the pages and the API show it, with its run's name, model and progress."""
    out = job.to_dict()
    out.pop("config")
    run = runs.get(str(job.run_dir.resolve()))
    out["run"] = run["name"] if run else None
    out["model"] = run["model"] if run else None
    metrics = (run or {}).get("metrics") or {}
    out["step"], out["loss"] = metrics.get("step"), metrics.get("loss")
    out["steps"] = _steps(job)
    return out


_STEPS: dict[tuple[int, float], int | None] = {}  # a job's config never changes


def _steps(job: Job) -> int | None:
    """train.steps of a job's config, parsed once per job: the list is polled every few
    seconds, and parsing every job's YAML each time made it cost O(history) (#18 finding 10)."""
    key = (job.id, job.created)
    if key not in _STEPS:
        try:
            _STEPS[key] = int(yaml.safe_load(job.config)["train"]["steps"])
        except Exception:  # a hand-edited row: the list shows no total
            _STEPS[key] = None
    return _STEPS[key]
