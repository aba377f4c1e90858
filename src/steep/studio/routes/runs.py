"""The Runs pages: the list, one studio job, one run the hub knows, and their metrics."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import quote

import yaml
from fastapi import APIRouter, HTTPException, Query, Request
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, Response

from steep.artifacts.fmt import timestamp
from steep.hub import HubError
from steep.studio.confine import inside
from steep.studio.files import read_jsonl_from, run_facts, run_file
from steep.studio.jobs import ACTIVE
from steep.studio.routes.compare import run_url
from steep.studio.routes.jobs import Inode, JobId, Offset, send_run_file
from steep.studio.runview import metrics_csv, report_html
from steep.studio.state import MAX_ID, RUNS_CACHE_S, Studio, job_view, resumable
from steep.workspace import CONFIG_FILE, METRICS_FILE


def router(studio: Studio) -> APIRouter:
    routes = APIRouter()
    hub, queue = studio.hub, studio.queue
    listed: dict[tuple[Any, ...], tuple[float, bytes]] = {}
    listed_lock = threading.Lock()

    routes.include_router(_file_routes(studio))

    def forget() -> None:
        with listed_lock:
            listed.clear()
        studio.forget_runs()

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
    def api_runs(
        state: Annotated[str | None, Query(max_length=20)] = None,
        q: Annotated[str | None, Query(max_length=100)] = None,
        limit: Annotated[int, Query(ge=1, le=500)] = PAGE,
        offset: Annotated[int, Query(ge=0, le=MAX_ID)] = 0,
    ) -> Response:
        """A page of studio jobs (newest first), plus the runs started elsewhere (the CLI)
        that the hub knows, filtered by state and a name fragment. A page costs the same
        whatever the history holds: jobs come from SQL a page at a time, the hub's runs
        from a sync shared by every client for a second."""
        key = (state, q, limit, offset)
        with listed_lock:  # every open Runs tab polls: within a second they share one answer,
            hit = listed.get(key)  # encoded once (FastAPI's encoder walks every value)
            if hit is None or time.monotonic() - hit[0] >= RUNS_CACHE_S:
                body = json.dumps(_list(state, q, limit, offset), default=str).encode()
                if len(listed) > 64:
                    listed.clear()
                hit = listed[key] = (time.monotonic(), body)
        return Response(hit[1], media_type="application/json")

    def _list(state: str | None, q: str | None, limit: int, offset: int) -> dict[str, Any]:
        states = (state,) if state else None
        runs = studio.runs_by_path()
        jobs = queue.jobs(states, name=q, newest_first=True, limit=limit, offset=offset)
        mine = queue.run_dirs()
        other = [
            {k: v for k, v in r.items() if k != "config"}
            | {"resumable": resumable(Path(p)), "created_text": timestamp(r.get("created"))}
            for p, r in runs.items()
            if p not in mine
            and (not state or r["status"] == state)
            and (not q or q.lower() in r["name"].lower())
        ]
        views = [
            job_view(j, runs)
            | {"resumable": resumable(j.run_dir), "created_text": timestamp(j.created)}
            for j in jobs
        ]
        return {
            "jobs": views,
            "total_jobs": queue.count(states, q),
            "runs": other[offset : offset + limit],
            "total_runs": len(other),
            "limit": limit,
            "offset": offset,
        }

    @routes.post("/api/runs/{name}/resume")
    def api_resume(name: str) -> JSONResponse:
        """Go on from a cancelled or failed run's newest checkpoint, as a new studio job."""
        run = studio.hub_call(hub.run, name)
        path = Path(run["path"]).resolve()
        if run["status"] not in ("cancelled", "failed"):
            return _refuse(
                409, f"run {name!r} is {run['status']}: only a cancelled or failed run resumes"
            )
        if not resumable(path):
            return _refuse(409, f"run {name!r} has no checkpoint to resume from; start it again")
        if not inside(path, studio.home):
            return _refuse(403, f"run {name!r} lies outside the workspace")
        if str(path) in queue.run_dirs(ACTIVE):
            return _refuse(409, f"run {name!r} already has a job queued or running")
        config = (path / CONFIG_FILE).read_text(encoding="utf-8")
        job = queue.submit(name, config, path, resume=True)
        forget()
        return JSONResponse({"job": job.to_dict()})

    @routes.post("/api/runs/{name}/archive")
    def api_archive(name: str) -> JSONResponse:
        return _remove(name, archive=True)

    @routes.delete("/api/runs/{name}")
    def api_delete(name: str) -> JSONResponse:
        return _remove(name, archive=False)

    def _remove(name: str, archive: bool) -> JSONResponse:
        run = studio.hub_call(hub.run, name)
        users = queue.using(Path(run["path"]))
        if users:  # the job would fail when it starts, or mid-run
            used = "; ".join(f"job {j.id} ({j.name}, {j.status}) {how}" for j, how in users)
            return _refuse(409, f"run {name!r} is in use: {used}: cancel it first")
        try:
            moved = hub.remove_run(name, archive=archive)
        except HubError as exc:
            return _refuse(409, str(exc))
        forget()
        return JSONResponse({"removed": name, "archived_to": str(moved) if moved else None})

    @routes.get("/api/runs/{name}/metrics")
    def api_run_metrics(name: str, offset: Offset = 0, inode: Inode = None) -> dict[str, Any]:
        run = studio.hub_call(hub.run, name)
        out = read_jsonl_from(Path(run["path"]) / METRICS_FILE, offset, inode)
        return {
            **out,
            **run_facts(Path(run["path"])),
            "steps": run.get("steps"),
            "status": run["status"],
            "finished": run["status"] != "running",
        }

    @routes.get("/api/runs/{name}/files/{file:path}")
    def api_run_file(name: str, file: str) -> FileResponse:
        return send_run_file(run_file(Path(studio.hub_call(hub.run, name)["path"]), file), file)

    return routes


