"""The Data Hub page: the datasets, file uploads and a new dataset from an upload."""

from __future__ import annotations

import threading
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, JSONResponse

from steep.datahub.catalog import Catalog, CatalogError, check_name
from steep.datahub.describe import skipped_at_ingest
from steep.studio import uploads
from steep.studio.ingest_job import IngestJobError, ingest_upload
from steep.studio.state import Studio


def router(studio: Studio) -> APIRouter:
    routes = APIRouter()
    settings, home, hub = studio.settings, studio.home, studio.hub
    dataset_lock = threading.Lock()

    @routes.get("/datasets", response_class=HTMLResponse)
    def datasets_page(request: Request) -> HTMLResponse:
        datasets = hub.datasets()
        catalog = Catalog(home / "datasets")
        skipped = {}
        for d in datasets:
            try:
                skipped[d["ref"]] = skipped_at_ingest(catalog.get(d["ref"]))
            except (CatalogError, OSError):  # a damaged version: its row shows the error
                skipped[d["ref"]] = []
        return studio.page(
            request,
            "datasets.html",
            title="Data Hub",
            datasets=datasets,
            skipped=skipped,
            limit=settings.max_upload_bytes,
        )

    @routes.get("/api/datasets")
    def api_datasets() -> list[dict[str, Any]]:
        return hub.datasets()

    @routes.post("/api/uploads")
    def api_new_upload() -> dict[str, Any]:
        return {"id": uploads.new_upload(home), "limit": settings.max_upload_bytes}

    @routes.put("/api/uploads/{upload_id}/{filename}")
    async def api_upload_file(upload_id: str, filename: str, request: Request) -> JSONResponse:
        try:
            folder = uploads.upload_dir(home, upload_id)
            declared = request.headers.get("content-length")
            size = await uploads.save_stream(
                folder,
                filename,
                request.stream(),
                settings.max_upload_bytes,
                int(declared) if declared and declared.isdigit() else None,
            )
        except uploads.UploadError as exc:
            return JSONResponse({"error": str(exc)}, status_code=exc.status)
        return JSONResponse({"name": filename, "bytes": size})

    @routes.get("/api/uploads")
    def api_uploads() -> list[dict[str, Any]]:
        """Uploads not (yet) turned into a dataset: an ingested upload is removed."""
        root = uploads.uploads_root(home)
        folders = sorted(p for p in root.iterdir() if p.is_dir()) if root.is_dir() else []
        return [
            {"id": f.name, "files": [x.name for x in uploads.uploaded_files(f)],
             "bytes": uploads.used_bytes(f)}
            for f in folders
        ]  # fmt: skip

    @routes.delete("/api/uploads/{upload_id}")
    def api_delete_upload(upload_id: str) -> JSONResponse:
        try:
            folder = uploads.upload_dir(home, upload_id)
        except uploads.UploadError as exc:
            return JSONResponse({"error": str(exc)}, status_code=exc.status)
        uploads.remove_upload(folder)
        return JSONResponse({"removed": upload_id})

    @routes.post("/api/datasets")
    def api_add_dataset(body: dict[str, Any]) -> JSONResponse:
        """Upload folder -> dataset version 1, through the same code as ``steep data add``."""
        try:
            folder = uploads.upload_dir(home, str(body.get("upload", "")))
        except uploads.UploadError as exc:
            return JSONResponse({"error": str(exc)}, status_code=exc.status)
        files = uploads.uploaded_files(folder)
        if not files:
            return JSONResponse({"error": "the upload holds no files"}, status_code=400)
        name = str(body.get("name", ""))
        try:
            check_name(name)  # before a process is started for it
            with dataset_lock:  # one ingest at a time
                ref = ingest_upload(
                    home,
                    name,
                    files,
                    text_field=str(body.get("text_field") or "text"),
                    langid=bool(body.get("langid", True)),
                )
        except (CatalogError, IngestJobError) as exc:
            return JSONResponse({"error": str(exc)}, status_code=400)
        uploads.remove_upload(folder)  # the dataset holds the documents and the files' hashes
        return JSONResponse(studio.hub_call(hub.dataset, ref))

    return routes
