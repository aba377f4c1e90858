"""The studio's web app: pages over the Model Hub, a JSON API, and the job runner.

Every page is a thin view: listings come from ``steep.hub.Hub`` (the registry the CLI
shares), runs are ``steep train`` processes started by the runner, charts poll
``metrics.jsonl`` through the API. FastAPI was chosen for its typed request handling and
because uvicorn serves it; templates are Jinja2 with autoescaping on.
"""

from __future__ import annotations

import hmac
import json
import os
import stat
import threading
import zipfile
from collections.abc import Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fastapi import FastAPI, HTTPException, Request
from fastapi.responses import (
    HTMLResponse,
    JSONResponse,
    RedirectResponse,
    Response,
    StreamingResponse,
)
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates

from steep.studio import uploads
from steep.studio.forms import PKG_BASE, new_run_dir, resolve_form
from steep.studio.jobs import FINISHED, Job, JobError, JobQueue
from steep.studio.runner import Runner, train_command

HERE = Path(__file__).parent
COOKIE = "steep_token"
TOKEN_HEADER = "x-steep-token"
CSRF_HEADER = "x-steep-request"  # a custom header: a cross-site form or fetch cannot send it
LOCAL_HOSTS = ("127.0.0.1", "localhost", "::1")
MAX_METRICS_CHUNK = 4 << 20  # bytes of metrics.jsonl per poll; the client asks again


@dataclass
class Settings:
    """How the studio runs; the CLI fills it from its flags."""

    home: Path
    token: str | None = None
    trust_remote_code: bool = False
    max_upload_bytes: int = 512 << 20
    max_jobs: int = 1
    poll_s: float = 1.0
    run_jobs: bool = True  # tests drive Runner.tick() themselves
    allowed_hosts: tuple[str, ...] | None = None  # Host header check (DNS rebinding)
    gpus_available: int | None = None


def is_local(host: str) -> bool:
    return host in LOCAL_HOSTS


def check_bind(host: str, token: str | None) -> None:
    """Refuse to serve beyond this machine without a token (raises ValueError)."""
    if not is_local(host) and not token:
        raise ValueError(
            f"--host {host} makes the studio reachable from other machines: give an access "
            "token with --token TOKEN or STEEP_STUDIO_TOKEN (every request must carry it)"
        )
    if token is not None and len(token) < 16:
        raise ValueError("the access token must be at least 16 characters")


def _same(a: str | None, b: str) -> bool:
    return a is not None and hmac.compare_digest(a.encode(), b.encode())


def _error(status: int, message: str, request: Request) -> Response:
    if request.url.path.startswith("/api/"):
        return JSONResponse({"error": message}, status_code=status)
    return HTMLResponse(
        f"<!doctype html><title>steep studio</title><p>{_html_escape(message)}</p>", status
    )


def _html_escape(text: str) -> str:
    import html

    return html.escape(text)


# --- metrics and logs: read incrementally ---------------------------------------------------


def read_jsonl_from(path: Path, offset: int, inode: int | None) -> dict[str, Any]:
    """Complete lines of ``path`` after byte ``offset``; a rewritten file starts over.

    A resumed run rewrites metrics.jsonl (new inode, maybe shorter): ``reset`` tells the
    client to drop what it has and take the records from the top.
    """
    try:
        st = path.stat()
    except OSError:
        return {"records": [], "offset": 0, "inode": None, "reset": offset > 0}
    reset = (inode is not None and st.st_ino != inode) or st.st_size < offset
    if reset:
        offset = 0
    with open(path, "rb") as f:
        f.seek(offset)
        chunk = f.read(MAX_METRICS_CHUNK)
    end = chunk.rfind(b"\n") + 1  # a half-written last line waits for the next poll
    records = []
    for line in chunk[:end].splitlines():
        try:
            rec = json.loads(line)
        except (json.JSONDecodeError, UnicodeDecodeError):
            continue
        if isinstance(rec, dict):
            records.append(rec)
    return {"records": records, "offset": offset + end, "inode": st.st_ino, "reset": reset}


def read_text_from(path: Path, offset: int, limit: int = 256 << 10) -> dict[str, Any]:
    try:
        size = path.stat().st_size
    except OSError:
        return {"text": "", "offset": 0}
    if offset > size:
        offset = 0
    if not offset and size > limit:  # first look at a long log: its tail
        offset = size - limit
    with open(path, "rb") as f:
        f.seek(offset)
        data = f.read(limit)
    return {"text": data.decode("utf-8", "replace"), "offset": offset + len(data)}


# --- model download: a zip written while it is sent -----------------------------------------


