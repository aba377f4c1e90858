"""What every studio page shares: the settings, the hub, the job queue and the runner."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from fastapi import HTTPException, Request
from fastapi.responses import HTMLResponse
from fastapi.templating import Jinja2Templates

from steep.hub import Hub, HubError
from steep.studio.jobs import Job, JobError, JobQueue
from steep.studio.runner import Runner
from steep.studio.uploads import DEFAULT_WORKSPACE_UPLOAD_BYTES

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


@dataclass
class Studio:
    """One studio's shared state, handed to every route module (``steep.studio.routes``)."""

    settings: Settings
    home: Path  # resolved
    hub: Hub
    queue: JobQueue
    runner: Runner
    templates: Jinja2Templates

    def page(self, request: Request, name: str, **context: Any) -> HTMLResponse:
        context.setdefault("title", name.removesuffix(".html"))
        context.setdefault("page", name.removesuffix(".html"))  # studio.js starts it (CSP)
        return self.templates.TemplateResponse(
            request, name, {"settings": self.settings, **context}
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
        return {str(Path(r["path"]).resolve()): r for r in self.hub.runs()}


def job_view(job: Job, runs: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """A job as the pages and the API show it, with its run's name, model and progress."""
    out = job.to_dict()
    out.pop("config")
    run = runs.get(str(job.run_dir.resolve()))
    out["run"] = run["name"] if run else None
    out["model"] = run["model"] if run else None
    metrics = (run or {}).get("metrics") or {}
    out["step"], out["loss"] = metrics.get("step"), metrics.get("loss")
    try:
        out["steps"] = yaml.safe_load(job.config)["train"]["steps"]
    except Exception:
        out["steps"] = None
    return out
