"""The studio's job API: the queue, one job, cancelling it, its log and its metrics."""

from __future__ import annotations

import pathlib
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Path, Query
from fastapi.responses import FileResponse, JSONResponse

from steep.studio.files import read_jsonl_from, read_text_from, run_facts, run_file
from steep.studio.jobs import FINISHED, JobError
from steep.studio.state import MAX_ID, Studio, job_view
from steep.workspace import METRICS_FILE

# Checked before a handler runs: SQLite and seek() overflow or fail past these (a 500)
JobId = Annotated[int, Path(ge=0, le=MAX_ID, description="a job's id")]
Offset = Annotated[int, Query(ge=0, le=MAX_ID, description="a byte offset the last poll gave")]
Inode = Annotated[int | None, Query(ge=0, le=2**64 - 1, description="the file the offset is in")]


def router(studio: Studio) -> APIRouter:
    routes = APIRouter()
    settings, queue, runner = studio.settings, studio.queue, studio.runner

    @routes.get("/api/jobs")
    def api_jobs() -> list[dict[str, Any]]:
        runs = studio.runs_by_path()
        return [job_view(j, runs) for j in reversed(queue.jobs())]

    @routes.get("/api/jobs/{job_id}")
    def api_job(job_id: JobId) -> dict[str, Any]:
        return job_view(studio.job_or_404(job_id), studio.runs_by_path())

    @routes.post("/api/jobs/{job_id}/cancel")
    def api_cancel(job_id: JobId) -> JSONResponse:
        try:
            job = queue.request_cancel(job_id)
        except JobError as exc:
            status = 404 if "no job" in str(exc) else 409
            return JSONResponse({"error": str(exc)}, status_code=status)
        if settings.run_jobs:
            runner.tick(launch=False)  # signal it now; starting jobs is the runner's
        return JSONResponse(studio.job_or_404(job.id).to_dict())

    @routes.get("/api/jobs/{job_id}/log")
    def api_log(job_id: JobId, offset: Offset = 0) -> dict[str, Any]:
        job = studio.job_or_404(job_id)
        return {**read_text_from(job.log_path, offset), "status": job.status}

    @routes.get("/api/jobs/{job_id}/metrics")
    def api_job_metrics(job_id: JobId, offset: Offset = 0, inode: Inode = None) -> dict[str, Any]:
        job = studio.job_or_404(job_id)
        out = read_jsonl_from(job.run_dir / METRICS_FILE, offset, inode)
        return {
            **out,
            **run_facts(job.run_dir),
            "steps": job_view(job, {})["steps"],
            "status": job.status,
            "finished": job.status in FINISHED,
        }

    @routes.get("/api/jobs/{job_id}/files/{name:path}")
    def api_job_file(job_id: JobId, name: str) -> FileResponse:
        return send_run_file(run_file(studio.job_or_404(job_id).run_dir, name), name)

    return routes


def send_run_file(path: pathlib.Path | None, name: str) -> FileResponse:
    """A run's report or plot; anything else is a 404 (the name is never a path)."""
    if path is None:
        raise HTTPException(404, f"no run file {name!r} (report.md and plots/*.png are served)")
    media = "text/markdown; charset=utf-8" if path.suffix == ".md" else "image/png"
    return FileResponse(path, media_type=media)
