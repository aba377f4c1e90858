"""The Models pages: the list, one model with its card and actions, a model folder as a zip.

The actions (evaluate, export, push, generate, merge) are the CLI's commands run as jobs
(``steep.studio.model_jobs``), their command lines built by ``steep.studio.model_actions``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any
from urllib.parse import quote

import yaml
from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, StreamingResponse

from steep.errors import SteepError
from steep.studio import model_actions as actions
from steep.studio import model_jobs
from steep.studio.files import zip_folder
from steep.studio.markdown import render
from steep.studio.model_view import LEGEND, eval_view, list_row, loss_rows
from steep.studio.state import Studio


def router(studio: Studio) -> APIRouter:
    routes = APIRouter()
    hub = studio.hub
    jobs = model_jobs.ModelJobs(studio.home)

    @routes.get("/models", response_class=HTMLResponse)
    def models_page(request: Request) -> HTMLResponse:
        models = [{**m, "view": list_row(m)} for m in hub.models()]
        return studio.page(request, "models.html", title="Models", models=models, legend=LEGEND)

    @routes.get("/models/{name}", response_class=HTMLResponse)
    def model_page(request: Request, name: str) -> HTMLResponse:
        model = studio.hub_call(hub.model, name)
        card = Path(model["card"]).read_text(encoding="utf-8") if model.get("card") else ""
        lineage = model.get("lineage") or {}
        evaluate = actions.eval_argv(model)
        return studio.page(
            request,
            "model.html",
            title=f"Model {name}",
            model=model,
            card_html=render(card) if card else "",
            config_yaml=yaml.safe_dump(lineage["config"], sort_keys=False)
            if lineage.get("config")
            else "",
            losses=loss_rows(lineage.get("metrics") or model.get("metrics")),
            ev=eval_view(model.get("eval_report"), lineage),
            legend=LEGEND,
            eval_hint=model_jobs.cli_line(evaluate) if evaluate else None,
            quants=actions.QUANTS,
            formats=actions.EXPORT_FORMATS,
            new_run_url=f"/runs/new?base={quote(model['path'], safe='')}",
            jobs=[j.view() for j in jobs.jobs(name)],
            max_new_tokens=actions.MAX_NEW_TOKENS,
            merge_ok=bool(lineage.get("config")),
            passkey_help=actions.PASSKEY_HELP,
            merge_methods=actions.MERGE_METHODS,
        )

    @routes.get("/api/models")
    def api_models() -> list[dict[str, Any]]:
        return hub.models()

    @routes.get("/api/models/{name}")
    def api_model(name: str) -> dict[str, Any]:
        return studio.hub_call(hub.model, name)

    @routes.get("/api/models/{name}/download")
    def api_download(name: str) -> StreamingResponse:
        model = studio.hub_call(hub.model, name)
        folder = Path(model["path"])
        if not folder.is_dir():
            raise HTTPException(404, f"model {name}: folder {folder} is gone")
        safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in name)
        return StreamingResponse(
            zip_folder(folder, safe),
            media_type="application/zip",
            headers={"Content-Disposition": f'attachment; filename="{safe}.zip"'},
        )

    @routes.get("/api/models/{name}/jobs")
    def api_model_jobs(name: str) -> list[dict[str, Any]]:
        return [j.view() for j in jobs.jobs(name)]

    @routes.get("/api/model-jobs/{job_id}")
    def api_model_job(job_id: int) -> dict[str, Any]:
        job = jobs.get(job_id)
        if job is None:
            raise HTTPException(404, f"no model job {job_id}")
        return job.view()

    @routes.get("/api/model-jobs/{job_id}/merge.png")
    def api_merge_plot(job_id: int) -> FileResponse:
        """A merge job's plot (loss against alpha; gain against regression)."""
        job = jobs.get(job_id)
        path = job.folder / model_jobs.OUT_DIR / model_jobs.MERGE_PNG if job else None
        if path is None or job.action != "merge" or not path.is_file():
            raise HTTPException(404, f"no merge plot for model job {job_id}")
        return FileResponse(path, media_type="image/png")

    @routes.post("/api/models/{name}/{action}")
    def api_action(name: str, action: str, body: dict[str, Any]) -> JSONResponse:
        """Start an action: the CLI command as a job; a refusal is one line (400, or 409
        while another action runs on the model)."""
        model = studio.hub_call(hub.model, name)
        files: dict[str, str] = {}
        try:
            if action == "evaluate":
                argv = actions.eval_argv(model, str(body.get("passkey") or ""))
                if argv is None:
                    raise actions.ActionError(
                        f"model {name} has no run with eval sets to evaluate on; use "
                        "`steep eval MODEL --sets NAME=PATH` from the CLI"
                    )
            elif action == "export":
                argv = actions.export_argv(
                    name,
                    str(body.get("dest") or ""),
                    str(body.get("format") or "hf"),
                    body.get("quant") or None,
                    studio.home,
                )
            elif action == "push":
                argv = actions.push_argv(
                    name, str(body.get("repo_id") or ""), bool(body.get("private"))
                )
            elif action == "merge":
                bound = body.get("max_regression")
                argv = actions.merge_argv(
                    model,
                    str(body.get("alphas") or ""),
                    None if bound in (None, "") else _number(body, "max_regression", float, None),
                    str(body.get("save") or "").strip(),
                    studio.home,
                    str(body.get("method") or "linear"),
                )
            elif action == "generate":
                prompt = str(body.get("prompt") or "")
                if not prompt.strip():
                    raise actions.ActionError("prompt: write something for the model to continue")
                argv = actions.generate_argv(
                    model["path"],
                    _number(body, "max_new_tokens", int, 48),
                    _number(body, "temperature", float, 0.0),
                )
                files[model_jobs.PROMPTS_FILE] = json.dumps({"prompt": prompt}) + "\n"
            else:
                raise HTTPException(
                    404, f"no model action {action!r}: {', '.join(model_jobs.ACTIONS)}"
                )
            job = jobs.submit(name, action, argv, files)
        except model_jobs.ModelJobError as exc:
            return JSONResponse({"error": str(exc)}, status_code=409)
        except SteepError as exc:
            return JSONResponse({"error": str(exc).splitlines()[0]}, status_code=400)
        return JSONResponse(job.view())

    return routes


def _number(body: dict[str, Any], key: str, kind: type, default: Any) -> Any:
    value = body.get(key, default)
    try:
        return kind(default if value in (None, "") else value)
    except (TypeError, ValueError):
        raise actions.ActionError(f"{key.replace('_', ' ')}: {value!r} is not a number") from None
