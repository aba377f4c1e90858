"""hub.sqlite files made by steep 0.1 migrate: refs take the catalog's spelling and the
studio's jobs table, made then by the studio itself, is kept and becomes part of the schema."""

from __future__ import annotations

import json
import os
import sqlite3
from pathlib import Path

from steep.hub import MIGRATIONS, SCHEMA_VERSION, Hub, HubError

# MIGRATIONS[0] as steep 0.1 released it (byte for byte the statements it ran)
OLD_SCHEMA_V1 = """
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
    """

# what steep 0.1's studio (steep/studio/jobs.py) ran on every start, outside the migrations
OLD_JOBS = """
CREATE TABLE IF NOT EXISTS jobs (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    name TEXT NOT NULL,
    status TEXT NOT NULL DEFAULT 'queued',
    config TEXT NOT NULL,          -- resolved run config (YAML), as validated at launch
    run_dir TEXT NOT NULL,         -- where steep train writes metrics.jsonl and model/
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
"""


def _old_workspace(home: Path) -> Path:
    """Folders plus a hub.sqlite at schema version 1 whose rows match them (so a sync
    leaves them alone: what changes is the migration's doing)."""
    ds = home / "datasets" / "dom" / "v1"
    ds.mkdir(parents=True)
    (ds / "manifest.json").write_text(json.dumps({"documents": 5}))
    run = home / "runs" / "r1"
    run.mkdir(parents=True)
    (run / "config.yaml").write_text("data:\n  sources:\n  - {name: d, dataset: dom}\n")
    db = home / "hub.sqlite"
    con = sqlite3.connect(db)
    con.executescript(OLD_SCHEMA_V1)
    con.executescript(
        "CREATE TABLE schema_version (version INTEGER NOT NULL);"
        "INSERT INTO schema_version (version) VALUES (1);"
    )
    con.executescript(OLD_JOBS)
    con.execute(
        "INSERT INTO datasets (ref, name, version, path, documents, manifest_mtime)"
        " VALUES ('dom@v1', 'dom', 1, ?, 5, ?)",
        (str(ds.resolve()), os.stat(ds / "manifest.json").st_mtime),
    )
    con.execute(
        "INSERT INTO runs (name, path, status, created, config_mtime)"
        " VALUES ('r1', ?, 'done', '2026-01-01T00:00:00+00:00', ?)",
        (str(run.resolve()), os.stat(run / "config.yaml").st_mtime),
    )
    con.executemany(
        "INSERT INTO run_sources (run, source, ref, weight, paths) VALUES ('r1', ?, ?, 1, ?)",
        [("d", "dom@v1", None), ("w", "web@v12", None), ("f", None, '["a.jsonl"]')],
    )
    con.execute(
        "INSERT INTO jobs (name, config, run_dir, job_dir, created) VALUES ('j', 'x', 'r', 'j', 1)"
    )
    con.execute("INSERT INTO models (name, path, run, kind) VALUES ('m', '/m', 'r1', 'cpt')")
    con.commit()
    con.close()
    return db


def _rows(db: Path, sql: str) -> list[tuple]:
    with sqlite3.connect(db) as con:
        return [tuple(r) for r in con.execute(sql)]


def test_the_first_migration_is_the_released_one() -> None:
    assert MIGRATIONS[0] == OLD_SCHEMA_V1
    assert SCHEMA_VERSION == len(MIGRATIONS) >= 3


def test_a_version_1_file_migrates_refs_and_keeps_the_old_jobs_table(tmp_path: Path) -> None:
    home = tmp_path / "home"
    db = _old_workspace(home)
    hub = Hub(home)  # opening runs the migrations, and nothing else
    assert _rows(db, "SELECT MAX(version) FROM schema_version") == [(SCHEMA_VERSION,)]
    assert _rows(db, "SELECT ref, name, version FROM datasets") == [("dom@1", "dom", 1)]
    assert _rows(db, "SELECT source, ref FROM run_sources ORDER BY source") == [
        ("d", "dom@1"),
        ("f", None),
        ("w", "web@12"),
    ]
    assert _rows(db, "SELECT id, name, status FROM jobs") == [(1, "j", "queued")]
    # migration 4 rebuilt runs (a run may be cancelled) and kept what refers to it
    assert _rows(db, "SELECT name, run, kind FROM models") == [("m", "r1", "cpt")]
    with sqlite3.connect(db) as con:
        con.execute("PRAGMA foreign_keys=ON")
        con.execute("UPDATE runs SET status = 'cancelled' WHERE name = 'r1'")
        con.execute("UPDATE runs SET name = 'r2' WHERE name = 'r1'")  # cascades as before
    assert _rows(db, "SELECT DISTINCT run FROM run_sources") == [("r2",)]
    assert _rows(db, "SELECT run FROM models") == [("r2",)]
    with sqlite3.connect(db) as con:
        con.execute("PRAGMA foreign_keys=ON")
        con.execute("UPDATE runs SET name = 'r1', status = 'done' WHERE name = 'r2'")

    # what the registry then lists comes from the migrated rows
    assert hub.run("r1")["datasets"] == ["dom@1", "web@12"]
    (d,) = hub.datasets()
    assert d["ref"] == "dom@1" and d["used_by"] == ["r1"]
    assert hub.dataset("dom@v1")["ref"] == "dom@1"

    from steep.studio.jobs import JobQueue

    queue = JobQueue(home)  # relies on the migrated table, creates nothing itself
    assert [j.name for j in queue.jobs()] == ["j"]
    assert queue.submit("k", "y: 1\n", home / "runs" / "k").id == 2

    Hub(home)  # a second open is a no-op
    assert _rows(db, "SELECT COUNT(*) FROM schema_version") == [(SCHEMA_VERSION,)]


def test_a_new_file_gets_the_jobs_table_from_the_migrations(tmp_path: Path) -> None:
    hub = Hub(tmp_path / "home")
    tables = {r[0] for r in _rows(hub.path, "SELECT name FROM sqlite_master WHERE type='table'")}
    assert {"datasets", "runs", "run_sources", "models", "jobs", "schema_version"} <= tables
    indexes = {r[0] for r in _rows(hub.path, "SELECT name FROM sqlite_master WHERE type='index'")}
    assert "jobs_status" in indexes


def test_a_newer_file_is_refused(tmp_path: Path) -> None:
    hub = Hub(tmp_path / "home")
    with sqlite3.connect(hub.path) as con:
        con.execute("INSERT INTO schema_version (version) VALUES (?)", (SCHEMA_VERSION + 1,))
    try:
        Hub(tmp_path / "home")
    except HubError as exc:
        assert "newer than this steep" in str(exc)
    else:
        raise AssertionError("a newer schema must be refused")
