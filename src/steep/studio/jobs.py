"""The studio's job queue: one row per launched run, in the registry's SQLite file.

The queue lives in ``$STEEP_HOME/hub.sqlite`` (table ``jobs``, made by the hub's schema
migrations in ``steep.hub.schema`` when ``Hub`` opens the file) so that it outlives the
studio process. A job moves

    queued -> starting -> running -> done | failed | cancelled

and every move is a compare-and-set ``UPDATE ... WHERE status = <expected>``: two studios
(or a studio restarted mid-claim) can never both start the same job, because only one
UPDATE finds the row still ``queued``.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from steep.config.load import expand_path
from steep.errors import SteepError
from steep.hub import Hub
from steep.workspace import CONFIG_FILE, Workspace

ACTIVE = ("queued", "starting", "running")
FINISHED = ("done", "failed", "cancelled")


class JobError(SteepError, ValueError):
    """A job request that cannot be honoured (unknown id, wrong state)."""


@dataclass
class Job:
    id: int
    name: str
    status: str
    config: str
    run_dir: Path
    job_dir: Path
    nproc: int
    cuda_visible_devices: str | None
    pid: int | None
    pid_start: str | None
    exit_code: int | None
    error: str | None
    cancel_requested: float | None
    claimed_by: str | None
    created: float
    started: float | None
    finished: float | None
    resume: int = 0  # 1: `steep train --resume run_dir` (its own config.yaml)

    @property
    def log_path(self) -> Path:
        return self.job_dir / "log.txt"

    @property
    def exit_path(self) -> Path:
        return self.job_dir / "exit.json"

    @property
    def pid_path(self) -> Path:
        return self.job_dir / "pid"

    @property
    def config_path(self) -> Path:
        return self.job_dir / CONFIG_FILE

    def to_dict(self) -> dict[str, Any]:
        out = {k: getattr(self, k) for k in self.__dataclass_fields__}
        out["run_dir"], out["job_dir"] = str(self.run_dir), str(self.job_dir)
        return out

    @classmethod
    def from_row(cls, row: sqlite3.Row) -> Job:
        values = dict(row)
        values["run_dir"], values["job_dir"] = Path(values["run_dir"]), Path(values["job_dir"])
        return cls(**values)


class JobQueue:
    """Persistent queue operations; each call opens its own short connection (thread-safe)."""

    def __init__(self, home: Path) -> None:

        self.home = home
        self.hub = Hub(home)  # owns the SQLite file: WAL mode, busy timeout, the jobs table
        self.jobs_root = Workspace(home).studio_jobs
        self._resolved: dict[int, str] = {}  # job id -> its run folder, resolved

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        """One write transaction, locked up front (BEGIN IMMEDIATE) so writers queue."""
        conn = self.hub.connect()
        try:
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield conn
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")
        finally:
            conn.close()

    @contextmanager
    def _read(self) -> Iterator[sqlite3.Connection]:
        conn = self.hub.connect()
        try:
            yield conn
        finally:
            conn.close()

    def submit(
        self,
        name: str,
        config_yaml: str,
        run_dir: Path,
        nproc: int = 1,
        cuda_visible_devices: str | None = None,
        resume: bool = False,
    ) -> Job:
        """Queue a job; its folder and config file are written before the row is visible."""
        now = time.time()
        with self._tx() as db:  # the row appears with its folder ready, or not at all
            cur = db.execute(
                "INSERT INTO jobs (name, status, config, run_dir, job_dir, nproc, "
                "cuda_visible_devices, created, resume) VALUES (?, 'queued', ?, ?, '', ?, ?, ?, ?)",
                (name, config_yaml, str(run_dir), nproc, cuda_visible_devices, now, int(resume)),
            )
            job_id = int(cur.lastrowid or 0)
            job_dir = self.jobs_root / str(job_id)
            job_dir.mkdir(parents=True, exist_ok=True)
            (job_dir / CONFIG_FILE).write_text(config_yaml, encoding="utf-8")
            db.execute("UPDATE jobs SET job_dir = ? WHERE id = ?", (str(job_dir), job_id))
        return self.get(job_id)

    def get(self, job_id: int) -> Job:
        with self._read() as db:
            row = db.execute("SELECT * FROM jobs WHERE id = ?", (job_id,)).fetchone()
        if row is None:
            raise JobError(f"no job {job_id}")
        return Job.from_row(row)

    def jobs(
        self,
        statuses: tuple[str, ...] | None = None,
        *,
        name: str | None = None,
        newest_first: bool = False,
        limit: int | None = None,
        offset: int = 0,
    ) -> list[Job]:
        """Jobs by id (``newest_first``: a page of the Runs list), filtered in SQL so a page
        costs the same whatever the history holds."""
        where, args = self._filter(statuses, name)
        order = "DESC" if newest_first else "ASC"
        page = " LIMIT ? OFFSET ?" if limit is not None else ""
        args += [limit, offset] if limit is not None else []
        with self._read() as db:
            rows = db.execute(f"SELECT * FROM jobs{where} ORDER BY id {order}{page}", args)
            return [Job.from_row(r) for r in rows.fetchall()]

    def run_dirs(self, statuses: tuple[str, ...] | None = None) -> set[str]:
        """The resolved run folders of the jobs (in ``statuses``): one column, no configs."""
        where, args = self._filter(statuses, None)
        with self._read() as db:
            rows = db.execute(f"SELECT id, run_dir FROM jobs{where}", args).fetchall()
        out = set()
        for job_id, run_dir in rows:
            if job_id not in self._resolved:  # a job's folder never moves: resolve it once
                self._resolved[job_id] = str(Path(run_dir).resolve())
            out.add(self._resolved[job_id])
        return out

    def using(self, folder: Path) -> list[tuple[Job, str]]:
        """(job, how) for each queued or running job that needs ``folder`` or a file in it:
        it resumes a run there, or starts from a model or tokenizer there. Deleting such a
        folder would make the job fail when it starts (or mid-run)."""
        root = folder.resolve()
        out = []
        for job in self.jobs(ACTIVE):
            if _within(job.run_dir, root):
                out.append((job, "resumes it" if job.resume else "writes into it"))
                continue
            for key, what in (("base", "model"), ("tokenizer", "tokenizer")):
                value = _model_value(job.config, key)
                if value is not None and _within(Path(expand_path(value)), root):
                    out.append((job, f"starts from its {what}"))
                    break
        return out

    def count(self, statuses: tuple[str, ...] | None = None, name: str | None = None) -> int:
        where, args = self._filter(statuses, name)
        with self._read() as db:
            return int(db.execute(f"SELECT COUNT(*) FROM jobs{where}", args).fetchone()[0])

    @staticmethod
    def _filter(statuses: tuple[str, ...] | None, name: str | None) -> tuple[str, list[Any]]:
        clauses, args = [], []
        if statuses:
            clauses.append(f"status IN ({','.join('?' * len(statuses))})")
            args += list(statuses)
        if name:
            clauses.append("instr(lower(name), lower(?)) > 0")
            args.append(name)
        return (" WHERE " + " AND ".join(clauses) if clauses else ""), args

    def claim_next(self, owner: str) -> Job | None:
        """Take the oldest queued job, or None. Compare-and-set: at most one caller wins it."""
        while True:
            with self._tx() as db:
                row = db.execute(
                    "SELECT id FROM jobs WHERE status = 'queued' ORDER BY id LIMIT 1"
                ).fetchone()
                if row is None:
                    return None
                cur = db.execute(
                    "UPDATE jobs SET status = 'starting', claimed_by = ?, started = ? "
                    "WHERE id = ? AND status = 'queued'",
                    (owner, time.time(), row["id"]),
                )
                won = cur.rowcount == 1
            if won:
                return self.get(row["id"])
            # someone else took it between our SELECT and UPDATE: look again

    def transition(self, job_id: int, expected: tuple[str, ...], **values: Any) -> bool:
        """Set columns if the job is still in one of ``expected`` states; True if it was."""
        cols = ", ".join(f"{k} = ?" for k in values)
        marks = ",".join("?" * len(expected))
        with self._tx() as db:
            cur = db.execute(
                f"UPDATE jobs SET {cols} WHERE id = ? AND status IN ({marks})",
                (*values.values(), job_id, *expected),
            )
            return cur.rowcount == 1

    def request_cancel(self, job_id: int) -> Job:
        """Queued jobs are cancelled at once; running ones are flagged for the runner."""
        job = self.get(job_id)
        if job.status in FINISHED:
            raise JobError(f"job {job_id} is already {job.status}")
        now = time.time()
        if not self.transition(
            job_id, ("queued",), status="cancelled", finished=now, error="cancelled before start"
        ):
            self.transition(job_id, ("starting", "running"), cancel_requested=now)
        return self.get(job_id)


def _within(path: Path, root: Path) -> bool:
    """``path`` is ``root`` or lies in it (an absolute path, symlinks resolved)."""
    if not path.is_absolute():
        return False
    real = path.resolve()
    return real == root or root in real.parents


def _model_value(config_yaml: str, key: str) -> str | None:
    """``model.<key>`` of a job's stored config, or None (a config that does not parse
    names nothing the job could start from)."""
    try:
        config = yaml.safe_load(config_yaml)
    except yaml.YAMLError:
        return None
    model = config.get("model") if isinstance(config, dict) else None
    value = model.get(key) if isinstance(model, dict) else None
    return value if isinstance(value, str) else None


def read_exit(path: Path) -> dict[str, Any] | None:
    """The wrapper's exit record, or None while the job runs (or if it never wrote one)."""
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return None
