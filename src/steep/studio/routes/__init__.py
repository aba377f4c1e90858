"""The studio's routes, one module per page with the API calls that page makes.

Each module has ``router(studio)``: an ``APIRouter`` whose handlers share one ``Studio``
(settings, hub, job queue, runner, templates); ``create_app`` includes them in order.
"""

from __future__ import annotations

from fastapi import APIRouter

from steep.studio.routes import compare, datasets, jobs, models, new_run, runs
from steep.studio.state import Studio


def routers(studio: Studio) -> list[APIRouter]:
    """Every route of the studio; paths with several methods keep their order."""
    return [m.router(studio) for m in (datasets, new_run, runs, jobs, models, compare)]