class _Pipe:
    """A write-only file for zipfile that hands out what was written (tell, no seek)."""

    def __init__(self) -> None:
        self._buf = bytearray()
        self._pos = 0

    def write(self, data: bytes) -> int:
        self._buf += data
        self._pos += len(data)
        return len(data)

    def tell(self) -> int:
        return self._pos

    def flush(self) -> None:
        pass

    def take(self) -> bytes:
        out = bytes(self._buf)
        self._buf.clear()
        return out


def _regular_files(folder: Path) -> list[Path]:
    """Files under ``folder``, sorted; no hidden entries, no links (to files or folders)."""
    out = []
    for root, dirs, files in os.walk(folder, followlinks=False):
        dirs[:] = [d for d in dirs if not d.startswith(".")]
        for name in files:
            path = Path(root) / name
            if not name.startswith(".") and stat.S_ISREG(path.lstat().st_mode):
                out.append(path)
    return sorted(out)


def zip_folder(folder: Path, root_name: str, chunk: int = 1 << 20) -> Iterator[bytes]:
    """Stream ``folder`` as a zip: constant memory, no temporary file (data descriptors).

    Only regular files are sent, no symlinks and no hidden files (partial writes, trash).
    """
    pipe = _Pipe()
    with zipfile.ZipFile(pipe, "w", allowZip64=True) as zf:
        for path in _regular_files(folder):
            rel = path.relative_to(folder)
            info = zipfile.ZipInfo.from_file(path, f"{root_name}/{rel.as_posix()}")
            text = path.suffix in (".json", ".md", ".txt", ".yaml", ".jinja")
            info.compress_type = zipfile.ZIP_DEFLATED if text else zipfile.ZIP_STORED
            with open(path, "rb") as src, zf.open(info, "w", force_zip64=True) as dst:
                while data := src.read(chunk):
                    dst.write(data)
                    yield pipe.take()
    yield pipe.take()


# --- the app ---------------------------------------------------------------------------------


