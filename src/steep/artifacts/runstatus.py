"""``status.json`` in a run folder: is the run going, finished, or did it fail, and why.

The training loop writes it (running at the start, done once the model is saved, failed
with the error); the hub reads it when it syncs, so a run started from any process or
library call shows up with the right status, and training never depends on the hub.
A ``running`` run whose process is gone (same host) is reported failed by the reader.
"""

from __future__ import annotations

import json
import os
import socket
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

from steep.artifacts.atomic import write_text
from steep.workspace import STATUS_FILE

State = Literal["running", "done", "failed", "cancelled"]
STATES: tuple[State, ...] = ("running", "done", "failed", "cancelled")


@dataclass(frozen=True)
class RunStatus:
    state: State
    pid: int | None = None
    host: str | None = None
    error: str | None = None
    time: float | None = None
    # before the first step: what the run is doing ({what, done, total, time}; bytes)
    phase: dict[str, Any] | None = None


def write_status(
    run_dir: Path, state: State, error: str | None = None, phase: dict[str, Any] | None = None
) -> None:
    """Record ``state`` for this process; never raises (a status must not stop training)."""
    status = RunStatus(state, os.getpid(), socket.gethostname(), error, time.time(), phase)
    try:
        write_text(Path(run_dir) / STATUS_FILE, json.dumps(asdict(status)) + "\n")
    except OSError as exc:
        print(f"warning: could not write {Path(run_dir) / STATUS_FILE}: {exc}")


def read_status(run_dir: Path) -> RunStatus | None:
    """The recorded status; None when there is none or it is unreadable."""
    try:
        data = json.loads((Path(run_dir) / STATUS_FILE).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None
    if not isinstance(data, dict) or data.get("state") not in STATES:
        return None
    phase = data.get("phase") if isinstance(data.get("phase"), dict) else None
    return RunStatus(
        data["state"], data.get("pid"), data.get("host"), data.get("error"), data.get("time"), phase
    )


def failure_text(exc: BaseException) -> str:
    why = "interrupted" if isinstance(exc, KeyboardInterrupt) else f"{type(exc).__name__}: {exc}"
    return why[:2000]
