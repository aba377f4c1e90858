"""The folder readers behind ``Hub.sync``: what a workspace holds, and the row each item makes.

Nothing here writes. Dataset versions come from the Data Hub catalog; run folders are read
for their config, metrics log and model; model folders for their lineage (typed, through
``steep.artifacts.lineage``). A file that is missing or unreadable gives a row with an
``error``, never an exception, so one broken folder cannot stop a listing.
"""

from __future__ import annotations

import json
import os
import socket
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import yaml

from steep.artifacts.lineage import Lineage, try_read_lineage
from steep.artifacts.manifest import ManifestError, read_manifest
from steep.artifacts.metrics import read_from
from steep.artifacts.runstatus import read_status
from steep.datahub.catalog import Catalog, DatasetRef
from steep.workspace import (
    CONFIG_FILE,
    EVAL_DIR,
    EVAL_JSON,
    LINEAGE_FILE,
    MANIFEST_FILE,
    METRICS_FILE,
    MODEL_DIR,
    Workspace,
)

HF_CONFIG = "config.json"  # what makes a folder a Hugging Face model

# --- small helpers ------------------------------------------------------------------------


def now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, timezone.utc).isoformat(timespec="seconds")


def mtime(path: Path) -> float | None:
    try:
        return path.stat().st_mtime
    except OSError:
        return None


def loads(text: str | None) -> Any:
    return json.loads(text) if text else None


def dumps(value: Any) -> str | None:
    return None if value is None else json.dumps(value, default=str, sort_keys=True)


def read_json(path: Path) -> tuple[dict[str, Any] | None, str | None]:
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


def eval_report_path(model_dir: Path) -> Path:
    return Path(model_dir) / EVAL_DIR / EVAL_JSON


def local_path(spec: str | None, cwd: Path | None = None) -> str | None:
    """An existing local folder (or file) for a base spec, resolved; None for a hub id."""
    if not spec or spec.startswith("pkg://"):
        return None
    p = Path(spec)
    if not p.is_absolute():
        p = (cwd or Path.cwd()) / p
    return str(p.resolve()) if p.exists() else None


def within(path: str | None, folder: str) -> bool:
    return bool(path) and (path == folder or path.startswith(folder.rstrip("/") + "/"))


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


# --- datasets -------------------------------------------------------------------------------


def dataset_ref(name: str, version: int) -> str:
    """The catalog's spelling of a version: ``name@2``."""
    return str(DatasetRef(name, version))


def norm_ref(ref: str | None) -> str | None:
    """'name@3' / 'name@v3' -> 'name@3'; 'name' stays (resolved to a version elsewhere)."""
    if not ref:
        return None
    name, _, version = ref.partition("@")
    version = version.removeprefix("v")
    return dataset_ref(name, int(version)) if version.isdigit() else name


def dataset_versions(ws: Workspace) -> dict[str, tuple[str, int, Path]]:
    """ref -> (name, version, folder) of every published version, as the catalog lists them."""
    catalog = Catalog(ws.datasets)
    return {
        dataset_ref(name, v): (name, v, ws.dataset_version(name, v))
        for name in catalog.names()
        if not name.startswith(".")
        for v in catalog.versions(name)
    }


def latest_ref(ws: Workspace, name: str) -> str:
    """A bare dataset name as the ref of its newest version (the name alone when it has none)."""
    versions = Catalog(ws.datasets).versions(name)
    return dataset_ref(name, versions[-1]) if versions else name


def manifest_path(version_dir: Path) -> Path:
    return Path(version_dir) / MANIFEST_FILE


def dataset_row(name: str, version: int, path: Path) -> dict[str, Any]:
    """The ``datasets`` row of one version folder, from its manifest."""
    try:
        m, error = read_manifest(path).dump(), None
    except ManifestError as exc:  # a damaged manifest is a row with its error, not a crash
        m, error = {}, str(exc)
    return {
        "ref": dataset_ref(name, version),
        "name": name,
        "version": version,
        "path": str(path.resolve()),
        "documents": m.get("documents"),
        "bytes": m.get("bytes"),
        "languages": dumps(m.get("languages") or {}),
        "created": m.get("created") or iso(mtime(path) or 0),
        "funnel": dumps(funnel(m)),
        "manifest_mtime": mtime(manifest_path(path)),
        "error": error,
    }


