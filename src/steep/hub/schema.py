"""The registry's SQLite file: every table, the migrations, and opening a connection.

``$STEEP_HOME/hub.sqlite`` holds the hub's tables (datasets, runs, run_sources, models)
and the studio's job queue (jobs). Every table is made here, by a migration, so one
``schema_version`` says what the file holds and any process that opens it through
``open_db`` brings it up to date first (in one transaction, safe against a second
process doing the same). The rows' shapes as the hub's queries return them are here too.
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import sqlite3
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from steep.errors import SteepError
from steep.hub.scan import loads, within

STATUSES = ("running", "done", "failed", "cancelled", "unknown")


class HubError(SteepError):
    """Something a user asked of the hub that cannot be done (and why)."""


# Each entry moves the schema one version up; append, never edit a released one. Statements
# are split on ';' and run in one transaction, so keep ';' out of comments and strings.
MIGRATIONS: list[str] = [
    # 1: the first release (its comments still spell refs name@vN: see 2)
    """
    CREATE TABLE datasets (
        ref TEXT PRIMARY KEY,            -- name@vN
        name TEXT NOT NULL,
        version INTEGER NOT NULL,
        path TEXT NOT NULL UNIQUE,
        documents INTEGER,
        bytes INTEGER,
        languages TEXT,                  -- JSON {lang: documents}
        created TEXT,
        funnel TEXT,                     -- JSON [{step, docs_in, docs_out, ...}]
        manifest_mtime REAL,
        error TEXT
    );
    CREATE TABLE runs (
        name TEXT PRIMARY KEY,
        path TEXT NOT NULL UNIQUE,
        status TEXT NOT NULL CHECK (status IN ('running', 'done', 'failed', 'unknown')),
        created TEXT,
        updated TEXT,
        base TEXT,                       -- model.base as configured (or 'random_init')
        base_path TEXT,                  -- resolved local folder of the base, when local
        lr_fraction REAL,
        steps INTEGER,
        config TEXT,                     -- JSON of config.yaml
        config_mtime REAL,
        metrics TEXT,                    -- JSON summary of metrics.jsonl so far
        metrics_offset INTEGER NOT NULL DEFAULT 0,
        metrics_inode INTEGER,
        pid INTEGER,                     -- the training process, while running
        host TEXT,
        error TEXT
    );
    CREATE TABLE run_sources (
        run TEXT NOT NULL REFERENCES runs(name) ON DELETE CASCADE ON UPDATE CASCADE,
        source TEXT NOT NULL,
        ref TEXT,                        -- name@vN for a Data Hub dataset, NULL for files
        weight REAL,
        paths TEXT,                      -- JSON list, for file sources
        PRIMARY KEY (run, source)
    );
    CREATE TABLE models (
        name TEXT PRIMARY KEY,
        path TEXT NOT NULL UNIQUE,
        run TEXT REFERENCES runs(name) ON DELETE SET NULL ON UPDATE CASCADE,
        kind TEXT,                       -- cpt, base, ... (steep.json "kind")
        base TEXT,
        base_path TEXT,
        created TEXT,
        metrics TEXT,                    -- JSON {step, baseline, final}
        eval TEXT,                       -- JSON summary of the attached eval report
        lineage_mtime REAL,
        error TEXT
    );
    CREATE INDEX runs_base_path ON runs(base_path);
    CREATE INDEX run_sources_ref ON run_sources(ref);
    """,
    # 2: dataset refs take the Data Hub catalog's spelling, name@vN -> name@N
    """
    UPDATE datasets SET ref = name || '@' || version
        WHERE ref IS NOT name || '@' || version;
    UPDATE run_sources
        SET ref = substr(ref, 1, instr(ref, '@v') - 1) || '@' || substr(ref, instr(ref, '@v') + 2)
        WHERE ref GLOB '*@v[0-9]*' AND substr(ref, instr(ref, '@v') + 2) NOT GLOB '*[^0-9]*';
    """,
    # 3: the studio's job queue (steep.studio.jobs). Files made before this migration may
    # already hold the table (the studio created it itself then): IF NOT EXISTS keeps it.
    """
    CREATE TABLE IF NOT EXISTS jobs (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        name TEXT NOT NULL,
        status TEXT NOT NULL DEFAULT 'queued',
        config TEXT NOT NULL,          -- resolved run config (YAML), as validated at launch
        run_dir TEXT NOT NULL,         -- the run folder steep train writes (metrics, model)
        job_dir TEXT NOT NULL,         -- config.yaml, log.txt, pid, exit.json
        nproc INTEGER NOT NULL DEFAULT 1,
        cuda_visible_devices TEXT,     -- NULL: inherit the studio's environment
        pid INTEGER,                   -- the wrapper process (leader of the job's process group)
        pid_start TEXT,                -- its start time in /proc, so a reused pid is not mistaken
        exit_code INTEGER,
        error TEXT,
        cancel_requested REAL,
        claimed_by TEXT,
        created REAL NOT NULL,
        started REAL,
        finished REAL
    );
    CREATE INDEX IF NOT EXISTS jobs_status ON jobs(status);
    """,
    # 4: a run can be 'cancelled' (stopped on request: SIGTERM from the studio or a user).
    # SQLite cannot change a CHECK, so runs is rebuilt; its dependants are copied aside
    # first, because dropping runs with foreign keys on would cascade into them.
    """
    CREATE TEMP TABLE run_sources_v3 AS SELECT * FROM run_sources;
    CREATE TEMP TABLE models_v3 AS SELECT * FROM models;
    CREATE TEMP TABLE runs_v3 AS SELECT * FROM runs;
    DROP TABLE run_sources;
    DROP TABLE models;
    DROP TABLE runs;
    CREATE TABLE runs (
        name TEXT PRIMARY KEY,
        path TEXT NOT NULL UNIQUE,
        status TEXT NOT NULL
            CHECK (status IN ('running', 'done', 'failed', 'cancelled', 'unknown')),
        created TEXT,
        updated TEXT,
        base TEXT,
        base_path TEXT,
        lr_fraction REAL,
        steps INTEGER,
        config TEXT,
        config_mtime REAL,
        metrics TEXT,
        metrics_offset INTEGER NOT NULL DEFAULT 0,
        metrics_inode INTEGER,
        pid INTEGER,
        host TEXT,
        error TEXT
    );
    CREATE TABLE run_sources (
        run TEXT NOT NULL REFERENCES runs(name) ON DELETE CASCADE ON UPDATE CASCADE,
        source TEXT NOT NULL,
        ref TEXT,
        weight REAL,
        paths TEXT,
        PRIMARY KEY (run, source)
    );
    CREATE TABLE models (
        name TEXT PRIMARY KEY,
        path TEXT NOT NULL UNIQUE,
        run TEXT REFERENCES runs(name) ON DELETE SET NULL ON UPDATE CASCADE,
        kind TEXT,
        base TEXT,
        base_path TEXT,
        created TEXT,
        metrics TEXT,
        eval TEXT,
        lineage_mtime REAL,
        error TEXT
    );
    INSERT INTO runs SELECT * FROM runs_v3;
    INSERT INTO run_sources SELECT * FROM run_sources_v3;
    INSERT INTO models SELECT * FROM models_v3;
    DROP TABLE runs_v3;
    DROP TABLE run_sources_v3;
    DROP TABLE models_v3;
    CREATE INDEX runs_base_path ON runs(base_path);
    CREATE INDEX run_sources_ref ON run_sources(ref);
    """,
    # 5: a studio job may resume its run folder (steep train --resume) instead of starting one
    """
    ALTER TABLE jobs ADD COLUMN resume INTEGER NOT NULL DEFAULT 0;
    """,
]
SCHEMA_VERSION = len(MIGRATIONS)


# SQLite reports a full disk as SQLITE_FULL, or, when the WAL index cannot grow, as a
# plain I/O error; either one with this little room left is the disk, not the file
_NEARLY_FULL = 1 << 20


class _Connection(sqlite3.Connection):
    """A connection whose full-disk failures are ``OSError(ENOSPC)`` naming the registry:
    the CLI says so in one line, as it does for every other write (sqlite3 has no errno)."""

    path: Path

    def execute(self, *args: Any, **kwargs: Any) -> sqlite3.Cursor:
        try:
            return super().execute(*args, **kwargs)
        except sqlite3.OperationalError as exc:
            name = getattr(exc, "sqlite_errorname", "")
            if name == "SQLITE_FULL" or (
                name.startswith("SQLITE_IOERR")
                and shutil.disk_usage(self.path.parent).free < _NEARLY_FULL
            ):
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(self.path)) from exc
            raise


def connect(path: Path) -> sqlite3.Connection:
    """A new connection (rows as ``sqlite3.Row``, autocommit, foreign keys on); callers close it."""
    con = sqlite3.connect(path, timeout=30, isolation_level=None, factory=_Connection)
    con.path = Path(path)
    con.row_factory = sqlite3.Row
    con.execute("PRAGMA foreign_keys=ON")
    con.execute("PRAGMA busy_timeout=30000")
    return con


@contextlib.contextmanager
def transaction(path: Path) -> Iterator[sqlite3.Connection]:
    """One write transaction, taken up front so concurrent writers queue, not deadlock."""
    with contextlib.closing(connect(path)) as con:
        con.execute("BEGIN IMMEDIATE")
        try:
            yield con
        except BaseException:
            con.execute("ROLLBACK")
            raise
        con.execute("COMMIT")


@contextlib.contextmanager
def reading(path: Path) -> Iterator[sqlite3.Connection]:
    with contextlib.closing(connect(path)) as con:
        yield con


def schema_version(con: sqlite3.Connection) -> int:
    """The file's schema version; 0 for a new file."""
    try:
        return con.execute("SELECT MAX(version) FROM schema_version").fetchone()[0] or 0
    except sqlite3.OperationalError:
        return 0  # a new file: no schema_version table yet


def migrate(con: sqlite3.Connection, path: Path) -> None:
    """Bring the schema up to SCHEMA_VERSION in one transaction (a no-op read when current)."""
    if schema_version(con) == SCHEMA_VERSION:
        return
    con.execute("BEGIN IMMEDIATE")
    try:
        con.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
        current = schema_version(con)  # again, under the lock: another process may have won
        if current > SCHEMA_VERSION:
            raise HubError(
                f"{path} has schema version {current}, newer than this steep "
                f"understands ({SCHEMA_VERSION}): upgrade steep"
            )
        for version in range(current + 1, SCHEMA_VERSION + 1):
            for statement in MIGRATIONS[version - 1].split(";"):
                if statement.strip():
                    con.execute(statement)
            con.execute("INSERT INTO schema_version (version) VALUES (?)", (version,))
    except BaseException:
        con.execute("ROLLBACK")
        raise
    con.execute("COMMIT")


def open_db(path: Path) -> None:
    """Make ``path`` a registry at SCHEMA_VERSION in WAL mode (readers never block)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    for attempt in range(100):
        try:
            with contextlib.closing(connect(path)) as con:
                if con.execute("PRAGMA journal_mode").fetchone()[0] != "wal":
                    con.execute("PRAGMA journal_mode=WAL")  # persistent: set once per file
                migrate(con, path)
            return
        except sqlite3.OperationalError as exc:
            # Switching to WAL, or opening a WAL file another process is setting up, can
            # report "locked" at once instead of waiting on busy_timeout: wait and retry.
            if "locked" not in str(exc) and "busy" not in str(exc) or attempt == 99:
                raise
            time.sleep(0.05 + 0.01 * attempt)


# --- rows as the hub's queries return them -------------------------------------------------


def dataset_dict(r: sqlite3.Row, used_by: list[str]) -> dict[str, Any]:
    return {
        "name": r["name"],
        "version": r["version"],
        "ref": r["ref"],
        "documents": r["documents"],
        "bytes": r["bytes"],
        "languages": loads(r["languages"]) or {},
        "created": r["created"],
        "path": r["path"],
        "funnel": loads(r["funnel"]) or [],
        "used_by": used_by,
        "error": r["error"],
    }


def run_dict(con: sqlite3.Connection, r: sqlite3.Row) -> dict[str, Any]:
    sources = [
        {
            "source": s["source"],
            "ref": s["ref"],
            "weight": s["weight"],
            "paths": loads(s["paths"]),
        }
        for s in con.execute("SELECT * FROM run_sources WHERE run = ? ORDER BY rowid", (r["name"],))
    ]
    model = con.execute("SELECT name FROM models WHERE run = ?", (r["name"],)).fetchone()
    return {
        "name": r["name"],
        "path": r["path"],
        "status": r["status"],
        "created": r["created"],
        "updated": r["updated"],
        "base": r["base"],
        "base_path": r["base_path"],
        "base_model": _owner(con, r["base_path"]),
        "datasets": [s["ref"] for s in sources if s["ref"]],
        "sources": sources,
        "lr_fraction": r["lr_fraction"],
        "steps": r["steps"],
        "metrics": loads(r["metrics"]) or {},
        "model": model["name"] if model else None,
        "error": r["error"],
    }


def model_dict(r: sqlite3.Row) -> dict[str, Any]:
    metrics = loads(r["metrics"]) or {}
    return {
        "name": r["name"],
        "path": r["path"],
        "run": r["run"],
        "kind": r["kind"],
        "base": r["base"],
        "base_path": r["base_path"],
        "created": r["created"],
        "metrics": metrics,
        "final": metrics.get("final") or {},
        "eval": loads(r["eval"]),
        "error": r["error"],
    }


def _owner(con: sqlite3.Connection, path: str | None) -> str | None:
    """The registered model whose folder holds ``path`` (a run's base)."""
    if not path:
        return None
    for r in con.execute("SELECT name, path FROM models"):
        if within(path, r["path"]):
            return r["name"]
    return None


def group(rows: Iterable[Any]) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for key, value in rows:
        out.setdefault(key, []).append(value)
    return out


def names(con: sqlite3.Connection, table: str) -> str:
    """The names in ``table``, for an error message."""
    found = [r[0] for r in con.execute(f"SELECT name FROM {table} ORDER BY name")]
    return ", ".join(found) or "none yet"
