"""``steep data prepare`` from the studio: the command itself in a child process per job.

A recipe runs for minutes to hours, so the request that starts it only starts it: the
child is ``steep data prepare REF --recipe NAME`` (the CLI's own code, as the studio's
ingest is ``steep data add``), its output goes to files in the job's folder, and a thread
writes ``exit.json`` when it ends. The dataset page polls ``state``: running with the
progress bar's last line, then done with the new version's ref, or failed with the
command's one-line error. The folder outlives the studio, so a finished job is still
listed after a restart; one that was running when the studio stopped reads as stopped.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from steep.artifacts.atomic import write_text
from steep.studio.ingest_job import command_error
from steep.workspace import Workspace

_ID = re.compile(r"^[0-9a-f]{12}$")
_ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
_SHOWN = re.compile(r"^(\S+@\d+)  \(", re.MULTILINE)
TAIL_BYTES = 4096  # the progress line is near the end of the log


class PrepareJobs:
    """The prepare jobs of one workspace: start one, read one's state, list a dataset's."""

    def __init__(self, home: Path) -> None:
        self.home = home
        self.root = Workspace(home).studio_data_jobs
        self._threads: dict[str, threading.Thread] = {}
        self._lock = threading.Lock()

    def start(self, ref: str, name: str, recipe: str) -> dict[str, Any]:
        """Start ``steep data prepare ref --recipe recipe``; refused (ValueError) while a
        prepare of the same dataset runs, as both would build the same next version."""
        with self._lock:
            if any(j["status"] == "running" for j in self.for_dataset(name)):
                raise ValueError(f"a prepare of {name} is already running; wait for it")
            job_id = secrets.token_hex(6)
            folder = self.root / job_id
            folder.mkdir(parents=True)
            record = {"id": job_id, "ref": ref, "name": name, "recipe": recipe}
            write_text(folder / "job.json", json.dumps({**record, "started": time.time()}))
            cmd = [sys.executable, "-m", "steep", "data", "prepare", ref, "--recipe", recipe]
            env = {**os.environ, "STEEP_HOME": str(self.home), "TQDM_MININTERVAL": "1"}
            with open(folder / "out.txt", "wb") as out, open(folder / "log.txt", "wb") as log:
                proc = subprocess.Popen(cmd, stdout=out, stderr=log, env=env)
            thread = threading.Thread(target=self._wait, args=(proc, folder), daemon=True)
            self._threads[job_id] = thread
            thread.start()
        return self.state(job_id)

    def _wait(self, proc: subprocess.Popen, folder: Path) -> None:
        code = proc.wait()
        out = (folder / "out.txt").read_text(encoding="utf-8", errors="replace")
        log = (folder / "log.txt").read_text(encoding="utf-8", errors="replace")
        result: dict[str, Any] = {"code": code, "finished": time.time()}
        made = _SHOWN.findall(out)  # show_dataset's head line: "NAME@N  (path)"
        if code == 0 and made:
            result["result"] = made[-1]
        else:
            result["error"] = command_error(log, code)
        write_text(folder / "exit.json", json.dumps(result))

    def state(self, job_id: str) -> dict[str, Any]:
        """A job as the page shows it; KeyError for an id that is not a job here."""
        folder = self.root / job_id if _ID.match(job_id) else None
        if folder is None or not (folder / "job.json").is_file():
            raise KeyError(job_id)
        job = json.loads((folder / "job.json").read_text(encoding="utf-8"))
        try:
            ended = json.loads((folder / "exit.json").read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError):
            ended = None
        if ended is not None:
            job.update(ended, status="done" if ended["code"] == 0 else "failed")
        elif (thread := self._threads.get(job_id)) is not None and thread.is_alive():
            job.update(status="running", progress=progress_line(folder / "log.txt"))
        else:
            job.update(status="failed", error="stopped: the studio ended while it ran")
        return job

    def for_dataset(self, name: str) -> list[dict[str, Any]]:
        """The prepare jobs of a dataset, newest first."""
        if not self.root.is_dir():
            return []
        jobs = []
        for folder in self.root.iterdir():
            try:
                job = self.state(folder.name)
            except (KeyError, OSError, json.JSONDecodeError):
                continue  # a folder being written, or not a job's
            if job["name"] == name:
                jobs.append(job)
        return sorted(jobs, key=lambda j: -j["started"])


def progress_line(log: Path) -> str:
    """The last line the child wrote (a progress bar redraws with carriage returns)."""
    try:
        with open(log, "rb") as f:
            f.seek(max(0, f.seek(0, os.SEEK_END) - TAIL_BYTES))
            tail = f.read().decode("utf-8", errors="replace")
    except OSError:
        return ""
    lines = [x.strip() for x in re.split(r"[\r\n]", _ANSI.sub("", tail)) if x.strip()]
    return lines[-1] if lines else "starting"
