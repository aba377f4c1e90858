"""Files the studio sends: metrics and logs read incrementally, model folders as a zip."""

from __future__ import annotations

import os
import stat
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from steep.artifacts.fmt import data_size
from steep.artifacts.metrics import read_from
from steep.artifacts.runstatus import read_status
from steep.studio.runview import checkpoint_steps, tensorboard_command
from steep.workspace import REPORT_FILE, TENSORBOARD_DIR

MAX_METRICS_CHUNK = 4 << 20  # bytes of metrics.jsonl per poll; the client asks again


# --- metrics and logs: read incrementally ---------------------------------------------------


def read_jsonl_from(path: Path, offset: int, inode: int | None) -> dict[str, Any]:
    """Complete lines of ``path`` after byte ``offset``; a rewritten file starts over.

    A resumed run rewrites metrics.jsonl (new inode, maybe shorter): ``reset`` tells the
    client to drop what it has and take the records from the top.
    """
    chunk = read_from(path, offset, inode, limit=MAX_METRICS_CHUNK)
    return {
        "records": chunk.records,
        "offset": chunk.offset,
        "inode": chunk.inode,
        "reset": chunk.reset,
    }


def read_text_from(path: Path, offset: int, limit: int = 256 << 10) -> dict[str, Any]:
    try:
        size = path.stat().st_size
    except OSError:
        return {"text": "", "offset": 0}
    if offset > size:
        offset = 0
    if not offset and size > limit:  # first look at a long log: its tail
        offset = size - limit
    with open(path, "rb") as f:
        f.seek(offset)
        data = f.read(limit)
    return {"text": data.decode("utf-8", "replace"), "offset": offset + len(data)}


# --- model download: a zip written while it is sent -----------------------------------------


class _Pipe:
    """A write-only file for zipfile that hands out what was written (tell, no seek)."""

    def __init__(self) -> None:
        self._buf = bytearray()
        self._pos = 0

    def write(self, data: bytes) -> int:
        self._buf += data
        self._pos += len(data)
        return len(data)

    def tell(self) -> int:
        return self._pos

    def flush(self) -> None:
        pass

    def take(self) -> bytes:
        out = bytes(self._buf)
        self._buf.clear()
        return out


def _regular_files(folder: Path) -> list[Path]:
    """Files under ``folder``, sorted; no hidden entries, no links (to files or folders)."""
    out = []
    for root, dirs, files in os.walk(folder, followlinks=False):
        dirs[:] = [d for d in dirs if not d.startswith(".")]
        for name in files:
            path = Path(root) / name
            if not name.startswith(".") and stat.S_ISREG(path.lstat().st_mode):
                out.append(path)
    return sorted(out)


def zip_folder(folder: Path, root_name: str, chunk: int = 1 << 20) -> Iterator[bytes]:
    """Stream ``folder`` as a zip: constant memory, no temporary file (data descriptors).

    Only regular files are sent, no symlinks and no hidden files (partial writes, trash).
    """
    pipe = _Pipe()
    with zipfile.ZipFile(pipe, "w", allowZip64=True) as zf:
        for path in _regular_files(folder):
            rel = path.relative_to(folder)
            info = zipfile.ZipInfo.from_file(path, f"{root_name}/{rel.as_posix()}")
            text = path.suffix in (".json", ".md", ".txt", ".yaml", ".jinja")
            info.compress_type = zipfile.ZIP_DEFLATED if text else zipfile.ZIP_STORED
            with open(path, "rb") as src, zf.open(info, "w", force_zip64=True) as dst:
                while data := src.read(chunk):
                    dst.write(data)
                    yield pipe.take()
    yield pipe.take()


def run_facts(run_dir: Path) -> dict[str, Any]:
    """What the run page shows beside its charts: the phase before the first step (from
    status.json) and which of the run's own files exist to link (report, plots, TensorBoard)."""
    status = read_status(run_dir)
    plots = Path(run_dir) / "plots"
    tb = Path(run_dir) / TENSORBOARD_DIR
    phase = status.phase if status and status.state == "running" else None
    total = phase.get("total") if isinstance(phase, dict) else None
    return {
        "phase": phase,
        "phase_size": data_size(total) if isinstance(total, int | float) and total > 0 else None,
        "checkpoints": checkpoint_steps(run_dir),  # markers on the charts
        "files": {
            "report": (Path(run_dir) / REPORT_FILE).is_file(),
            "plots": sorted(p.name for p in plots.glob("*.png")) if plots.is_dir() else [],
            "tensorboard": str(tb) if tb.is_dir() else None,
            "tensorboard_command": tensorboard_command(tb) if tb.is_dir() else None,
        },
    }


def run_file(run_dir: Path, name: str) -> Path | None:
    """``report.md`` or ``plots/NAME.png`` of a run, and nothing else (no path from the URL
    reaches further than those names)."""
    if name == REPORT_FILE:
        path = Path(run_dir) / REPORT_FILE
    elif name.startswith("plots/") and name.endswith(".png") and "/" not in name[6:]:
        path = Path(run_dir) / "plots" / name[6:]
    else:
        return None
    if path.name.startswith(".") or not path.is_file():
        return None
    return path