def create_app(settings: Settings, runner: Runner | None = None) -> FastAPI:
    """Build the studio for one workspace; ``runner`` may be given by tests."""
    home = settings.home.resolve()
    home.mkdir(parents=True, exist_ok=True)
    os.environ["STEEP_HOME"] = str(home)  # the Data Hub code and the jobs read the same place
    from steep.hub import Hub, HubError

    hub = Hub(home)
    queue = JobQueue(home)
    if runner is None:
        env = {**os.environ, "STEEP_HOME": str(home)}
        runner = Runner(
            queue,
            max_jobs=settings.max_jobs,
            command_for=train_command,
            env=env,
            poll_s=settings.poll_s,
            on_finish=lambda job: hub.sync(),
        )

    @asynccontextmanager
    async def lifespan(app: FastAPI):  # noqa: ANN202 - FastAPI's own protocol
        if settings.run_jobs:
            runner.start()
        yield
        runner.stop()  # running jobs go on; the next studio adopts them

    app = FastAPI(title="steep studio", lifespan=lifespan, docs_url=None, redoc_url=None)
    app.state.settings, app.state.queue, app.state.runner, app.state.hub = (
        settings,
        queue,
        runner,
        hub,
    )
    templates = Jinja2Templates(directory=str(HERE / "templates"))
    app.mount("/static", StaticFiles(directory=str(HERE / "static")), name="static")
    dataset_lock = threading.Lock()  # one ingest at a time: it already uses every core

    @app.middleware("http")
    async def guard(request: Request, call_next):  # noqa: ANN202
        if settings.allowed_hosts is not None:
            host = (request.headers.get("host") or "").rsplit(":", 1)[0].strip("[]")
            if host not in settings.allowed_hosts:
                return _error(400, f"unexpected Host header {host!r}", request)
        if settings.token:
            given = request.query_params.get("token")
            if given is not None and request.method == "GET":
                if not _same(given, settings.token):
                    return _error(401, "wrong access token", request)
                url = request.url.remove_query_params("token")
                resp = RedirectResponse(str(url.path) + (f"?{url.query}" if url.query else ""))
                resp.set_cookie(COOKIE, settings.token, httponly=True, samesite="strict")
                return resp
            auth = request.headers.get("authorization", "")
            candidates = (
                request.headers.get(TOKEN_HEADER),
                auth[7:] if auth.lower().startswith("bearer ") else None,
                request.cookies.get(COOKIE),
            )
            if not any(_same(c, settings.token) for c in candidates):
                return _error(
                    401,
                    "this studio needs its access token: open it once as /?token=TOKEN, or "
                    "send the header X-Steep-Token",
                    request,
                )
        if request.method not in ("GET", "HEAD", "OPTIONS") and (
            request.headers.get(CSRF_HEADER) != "1"
        ):
            return _error(
                403,
                "changes need the X-Steep-Request: 1 header (cross-site requests refused)",
                request,
            )
        return await call_next(request)

    def page(request: Request, name: str, **context: Any) -> HTMLResponse:
        context.setdefault("title", name.removesuffix(".html"))
        return templates.TemplateResponse(request, name, {"settings": settings, **context})

    def job_or_404(job_id: int) -> Job:
        try:
            return queue.get(job_id)
        except JobError as exc:
            raise HTTPException(404, str(exc)) from None

    def hub_call(fn: Any, *args: Any) -> Any:
        try:
            return fn(*args)
        except HubError as exc:
            raise HTTPException(404, str(exc)) from None

    def runs_by_path() -> dict[str, dict[str, Any]]:
        return {str(Path(r["path"]).resolve()): r for r in hub.runs()}

    def job_view(job: Job, runs: dict[str, dict[str, Any]]) -> dict[str, Any]:
        out = job.to_dict()
        out.pop("config")
        run = runs.get(str(job.run_dir.resolve()))
        out["run"] = run["name"] if run else None
        out["model"] = run["model"] if run else None
        metrics = (run or {}).get("metrics") or {}
        out["step"], out["loss"] = metrics.get("step"), metrics.get("loss")
        try:
            import yaml

            out["steps"] = yaml.safe_load(job.config)["train"]["steps"]
        except Exception:
            out["steps"] = None
        return out

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException) -> Response:
        return _error(exc.status_code, str(exc.detail), request)

    # --- pages ------------------------------------------------------------------------------

    @app.get("/", include_in_schema=False)
    def index() -> RedirectResponse:
        return RedirectResponse("/datasets")

    @app.get("/datasets", response_class=HTMLResponse)
    def datasets_page(request: Request) -> HTMLResponse:
        return page(
            request,
            "datasets.html",
            title="Data Hub",
            datasets=hub.datasets(),
            limit=settings.max_upload_bytes,
        )

    @app.get("/runs/new", response_class=HTMLResponse)
    def new_run_page(request: Request) -> HTMLResponse:
        bases = [{"label": f"model {m['name']}", "value": m["path"]} for m in hub.models()]
        bases.append({"label": "SmolLM2-135M (offline default, GGUF)", "value": PKG_BASE})
        return page(
            request,
            "new_run.html",
            title="New run",
            datasets=hub.datasets(),
            bases=bases,
            gpus=settings.gpus_available,
        )

    @app.get("/runs", response_class=HTMLResponse)
    def runs_page(request: Request) -> HTMLResponse:
        return page(request, "runs.html", title="Runs")

    @app.get("/runs/{job_id:int}", response_class=HTMLResponse)
    def job_page(request: Request, job_id: int) -> HTMLResponse:
        job = job_or_404(job_id)
        return page(
            request,
            "run.html",
            title=f"Run {job.name} (job {job.id})",
            job=job_view(job, runs_by_path()),
            config=job.config,
            metrics_url=f"/api/jobs/{job.id}/metrics",
        )

    @app.get("/runs/r/{name}", response_class=HTMLResponse)
    def hub_run_page(request: Request, name: str) -> HTMLResponse:
        run = hub_call(hub.run, name)
        import yaml

        return page(
            request,
            "run.html",
            title=f"Run {name}",
            job=None,
            run=run,
            config=yaml.safe_dump(run.get("config"), sort_keys=False),
            metrics_url=f"/api/runs/{name}/metrics",
        )

    @app.get("/models", response_class=HTMLResponse)
    def models_page(request: Request) -> HTMLResponse:
        return page(request, "models.html", title="Models", models=hub.models())

    @app.get("/models/{name}", response_class=HTMLResponse)
    def model_page(request: Request, name: str) -> HTMLResponse:
        model = hub_call(hub.model, name)
        card = Path(model["card"]).read_text(encoding="utf-8") if model.get("card") else ""
        return page(request, "model.html", title=f"Model {name}", model=model, card=card)

    # --- API: data ----------------------------------------------------------------------------

    @app.get("/healthz")
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/api/datasets")
    def api_datasets() -> list[dict[str, Any]]:
        return hub.datasets()

    @app.post("/api/uploads")
    def api_new_upload() -> dict[str, Any]:
        return {"id": uploads.new_upload(home), "limit": settings.max_upload_bytes}

    @app.put("/api/uploads/{upload_id}/{filename}")
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

    @app.post("/api/datasets")
    def api_add_dataset(body: dict[str, Any]) -> JSONResponse:
        """Upload folder -> dataset version 1, through the same code as ``steep data add``."""
        from steep.datahub.catalog import Catalog, CatalogError
        from steep.datahub.executor import LocalExecutor
        from steep.datahub.ingest import add_dataset

        try:
            folder = uploads.upload_dir(home, str(body.get("upload", "")))
        except uploads.UploadError as exc:
            return JSONResponse({"error": str(exc)}, status_code=exc.status)
        files = uploads.uploaded_files(folder)
        if not files:
            return JSONResponse({"error": "the upload holds no files"}, status_code=400)
        try:
            with dataset_lock:
                ds = add_dataset(
                    str(body.get("name", "")),
                    [str(f) for f in files],
                    text_field=str(body.get("text_field") or "text"),
                    langid=bool(body.get("langid", True)),
                    catalog=Catalog(home / "datasets"),
                    executor=LocalExecutor(1),  # inline: no fork() inside a threaded server
                )
        except (CatalogError, FileNotFoundError, ValueError) as exc:
            return JSONResponse({"error": str(exc)}, status_code=400)
        uploads.remove_upload(folder)  # the dataset holds the documents and the files' hashes
        return JSONResponse(hub_call(hub.dataset, ds.ref))

    # --- API: runs ----------------------------------------------------------------------------

    @app.post("/api/config/resolve")
    def api_resolve(body: dict[str, Any]) -> dict[str, Any]:
        return resolve_form(
            body,
            home,
            allow_remote_code=settings.trust_remote_code,
            gpus_available=settings.gpus_available,
        ).to_dict()

    @app.post("/api/jobs")
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

    @app.get("/api/jobs")
    def api_jobs() -> list[dict[str, Any]]:
        runs = runs_by_path()
        return [job_view(j, runs) for j in reversed(queue.jobs())]

    @app.get("/api/runs")
    def api_runs() -> dict[str, Any]:
        """Studio jobs, plus runs started elsewhere (the CLI) that the hub knows."""
        runs = runs_by_path()
        jobs = [job_view(j, runs) for j in reversed(queue.jobs())]
        mine = {str(j.run_dir.resolve()) for j in queue.jobs()}
        other = [r for p, r in runs.items() if p not in mine]
        for r in other:
            r.pop("config", None)
        return {"jobs": jobs, "runs": other}

    @app.get("/api/jobs/{job_id}")
    def api_job(job_id: int) -> dict[str, Any]:
        return job_view(job_or_404(job_id), runs_by_path())

    @app.post("/api/jobs/{job_id}/cancel")
    def api_cancel(job_id: int) -> JSONResponse:
        try:
            job = queue.request_cancel(job_id)
        except JobError as exc:
            status = 404 if "no job" in str(exc) else 409
            return JSONResponse({"error": str(exc)}, status_code=status)
        if settings.run_jobs:
            runner.tick()  # signal it now, not at the next poll
        return JSONResponse(job_or_404(job.id).to_dict())

    @app.get("/api/jobs/{job_id}/log")
    def api_log(job_id: int, offset: int = 0) -> dict[str, Any]:
        job = job_or_404(job_id)
        return {**read_text_from(job.log_path, offset), "status": job.status}

    @app.get("/api/jobs/{job_id}/metrics")
    def api_job_metrics(job_id: int, offset: int = 0, inode: int | None = None) -> dict[str, Any]:
        job = job_or_404(job_id)
        out = read_jsonl_from(job.run_dir / "metrics.jsonl", offset, inode)
        return {**out, "status": job.status, "finished": job.status in FINISHED}

    @app.get("/api/runs/{name}/metrics")
    def api_run_metrics(name: str, offset: int = 0, inode: int | None = None) -> dict[str, Any]:
        run = hub_call(hub.run, name)
        out = read_jsonl_from(Path(run["path"]) / "metrics.jsonl", offset, inode)
        return {**out, "status": run["status"], "finished": run["status"] != "running"}

    # --- API: models --------------------------------------------------------------------------

    @app.get("/api/models")
    def api_models() -> list[dict[str, Any]]:
        return hub.models()

    @app.get("/api/models/{name}")
    def api_model(name: str) -> dict[str, Any]:
        return hub_call(hub.model, name)

    @app.get("/api/models/{name}/download")
    def api_download(name: str) -> StreamingResponse:
        model = hub_call(hub.model, name)
        folder = Path(model["path"])
        if not folder.is_dir():
            raise HTTPException(404, f"model {name}: folder {folder} is gone")
        safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in name)
        return StreamingResponse(
            zip_folder(folder, safe),
            media_type="application/zip",
            headers={"Content-Disposition": f'attachment; filename="{safe}.zip"'},
        )

    return app