_FUNNEL_KEYS = (
    "step",
    "params",
    "docs_in",
    "docs_out",
    "chars_in",
    "chars_out",
    "dropped",
    "edited",
)


def funnel(manifest: dict[str, Any]) -> list[dict[str, Any]]:
    """Per-step in/out counts (params and drop reasons kept) from a dataset manifest."""
    return [
        {k: step.get(k) for k in _FUNNEL_KEYS if k in step}
        for step in manifest.get("funnel") or []
        if isinstance(step, dict)
    ]


# --- runs -----------------------------------------------------------------------------------


def run_dirs(ws: Workspace) -> list[Path]:
    """Run folders that look like runs (a config, metrics or a model)."""
    if not ws.runs.is_dir():
        return []
    return sorted(
        p.resolve()
        for p in ws.runs.iterdir()
        if p.is_dir()
        and not p.name.startswith(".")
        and any((p / f).exists() for f in (CONFIG_FILE, METRICS_FILE, MODEL_DIR))
    )


def run_changed(path: Path, row: dict[str, Any] | None) -> bool:
    """Whether a run folder needs rereading: new, config or metrics changed, its model
    appeared, or its training process (on this host) ended."""
    if row is None:
        return True
    if row["config_mtime"] != mtime(path / CONFIG_FILE):
        return True
    try:
        st = (path / METRICS_FILE).stat()
        if st.st_size != row["metrics_offset"] or st.st_ino != row["metrics_inode"]:
            return True
    except OSError:
        pass
    if row["status"] == "unknown" and (path / MODEL_DIR / LINEAGE_FILE).is_file():
        return True
    recorded = recorded_status(path)
    if recorded is not None and any(row[k] != v for k, v in recorded.items()):
        return True
    if row["status"] == "running" and row["pid"] and row["host"] == socket.gethostname():
        return not pid_alive(row["pid"])
    return False


def recorded_status(run_dir: Path) -> dict[str, Any] | None:
    """Row values (status, pid, host, error) from the run's status.json; a ``running`` run
    whose process on this host is gone is failed. None when the run wrote no status."""
    st = read_status(run_dir)
    if st is None:
        return None
    if st.state != "running":
        return {"status": st.state, "pid": None, "host": None, "error": st.error}
    if st.host == socket.gethostname() and st.pid and not pid_alive(st.pid):
        why = f"training process {st.pid} ended without finishing"
        return {"status": "failed", "pid": None, "host": None, "error": why}
    return {"status": "running", "pid": st.pid, "host": st.host, "error": None}


def read_config(run_dir: Path) -> tuple[dict[str, Any] | None, str | None]:
    path = run_dir / CONFIG_FILE
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None, f"{CONFIG_FILE} missing"
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        return None, f"{path} unreadable: {str(exc).splitlines()[0]}"
    if not isinstance(data, dict):
        return None, f"{path} is not a mapping"
    return data, None


def config_fields(config: dict[str, Any] | None, run_dir: Path) -> dict[str, Any]:
    """The ``runs`` columns a run's config.yaml fills."""
    c = config or {}
    model = c.get("model") if isinstance(c.get("model"), dict) else {}
    train = c.get("train") if isinstance(c.get("train"), dict) else {}
    base = model.get("base") or ("random_init" if model.get("random_init") else None)
    return {
        "config": dumps(config),
        "base": base,
        "base_path": base_path(run_dir, model.get("base")),
        "lr_fraction": train.get("lr_fraction"),
        "steps": train.get("steps"),
        "error": None,
    }


def base_path(run_dir: Path, base: str | None) -> str | None:
    """The base's local folder: the lineage's record when the model exists, else the config's.

    A GGUF base is converted into the workspace's base models, which the lineage names.
    """
    lineage, _ = try_read_lineage(run_dir / MODEL_DIR)
    recorded = lineage.base_path if lineage else None
    if recorded and local_path(recorded):
        return local_path(recorded)
    return local_path(base)


