"""The one builder of a ``steep train`` command line, and its shell quoting.

``steep launch`` (torchrun, Slurm), ``steep sweep`` and the studio runner all start training
through ``train_command``, so a flag added to ``steep train`` is passed the same way by all.
"""

from __future__ import annotations

import shlex
import sys
from collections.abc import Sequence
from pathlib import Path


class ShellVar(str):
    """An argument the shell must expand on the node (``$NODE_RANK``): quoted with "", not ''."""


def train_command(
    config_path: str | Path | None,
    overrides: Sequence[str] = (),
    *,
    run_dir: str | Path | None = None,
    resume: str | Path | None = None,
    python: str = sys.executable,
) -> list[str]:
    """argv of ``python -m steep train CONFIG [--set K=V ...] [--out RUN_DIR]``, or of
    ``python -m steep train --resume RUN_DIR`` (a resumed run reads its own config.yaml, so
    ``config_path`` is not passed then). A launcher that runs the module itself (torchrun)
    takes the place of ``python``: ``[launcher, *flags, *train_command(...)[1:]]``."""
    args = train_args(config_path, overrides, run_dir=run_dir, resume=resume)
    return [python, "-m", "steep", "train", *args]


def train_args(
    config_path: str | Path | None,
    overrides: Sequence[str] = (),
    *,
    run_dir: str | Path | None = None,
    resume: str | Path | None = None,
) -> list[str]:
    """What follows ``steep train`` in ``train_command``: a Slurm script picks one of two
    (start or resume) on the node, after the launcher's own flags."""
    if resume is not None:
        if overrides or run_dir is not None:
            raise ValueError("a resumed run takes no --set or --out: it has its own config.yaml")
        return ["--resume", str(resume)]
    if config_path is None:
        raise ValueError("train_command needs a config path (or resume=RUN_DIR)")
    sets = [a for item in overrides for a in ("--set", item)]
    out = ["--out", str(run_dir)] if run_dir is not None else []
    return [str(config_path), *sets, *out]


def tokenize_command(
    config_path: str | Path, overrides: Sequence[str] = (), *, python: str = sys.executable
) -> list[str]:
    """argv of ``python -m steep data tokenize --config CONFIG [--set K=V ...]``: the run's
    data into the token cache, before the GPU ranks start (``steep launch --pretokenize``)."""
    sets = [a for item in overrides for a in ("--set", item)]
    return [python, "-m", "steep", "data", "tokenize", "--config", str(config_path), *sets]


def shell_join(cmd: list[str]) -> str:
    """Quote for a POSIX shell; ShellVar arguments stay expandable."""
    return " ".join(f'"{a}"' if isinstance(a, ShellVar) else shlex.quote(a) for a in cmd)
