"""Model Hub: one SQLite registry of datasets, runs and models, with lineage and model cards.

The folders stay the contract (dataset manifests, run directories, model directories with
``steep.json``); ``$STEEP_HOME/hub.sqlite`` is the index over them that the CLI and the
studio share. ``Hub.sync()`` rebuilds whatever is missing from the folders, so the registry
can be deleted and recovered, and a run or dataset written by any process shows up.

Lineage edges::

    model --made by--> run --started from--> base model (a registered model when the base
                        |                     path lies inside one: that makes the run a
                        |                     dependent of it, and ``rm`` refuses)
                        +--read--> dataset versions (name@vN), with weights
    model <--attached-- eval report (MODEL/eval/eval.json, summary in steep.json ``eval``)

Why sqlite3 from the standard library: one file, safe for several processes at once in WAL
mode, nothing to run. An ORM (SQLAlchemy) was considered and is not worth a dependency for
four tables.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import socket
import sqlite3
import tempfile
import time
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from steep.artifacts.atomic import write_text
from steep.errors import SteepError
from steep.workspace import steep_home

DB_FILE = "hub.sqlite"
CARD_FILE = "README.md"
CARD_MARK = "<!-- steep model card:"  # a README.md with this line is ours to rewrite
LINEAGE = "steep.json"  # = steep.model.io.LINEAGE_FILE (not imported: that pulls in torch)
EVAL_JSON = Path("eval") / "eval.json"
STATUSES = ("running", "done", "failed", "unknown")

# Each entry moves the schema one version up; append, never edit a released one. Statements
# are split on ';' and run in one transaction, so keep ';' out of comments and strings.
MIGRATIONS: list[str] = [
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
]
SCHEMA_VERSION = len(MIGRATIONS)


class HubError(SteepError):
    """Something a user asked of the hub that cannot be done (and why)."""


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, timezone.utc).isoformat(timespec="seconds")


def _mtime(path: Path) -> float | None:
    try:
        return path.stat().st_mtime
    except OSError:
        return None


def _loads(text: str | None) -> Any:
    return json.loads(text) if text else None


def _dumps(value: Any) -> str | None:
    return None if value is None else json.dumps(value, default=str, sort_keys=True)


def _read_json(path: Path) -> tuple[dict[str, Any] | None, str | None]:
    """(data, None), or (None, why) for a file that is missing, unreadable or not an object."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None, f"{path.name} missing"
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        return None, f"{path} unreadable: {exc}"
    if not isinstance(data, dict):
        return None, f"{path} is not a JSON object"
    return data, None


def _local_path(spec: str | None, cwd: Path | None = None) -> str | None:
    """An existing local folder (or file) for a base spec, resolved; None for a hub id."""
    if not spec or spec.startswith("pkg://"):
        return None
    p = Path(spec)
    if not p.is_absolute():
        p = (cwd or Path.cwd()) / p
    return str(p.resolve()) if p.exists() else None


def _within(path: str | None, folder: str) -> bool:
    return bool(path) and (path == folder or path.startswith(folder.rstrip("/") + "/"))


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _dataset_ref(name: str, version: int) -> str:
    return f"{name}@v{version}"


def _norm_ref(ref: str | None) -> str | None:
    """'name@3' / 'name@v3' -> 'name@v3'; 'name' stays (resolved to a version elsewhere)."""
    if not ref:
        return None
    name, _, version = ref.partition("@")
    version = version.removeprefix("v")
    return _dataset_ref(name, int(version)) if version.isdigit() else name


