"""The Model Hub's actions (evaluate, export, push, generate, merge) as studio jobs.

Each action is the CLI command itself (``steep eval``, ``steep models export``, ``steep
models push``) run as a child process through ``steep.studio.wrap``, as training jobs
are: the wrapper writes the job's pid, its log (progress bars included) and ``exit.json``,
so a job's state is read from its folder and outlives a studio restart. A job's folder
``$STEEP_HOME/studio/model-jobs/N/`` holds ``job.json`` (model, action, argv) beside
them. One action per model at a time: a second is refused with a line naming the first
(an eval and an export of one folder would read it while a card is rewritten).
"""

from __future__ import annotations

import fcntl
import json
import os
import shlex
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from steep.artifacts.atomic import write_text
from steep.errors import SteepError
from steep.studio.jobs import read_exit
from steep.studio.runner import alive

ACTIONS = ("evaluate", "export", "push", "generate", "merge")
MERGE_JSON = "merge.json"  # a merge job's curve, in its --out folder (steep.eval.merge_save)
MERGE_PNG = "merge.png"
JOB_FILE = "job.json"
OUT_DIR = "out"  # a generate job's `steep eval --out`
PROMPTS_FILE = "prompts.jsonl"  # a generate job's prompt, as `steep eval --prompts` reads it
STEEP_COMMAND: list[str] | None = None  # None: this Python's `-m steep` (tests hold it)
START_GRACE_S = 30.0  # a job whose wrapper wrote no pid after this never started


class ModelJobError(SteepError):
    """An action that cannot start now (another runs on the model); one line."""


def cli_line(argv: list[str]) -> str:
    """``steep ARGS`` as a user would type it: the hint and the job's own command agree."""
    return shlex.join(["steep", *argv])


@dataclass
class ModelJob:
    id: int
    model: str
    action: str
    argv: list[str]
    folder: Path
    created: float

    @property
    def log_path(self) -> Path:
        return self.folder / "log.txt"

    @property
    def status(self) -> str:
        """running until the wrapper records an exit; failed when it died without one."""
        for look in range(2):  # it may finish between the looks
            record = read_exit(self.folder / "exit.json")
            if record is not None:
                return "done" if int(record["code"]) == 0 else "failed"
            if look:
                break
            pid_file = self.folder / "pid"
            if not pid_file.exists():  # the wrapper not yet up, or it never started
                return "running" if time.time() - self.created < START_GRACE_S else "failed"
            if alive(int(pid_file.read_text() or 0), None):
                return "running"
        return "failed"

    def log_lines(self) -> list[str]:
        try:
            text = self.log_path.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return []
        # splitlines() splits at a progress bar's \r too: each state is a line, newest last
        return [line.strip() for line in text.splitlines() if line.strip()]

    def view(self) -> dict[str, Any]:
        """What the model page polls: the state, the newest progress line, the error line."""
        status, lines = self.status, self.log_lines()
        out: dict[str, Any] = {
            "id": self.id,
            "model": self.model,
            "action": self.action,
            "command": cli_line(self.argv),
            "status": status,
            "progress": lines[-1] if lines and status == "running" else None,
            "error": _error_line(lines) if status == "failed" else None,
        }
        if self.action == "generate" and status == "done":
            report = self.folder / OUT_DIR / "eval.json"
            samples = json.loads(report.read_text(encoding="utf-8")).get("samples") or []
            out["samples"] = [{"prompt": s["prompt"], "text": s["adapted"]} for s in samples]
        if self.action == "merge" and status == "done":
            out["merge"] = merge_view(self.folder / OUT_DIR / MERGE_JSON)
        return out


def merge_view(path: Path) -> dict[str, Any] | None:
    """A merge job's curve as the page draws it: each point's losses, gain and regression,
    the pick and the saved model; None when the command wrote no curve."""
    try:
        result = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return {
        "method": result.get("method"),
        "sets": list(result.get("base_losses") or {}),
        "curve": result.get("curve") or [],
        "picked": result.get("picked"),
        "max_regression": result.get("max_regression"),
        "saved": result.get("saved"),
        "vocab": (result.get("vocab") or {}).get("note"),
    }


def _error_line(lines: list[str]) -> str:
    """The command's own one-line error (``steep models: error: ...``), else its last line."""
    for line in reversed(lines):
        if ": error: " in line and line.startswith("steep "):
            return line.partition(": error: ")[2]
    return lines[-1] if lines else "the job ended without output"


class ModelJobs:
    """The model actions of one workspace, started with the studio's environment."""

    def __init__(self, home: Path) -> None:
        self.home = home
        self.root = home / "studio" / "model-jobs"
        self._lock = threading.Lock()

    def submit(
        self, model: str, action: str, argv: list[str], files: dict[str, str] | None = None
    ) -> ModelJob:
        """Start ``steep ARGV`` for ``model``; refused while another action runs on it.
        ``files`` (name -> text) are written into the job's folder first."""
        self.root.mkdir(parents=True, exist_ok=True)
        with self._lock, open(self.root / ".lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)  # two studios on one workspace check in turn
            busy = self.active(model)
            if busy is not None:
                raise ModelJobError(
                    f"model {model}: {busy.action} (job {busy.id}) is still running; "
                    "wait for it to finish"
                )
            ids = [int(p.name) for p in self.root.iterdir() if p.name.isdigit()]
            job_id = max(ids, default=0) + 1
            folder = self.root / str(job_id)
            folder.mkdir()
            for name, text in (files or {}).items():
                write_text(folder / name, text)
            job = ModelJob(job_id, model, action, argv, folder, time.time())
            record = {"model": model, "action": action, "argv": argv, "created": job.created}
            write_text(folder / JOB_FILE, json.dumps(record))
            self._start(job)
        return job

    def _start(self, job: ModelJob) -> None:
        env = {**os.environ, "STEEP_HOME": str(self.home), "PYTHONUNBUFFERED": "1"}
        env.setdefault("TQDM_MININTERVAL", "1")  # progress bars: a line a second in the log
        steep = STEEP_COMMAND or [sys.executable, "-m", "steep"]
        cmd = [sys.executable, "-m", "steep.studio.wrap", str(job.folder), "--"]
        proc = subprocess.Popen(
            [*cmd, *steep, *job.argv],
            env=env,
            cwd=str(job.folder),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,  # outlives a studio restart, as training jobs do
        )
        threading.Thread(target=proc.wait, daemon=True).start()  # reaped: no zombie

    def get(self, job_id: int) -> ModelJob | None:
        folder = self.root / str(job_id)
        try:
            record = json.loads((folder / JOB_FILE).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        return ModelJob(
            job_id, record["model"], record["action"], record["argv"], folder, record["created"]
        )

    def jobs(self, model: str | None = None) -> list[ModelJob]:
        """Newest first; ``model``: that model's only."""
        if not self.root.is_dir():
            return []
        ids = sorted((int(p.name) for p in self.root.iterdir() if p.name.isdigit()), reverse=True)
        found = [j for j in (self.get(i) for i in ids) if j is not None]
        return [j for j in found if model is None or j.model == model]

    def active(self, model: str) -> ModelJob | None:
        return next((j for j in self.jobs(model) if j.status == "running"), None)
