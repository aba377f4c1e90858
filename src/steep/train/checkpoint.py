"""Atomic save and resume of the whole training state.

A checkpoint is ``checkpoints/step_NNNNNNN/`` holding the model (safetensors), the
optimizer (torch.save), the RNG states and ``state.json`` (step, tokens, mixture counts).
It is written into a hidden temporary folder, flushed to disk, and renamed into place, so a
crash or a full disk at any moment leaves the previous checkpoint whole and the half-written
one invisible. Only folders named ``step_*`` count; leftovers are removed on the next save.
"""

from __future__ import annotations

import json
import os
import random
import re
import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_model, save_model

STEP_DIR = re.compile(r"^step_(\d+)$")


class CheckpointError(RuntimeError):
    """A checkpoint could not be written or read; the message says which and why."""


def checkpoint_dirs(root: Path) -> list[Path]:
    """Complete checkpoints under ``root``, oldest first."""
    if not root.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in root.iterdir() if (m := STEP_DIR.match(p.name))]
    return [p for _, p in sorted(found) if (p / "state.json").exists()]


def latest_checkpoint(root: Path) -> Path | None:
    dirs = checkpoint_dirs(root)
    return dirs[-1] if dirs else None


def rng_state() -> dict[str, Any]:
    state = {
        "python": random.getstate(),
        "numpy": np.random.get_state(),
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _fsync_tree(path: Path) -> None:
    for f in path.iterdir():
        with open(f, "rb") as fh:
            os.fsync(fh.fileno())
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def save_checkpoint(
    root: Path,
    step: int,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    state: dict[str, Any],
    keep_last: int,
) -> Path:
    """Write step ``step`` atomically, then drop all but the newest ``keep_last``."""
    root.mkdir(parents=True, exist_ok=True)
    for leftover in root.glob(".step_*"):
        shutil.rmtree(leftover, ignore_errors=True)
    final = root / f"step_{step:07d}"
    tmp: Path | None = None
    try:
        tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.", dir=root))
        save_model(model, str(tmp / "model.safetensors"))
        torch.save(optimizer.state_dict(), tmp / "optimizer.pt")
        torch.save(rng_state(), tmp / "rng.pt")
        (tmp / "state.json").write_text(json.dumps({**state, "step": step}, indent=2) + "\n")
        _fsync_tree(tmp)
        if final.exists():
            shutil.rmtree(final)
        os.replace(tmp, final)
    except OSError as exc:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)
        last = latest_checkpoint(root)
        kept = f"the last good checkpoint is {last}" if last else "there is no earlier checkpoint"
        raise CheckpointError(
            f"could not write checkpoint for step {step} in {root}: "
            f"{exc.strerror or exc} ({type(exc).__name__}); {kept}, untouched"
        ) from exc
    for old in checkpoint_dirs(root)[:-keep_last]:
        shutil.rmtree(old, ignore_errors=True)
    return final


def load_checkpoint(
    path: Path, model: torch.nn.Module, optimizer: torch.optim.Optimizer
) -> dict[str, Any]:
    """Restore model, optimizer and RNG in place; return state.json's contents."""
    try:
        state = json.loads((path / "state.json").read_text())
        missing, unexpected = load_model(model, str(path / "model.safetensors"), strict=True)
        optimizer.load_state_dict(torch.load(path / "optimizer.pt", weights_only=False))
        set_rng_state(torch.load(path / "rng.pt", weights_only=False))
    except (OSError, ValueError, RuntimeError, KeyError) as exc:
        raise CheckpointError(f"checkpoint {path} cannot be loaded: {exc}") from exc
    return state