class Hub:
    """The registry at ``home/hub.sqlite``; every method opens its own connection."""

    def __init__(self, home: Path | None = None) -> None:
        self.home = Path(home) if home is not None else steep_home()
        self.path = self.home / DB_FILE
        self.home.mkdir(parents=True, exist_ok=True)
        for attempt in range(100):
            try:
                with contextlib.closing(self.connect()) as con:
                    if con.execute("PRAGMA journal_mode").fetchone()[0] != "wal":
                        con.execute("PRAGMA journal_mode=WAL")  # persistent: readers never block
                    self._migrate(con)
                return
            except sqlite3.OperationalError as exc:
                # Switching to WAL, or opening a WAL file another process is setting up, can
                # report "locked" at once instead of waiting on busy_timeout: wait and retry.
                if "locked" not in str(exc) and "busy" not in str(exc) or attempt == 99:
                    raise
                time.sleep(0.05 + 0.01 * attempt)

    # --- connection and schema ------------------------------------------------------------

    def connect(self) -> sqlite3.Connection:
        """A new connection (rows as ``sqlite3.Row``); callers close it."""
        con = sqlite3.connect(self.path, timeout=30, isolation_level=None)
        con.row_factory = sqlite3.Row
        con.execute("PRAGMA foreign_keys=ON")
        con.execute("PRAGMA busy_timeout=30000")
        return con

    @contextlib.contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        """One write transaction, taken up front so concurrent writers queue, not deadlock."""
        with contextlib.closing(self.connect()) as con:
            con.execute("BEGIN IMMEDIATE")
            try:
                yield con
            except BaseException:
                con.execute("ROLLBACK")
                raise
            con.execute("COMMIT")

    @contextlib.contextmanager
    def _read(self) -> Iterator[sqlite3.Connection]:
        with contextlib.closing(self.connect()) as con:
            yield con

    def _migrate(self, con: sqlite3.Connection) -> None:
        """Bring the schema up to SCHEMA_VERSION in one transaction (a no-op read when current)."""
        try:
            row = con.execute("SELECT MAX(version) FROM schema_version").fetchone()
            if row[0] == SCHEMA_VERSION:
                return
        except sqlite3.OperationalError:
            pass  # a new file: no schema_version table yet
        con.execute("BEGIN IMMEDIATE")
        try:
            con.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
            row = con.execute("SELECT MAX(version) FROM schema_version").fetchone()
            current = row[0] or 0
            if current > SCHEMA_VERSION:
                raise HubError(
                    f"{self.path} has schema version {current}, newer than this steep "
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

    # --- sync: folders -> registry ---------------------------------------------------------

    def sync(self) -> None:
        """Register what the workspace holds and drop what vanished; reparse only what changed.

        Cheap when nothing changed (a few stats and one read), so every list calls it.
        """
        self._sync_datasets()
        self._sync_runs()
        self._sync_models()

    def _sync_datasets(self) -> None:
        root = self.home / "datasets"
        found: dict[str, Path] = {}
        if root.is_dir():
            for name_dir in root.iterdir():
                if not name_dir.is_dir() or name_dir.name.startswith("."):
                    continue
                for vdir in name_dir.iterdir():
                    v = vdir.name
                    versioned = vdir.is_dir() and v.startswith("v") and v[1:].isdigit()
                    if versioned and (vdir / "manifest.json").is_file():
                        found[_dataset_ref(name_dir.name, int(v[1:]))] = vdir
        with self._read() as con:
            known = {r["ref"]: r["manifest_mtime"] for r in con.execute("SELECT * FROM datasets")}
        stale = [ref for ref in known if ref not in found]
        todo = {ref: p for ref, p in found.items() if known.get(ref) != _mtime(p / "manifest.json")}
        if not stale and not todo:
            return
        with self._tx() as con:
            con.executemany("DELETE FROM datasets WHERE ref = ?", [(r,) for r in stale])
            for ref, path in todo.items():
                self._upsert_dataset(con, ref, path)

    def _upsert_dataset(self, con: sqlite3.Connection, ref: str, path: Path) -> None:
        name, _, v = ref.partition("@v")
        manifest, error = _read_json(path / "manifest.json")
        m = manifest or {}
        con.execute(
            """INSERT INTO datasets (ref, name, version, path, documents, bytes, languages,
                   created, funnel, manifest_mtime, error)
               VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
               ON CONFLICT(ref) DO UPDATE SET path=excluded.path, documents=excluded.documents,
                   bytes=excluded.bytes, languages=excluded.languages, created=excluded.created,
                   funnel=excluded.funnel, manifest_mtime=excluded.manifest_mtime,
                   error=excluded.error""",
            (
                ref,
                name,
                int(v),
                str(path.resolve()),
                m.get("documents"),
                m.get("bytes"),
                _dumps(m.get("languages") or {}),
                m.get("created") or _iso(_mtime(path) or 0),
                _dumps(_funnel(m)),
                _mtime(path / "manifest.json"),
                error,
            ),
        )

    def _run_dirs(self) -> list[Path]:
        """Run folders under runs/ that look like runs (a config, metrics or a model)."""
        root = self.home / "runs"
        if not root.is_dir():
            return []
        return sorted(
            p.resolve()
            for p in root.iterdir()
            if p.is_dir()
            and not p.name.startswith(".")
            and any((p / f).exists() for f in ("config.yaml", "metrics.jsonl", "model"))
        )

    def _sync_runs(self) -> None:
        with self._read() as con:
            rows = {r["path"]: dict(r) for r in con.execute("SELECT * FROM runs")}
        paths = {str(p) for p in self._run_dirs()} | set(rows)
        gone = [p for p in rows if not Path(p).is_dir()]
        todo = [p for p in paths if p not in gone and self._run_changed(Path(p), rows.get(p))]
        if not gone and not todo:
            return
        with self._tx() as con:
            con.executemany("DELETE FROM runs WHERE path = ?", [(p,) for p in gone])
            for p in todo:
                self._upsert_run(con, Path(p), None)

    def _run_changed(self, path: Path, row: dict[str, Any] | None) -> bool:
        if row is None:
            return True
        if row["config_mtime"] != _mtime(path / "config.yaml"):
            return True
        try:
            st = (path / "metrics.jsonl").stat()
            if st.st_size != row["metrics_offset"] or st.st_ino != row["metrics_inode"]:
                return True
        except OSError:
            pass
        model = path / "model" / LINEAGE
        if row["status"] == "unknown" and model.is_file():
            return True
        if row["status"] == "running" and row["pid"] and row["host"] == socket.gethostname():
            return not _pid_alive(row["pid"])
        return False

    def _upsert_run(
        self, con: sqlite3.Connection, path: Path, status: str | None, error: str | None = None
    ) -> str:
        """Insert or refresh one run row from its folder; ``status`` None: infer it."""
        row = con.execute("SELECT * FROM runs WHERE path = ?", (str(path),)).fetchone()
        row = dict(row) if row else None
        name = row["name"] if row else self._free_name(con, "runs", path.name)
        updates: dict[str, Any] = {"updated": _now()}
        has_model = _read_json(path / "model" / LINEAGE)[0] is not None  # written last
        cfg_mtime = _mtime(path / "config.yaml")
        if row is None:  # the row first: run_sources refers to it
            con.execute(
                "INSERT INTO runs (name, path, status, created) VALUES (?, ?, ?, ?)",
                (name, str(path), "done" if has_model else "unknown", _iso(cfg_mtime or 0)),
            )
        if row is None or row["config_mtime"] != cfg_mtime:
            config, cfg_error = _read_config(path)
            updates.update(_config_fields(config, path))
            updates["config_mtime"] = cfg_mtime
            if cfg_error:
                updates["error"] = cfg_error
            _set_sources(con, name, config, self.home)
        summary, offset, inode = _read_metrics(
            path / "metrics.jsonl",
            _loads(row["metrics"]) if row else None,
            row["metrics_offset"] if row else 0,
            row["metrics_inode"] if row else None,
        )
        updates.update(metrics=_dumps(summary), metrics_offset=offset, metrics_inode=inode)

        here = socket.gethostname()
        old = row["status"] if row else None
        if status is not None:
            updates["status"] = status
            updates["pid"], updates["host"] = (
                (os.getpid(), here) if status == "running" else (None, None)
            )
            updates["error"] = error
        elif old == "running" and row and row["pid"] and row["host"] == here:
            if not _pid_alive(row["pid"]):
                updates["status"] = "done" if has_model else "failed"
                if not has_model:
                    updates["error"] = f"training process {row['pid']} ended without finishing"
        elif old == "unknown" and has_model:
            updates["status"] = "done"
        cols = ", ".join(f"{k} = ?" for k in updates)
        con.execute(f"UPDATE runs SET {cols} WHERE name = ?", (*updates.values(), name))
        if has_model and updates.get("status", old) == "done":
            self._upsert_model(con, path / "model", name)
        return name

    def _model_dirs(self) -> list[Path]:
        """Model folders: every run's model/, and models/* and models/base/* with a config."""
        dirs = [p / "model" for p in self._run_dirs() if (p / "model" / "config.json").is_file()]
        for folder in (self.home / "models", self.home / "models" / "base"):
            if folder.is_dir():
                dirs += [
                    p.resolve()
                    for p in folder.iterdir()
                    if p.is_dir() and not p.name.startswith(".") and (p / "config.json").is_file()
                ]
        return dirs

    def _sync_models(self) -> None:
        with self._read() as con:
            rows = {r["path"]: dict(r) for r in con.execute("SELECT * FROM models")}
            run_models = {
                str(Path(r["path"]) / "model"): r["name"]
                for r in con.execute("SELECT name, path FROM runs")
            }
        paths = {str(p) for p in self._model_dirs()} | set(rows)
        paths |= {p for p in run_models if (Path(p) / "config.json").is_file()}
        gone = [p for p in rows if not (Path(p) / "config.json").is_file()]
        todo = [
            p
            for p in paths
            if p not in gone
            and (p not in rows or rows[p]["lineage_mtime"] != _mtime(Path(p) / LINEAGE))
        ]
        if not gone and not todo:
            return
        with self._tx() as con:
            con.executemany("DELETE FROM models WHERE path = ?", [(p,) for p in gone])
            for p in todo:
                self._upsert_model(con, Path(p), run_models.get(p))

    def _upsert_model(self, con: sqlite3.Connection, path: Path, run: str | None) -> str:
        path = path.resolve()
        row = con.execute("SELECT * FROM models WHERE path = ?", (str(path),)).fetchone()
        lineage, error = _read_json(path / LINEAGE)
        lin = lineage or {}
        if run is None and isinstance(lin.get("run_dir"), str):
            hit = con.execute(
                "SELECT name FROM runs WHERE path = ?", (str(Path(lin["run_dir"]).resolve()),)
            ).fetchone()
            run = hit["name"] if hit else None
        if row is not None:
            name = row["name"]
            run = run or row["run"]
        else:
            stem = run or (path.parent.name if path.name == "model" else path.name)
            name = self._free_name(con, "models", stem)
        base = lin.get("base") if isinstance(lin.get("base"), dict) else {}
        values = {
            "name": name,
            "path": str(path),
            "run": run,
            "kind": lin.get("kind") or (None if (path / LINEAGE).exists() else "plain"),
            "base": base.get("source") or lin.get("converted_from"),
            "base_path": _local_path(base.get("path")) if base.get("path") else None,
            "created": lin.get("created") or _iso(_mtime(path / "config.json") or 0),
            "metrics": _dumps(lin.get("metrics")),
            "eval": _dumps(_eval_summary(path, lin)),
            "lineage_mtime": _mtime(path / LINEAGE),
            "error": error if lineage is None and (path / LINEAGE).exists() else None,
        }
        cols = ", ".join(values)
        marks = ", ".join("?" for _ in values)
        sets = ", ".join(f"{k} = excluded.{k}" for k in values if k not in ("name", "path"))
        con.execute(
            f"INSERT INTO models ({cols}) VALUES ({marks}) ON CONFLICT(path) DO UPDATE SET {sets}",
            tuple(values.values()),
        )
        if lineage is not None:
            _try_write_card(path, name, self.home)
        return name

    def _free_name(self, con: sqlite3.Connection, table: str, stem: str) -> str:
        name, i = stem, 1
        while con.execute(f"SELECT 1 FROM {table} WHERE name = ?", (name,)).fetchone():
            i += 1
            name = f"{stem}-{i}"
        return name

    # --- queries ----------------------------------------------------------------------------

    def datasets(self) -> list[dict[str, Any]]:
        """Every dataset version, newest version of each name first."""
        self.sync()
        with self._read() as con:
            rows = con.execute("SELECT * FROM datasets ORDER BY name, version DESC").fetchall()
            used = _group(con.execute("SELECT ref, run FROM run_sources WHERE ref IS NOT NULL"))
        return [_dataset_dict(r, used.get(r["ref"], [])) for r in rows]

    def dataset(self, ref: str) -> dict[str, Any]:
        """One version by ``name@vN`` (or ``name@N``; plain ``name`` is the latest)."""
        want = _norm_ref(ref)
        for d in self.datasets():
            if d["ref"] == want or (want == d["name"] and "@" not in ref):
                return d
        raise HubError(f"no dataset {ref!r} in {self.home / 'datasets'}")

    def runs(self) -> list[dict[str, Any]]:
        """Every run, newest first."""
        self.sync()
        with self._read() as con:
            return [
                self._run_dict(con, r) for r in con.execute(_RUNS_SQL + " ORDER BY created DESC")
            ]

    def run(self, name: str) -> dict[str, Any]:
        self.sync()
        with self._read() as con:
            row = con.execute(_RUNS_SQL + " WHERE name = ?", (name,)).fetchone()
            if row is None:
                raise HubError(f"no run named {name!r}; runs: {_names(con, 'runs')}")
            out = self._run_dict(con, row)
            out["config"] = _loads(row["config"])
            return out

    def _run_dict(self, con: sqlite3.Connection, r: sqlite3.Row) -> dict[str, Any]:
        sources = [
            {
                "source": s["source"],
                "ref": s["ref"],
                "weight": s["weight"],
                "paths": _loads(s["paths"]),
            }
            for s in con.execute(
                "SELECT * FROM run_sources WHERE run = ? ORDER BY rowid", (r["name"],)
            )
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
            "metrics": _loads(r["metrics"]) or {},
            "model": model["name"] if model else None,
            "error": r["error"],
        }

    def models(self) -> list[dict[str, Any]]:
        """Every registered model, newest first."""
        self.sync()
        with self._read() as con:
            return [
                _model_dict(r) for r in con.execute("SELECT * FROM models ORDER BY created DESC")
            ]

    def model(self, name: str) -> dict[str, Any]:
        """One model with its full lineage (steep.json), eval report and dependents."""
        self.sync()
        with self._read() as con:
            row = con.execute("SELECT * FROM models WHERE name = ?", (name,)).fetchone()
            if row is None:
                raise HubError(f"no model named {name!r}; models: {_names(con, 'models')}")
        out = _model_dict(row)
        path = Path(row["path"])
        out["lineage"], _ = _read_json(path / LINEAGE)
        out["eval_report"], _ = _read_json(path / EVAL_JSON)
        if out["eval_report"] is None and out["lineage"]:
            out["eval_report"] = out["lineage"].get("eval")
        out["card"] = str(path / CARD_FILE) if (path / CARD_FILE).is_file() else None
        out["dependents"] = self.dependents(name)
        return out

    def dependents(self, model_name: str) -> list[str]:
        """Runs whose base lies inside this model's folder (they would lose their base)."""
        with self._read() as con:
            row = con.execute("SELECT path FROM models WHERE name = ?", (model_name,)).fetchone()
            if row is None:
                raise HubError(f"no model named {model_name!r}; models: {_names(con, 'models')}")
            runs = con.execute(
                "SELECT name, base_path FROM runs WHERE base_path IS NOT NULL ORDER BY created"
            ).fetchall()
        return [r["name"] for r in runs if _within(r["base_path"], row["path"])]

    # --- writes -----------------------------------------------------------------------------

    def register_dataset(self, version_dir: Path) -> str:
        """Record one published dataset version folder (datasets/NAME/vN); returns name@vN."""
        version_dir = Path(version_dir).resolve()
        v = version_dir.name
        if not (
            v.startswith("v") and v[1:].isdigit() and (version_dir / "manifest.json").is_file()
        ):
            raise HubError(f"{version_dir} is not a dataset version folder (NAME/vN/manifest.json)")
        ref = _dataset_ref(version_dir.parent.name, int(v[1:]))
        with self._tx() as con:
            self._upsert_dataset(con, ref, version_dir)
        return ref

    def register_run(self, run_dir: Path, status: str, error: str | None = None) -> str:
        """Record a run folder with ``status``; returns the run's registry name."""
        if status not in STATUSES:
            raise HubError(f"run status {status!r}: use one of {', '.join(STATUSES)}")
        run_dir = Path(run_dir).resolve()
        if not run_dir.is_dir():
            raise HubError(f"run folder {run_dir} does not exist")
        with self._tx() as con:
            return self._upsert_run(con, run_dir, status, error)

    def register_model(self, model_dir: Path, run_name: str | None) -> str:
        """Record (or refresh) a model folder, write its model card; returns its name."""
        model_dir = Path(model_dir).resolve()
        if not (model_dir / "config.json").is_file():
            raise HubError(f"{model_dir} is not a Hugging Face model folder (no config.json)")
        with self._tx() as con:
            known = con.execute("SELECT 1 FROM runs WHERE name = ?", (run_name,)).fetchone()
            if run_name is not None and not known:
                raise HubError(f"no run named {run_name!r} to attach {model_dir} to")
            return self._upsert_model(con, model_dir, run_name)

    def attach_eval(self, model_dir: Path) -> str | None:
        """After ``steep eval``: refresh the model's eval summary and card.

        A folder steep did not train (no steep.json of its own) and that is not registered
        is left alone: evaluating a downloaded model must not add it to the hub.
        """
        model_dir = Path(model_dir).resolve()
        with self._read() as con:
            known = con.execute("SELECT 1 FROM models WHERE path = ?", (str(model_dir),)).fetchone()
        lineage, _ = _read_json(model_dir / LINEAGE)
        if not known and not (lineage and lineage.get("kind")):
            return None
        return self.register_model(model_dir, None)

    def remove_model(self, name: str, force: bool = False) -> None:
        """Delete a model folder and its row; refuse while a run starts from it, unless forced."""
        info = self.model(name)
        deps = info["dependents"]
        if deps and not force:
            raise HubError(
                f"model {name!r} is the base of run(s) {', '.join(deps)}: they could not be "
                "resumed or reproduced without it. Use --force to delete it anyway"
            )
        path = Path(info["path"])
        # rename first: a crash mid-delete leaves a hidden folder, never half a model
        trash = path.with_name(f".{path.name}.deleting-{os.getpid()}")
        try:
            os.replace(path, trash)
        except OSError as exc:
            raise HubError(f"cannot remove model {name!r} at {path}: {exc}") from exc
        with self._tx() as con:
            con.execute("DELETE FROM models WHERE name = ?", (name,))
        shutil.rmtree(trash, ignore_errors=True)

    def export_model(self, name: str, dest: Path) -> Path:
        """Copy the model folder to ``dest`` (built aside, then renamed: all or nothing)."""
        info = self.model(name)
        src, dest = Path(info["path"]), Path(dest).resolve()
        if dest.exists():
            raise HubError(f"export destination {dest} already exists: choose a new folder")
        _try_write_card(src, name, self.home)
        dest.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", dir=dest.parent))
        try:
            shutil.copytree(src, tmp, dirs_exist_ok=True, ignore=shutil.ignore_patterns(".*"))
            os.chmod(tmp, 0o755)
            if dest.exists():  # appeared while copying
                raise HubError(f"export destination {dest} appeared while copying: not replaced")
            os.rename(tmp, dest)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        return dest

    def push_model(
        self, name: str, repo_id: str, private: bool = False, token: str | None = None
    ) -> str:
        """Upload the model folder to a Hugging Face repo; returns the commit URL."""
        from huggingface_hub import HfApi, constants

        info = self.model(name)
        path = Path(info["path"])
        _try_write_card(path, name, self.home)
        endpoint = os.environ.get("HF_ENDPOINT") or constants.ENDPOINT
        if constants.HF_HUB_OFFLINE:
            raise HubError(
                f"cannot push {name!r} to {repo_id}: HF_HUB_OFFLINE is set (this machine is "
                "offline); unset it on a machine with network access"
            )
        api = HfApi(endpoint=endpoint, token=token)
        try:
            api.create_repo(repo_id, private=private, exist_ok=True, repo_type="model")
            commit = api.upload_folder(
                folder_path=str(path),
                repo_id=repo_id,
                repo_type="model",
                commit_message=f"steep: upload {name}",
                ignore_patterns=[".*"],
            )
        except Exception as exc:  # network, auth, HTTP: all end in one clear message
            raise HubError(
                f"cannot push {name!r} ({path}) to {repo_id} at {endpoint}: "
                f"{type(exc).__name__}: {exc}. Is the machine online and logged in "
                "(huggingface-cli login or HF_TOKEN)?"
            ) from None
        return str(getattr(commit, "commit_url", commit))


_RUNS_SQL = "SELECT * FROM runs"


class RunRecorder:
    """The training loop's link to the hub: running at start, done + model at the end,
    failed on an error. Hub trouble is printed, never raised: it must not stop training."""

    def __init__(self, enabled: bool = True) -> None:
        self.enabled = enabled
        self.run_dir: Path | None = None

    def _call(self, what: str, fn: Any, *args: Any) -> Any:
        if not self.enabled or self.run_dir is None:
            return None
        try:
            return fn(*args)
        except Exception as exc:
            print(f"warning: model hub: could not record {what} for {self.run_dir}: {exc}")
            return None

    def started(self, run_dir: Path) -> None:
        self.run_dir = Path(run_dir)
        self._call("the run start", lambda: Hub().register_run(self.run_dir, "running"))

    def done(self, model_dir: Path) -> None:
        def record() -> None:
            hub = Hub()
            name = hub.register_run(self.run_dir, "done")
            hub.register_model(model_dir, name)

        self._call("the finished run", record)

    def failed(self, exc: BaseException) -> None:
        why = (
            "interrupted" if isinstance(exc, KeyboardInterrupt) else f"{type(exc).__name__}: {exc}"
        )
        self._call(
            "the failure",
            lambda: Hub().register_run(self.run_dir, "failed", why[:2000]),
        )


# --- folder readers ------------------------------------------------------------------------


def _funnel(manifest: dict[str, Any]) -> list[dict[str, Any]]:
    """Per-step in/out counts (params and drop reasons kept) from a dataset manifest."""
    out = []
    for step in manifest.get("funnel") or []:
        if isinstance(step, dict):
            out.append(
                {
                    k: step.get(k)
                    for k in (
                        "step",
                        "params",
                        "docs_in",
                        "docs_out",
                        "chars_in",
                        "chars_out",
                        "dropped",
                        "edited",
                    )
                    if k in step
                }
            )
    return out


def _read_config(run_dir: Path) -> tuple[dict[str, Any] | None, str | None]:
    import yaml

    path = run_dir / "config.yaml"
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None, "config.yaml missing"
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        return None, f"{path} unreadable: {str(exc).splitlines()[0]}"
    if not isinstance(data, dict):
        return None, f"{path} is not a mapping"
    return data, None


def _config_fields(config: dict[str, Any] | None, run_dir: Path) -> dict[str, Any]:
    c = config or {}
    model = c.get("model") if isinstance(c.get("model"), dict) else {}
    train = c.get("train") if isinstance(c.get("train"), dict) else {}
    base = model.get("base") or ("random_init" if model.get("random_init") else None)
    base_path = _base_path(run_dir, model.get("base"))
    return {
        "config": _dumps(config),
        "base": base,
        "base_path": base_path,
        "lr_fraction": train.get("lr_fraction"),
        "steps": train.get("steps"),
        "error": None,
    }


def _base_path(run_dir: Path, base: str | None) -> str | None:
    """The base's local folder: the lineage's record when the model exists, else the config's.

    A GGUF base is converted into STEEP_HOME/models/base/..., which the lineage names.
    """
    lineage, _ = _read_json(run_dir / "model" / LINEAGE)
    recorded = ((lineage or {}).get("base") or {}).get("path")
    if isinstance(recorded, str) and _local_path(recorded):
        return _local_path(recorded)
    return _local_path(base)


def _set_sources(
    con: sqlite3.Connection, run: str, config: dict[str, Any] | None, home: Path
) -> None:
    """Run -> dataset edges from the config (a bare dataset name resolves to its latest)."""
    con.execute("DELETE FROM run_sources WHERE run = ?", (run,))
    data = (config or {}).get("data")
    sources = data.get("sources") if isinstance(data, dict) else None
    for src in sources or []:
        if not isinstance(src, dict) or not isinstance(src.get("name"), str):
            continue
        ref = _norm_ref(src.get("dataset")) if isinstance(src.get("dataset"), str) else None
        if ref and "@" not in ref:
            ref = _latest_ref(home, ref)
        con.execute(
            "INSERT OR REPLACE INTO run_sources (run, source, ref, weight, paths) VALUES (?, ?, ?, ?, ?)",
            (run, src["name"], ref, src.get("weight", 1.0), _dumps(src.get("paths"))),
        )


def _latest_ref(home: Path, name: str) -> str:
    folder = home / "datasets" / name
    versions = (
        [int(p.name[1:]) for p in folder.iterdir() if p.name[1:].isdigit() and p.name[0] == "v"]
        if folder.is_dir()
        else []
    )
    return _dataset_ref(name, max(versions)) if versions else name


def _read_metrics(
    path: Path, summary: dict[str, Any] | None, offset: int, inode: int | None
) -> tuple[dict[str, Any] | None, int, int | None]:
    """Fold the new complete lines of metrics.jsonl into the summary (no rereading).

    A changed inode or a shorter file (a resume rewrites it) starts again from the top.
    """
    try:
        st = path.stat()
    except OSError:
        return summary, 0, None
    if st.st_ino != inode or st.st_size < offset:
        summary, offset = None, 0
    out: dict[str, Any] = dict(summary or {})
    with open(path, "rb") as f:
        f.seek(offset)
        chunk = f.read()
    end = chunk.rfind(b"\n") + 1  # a line still being written waits for the next sync
    for line in chunk[:end].splitlines():
        try:
            rec = json.loads(line)
        except (json.JSONDecodeError, UnicodeDecodeError):
            out["bad_lines"] = out.get("bad_lines", 0) + 1
            continue
        if not isinstance(rec, dict):
            continue
        if rec.get("kind") == "train":
            out.update(
                {k: rec.get(k) for k in ("step", "tokens", "loss", "lr", "tokens_per_s", "time")}
            )
        elif rec.get("kind") == "eval" and isinstance(rec.get("sets"), dict):
            out["eval"] = {
                "step": rec.get("step"),
                "sets": {
                    n: {"loss": s.get("loss"), "rel_change": s.get("rel_change")}
                    for n, s in rec["sets"].items()
                    if isinstance(s, dict)
                },
            }
            out.setdefault("step", rec.get("step"))
    return (out or None), offset + end, st.st_ino


def _eval_summary(model_dir: Path, lineage: dict[str, Any]) -> dict[str, Any] | None:
    """Headline and per-set bpb of the attached eval report (steep.json ``eval``)."""
    ev = lineage.get("eval")
    if not isinstance(ev, dict):
        return None
    head = ev.get("headline") or {}
    sets = {}
    for name, s in (ev.get("sets") or {}).items():
        if isinstance(s, dict):
            sets[name] = {
                "role": s.get("role"),
                "base_bpb": (s.get("base") or {}).get("bpb"),
                "bpb": (s.get("adapted") or {}).get("bpb"),
                "improvement": s.get("improvement"),
            }
    report = model_dir / EVAL_JSON
    return {
        "created": ev.get("created"),
        "domain_gain": head.get("domain_gain"),
        "general_regression": head.get("general_regression"),
        "metric": head.get("metric"),
        "sets": sets,
        "report": str(report) if report.is_file() else None,
    }


def _dataset_dict(r: sqlite3.Row, used_by: list[str]) -> dict[str, Any]:
    return {
        "name": r["name"],
        "version": r["version"],
        "ref": r["ref"],
        "documents": r["documents"],
        "bytes": r["bytes"],
        "languages": _loads(r["languages"]) or {},
        "created": r["created"],
        "path": r["path"],
        "funnel": _loads(r["funnel"]) or [],
        "used_by": used_by,
        "error": r["error"],
    }


def training_change(model: dict[str, Any]) -> dict[str, Any] | None:
    """Domain gain and general regression from the run's own eval (loss, step 0 vs end).

    For a model no ``steep eval`` has scored yet: the training run already measured both on
    its held-out sets, by the same rule as the eval report (fractions; gain > 0 is better,
    regression > 0 is worse). None when the run logged no eval of that role.
    """
    from steep.eval.compare import lineage_roles

    metrics = model.get("metrics") or {}
    base, final = metrics.get("baseline") or {}, metrics.get("final") or {}
    roles = lineage_roles(model["path"]) if model.get("path") else {}

    def mean_change(role: str) -> float | None:
        rel = [
            (final[n] - base[n]) / base[n]
            for n, r in roles.items()
            if r == role and isinstance(base.get(n), (int, float)) and base[n] and n in final
        ]
        return sum(rel) / len(rel) if rel else None

    dom, gen = mean_change("domain"), mean_change("general")
    if dom is None and gen is None:
        return None
    return {
        "domain_gain": -dom if dom is not None else None,
        "general_regression": gen,
        "metric": "train eval loss",
    }


def _model_dict(r: sqlite3.Row) -> dict[str, Any]:
    metrics = _loads(r["metrics"]) or {}
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
        "eval": _loads(r["eval"]),
        "error": r["error"],
    }


