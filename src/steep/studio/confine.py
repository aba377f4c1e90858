"""What a studio job may read: files inside the workspace, and nothing reached through it.

The CLI trusts its user with any path; the studio serves whoever holds its token, so every
path a New-run config names (data and eval files, the base model, the tokenizer) must lie
inside ``STEEP_HOME`` after symlinks are resolved, a folder's files one by one (a link
inside a workspace folder that points out of it does not pass), and URLs are refused
(a studio job must not fetch from the studio's network). Each value is read as the job
reads it (``steep.config.load``: ``~`` and ``$VAR`` expanded, ``*.gguf`` and ``./``
values local; ``steep.config.locate``: ``pkg://`` a package's own files): a ``pkg://``
base that stays in its package and a plain hub id (``name`` or ``org/name``) pass,
anything else must be an absolute path in the workspace.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from steep.config.load import expand_path, looks_local
from steep.config.locate import PKG_SCHEME, ModelLoadError, resolve_base
from steep.data.locations import is_url

MAX_FILES_CHECKED = 100_000  # a folder larger than this is refused rather than walked for ever
HUB_ID = re.compile(r"[A-Za-z0-9][\w.-]*(/[A-Za-z0-9][\w.-]*)?")  # name or org/name


def inside(path: Path, root: Path) -> bool:
    """``path`` is ``root`` or under it, after symlinks are resolved."""
    real = path.resolve()  # follows symlinks: a link out of the workspace does not pass
    return real == root or root in real.parents


def _escapes(path: Path, root: Path) -> Path | None:
    """The first file under ``path`` (itself, or inside it) that resolves out of ``root``."""
    if not inside(path, root):
        return path
    if not path.is_dir():
        return None
    for n, (folder, dirs, files) in enumerate(os.walk(path, followlinks=False)):
        if n > MAX_FILES_CHECKED:
            return Path(folder)
        for name in [*files, *dirs]:
            entry = Path(folder) / name
            if not inside(entry, root):
                return entry
    return None


def _model_value(where: str, value: str, root: Path) -> str | _Refused | None:
    """A model.base or model.tokenizer value as the job reads it: a local path to check
    (returned), a name that reads no local file (None), or a refusal line."""
    if value.startswith(PKG_SCHEME) and where == "model.base":
        try:
            resolve_base(value)  # the job's own lookup: refuses a '..' out of the package
        except ModelLoadError as exc:
            return _Refused(f"{where}: {value!r}: {str(exc).partition(': ')[2] or exc}")
        return None
    # the job's own test, against a folder with nothing in it (a job's folder is new)
    if looks_local(value, root / ".no-such-folder") or ".." in value.split("/"):
        return value
    if HUB_ID.fullmatch(value):
        return None
    return _Refused(
        f"{where}: {value!r} is neither a hub id (org/name) nor a path in the workspace {root}"
    )


class _Refused(str):
    """A problem line standing in for a value (see _named_paths)."""


def _named_paths(raw: dict[str, Any], root: Path) -> Iterator[tuple[str, Any]]:
    """(field, value) for every path the config lets a job read; a model value the job
    would read no file for is left out, one it must not use is a _Refused line."""
    data = raw.get("data") if isinstance(raw.get("data"), dict) else {}
    for i, src in enumerate(data.get("sources") or []):
        if isinstance(src, dict) and isinstance(src.get("paths"), list):
            yield from ((f"data.sources.{i}.paths", p) for p in src["paths"])
    for name, files in (data.get("eval_sets") or {}).items():
        if isinstance(files, list):
            yield from ((f"data.eval_sets.{name}", p) for p in files)
    model = raw.get("model") if isinstance(raw.get("model"), dict) else {}
    for key in ("base", "tokenizer"):
        value = model.get(key)
        if value is None or value == "bytes":
            continue
        checked = _model_value(f"model.{key}", value, root) if isinstance(value, str) else value
        if checked is not None:
            yield f"model.{key}", checked


def outside_workspace(raw: dict[str, Any], home: Path) -> list[str]:
    """One line per path a studio job would read outside the workspace ``home``."""
    root = home.resolve()
    problems = []
    for where, value in _named_paths(raw, root):
        if isinstance(value, _Refused):
            problems.append(str(value))
            continue
        if not isinstance(value, str):
            problems.append(f"{where}: {value!r} is not a path")
            continue
        if is_url(value):
            problems.append(
                f"{where}: {value!r}: studio jobs do not read URLs; upload the data on the "
                "Data Hub page (the CLI reads URLs)"
            )
            continue
        p = Path(expand_path(value))  # as the job reads it: ~ and $VARs expanded
        if not p.is_absolute():
            problems.append(f"{where}: {value!r}: give an absolute path inside {root}")
            continue
        escaped = _escapes(p, root)
        if escaped is not None:
            what = "" if escaped == p else f" (through {escaped})"
            problems.append(
                f"{where}: {value!r} is outside the workspace {root}{what}; upload it on the "
                "Data Hub page"
            )
    problems += _tracker_problems(raw, root)
    model = raw.get("model") if isinstance(raw.get("model"), dict) else {}
    gguf = model.get("gguf_file")
    plain = isinstance(gguf, str) and Path(gguf).name == gguf and gguf not in {".", ".."}
    if gguf is not None and not plain:
        problems.append(f"model.gguf_file: {gguf!r} must be a file name inside model.base")
    return problems


def _tracker_problems(raw: dict[str, Any], root: Path) -> list[str]:
    """An MLflow store a studio job writes: a ``file:`` folder or a ``sqlite:`` database
    (``sqlite:////abs/path.db``) in the workspace only. A server URL would let a form make
    the studio's host send requests anywhere it reaches (W&B's host is fixed by the
    operator's environment, so it passes)."""
    track = raw.get("track") if isinstance(raw.get("track"), dict) else {}
    mlflow = track.get("mlflow") if isinstance(track.get("mlflow"), dict) else {}
    uri = mlflow.get("tracking_uri")
    if uri is None:
        return []
    where = "track.mlflow.tracking_uri"
    if not isinstance(uri, str) or not uri.startswith(("file:", "sqlite:")):
        return [
            f"{where}: {uri!r}: studio jobs write MLflow runs to a file: folder or a sqlite: "
            f"database in the workspace ({root}); use the CLI for a tracking server"
        ]
    if uri.startswith("sqlite:"):  # sqlite:////abs/m.db: the path after three slashes
        path = Path(uri.removeprefix("sqlite:///").partition("?")[0])
    else:
        path = Path(uri.removeprefix("file:").removeprefix("//"))
    if not path.is_absolute() or _escapes(path, root) is not None:
        return [f"{where}: {uri!r} is outside the workspace {root}"]
    return []
