"""The Models pages: the list, one model with its card, and a model folder as a zip."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import HTMLResponse, StreamingResponse

from steep.studio.files import zip_folder
from steep.studio.state import Studio


def router(studio: Studio) -> APIRouter:
    routes = APIRouter()
    hub = studio.hub

    @routes.get("/models", response_class=HTMLResponse)
    def models_page(request: Request) -> HTMLResponse:
        return studio.page(request, "models.html", title="Models", models=hub.models())

    @routes.get("/models/{name}", response_class=HTMLResponse)
    def model_page(request: Request, name: str) -> HTMLResponse:
        model = studio.hub_call(hub.model, name)
        card = Path(model["card"]).read_text(encoding="utf-8") if model.get("card") else ""
        return studio.page(request, "model.html", title=f"Model {name}", model=model, card=card)

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

    return routes