PAGE = 50  # rows per page of the Runs list


def _file_routes(studio: Studio) -> APIRouter:
    """A run's report as a page and its metrics as CSV, for a studio job and a hub run."""
    routes, hub = APIRouter(), studio.hub

    @routes.get("/runs/{job_id:int}/report", response_class=HTMLResponse)
    def job_report(request: Request, job_id: int) -> HTMLResponse:
        job = studio.job_or_404(job_id)
        return _report(request, job.run_dir, f"/runs/{job.id}", f"/api/jobs/{job.id}/files/")

    @routes.get("/runs/r/{name}/report", response_class=HTMLResponse)
    def hub_run_report(request: Request, name: str) -> HTMLResponse:
        run = studio.hub_call(hub.run, name)
        files = f"/api/runs/{quote(name, safe='')}/files/"
        return _report(request, Path(run["path"]), run_url(name), files)

    def _report(request: Request, run_dir: Path, page: str, files: str) -> HTMLResponse:
        """report.md as HTML, its plots loading through the run's file route."""
        html = report_html(run_dir, files)
        if html is None:
            raise HTTPException(404, f"no report yet in {run_dir}: it is written when the run ends")
        title = f"Report: {run_dir.name}"
        return studio.page(request, "report.html", title=title, report=html, run_page=page)

    @routes.get("/api/jobs/{job_id}/metrics.csv")
    def api_job_csv(job_id: JobId) -> Response:
        job = studio.job_or_404(job_id)
        return _csv(job.run_dir, job.name)

    @routes.get("/api/runs/{name}/metrics.csv")
    def api_run_csv(name: str) -> Response:
        return _csv(Path(studio.hub_call(hub.run, name)["path"]), name)

    return routes


def _csv(run_dir: Path, name: str) -> Response:
    """The run's metrics as a CSV download (``steep.studio.runview.metrics_csv``)."""
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in name) or "run"
    return Response(
        metrics_csv(run_dir / METRICS_FILE),
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="{safe}-metrics.csv"'},
    )


def _refuse(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)
