"""``sweep.json``: where a sweep stands, rewritten atomically after every change.

Format (``"format": "steep-sweep"``, ``"version": 1``)::

    {"format", "version", "created", "updated",
     "spec": {"config", "set", "grid": [{"key", "values"}], "budget_tokens"},
     "config_sha256", "max_regression",
     "points": [{"id", "values", "overrides", "steps", "roles", "run_dir", "log", "status",
                 # once run: "device", "started", "returncode", "seconds",
                 # once scored: "sets", "domain_gain", "general_regression"}],
     "recommendation": null | {"id", "reason", "within_budget", "over_budget",
                               "pareto_front"},
     # after --predict-at / --predict (steep.sweep.predict; docs/formats.md):
     "prediction": {"target_tokens", "law", "fit": {"r2", "holdout_error", ...},
                    "points": [...], "recommended": {...}, "warnings", "notes", ...}}

``run_dir`` and ``log`` are relative to the sweep folder; status is pending, running,
finished or failed. A rerun into the same folder must have the same spec.
"""

from __future__ import annotations

import hashlib
import json
import sys
import threading
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from steep.artifacts.atomic import write_text
from steep.config import load_config
from steep.errors import SteepError
from steep.sweep.plan import Point, Spec
from steep.workspace import Workspace

FORMAT = "steep-sweep"
VERSION = 1
SWEEP_FILE = "sweep.json"
POINTS_DIR = "points"
LOGS_DIR = "logs"


class SweepError(SteepError, ValueError):
    """A sweep that cannot start or continue; the message says why and what to do."""


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


class State:
    """sweep.json in memory; every change is written through, atomically, under a lock."""

    def __init__(self, root: Path, data: dict[str, Any]):
        self.root = root
        self.data = data
        self._lock = threading.Lock()

    @property
    def points(self) -> list[dict[str, Any]]:
        return self.data["points"]

    def point(self, pid: str) -> dict[str, Any]:
        return next(p for p in self.points if p["id"] == pid)

    def update(self, pid: str | None = None, **fields: Any) -> None:
        with self._lock:
            target = self.point(pid) if pid is not None else self.data
            target.update(fields)
            self.data["updated"] = now()
            write_text(self.root / SWEEP_FILE, json.dumps(self.data, indent=2) + "\n")


def open_sweep(spec: Spec, points: list[Point], out: Path | None, max_regression: float) -> State:
    """Create the sweep directory, or reopen it when it holds this same sweep."""
    cfg_path = Path(spec.config)
    if out is None:
        out = Workspace.current().new_sweep_dir(load_config(cfg_path, spec.sets).run.name)
    out = out.resolve()
    old = None
    if (out / SWEEP_FILE).exists():
        old = json.loads((out / SWEEP_FILE).read_text(encoding="utf-8"))
        if Spec.from_json(old["spec"]).to_json() != spec.to_json():
            raise SweepError(
                f"{out} holds another sweep ({old['spec']['config']}, grid "
                f"{[a['key'] for a in old['spec']['grid']]}); use another --out, or "
                f"`steep sweep --resume {out}` to continue that one"
            )
        if old.get("config_sha256") != _sha256(cfg_path):
            print(
                f"warning: {cfg_path} changed since this sweep started; finished points "
                "keep the results of the old config",
                file=sys.stderr,
            )
    elif out.exists() and any(out.iterdir()):
        raise SweepError(f"{out} exists and is not a sweep directory: choose another --out")
    (out / POINTS_DIR).mkdir(parents=True, exist_ok=True)
    (out / LOGS_DIR).mkdir(exist_ok=True)
    previous = {p["id"]: p for p in (old or {}).get("points", [])}
    data = {
        "format": FORMAT,
        "version": VERSION,
        "created": (old or {}).get("created", now()),
        "updated": now(),
        "spec": spec.to_json(),
        "config_sha256": _sha256(cfg_path),
        "max_regression": max_regression,
        "points": [
            {
                **previous.get(p.id, {}),
                "id": p.id,
                "values": p.values,
                "overrides": p.overrides,
                "steps": p.steps,
                "roles": p.roles,
                "run_dir": f"{POINTS_DIR}/{p.id}",
                "log": f"{LOGS_DIR}/{p.id}.log",
                "status": previous.get(p.id, {}).get("status", "pending"),
            }
            for p in points
        ],
        "recommendation": None,
    }
    state = State(out, data)
    state.update()
    return state


def read_sweep(sweep_dir: Path) -> dict[str, Any]:
    """The sweep.json of ``sweep_dir``; SweepError when there is none or it is not one."""
    path = sweep_dir / SWEEP_FILE
    if not path.exists():
        raise SweepError(f"{sweep_dir} is not a sweep directory (no {SWEEP_FILE})")
    data = json.loads(path.read_text(encoding="utf-8"))
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise SweepError(f"{path} is not a steep sweep file")
    return data


def load_spec(sweep_dir: Path) -> Spec:
    return Spec.from_json(read_sweep(sweep_dir)["spec"])
