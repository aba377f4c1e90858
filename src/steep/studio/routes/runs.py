"""The Runs pages: the list, one studio job, one run the hub knows, and their metrics."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse

from steep.studio.files import read_jsonl_from
from steep.studio.routes.jobs import Inode, Offset
from steep.studio.state import Studio, job_view
from steep.workspace import METRICS_FILE


def router(studio: Studio) -> APIRouter:
    routes = APIRouter()
    hub, queue = studio.hub, studio.queue

    @routes.get("/runs", response_class=HTMLResponse)
    def runs_page(request: Request) -> HTMLResponse:
        return studio.page(request, "runs.html", title="Runs")

    @routes.get("/runs/{job_id:int}", response_class=HTMLResponse)
    def job_page(request: Request, job_id: int) -> HTMLResponse:
        job = studio.job_or_404(job_id)
        return studio.page(
            request,
            "run.html",
            title=f"Run {job.name} (job {job.id})",
            job=job_view(job, studio.runs_by_path()),
            config=job.config,
            metrics_url=f"/api/jobs/{job.id}/metrics",
        )

    @routes.get("/runs/r/{name}", response_class=HTMLResponse)
    def hub_run_page(request: Request, name: str) -> HTMLResponse:
        run = studio.hub_call(hub.run, name)

        return studio.page(
            request,
            "run.html",
            title=f"Run {name}",
            job=None,
            run=run,
            config=yaml.safe_dump(run.get("config"), sort_keys=False),
            metrics_url=f"/api/runs/{name}/metrics",
        )

    @routes.get("/api/runs")
    def api_runs() -> dict[str, Any]:
        """Studio jobs, plus runs started elsewhere (the CLI) that the hub knows."""
        runs = studio.runs_by_path()
        jobs = [job_view(j, runs) for j in reversed(queue.jobs())]
        mine = {str(j.run_dir.resolve()) for j in queue.jobs()}
        other = [r for p, r in runs.items() if p not in mine]
        for r in other:
            r.pop("config", None)
        return {"jobs": jobs, "runs": other}

    @routes.get("/api/runs/{name}/metrics")
    def api_run_metrics(name: str, offset: Offset = 0, inode: Inode = None) -> dict[str, Any]:
        run = studio.hub_call(hub.run, name)
        out = read_jsonl_from(Path(run["path"]) / METRICS_FILE, offset, inode)
        return {**out, "status": run["status"], "finished": run["status"] != "running"}

    return routes
