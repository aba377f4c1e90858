"""A CPU run's speed as this machine measured it: the tokens/s that earlier runs of the
same shape wrote in their metrics.jsonl.

A CPU has no bf16 peak to divide FLOPs by, so ``steep plan`` (and the studio's estimate,
the same ``make_plan``) would say nothing about time; a run of the same model, sequence,
micro-batch, precision and method here already measured it. The newest such run counts,
the median of its steps after the first (the first includes warm-up). A step with an MFU
ran on a GPU (a CPU has no peak to measure MFU against) and is left out.
"""

from __future__ import annotations

import json
import statistics
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from steep.config.schema import RunConfig
from steep.workspace import CONFIG_FILE, METRICS_FILE, Workspace

# what makes two runs' tokens/s comparable on one machine
SHAPE_KEYS = (
    "model.base",
    "model.gguf_file",
    "model.random_init",
    "model.attention",
    "data.seq_len",
    "train.micro_batch_size",
    "train.precision",
    "train.method",
    "train.lora.rank",
    "train.optimizer",
    "train.activation_checkpointing",
    "train.compile",
    "train.threads",
)
NEWEST = 50  # run folders looked at, newest first: a check stays fast in a full workspace
TAIL = 64 * 1024  # bytes of metrics.jsonl read from its end


@dataclass(frozen=True)
class Measured:
    tokens_per_s: float
    run: str  # the run folder that measured it
    steps: int  # how many of its steps the median is of


def shape_of(config: dict[str, Any]) -> tuple:
    """The values of ``SHAPE_KEYS`` in a config dict (a run's config.yaml)."""
    out = []
    for key in SHAPE_KEYS:
        node: Any = config
        for part in key.split("."):
            node = node.get(part) if isinstance(node, dict) else None
        out.append(json.dumps(node, sort_keys=True))
    return tuple(out)


def measured_throughput(config: RunConfig, home: Path | None = None) -> Measured | None:
    """tokens/s of the newest earlier run of ``config``'s shape here, or None."""
    runs = (Workspace(home) if home else Workspace.current()).runs
    wanted = shape_of(config.model_dump(mode="json"))
    try:
        folders = sorted(
            (p for p in runs.iterdir() if (p / METRICS_FILE).is_file()),
            key=lambda p: (p / METRICS_FILE).stat().st_mtime,
            reverse=True,
        )[:NEWEST]
    except OSError:  # no runs folder yet
        return None
    for folder in folders:
        try:  # through the schema: a default left out is the same as written
            theirs = RunConfig.model_validate(yaml.safe_load((folder / CONFIG_FILE).read_text()))
        except (OSError, yaml.YAMLError, ValueError):
            continue
        if shape_of(theirs.model_dump(mode="json")) != wanted:
            continue
        speeds = _speeds(folder / METRICS_FILE)
        if speeds:
            return Measured(statistics.median(speeds), folder.name, len(speeds))
    return None


def _speeds(path: Path) -> list[float]:
    """tokens/s of the train records at the end of a metrics.jsonl, step 1 left out."""
    with open(path, "rb") as f:
        f.seek(max(0, f.seek(0, 2) - TAIL))
        lines = f.read().decode("utf-8", "replace").splitlines()
    speeds = []
    for line in lines:
        try:
            rec = json.loads(line)
        except ValueError:  # the first, cut line, or one being written
            continue
        if not isinstance(rec, dict) or rec.get("mfu") is not None:  # a GPU's step
            continue
        if rec.get("kind") == "train" and rec.get("step", 0) > 1:
            value = rec.get("tokens_per_s")
            if isinstance(value, int | float) and value > 0:
                speeds.append(float(value))
    return speeds