def _owner(con: sqlite3.Connection, path: str | None) -> str | None:
    """The registered model whose folder holds ``path`` (a run's base)."""
    if not path:
        return None
    for r in con.execute("SELECT name, path FROM models"):
        if _within(path, r["path"]):
            return r["name"]
    return None


def _group(rows: Any) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for key, value in rows:
        out.setdefault(key, []).append(value)
    return out


def _names(con: sqlite3.Connection, table: str) -> str:
    names = [r[0] for r in con.execute(f"SELECT name FROM {table} ORDER BY name")]
    return ", ".join(names) or "none yet"


# --- model card ------------------------------------------------------------------------------


def _try_write_card(model_dir: Path, name: str, home: Path | None = None) -> None:
    try:
        write_model_card(model_dir, name, home)
    except OSError as exc:
        print(f"warning: could not write the model card in {model_dir}: {exc}")


def write_model_card(
    model_dir: Path, name: str | None = None, home: Path | None = None
) -> Path | None:
    """(Re)write MODEL/README.md from steep.json and eval/eval.json.

    A README.md someone else wrote (no steep marker) is kept; returns None then.
    """
    model_dir = Path(model_dir)
    card = model_dir / CARD_FILE
    current = card.read_text(encoding="utf-8", errors="replace") if card.exists() else None
    if current is not None and CARD_MARK not in current:
        return None
    lineage, _ = _read_json(model_dir / LINEAGE)
    report, _ = _read_json(model_dir / EVAL_JSON)
    text = render_model_card(name or model_dir.name, lineage or {}, report, home)
    if current == text:
        return card
    write_text(card, text)
    return card


