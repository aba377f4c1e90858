"""What both demos do around their training runs: a precision this CPU runs at full
speed, and no optimizer state left behind once they have finished."""

from __future__ import annotations

import shutil
from pathlib import Path

from steep.artifacts.fmt import data_size
from steep.train.runtime import native_bf16


def cpu_precision() -> list[str]:
    """fp32 on a CPU that emulates bf16 (no AVX512-BF16 or AMX): there bf16 autocast, the
    demo's precision elsewhere, runs ~13x slower (BENCHMARKS.md), so the demo would take
    half an hour instead of minutes. A later ``--set train.precision=...`` still wins."""
    if native_bf16():
        return []
    print("this CPU has no native bf16: the demo trains in fp32 (train.precision=fp32)")
    return ["train.precision=fp32"]


def drop_checkpoints(run_dir: Path) -> None:
    """A finished demo needs no optimizer state to resume from: its checkpoint (fp32
    weights and two AdamW moments, ~2 GB for 135M parameters) would be left behind for
    nothing. The model itself is in model/."""
    folder = run_dir / "checkpoints"
    if not folder.is_dir():
        return
    size = sum(f.stat().st_size for f in folder.rglob("*") if f.is_file())
    shutil.rmtree(folder)
    print(
        f"removed the finished demo's checkpoints ({data_size(size)}); the model is in {run_dir / 'model'}"
    )
