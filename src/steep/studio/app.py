"""The studio's web app: pages over the Model Hub, a JSON API, and the job runner.

Every page is a thin view: listings come from ``steep.hub.Hub`` (the registry the CLI
shares), runs are ``steep train`` processes started by the runner, charts poll
``metrics.jsonl`` through the API. FastAPI was chosen for its typed request handling and
because uvicorn serves it; templates are Jinja2 with autoescaping on.

``create_app`` builds one studio: the shared state (``state.Studio``), the access checks
(``auth``), and the routes of each page (``routes/``).
"""

from __future__ import annotations

import contextlib
import os
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates
from starlette.exceptions import HTTPException as StarletteHTTPException

from steep.artifacts.fmt import data_size, timestamp
from steep.hub import Hub
from steep.studio import uploads
from steep.studio.auth import add_guard, check_token, error_response
from steep.studio.jobs import JobQueue
from steep.studio.routes import routers
from steep.studio.runner import Runner, slurm_command, train_command
from steep.studio.state import Settings, Studio

__all__ = ["Settings", "create_app"]

HERE = Path(__file__).parent


def create_app(settings: Settings, runner: Runner | None = None) -> FastAPI:
    """Build the studio for one workspace; ``runner`` may be given by tests."""
    if settings.token:
        check_token(settings.token)  # the CLI checked it; an app built in code is checked too
    home = settings.home.resolve()
    home.mkdir(parents=True, exist_ok=True)
    os.environ["STEEP_HOME"] = str(home)  # the Data Hub code and the jobs read the same place

    hub = Hub(home)
    queue = JobQueue(home)
    uploads.set_workspace_limit(home, settings.max_workspace_upload_bytes)
    if runner is None:
        env = {**os.environ, "STEEP_HOME": str(home)}
        runner = Runner(
            queue,
            max_jobs=settings.max_jobs,
            command_for=train_command if settings.slurm is None else slurm_command(settings.slurm),
            env=env,
            poll_s=settings.poll_s,
            on_finish=lambda job: hub.sync(),
        )

    @asynccontextmanager
    async def lifespan(app: FastAPI):  # noqa: ANN202 - FastAPI's own protocol
        if settings.run_jobs:
            runner.start()  # first: its thread, and the jobs it starts, keep normal priority
            yield_to_jobs()
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
    templates.env.filters.update(when=timestamp, data_size=data_size)  # one format (fmt)
    app.mount("/static", StaticFiles(directory=str(HERE / "static")), name="static")
    add_guard(app, settings)
    studio = Studio(settings, home, hub, queue, runner, templates)

    @app.exception_handler(StarletteHTTPException)  # a route's 404 and an unknown path
    async def http_error(request: Request, exc: StarletteHTTPException) -> Response:
        if request.url.path.startswith("/api/"):
            return error_response(exc.status_code, str(exc.detail), request)
        # a page keeps the navigation, so a wrong link is not a dead end
        return studio.page(
            request,
            "error.html",
            title=f"Error {exc.status_code}",
            message=str(exc.detail),
            status_code=exc.status_code,
        )

    @app.exception_handler(RequestValidationError)
    async def bad_parameter(request: Request, exc: RequestValidationError) -> Response:
        """A parameter out of range (offset=-1, an id past 2**63) in one line, not a 500."""
        return error_response(422, validation_message(exc), request)

    @app.get("/", include_in_schema=False)
    def index() -> RedirectResponse:
        return RedirectResponse("/datasets")

    @app.get("/healthz")
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    for router in routers(studio):
        app.include_router(router)
    return app


def yield_to_jobs(niceness: int = 10) -> None:
    """Serve pages at a lower CPU priority than training. On a small machine a job's torch
    threads use every core, and a burst of polls that takes one away stalls each of the
    job's parallel ops, not just a share of them. Linux keeps a nice value per thread and
    new threads inherit it: this lowers the event loop's thread and so every request
    thread created after it, while the runner's thread, started before, and the jobs it
    forks keep theirs."""
    with contextlib.suppress(OSError, AttributeError):  # not Linux, or not allowed
        os.setpriority(os.PRIO_PROCESS, 0, niceness)


def validation_message(exc: RequestValidationError) -> str:
    """FastAPI's list of errors as one line: ``offset (query): Input should be ...``."""
    parts = []
    for err in exc.errors():
        where, *names = [str(p) for p in err.get("loc", ())] or ["request"]
        field = f"{'.'.join(names)} ({where})" if names else where
        parts.append(f"{field}: {err.get('msg', 'invalid')}")
    return "; ".join(parts)