def _pct(x: Any) -> str:
    return f"{100 * x:+.2f}%" if isinstance(x, (int, float)) else "–"


def _num(x: Any, fmt: str = ".4f") -> str:
    return format(x, fmt) if isinstance(x, (int, float)) else "–"


def _cell(x: Any) -> str:
    return str(x).replace("|", "\\|").replace("\n", " ")


def _manifest_hash(home: Path | None, ref: str | None) -> str | None:
    """sha256 of a dataset version's manifest.json (which lists its inputs' hashes)."""
    name, _, version = (ref or "").partition("@")
    version = version.removeprefix("v")
    if home is None or not name or not version.isdigit():
        return None
    path = home / "datasets" / name / f"v{version}" / "manifest.json"
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()
    except OSError:
        return None


def render_model_card(
    name: str, lineage: dict[str, Any], report: dict[str, Any] | None, home: Path | None = None
) -> str:
    """A Hugging Face model card: front matter, base, data, recipe, metrics, eval table.

    ``home`` is the workspace, to hash the manifests of the dataset versions the run read.
    """
    base = lineage.get("base") if isinstance(lineage.get("base"), dict) else {}
    config = lineage.get("config") if isinstance(lineage.get("config"), dict) else {}
    train = config.get("train") or {}
    source = str(base.get("source") or lineage.get("converted_from") or "unknown")
    hub_id = source.removeprefix("hub:") if source.startswith("hub:") else None
    names = lineage.get("base_names") or []
    lines = ["---", "library_name: transformers", "tags:", "- steep", "- continued-pretraining"]
    if hub_id:
        lines.append(f"base_model: {hub_id}")
    lines += [
        "---",
        f"{CARD_MARK} generated from steep.json and eval/eval.json; edits are overwritten -->",
        "",
        f"# {name}",
        "",
    ]
    kind = lineage.get("kind")
    if kind == "cpt":
        shown = names[0] if names else source
        lines.append(
            f"Continued pretraining of **{shown}** with steep {lineage.get('steep_version', '')}"
            f" ({lineage.get('created', '')})."
        )
    elif kind == "base":
        lines.append(f"Base model converted from `{lineage.get('converted_from')}`.")
    ext = lineage.get("vocab_extension")
    if isinstance(ext, dict):
        shown = names[0] if names else source
        lines.append(
            f"Vocabulary extension of **{shown}**: {ext.get('added')} new tokens"
            f" ({ext.get('lang') or 'target language'}; ids {ext.get('first_new_id')}+), new"
            f" embedding rows initialised by `{ext.get('init')}`. Not trained yet: continue"
            " pretraining from it (`train.embedding_warmup_steps` trains the new rows first)."
        )
    lines += ["", "## Base model", ""]
    lines.append(f"- source: `{source}`")
    if names:
        lines.append(f"- known as: {', '.join(map(str, names))}")
    if base.get("lineage", {}).get("kind") == "cpt":
        lines.append("- itself a steep continued-pretraining model (see its own card)")
    if lineage.get("gguf_sha256"):
        lines.append(f"- GGUF sha256: `{lineage['gguf_sha256']}`")
    if base.get("tokenizer_sha256"):
        lines.append(f"- tokenizer sha256: `{base['tokenizer_sha256']}`")

    data = lineage.get("data") or []
    if data:
        lines += [
            "",
            "## Training data",
            "",
            "| source | weight | share | dataset | files (sha256) | train split tokens | tokens trained on |",
            "|---|---:|---:|---|---|---:|---:|",
        ]
        seen = lineage.get("tokens_by_source") or {}
        for d in data:
            ds = d.get("dataset") or {}
            files = d.get("files") or []
            hashes = (
                "<br>".join(
                    f"`{Path(str(f.get('path', ''))).name}` {str(f.get('sha256', ''))[:16]}"
                    for f in files[:5]
                    if isinstance(f, dict)
                )
                if not ds
                else f"manifest {(_manifest_hash(home, ds.get('ref')) or 'not found')[:16]}"
            )
            if len(files) > 5 and not ds:
                hashes += f"<br>... {len(files) - 5} more"
            tokens = ((d.get("splits") or {}).get("train") or {}).get("tokens")
            lines.append(
                f"| {_cell(d.get('name'))} | {_num(d.get('weight'), 'g')} | "
                f"{_num(d.get('share'), '.1%')} | {_cell(_norm_ref(ds.get('ref')) or '–')} | "
                f"{hashes} | {_num(tokens, ',')} | {_num(seen.get(d.get('name')), ',')} |"
            )

    if train:
        steps, batch = train.get("steps"), train.get("global_batch_tokens")
        tokens = steps * batch if isinstance(steps, int) and isinstance(batch, int) else None
        lines += [
            "",
            "## Recipe",
            "",
            "| lr_fraction | max LR | schedule | steps | tokens/step | tokens | seq_len |",
            "|---:|---:|---|---:|---:|---:|---:|",
            f"| {_num(train.get('lr_fraction'), 'g')} | {_num(lineage.get('max_lr'), '.3g')} | "
            f"{_cell(train.get('schedule', '–'))} | {_num(steps, ',')} | {_num(batch, ',')} | "
            f"{_num(tokens, ',')} | {_num((config.get('data') or {}).get('seq_len'), ',')} |",
        ]
        if lineage.get("max_lr_source"):
            lines += ["", f"Max LR = lr_fraction x {lineage['max_lr_source']}."]

    metrics = lineage.get("metrics") or {}
    final, baseline = metrics.get("final") or {}, metrics.get("baseline") or {}
    if final:
        lines += [
            "",
            f"## Held-out loss during training (step 0 -> step {metrics.get('step', '?')})",
            "",
            "| set | base | final | change |",
            "|---|---:|---:|---:|",
        ]
        for set_name, loss in final.items():
            b = baseline.get(set_name)
            rel = (loss - b) / b if isinstance(b, (int, float)) and b else None
            lines.append(f"| {_cell(set_name)} | {_num(b)} | {_num(loss)} | {_pct(rel)} |")

    ev = report or lineage.get("eval")
    if isinstance(ev, dict):
        head = ev.get("headline") or {}
        lines += ["", "## Evaluation", ""]
        if head:
            metric = head.get("metric", "bpb")
            lines.append(
                f"Against the base ({metric}): domain gain **{_pct(head.get('domain_gain'))}**, "
                f"general regression **{_pct(head.get('general_regression'))}**."
            )
            lines.append("")
        lines += [
            "| set | role | base bpb | adapted bpb | improvement |",
            "|---|---|---:|---:|---:|",
        ]
        for set_name, s in (ev.get("sets") or {}).items():
            if not isinstance(s, dict):
                continue
            lines.append(
                f"| {_cell(set_name)} | {s.get('role') or '–'} | "
                f"{_num((s.get('base') or {}).get('bpb'))} | "
                f"{_num((s.get('adapted') or {}).get('bpb'))} | {_pct(s.get('improvement'))} |"
            )
        tasks = ev.get("tasks") or {}
        if tasks:
            lines += ["", "| task | role | improvement |", "|---|---|---:|"]
            for task, t in tasks.items():
                if isinstance(t, dict):
                    lines.append(
                        f"| {_cell(task)} | {t.get('role') or '–'} | {_pct(t.get('improvement'))} |"
                    )
    lines += [
        "",
        "## Use",
        "",
        "```python",
        "from transformers import AutoModelForCausalLM, AutoTokenizer",
        "",
        'model = AutoModelForCausalLM.from_pretrained("PATH_OR_REPO")',
        'tokenizer = AutoTokenizer.from_pretrained("PATH_OR_REPO")',
        "```",
        "",
        "Full lineage (config, data hashes, metrics) is in `steep.json`.",
        "",
    ]
    return "\n".join(lines)


def attach_eval_report(model_dir: Path) -> None:
    """Called by ``steep eval`` after it wrote the report: refresh the hub row and card.

    Hub trouble is printed, never raised: the eval report itself is already safe on disk.
    """
    try:
        Hub().attach_eval(model_dir)
    except Exception as exc:
        print(f"warning: model hub: could not attach the eval report of {model_dir}: {exc}")


def record_dataset(version_dir: Path) -> None:
    """Called when the Data Hub publishes a version under a workspace's datasets/ folder."""
    version_dir = Path(version_dir)
    if version_dir.parent.parent.name != "datasets":
        return  # a catalog outside a workspace: no registry to tell
    try:
        Hub(version_dir.parent.parent.parent).register_dataset(version_dir)
    except Exception as exc:
        print(f"warning: model hub: could not register dataset {version_dir}: {exc}")
