"""The New run page: the form's bases and datasets, live config checks, and submitting."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse, JSONResponse

from steep.studio.forms import PKG_BASE, length_help, new_run_dir, resolve_form
from steep.studio.prefill import prefill
from steep.studio.schema_fields import form_sections
from steep.studio.state import Studio


def router(studio: Studio) -> APIRouter:
    routes = APIRouter()
    settings, home, hub, queue = studio.settings, studio.home, studio.hub, studio.queue

    @routes.get("/runs/new", response_class=HTMLResponse)
    def new_run_page(
        request: Request,
        from_run: str | None = Query(None, alias="from", description="a run to start from"),
        base: str | None = Query(None, description="a base model to start from"),
        job: int | None = Query(None, description="a studio job to start from"),
    ) -> HTMLResponse:
        bases = [{"label": f"model {m['name']}", "value": m["path"]} for m in hub.models()]
        bases.append({"label": "SmolLM2-135M (offline default, GGUF)", "value": PKG_BASE})
        return studio.page(
            request,
            "new_run.html",
            title=f"New run from {from_run or f'job {job}'}" if from_run or job else "New run",
            datasets=hub.datasets(),
            bases=bases,
            gpus=settings.gpus_available,
            sections=form_sections(),
            length_help=length_help(),
            prefill=prefill(
                home, from_run, base, studio.job_or_404(job).config_path if job else None
            ),
        )

    @routes.post("/api/config/resolve")
    def api_resolve(body: dict[str, Any]) -> dict[str, Any]:
        return resolve_form(
            body,
            home,
            allow_remote_code=settings.trust_remote_code,
            gpus_available=settings.gpus_available,
        ).to_dict()

    @routes.post("/api/jobs")
    def api_submit(body: dict[str, Any]) -> JSONResponse:
        name = str(body.get("name") or "run")
        run_dir = new_run_dir(home, name)
        resolved = resolve_form(
            body,
            home,
            allow_remote_code=settings.trust_remote_code,
            run_dir=run_dir,
            gpus_available=settings.gpus_available,
        )
        if not resolved.ok:
            return JSONResponse(resolved.to_dict(), status_code=422)
        job = queue.submit(
            name, resolved.yaml, run_dir, resolved.nproc, resolved.cuda_visible_devices
        )
        return JSONResponse({**resolved.to_dict(), "job": job.to_dict()})

    return routes
