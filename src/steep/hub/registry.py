"""The ``Hub``: the registry of datasets, runs and models, kept in step with the folders.

``Hub.sync()`` registers what the workspace holds and drops what vanished, reparsing only
what changed (steep.hub.scan reads the folders); every listing syncs first, so a run or
dataset written by any process shows up. Dataset refs use the catalog's spelling,
``name@2``; ``name@v2`` is accepted wherever a ref is read.
"""

from __future__ import annotations

import os
import shutil
import socket
import sqlite3
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

from steep.artifacts.lineage import try_read_lineage
from steep.hub import publish
from steep.hub import scan as sc
from steep.hub.card import try_write_card
from steep.hub.schema import (
    STATUSES,
    HubError,
    connect,
    dataset_dict,
    group,
    model_dict,
    names,
    open_db,
    reading,
    run_dict,
    transaction,
)
from steep.workspace import (
    CARD_FILE,
    CONFIG_FILE,
    LINEAGE_FILE,
    METRICS_FILE,
    MODEL_DIR,
    Workspace,
    parse_version_dir,
)


class Hub:
    """The registry at ``home/hub.sqlite``; every method opens its own connection."""

    def __init__(self, home: Path | None = None) -> None:
        self.ws = Workspace(Path(home)) if home is not None else Workspace.current()
        self.home = self.ws.home
        self.path = self.ws.hub_db
        open_db(self.path)

    def connect(self) -> sqlite3.Connection:
        """A new connection (rows as ``sqlite3.Row``); callers close it."""
        return connect(self.path)

    def _tx(self) -> AbstractContextManager[sqlite3.Connection]:
        return transaction(self.path)

    def _read(self) -> AbstractContextManager[sqlite3.Connection]:
        return reading(self.path)

    # --- sync: folders -> registry ---------------------------------------------------------

    def sync(self) -> None:
        """Register what the workspace holds and drop what vanished; reparse only what changed.

        Cheap when nothing changed (a few stats and one read), so every list calls it.
        """
        self._sync_datasets()
        self._sync_runs()
        self._sync_models()

    def _sync_datasets(self) -> None:
        found = sc.dataset_versions(self.ws)
        with self._read() as con:
            known = {r["ref"]: r["manifest_mtime"] for r in con.execute("SELECT * FROM datasets")}
        stale = [ref for ref in known if ref not in found]
        todo = [v for ref, v in found.items() if known.get(ref) != sc.mtime(sc.manifest_path(v[2]))]
        if not stale and not todo:
            return
        with self._tx() as con:
            con.executemany("DELETE FROM datasets WHERE ref = ?", [(r,) for r in stale])
            for name, version, path in todo:
                _upsert_dataset(con, name, version, path)

    def _sync_runs(self) -> None:
        with self._read() as con:
            rows = {r["path"]: dict(r) for r in con.execute("SELECT * FROM runs")}
        paths = {str(p) for p in sc.run_dirs(self.ws)} | set(rows)
        gone = [p for p in rows if not Path(p).is_dir()]
        todo = [p for p in paths if p not in gone and sc.run_changed(Path(p), rows.get(p))]
        if not gone and not todo:
            return
        with self._tx() as con:
            con.executemany("DELETE FROM runs WHERE path = ?", [(p,) for p in gone])
            for p in todo:
                self._upsert_run(con, Path(p), None)

    def _upsert_run(
        self, con: sqlite3.Connection, path: Path, status: str | None, error: str | None = None
    ) -> str:
        """Insert or refresh one run row from its folder; ``status`` None: infer it."""
        row = con.execute("SELECT * FROM runs WHERE path = ?", (str(path),)).fetchone()
        row = dict(row) if row else None
        name = row["name"] if row else _free_name(con, "runs", path.name)
        updates: dict[str, Any] = {"updated": sc.now()}
        has_model = try_read_lineage(path / MODEL_DIR)[0] is not None  # written last
        cfg_mtime = sc.mtime(path / CONFIG_FILE)
        if row is None:  # the row first: run_sources refers to it
            con.execute(
                "INSERT INTO runs (name, path, status, created) VALUES (?, ?, ?, ?)",
                (name, str(path), "done" if has_model else "unknown", sc.iso(cfg_mtime or 0)),
            )
        if row is None or row["config_mtime"] != cfg_mtime:
            config, cfg_error = sc.read_config(path)
            updates.update(sc.config_fields(config, path))
            updates["config_mtime"] = cfg_mtime
            if cfg_error:
                updates["error"] = cfg_error
            con.execute("DELETE FROM run_sources WHERE run = ?", (name,))
            con.executemany(
                "INSERT OR REPLACE INTO run_sources (run, source, ref, weight, paths)"
                " VALUES (?, ?, ?, ?, ?)",
                [(name, *edge) for edge in sc.source_edges(config, self.ws)],
            )
        summary, offset, inode = sc.fold_metrics(
            path / METRICS_FILE,
            sc.loads(row["metrics"]) if row else None,
            row["metrics_offset"] if row else 0,
            row["metrics_inode"] if row else None,
        )
        updates.update(metrics=sc.dumps(summary), metrics_offset=offset, metrics_inode=inode)

        here = socket.gethostname()
        old = row["status"] if row else None
        recorded = sc.recorded_status(path)
        if status is None and recorded is not None:  # the training process's own record
            updates.update(recorded)
        elif status is not None:
            updates["status"] = status
            updates["pid"], updates["host"] = (
                (os.getpid(), here) if status == "running" else (None, None)
            )
            updates["error"] = error
        elif old == "running" and row and row["pid"] and row["host"] == here:
            if not sc.pid_alive(row["pid"]):
                updates["status"] = "done" if has_model else "failed"
                if not has_model:
                    updates["error"] = f"training process {row['pid']} ended without finishing"
        elif old == "unknown" and has_model:
            updates["status"] = "done"
        cols = ", ".join(f"{k} = ?" for k in updates)
        con.execute(f"UPDATE runs SET {cols} WHERE name = ?", (*updates.values(), name))
        if has_model and updates.get("status", old) == "done":
            self._upsert_model(con, path / MODEL_DIR, name)
        return name

    def _sync_models(self) -> None:
        with self._read() as con:
            rows = {r["path"]: dict(r) for r in con.execute("SELECT * FROM models")}
            run_models = {
                str(Path(r["path"]) / MODEL_DIR): r["name"]
                for r in con.execute("SELECT name, path FROM runs")
            }
        paths = {str(p) for p in sc.model_dirs(self.ws)} | set(rows)
        paths |= {p for p in run_models if (Path(p) / sc.HF_CONFIG).is_file()}
        gone = [p for p in rows if not (Path(p) / sc.HF_CONFIG).is_file()]
        todo = [
            p
            for p in paths
            if p not in gone
            and (p not in rows or rows[p]["lineage_mtime"] != sc.mtime(Path(p) / LINEAGE_FILE))
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
        lineage, why = try_read_lineage(path)
        if run is None and lineage is not None and lineage.run_dir:
            hit = con.execute(
                "SELECT name FROM runs WHERE path = ?", (str(Path(lineage.run_dir).resolve()),)
            ).fetchone()
            run = hit["name"] if hit else None
        if row is not None:
            name = row["name"]
            run = run or row["run"]
        else:
            stem = run or (path.parent.name if path.name == MODEL_DIR else path.name)
            name = _free_name(con, "models", stem)
        values = {"name": name, "path": str(path), "run": run, **sc.model_row(path, lineage, why)}
        cols = ", ".join(values)
        marks = ", ".join("?" for _ in values)
        sets = ", ".join(f"{k} = excluded.{k}" for k in values if k not in ("name", "path"))
        con.execute(
            f"INSERT INTO models ({cols}) VALUES ({marks}) ON CONFLICT(path) DO UPDATE SET {sets}",
            tuple(values.values()),
        )
        if lineage is not None:
            try_write_card(path, name, self.home)
        return name

    # --- queries ----------------------------------------------------------------------------

    def datasets(self) -> list[dict[str, Any]]:
        """Every dataset version, newest version of each name first."""
        self.sync()
        with self._read() as con:
            rows = con.execute("SELECT * FROM datasets ORDER BY name, version DESC").fetchall()
            used = group(
                con.execute("SELECT ref, run FROM run_sources WHERE ref IS NOT NULL ORDER BY run")
            )
        return [dataset_dict(r, used.get(r["ref"], [])) for r in rows]

    def dataset(self, ref: str) -> dict[str, Any]:
        """One version by ``name@N`` (or ``name@vN``; plain ``name`` is the latest)."""
        want = sc.norm_ref(ref)
        for d in self.datasets():
            if d["ref"] == want or (want == d["name"] and "@" not in ref):
                return d
        raise HubError(f"no dataset {ref!r} in {self.ws.datasets}")

    def runs(self) -> list[dict[str, Any]]:
        """Every run, newest first."""
        self.sync()
        with self._read() as con:
            rows = con.execute("SELECT * FROM runs ORDER BY created DESC").fetchall()
            return [run_dict(con, r) for r in rows]

    def run(self, name: str) -> dict[str, Any]:
        self.sync()
        with self._read() as con:
            row = con.execute("SELECT * FROM runs WHERE name = ?", (name,)).fetchone()
            if row is None:
                raise HubError(f"no run named {name!r}; runs: {names(con, 'runs')}")
            out = run_dict(con, row)
            out["config"] = sc.loads(row["config"])
            return out

    def models(self) -> list[dict[str, Any]]:
        """Every registered model, newest first."""
        self.sync()
        with self._read() as con:
            rows = con.execute("SELECT * FROM models ORDER BY created DESC").fetchall()
        return [model_dict(r) for r in rows]

    def model(self, name: str) -> dict[str, Any]:
        """One model with its full lineage, eval report and dependents."""
        self.sync()
        with self._read() as con:
            row = con.execute("SELECT * FROM models WHERE name = ?", (name,)).fetchone()
            if row is None:
                raise HubError(f"no model named {name!r}; models: {names(con, 'models')}")
        out = model_dict(row)
        path = Path(row["path"])
        lineage, _ = try_read_lineage(path)
        out["lineage"] = lineage.dump() if lineage else None
        out["eval_report"], _ = sc.read_json(sc.eval_report_path(path))
        if out["eval_report"] is None and lineage:
            out["eval_report"] = lineage.eval
        out["card"] = str(path / CARD_FILE) if (path / CARD_FILE).is_file() else None
        out["dependents"] = self.dependents(name)
        return out

    def dependents(self, model_name: str) -> list[str]:
        """Runs whose base lies inside this model's folder (they would lose their base)."""
        with self._read() as con:
            row = con.execute("SELECT path FROM models WHERE name = ?", (model_name,)).fetchone()
            if row is None:
                raise HubError(f"no model named {model_name!r}; models: {names(con, 'models')}")
            runs = con.execute(
                "SELECT name, base_path FROM runs WHERE base_path IS NOT NULL ORDER BY created"
            ).fetchall()
        return [r["name"] for r in runs if sc.within(r["base_path"], row["path"])]

    # --- writes -----------------------------------------------------------------------------

    def register_dataset(self, version_dir: Path) -> str:
        """Record one published dataset version folder (NAME/vN); returns ``name@N``."""
        version_dir = Path(version_dir).resolve()
        version = parse_version_dir(version_dir.name)
        if version is None or not sc.manifest_path(version_dir).is_file():
            raise HubError(f"{version_dir} is not a dataset version folder (NAME/vN/manifest.json)")
        with self._tx() as con:
            _upsert_dataset(con, version_dir.parent.name, version, version_dir)
        return sc.dataset_ref(version_dir.parent.name, version)

    def register_run(self, run_dir: Path, status: str | None, error: str | None = None) -> str:
        """Record a run folder with ``status`` (None: what its status.json says); returns
        the run's registry name."""
        if status is not None and status not in STATUSES:
            raise HubError(f"run status {status!r}: use one of {', '.join(STATUSES)}")
        run_dir = Path(run_dir).resolve()
        if not run_dir.is_dir():
            raise HubError(f"run folder {run_dir} does not exist")
        with self._tx() as con:
            return self._upsert_run(con, run_dir, status, error)

    def register_model(self, model_dir: Path, run_name: str | None) -> str:
        """Record (or refresh) a model folder, write its model card; returns its name."""
        model_dir = Path(model_dir).resolve()
        if not (model_dir / sc.HF_CONFIG).is_file():
            raise HubError(f"{model_dir} is not a Hugging Face model folder (no config.json)")
        with self._tx() as con:
            known = con.execute("SELECT 1 FROM runs WHERE name = ?", (run_name,)).fetchone()
            if run_name is not None and not known:
                raise HubError(f"no run named {run_name!r} to attach {model_dir} to")
            return self._upsert_model(con, model_dir, run_name)

    def attach_eval(self, model_dir: Path) -> str | None:
        """After ``steep eval``: refresh the model's eval summary and card.

        A folder steep did not train (no lineage of its own) and that is not registered is
        left alone: evaluating a downloaded model must not add it to the hub.
        """
        model_dir = Path(model_dir).resolve()
        with self._read() as con:
            known = con.execute("SELECT 1 FROM models WHERE path = ?", (str(model_dir),)).fetchone()
        lineage, _ = try_read_lineage(model_dir)
        if not known and not (lineage and lineage.kind):
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

    def remove_run(self, name: str, archive: bool = False) -> Path | None:
        """Delete a run folder (or move it to ``archive/runs``) and its rows; refused while
        it runs or while another run starts from its model. Returns the archived path."""
        run = self.run(name)
        if run["status"] == "running":
            raise HubError(f"run {name!r} is running: cancel it first")
        model = run.get("model")
        deps = [d for d in (self.dependents(model) if model else []) if d != name]
        if deps:
            raise HubError(
                f"run {name!r}'s model is the base of run(s) {', '.join(deps)}: they could not "
                "be resumed or reproduced without it"
            )
        path = Path(run["path"])
        if archive:
            dest = self.ws.archive / "runs" / path.name
            if dest.exists():
                raise HubError(f"{dest} exists: an archived run of the same name")
            dest.parent.mkdir(parents=True, exist_ok=True)
            target = dest
        else:
            target = path.with_name(f".{path.name}.deleting-{os.getpid()}")
        try:
            os.replace(path, target)  # first: a crash leaves a whole folder somewhere
        except OSError as exc:
            raise HubError(f"cannot move run {name!r} at {path}: {exc}") from exc
        with self._tx() as con:
            con.execute("DELETE FROM models WHERE run = ?", (name,))
            con.execute("DELETE FROM runs WHERE name = ?", (name,))
        if archive:
            return target
        shutil.rmtree(target, ignore_errors=True)
        return None

    def export_model(self, name: str, dest: Path) -> Path:
        """Copy the model folder to ``dest`` (built aside, then renamed: all or nothing)."""
        return publish.export_model(Path(self.model(name)["path"]), name, self.home, dest)

    def push_model(
        self, name: str, repo_id: str, private: bool = False, token: str | None = None
    ) -> str:
        """Upload the model folder to a Hugging Face repo; returns the commit URL."""
        path = Path(self.model(name)["path"])
        return publish.push_model(path, name, self.home, repo_id, private, token)


# --- rows -----------------------------------------------------------------------------------


def _upsert_dataset(con: sqlite3.Connection, name: str, version: int, path: Path) -> None:
    values = sc.dataset_row(name, version, path)
    cols = ", ".join(values)
    marks = ", ".join("?" for _ in values)
    sets = ", ".join(f"{k} = excluded.{k}" for k in values if k not in ("ref", "name", "version"))
    con.execute(
        f"INSERT INTO datasets ({cols}) VALUES ({marks}) ON CONFLICT(ref) DO UPDATE SET {sets}",
        tuple(values.values()),
    )


def _free_name(con: sqlite3.Connection, table: str, stem: str) -> str:
    name, i = stem, 1
    while con.execute(f"SELECT 1 FROM {table} WHERE name = ?", (name,)).fetchone():
        i += 1
        name = f"{stem}-{i}"
    return name
