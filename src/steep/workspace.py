"""Every path under ``STEEP_HOME`` and every file name of the on-disk contracts, once.

The CLI, the studio, the hub and a second machine find the same things because they all
ask this module; no other module spells ``runs/``, ``datasets/`` or ``steep.json``.
Layout (docs/formats.md has the files inside each)::

    $STEEP_HOME/
      datasets/NAME/vN/        Data Hub versions (manifest.json, shards, exclusions)
      runs/NAME-STAMP-XXXX/    training runs (config.yaml, metrics.jsonl, report.md, model/)
      sweeps/NAME-STAMP/       sweeps (sweep.json, results.md, points/)
      models/NAME/             models put in the hub by hand or by tools
      models/base/NAME/        bases converted from GGUF
      classifiers/NAME/        domain classifiers for mining
      cache/tokens/            tokenized sources, shared by runs
      cache/tools/             programs steep runs (llama.cpp's GGUF converter)
      cache/gguf-meta/         a GGUF's small metadata fields, so checks skip its vocabulary
      demo/, downloads/        the offline demos' corpora and the packages they came from
      studio/jobs/, uploads/   the studio's job folders and upload staging
      studio/data-jobs/        the studio's prepare jobs (output, exit.json)
      hub.sqlite               the registry over all of the above
"""

from __future__ import annotations

import os
import re
import secrets
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

HOME_ENV = "STEEP_HOME"
DEFAULT_HOME = "steep-home"

# file names of the contracts (docs/formats.md)
CONFIG_FILE = "config.yaml"
METRICS_FILE = "metrics.jsonl"
REPORT_FILE = "report.md"
LINEAGE_FILE = "steep.json"
MANIFEST_FILE = "manifest.json"
PLACEMENT_FILE = "placement.json"  # which host ran each unit of a dataset version
HUB_DB_FILE = "hub.sqlite"
CARD_FILE = "README.md"
MODEL_DIR = "model"  # a run's saved model
ADAPTER_DIR = "adapter"  # a LoRA run's adapter, beside the merged model
CHECKPOINTS_DIR = "checkpoints"
TENSORBOARD_DIR = "tensorboard"  # a run's TensorBoard events (train.trackers)
EVAL_DIR = "eval"  # a model's `steep eval` report
EVAL_JSON = "eval.json"
STATUS_FILE = "status.json"  # a run's state: running, done or failed (artifacts.runstatus)
LOCK_FILE = ".lock"  # held by the one process writing a run folder (train.runfolder.lock)


# A name that becomes a file or folder name (a source, an eval set, a dataset): letters,
# digits, '_', '.', '-', starting with a letter or digit, so never '..', a hidden file or a
# path. A run name only has to stay one path component (it is a prefix of the folder name).
PLAIN_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")
_RUN_NAME_BAD = re.compile(r"[/\\\x00-\x1f\x7f]")


def plain_name_problem(name: str, what: str) -> str | None:
    """Why ``name`` cannot name a file or folder, or None when it can."""
    if PLAIN_NAME.match(name):
        return None
    return (
        f"{what} {name!r}: use letters, digits, '_', '.', '-', starting with a letter or "
        "digit (at most 128 characters): the name becomes a file or folder name"
    )


def run_name_problem(name: str) -> str | None:
    """Why ``name`` cannot begin a run folder's name (a path separator, a leading dot)."""
    if name and len(name) <= 128 and not name.startswith(".") and not _RUN_NAME_BAD.search(name):
        return None
    return (
        f"run.name {name!r}: it begins the run folder's name, so it may not be empty, start "
        "with '.', or hold '/', '\\' or control characters (at most 128 characters)"
    )


def steep_home() -> Path:
    """The workspace folder: ``$STEEP_HOME``, else ``./steep-home``, made absolute."""
    return Path(os.environ.get(HOME_ENV, DEFAULT_HOME)).resolve()


def converted_gguf_name(gguf: Path) -> str:
    """The folder under ``models/base/`` holding a GGUF's dequantised HF copy: its stem and
    size, so a changed file is converted again (``model.io.gguf_to_hf`` writes it and
    ``steep plan`` reads its config.json). OSError when the file is missing."""
    return f"{gguf.stem}-{gguf.stat().st_size}"


def stamp() -> str:
    """The local time in folder names: sortable, one format for runs and sweeps."""
    return datetime.now().strftime("%Y%m%d-%H%M%S")


def version_dir_name(version: int) -> str:
    return f"v{version}"


def parse_version_dir(name: str) -> int | None:
    """'v3' -> 3; anything else -> None."""
    return int(name[1:]) if name.startswith("v") and name[1:].isdigit() else None


@dataclass(frozen=True)
class Workspace:
    """The folders of one ``STEEP_HOME``."""

    home: Path

    @classmethod
    def current(cls) -> Workspace:
        return cls(steep_home())

    @property
    def runs(self) -> Path:
        return self.home / "runs"

    @property
    def datasets(self) -> Path:
        return self.home / "datasets"

    @property
    def sweeps(self) -> Path:
        return self.home / "sweeps"

    @property
    def models(self) -> Path:
        return self.home / "models"

    @property
    def base_models(self) -> Path:
        return self.home / "models" / "base"

    @property
    def classifiers(self) -> Path:
        return self.home / "classifiers"

    @property
    def token_cache(self) -> Path:
        return self.home / "cache" / "tokens"

    @property
    def tools(self) -> Path:
        """Programs steep fetches once and runs (llama.cpp's GGUF converter)."""
        return self.home / "cache" / "tools"

    @property
    def gguf_meta(self) -> Path:
        """A GGUF file's small metadata fields as JSON (``artifacts.ggufmeta``)."""
        return self.home / "cache" / "gguf-meta"

    @property
    def studio_jobs(self) -> Path:
        return self.home / "studio" / "jobs"

    @property
    def studio_data_jobs(self) -> Path:
        """The studio's ``steep data prepare`` jobs (studio/prepare_job.py)."""
        return self.home / "studio" / "data-jobs"

    @property
    def archive(self) -> Path:
        """Archived runs (``archive/runs/NAME``): kept on disk, out of every listing."""
        return self.home / "archive"

    @property
    def uploads(self) -> Path:
        return self.home / "uploads"

    @property
    def demo(self) -> Path:
        """The offline demos' corpora and outputs."""
        return self.home / "demo"

    @property
    def downloads(self) -> Path:
        """Packages the demos fetch from PyPI / Debian (wheels, .debs), kept for reruns."""
        return self.home / "downloads"

    @property
    def hub_db(self) -> Path:
        return self.home / HUB_DB_FILE

    def dataset_version(self, name: str, version: int) -> Path:
        return self.datasets / name / version_dir_name(version)

    def new_run_dir(self, name: str) -> Path:
        """A fresh run folder name: time stamp + random suffix, so two launches in the same
        second (CLI, studio, sweep) never share a folder."""
        return self.runs / f"{name}-{stamp()}-{secrets.token_hex(2)}"

    def new_sweep_dir(self, name: str) -> Path:
        return self.sweeps / f"{name}-{stamp()}"