def source_edges(config: dict[str, Any] | None, ws: Workspace) -> list[tuple[Any, ...]]:
    """(source, ref, weight, paths JSON) per configured source: the run -> dataset edges.

    A dataset named without a version resolves to its latest; ``name@vN`` reads as ``name@N``.
    """
    data = (config or {}).get("data")
    sources = data.get("sources") if isinstance(data, dict) else None
    edges = []
    for src in sources or []:
        if not isinstance(src, dict) or not isinstance(src.get("name"), str):
            continue
        ref = norm_ref(src["dataset"]) if isinstance(src.get("dataset"), str) else None
        if ref and "@" not in ref:
            ref = latest_ref(ws, ref)
        edges.append((src["name"], ref, src.get("weight", 1.0), dumps(src.get("paths"))))
    return edges


_TRAIN_KEYS = ("step", "tokens", "loss", "lr", "tokens_per_s", "time")


def fold_metrics(
    path: Path, summary: dict[str, Any] | None, offset: int, inode: int | None
) -> tuple[dict[str, Any] | None, int, int | None]:
    """Fold the new complete lines of metrics.jsonl into the summary (no rereading).

    A changed inode or a shorter file (a resume rewrites it) starts again from the top; a
    line still being written waits for the next sync; a vanished file keeps the summary.
    """
    chunk = read_from(path, offset, inode)
    if chunk.inode is None:
        return summary, 0, None
    out: dict[str, Any] = {} if chunk.reset or inode is None else dict(summary or {})
    if chunk.bad_lines:
        out["bad_lines"] = out.get("bad_lines", 0) + chunk.bad_lines
    for rec in chunk.records:
        if rec.get("kind") == "train":
            out.update({k: rec.get(k) for k in _TRAIN_KEYS})
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
    return (out or None), chunk.offset, chunk.inode


# --- models ---------------------------------------------------------------------------------


def model_dirs(ws: Workspace) -> list[Path]:
    """Model folders: every run's model, and each folder of the workspace's models and bases."""
    dirs = [p / MODEL_DIR for p in run_dirs(ws) if (p / MODEL_DIR / HF_CONFIG).is_file()]
    for folder in (ws.models, ws.base_models):
        if folder.is_dir():
            dirs += [
                p.resolve()
                for p in folder.iterdir()
                if p.is_dir() and not p.name.startswith(".") and (p / HF_CONFIG).is_file()
            ]
    return dirs


def model_row(path: Path, lineage: Lineage | None, why: str | None) -> dict[str, Any]:
    """The ``models`` columns a model folder fills (all but name, path and run).

    ``lineage`` and ``why`` are what ``try_read_lineage`` gave: a folder without a lineage
    file is a plain HF model; one whose file cannot be read keeps the reason in ``error``.
    """
    lin = lineage
    metrics = (
        lin.metrics.model_dump(mode="json", exclude_none=True) if lin and lin.metrics else None
    )
    return {
        "kind": lin.kind if lin else (None if (path / LINEAGE_FILE).exists() else "plain"),
        "base": lin.base_source if lin else None,
        "base_path": local_path(lin.base_path) if lin and lin.base_path else None,
        "created": (lin.created if lin else None) or iso(mtime(path / HF_CONFIG) or 0),
        "metrics": dumps(metrics),
        "eval": dumps(eval_summary(path, lin)),
        "lineage_mtime": mtime(path / LINEAGE_FILE),
        "error": f"lineage unreadable: {why}" if why else None,
    }


def eval_summary(model_dir: Path, lineage: Lineage | None) -> dict[str, Any] | None:
    """Headline and per-set bpb of the attached eval report (the lineage's ``eval``)."""
    ev = lineage.eval if lineage else None
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
    report = eval_report_path(model_dir)
    return {
        "created": ev.get("created"),
        "domain_gain": head.get("domain_gain"),
        "general_regression": head.get("general_regression"),
        "metric": head.get("metric"),
        "sets": sets,
        "report": str(report) if report.is_file() else None,
    }
