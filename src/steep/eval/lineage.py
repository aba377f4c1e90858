"""The model under evaluation: its local folder and what its steep.json says (base, roles)."""

from __future__ import annotations

import logging
from pathlib import Path

from steep.artifacts.lineage import Lineage, try_read_lineage
from steep.artifacts.scores import Role
from steep.model.io import resolve_base

log = logging.getLogger(__name__)


def local_dir(spec: str) -> Path | None:

    path = Path(resolve_base(spec))
    return path if path.is_dir() else None


def model_lineage(spec: str) -> Lineage:
    """The model's ``steep.json``; empty for a plain HF folder, a hub id or a GGUF file, and
    for an unreadable one (with a warning: the eval still runs)."""
    path = local_dir(spec)
    if path is None:
        return Lineage()
    lineage, error = try_read_lineage(path)
    if error:
        log.warning("%s; ignoring its lineage", error)
    return lineage or Lineage()


def lineage_baseline(spec: str) -> str | None:
    """The base a steep-trained model started from, when it is still on this machine."""
    path = model_lineage(spec).base_path
    return str(path) if path and Path(path).is_dir() else None


def lineage_roles(spec: str) -> dict[str, Role]:
    """Roles of the run's own sources and eval sets, by the run config's rules."""
    return model_lineage(spec).roles()
