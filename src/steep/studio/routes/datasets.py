"""The Data Hub pages: the datasets, file uploads and a new dataset from an upload; a
dataset's own page (its versions as ``steep data show`` describes them) and its Prepare
action (``steep data prepare`` as a child job)."""

from __future__ import annotations

import threading
from typing import Any

from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import HTMLResponse, JSONResponse

from steep.data.documents import COMPRESSIONS, TEXT_SUFFIXES
from steep.data.formats.template import packaged_templates
from steep.datahub.catalog import Catalog, CatalogError, DatasetRef, check_name
from steep.datahub.describe import PAGE_ROWS, drop_examples, preview, skipped_at_ingest
from steep.datahub.pipeline import packaged_recipes
from steep.studio import uploads
from steep.studio.ingest_job import IngestJobError, ingest_upload
from steep.studio.prepare_job import PrepareJobs
from steep.studio.state import Studio


def router(studio: Studio) -> APIRouter:
    routes = APIRouter()
    settings, home, hub = studio.settings, studio.home, studio.hub
    dataset_lock = threading.Lock()
    prepare_jobs = PrepareJobs(home)

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
            templates=packaged_templates(),
            limit=settings.max_upload_bytes,
            uploads=uploads.unused_uploads(home),
            accept=",".join(TEXT_SUFFIXES + COMPRESSIONS),  # what `steep data add` reads
            accept_words=" / ".join(s.lstrip(".") for s in TEXT_SUFFIXES),
        )

    @routes.get("/datasets/{name}", response_class=HTMLResponse)
    def dataset_page(request: Request, name: str) -> HTMLResponse:
        """Every version of a dataset, newest first, with what ``steep data show`` says of
        it and a few of its documents; the Prepare form and its jobs."""
        catalog = Catalog(home / "datasets")
        try:
            versions = catalog.versions(check_name(name))
        except CatalogError as exc:
            raise HTTPException(404, str(exc)) from None
        if not versions:
            raise HTTPException(404, f"no dataset named {name!r}")
        rows = {d["ref"]: d for d in hub.datasets() if d["name"] == name}
        return studio.page(
            request,
            "dataset.html",
            title=f"Dataset {name}",
            dataset=name,
            versions=[_version_view(catalog, name, v, rows) for v in reversed(versions)],
            recipes=packaged_recipes(),
            jobs=prepare_jobs.for_dataset(name),
        )

    @routes.get("/api/recipes")
    def api_recipes() -> dict[str, str]:
        """The packaged recipes, name -> what text each is for (``--recipe NAME``)."""
        return packaged_recipes()

    @routes.post("/api/datasets/{name}/prepare")
    def api_prepare(name: str, body: dict[str, Any]) -> JSONResponse:
        """``steep data prepare NAME[@VERSION] --recipe RECIPE`` as a child job."""
        recipe, recipes = str(body.get("recipe", "")), packaged_recipes()
        if recipe not in recipes:
            error = f"recipe {recipe!r} not found: the recipes are {', '.join(recipes)}"
            return JSONResponse({"error": error}, status_code=400)
        version = str(body.get("version") or "")
        try:
            ds = Catalog(home / "datasets").get(f"{name}@{version}" if version else name)
        except CatalogError as exc:
            return JSONResponse({"error": str(exc)}, status_code=404)
        try:
            return JSONResponse(prepare_jobs.start(ds.ref, ds.name, recipe))
        except ValueError as exc:
            return JSONResponse({"error": str(exc)}, status_code=409)

    @routes.get("/api/prepare/{job_id}")
    def api_prepare_job(job_id: str) -> dict[str, Any]:
        try:
            return prepare_jobs.state(job_id)
        except KeyError:
            raise HTTPException(404, f"no prepare job {job_id!r}") from None

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
        return uploads.unused_uploads(home)

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
                    template=str(body["template"]) if body.get("template") else None,
                )
        except (CatalogError, IngestJobError) as exc:
            return JSONResponse({"error": str(exc)}, status_code=400)
        uploads.remove_upload(folder)  # the dataset holds the documents and the files' hashes
        return JSONResponse(studio.hub_call(hub.dataset, ref))

    return routes


def _version_view(catalog: Catalog, name: str, version: int, rows: dict) -> dict[str, Any]:
    """One version for the dataset page: its manifest, the hub's row (runs using it), drop
    reasons with examples, what ingest skipped and a preview of its documents."""
    ref = f"{name}@{version}"
    try:
        ds = catalog.get(DatasetRef(name, version))
        return {
            "ref": ref,
            "version": version,
            "m": ds.manifest,
            "used_by": rows.get(ref, {}).get("used_by", []),
            "drops": drop_examples(ds, 2, max_rows=PAGE_ROWS),
            "skipped": skipped_at_ingest(ds),
            "preview": preview(ds),
        }
    except (CatalogError, OSError) as exc:  # a damaged version: its section says why
        return {"ref": ref, "version": version, "error": str(exc)}
