"""Atomic, sharded save and resume of the whole training state.

A checkpoint is ``checkpoints/step_NNNNNNN/`` holding the model and optimizer as a
torch.distributed.checkpoint (DCP) folder (``.metadata`` + one ``__R_0.distcp`` file per
rank), each rank's RNG state (``rng_rankR.pt``) and ``state.json`` (step, world size,
mixture counts, baseline). DCP stores every tensor by its fully-qualified name and global
shape, so a checkpoint written by 2 ranks loads into 1 (or 8): resuming survives a change
of world size. One process writes the same format with no process group.

All ranks write into a hidden ``.step_NNNNNNN.tmp`` folder; after a barrier rank 0 writes
state.json last, flushes the folder to disk and renames it into place, so a crash or a full
disk at any moment leaves the previous checkpoint whole and the half-written one invisible.
A folder that lacks state.json or any shard its metadata names is never loaded.
"""

from __future__ import annotations

import json
import os
import random
import re
import shutil
import sys
import time
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed.checkpoint as dcp
from torch.distributed.checkpoint import CheckpointException
from torch.distributed.checkpoint.state_dict import (
    StateDictOptions,
    get_state_dict,
    set_state_dict,
)

from steep.config.schema import CheckpointSection
from steep.errors import SteepError
from steep.train.parallel import Dist
from steep.train.runfolder.state import RunCancelled, cancel_asked
from steep.train.runfolder.write_errors import CONTINUE

STEP_DIR = re.compile(r"^step_(\d+)$")


# One process saves the same DCP format with no process group; DCP warns about that.
warnings.filterwarnings("ignore", message="torch.distributed is disabled, unavailable")


class CheckpointError(SteepError):
    """A checkpoint could not be written or read; the message says which and why."""


def checkpoint_dirs(root: Path) -> list[Path]:
    """Complete checkpoints under ``root``, oldest first."""
    if not root.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in root.iterdir() if (m := STEP_DIR.match(p.name))]
    return [p for _, p in sorted(found) if is_complete(p)]


def is_complete(path: Path) -> bool:
    """state.json, the DCP metadata and every shard file the metadata names are present,
    each of the size it was written with (state.json's ``files``: a shard cut short by a
    full disk or a bad copy is caught here, and the previous checkpoint is used)."""
    if not (path / "state.json").exists() or not (path / ".metadata").exists():
        return False
    damaged = _damaged(path)
    if damaged:
        print(f"warning: checkpoint {path} is damaged ({damaged}); not used", file=sys.stderr)
        return False
    try:
        meta = dcp.FileSystemReader(str(path)).read_metadata()
    except Exception:  # a truncated or foreign .metadata file
        return False
    files = {info.relative_path for info in (meta.storage_data or {}).values()}
    missing = sorted(f for f in files if not (path / f).exists())
    if missing:
        print(
            f"warning: checkpoint {path} is incomplete (missing {missing}); not used",
            file=sys.stderr,
        )
    return not missing


def _damaged(path: Path) -> str | None:
    """What differs from the sizes written with the checkpoint (None: all as written)."""
    try:
        sizes = json.loads((path / "state.json").read_text()).get("files")
    except (OSError, ValueError):
        return "state.json cannot be read"
    for name, size in (sizes or {}).items():  # checkpoints before steep 0.3 have none
        f = path / name
        if not f.exists():
            return f"{name} is missing"
        if f.stat().st_size != size:
            return f"{name} has {f.stat().st_size:,} bytes, written with {size:,}"
    return None


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
    d: Dist | None = None,
    trainable_only: bool = False,
) -> Path:
    """Write step ``step`` atomically from every rank, then drop all but the newest ``keep_last``.

    ``trainable_only`` (LoRA): the frozen base is left out; a resume reloads it as it began.
    """
    pending = start_checkpoint(root, step, model, optimizer, state, keep_last, d, trainable_only)
    return pending.wait()


def start_checkpoint(
    root: Path,
    step: int,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    state: dict[str, Any],
    keep_last: int,
    d: Dist | None = None,
    trainable_only: bool = False,
    background: bool = False,
    protect: int | None = None,
) -> PendingCheckpoint:
    """Begin a checkpoint; ``wait()`` on the result makes it whole and visible.

    ``background`` (``checkpoint.async_save``): DCP's ``async_save`` copies the state to host
    memory (the only stall) and writes the files in a thread while training goes on; the
    next checkpoint, the end of the run or a stop waits for it. The RNG state is taken now,
    so the checkpoint is the state after step ``step`` however late it lands. ``protect``:
    a step whose checkpoint pruning keeps (the forgetting budget's best).
    """
    d = d or Dist()
    final = root / f"step_{step:07d}"
    tmp = root / f".{final.name}.tmp"
    if d.is_main:
        root.mkdir(parents=True, exist_ok=True)
        for leftover in root.glob(".step_*"):
            shutil.rmtree(leftover, ignore_errors=True)
    d.barrier()
    pending = PendingCheckpoint(root, final, tmp, step, state, keep_last, d, rng_state())
    pending.protect = protect
    started = time.perf_counter()
    with pending.errors():
        model_sd, optim_sd = get_state_dict(model, optimizer, options=_options(trainable_only))
        both = {"model": model_sd, "optim": optim_sd}
        if background:
            group = _async_group() if d.enabled else None
            pending.future = dcp.async_save(
                both, checkpoint_id=str(tmp), process_group=group, no_dist=not d.enabled
            )
        else:
            dcp.save(both, checkpoint_id=str(tmp), no_dist=not d.enabled)
    pending.stall_s = time.perf_counter() - started
    return pending


_ASYNC_GROUP: list[Any] = []


def _async_group() -> Any:
    """A gloo group for the writer thread: async save needs a CPU backend, and its
    collectives must not interleave with training's on the default (NCCL) group."""
    if not _ASYNC_GROUP:  # created on every rank at the first async save: a collective
        _ASYNC_GROUP.append(torch.distributed.new_group(backend="gloo"))
    return _ASYNC_GROUP[0]


class PendingCheckpoint:
    """A checkpoint begun by ``start_checkpoint``; ``wait`` finishes it (once)."""

    def __init__(
        self,
        root: Path,
        final: Path,
        tmp: Path,
        step: int,
        state: dict[str, Any],
        keep_last: int,
        d: Dist,
        rng: dict[str, Any],
    ) -> None:
        self.root, self.final, self.tmp, self.step = root, final, tmp, step
        self.state, self.keep_last, self.d, self.rng = state, keep_last, d, rng
        self.future: Any = None
        self.protect: int | None = None  # a step pruning keeps
        self.stall_s = 0.0
        self.done: Path | None = None

    @contextmanager
    def errors(self) -> Iterator[None]:
        """A failed write removes the half checkpoint and says the last good one is intact."""
        try:
            yield
        except RuntimeError as exc:  # torch.save's own writer: a bug unless SIGTERM broke it
            if not cancel_asked():
                raise
            shutil.rmtree(self.tmp, ignore_errors=True)
            raise RunCancelled("cancelled (SIGTERM) while a checkpoint was written") from exc
        except (OSError, CheckpointException) as exc:
            shutil.rmtree(self.tmp, ignore_errors=True)
            cause = _root_cause(exc)
            if isinstance(cause, KeyboardInterrupt):  # SIGTERM or ^C while DCP wrote: DCP
                raise cause from None  # wraps it like a failure, but it is a stop asked for
            if cancel_asked():  # SIGTERM broke the writer, which failed in its own words
                raise RunCancelled("cancelled (SIGTERM) while a checkpoint was written") from exc
            last = latest_checkpoint(self.root)
            kept = (
                f"the last good checkpoint is {last}" if last else "there is no earlier checkpoint"
            )
            raise CheckpointError(
                f"could not write checkpoint for step {self.step} in {self.root}: "
                f"{getattr(cause, 'strerror', None) or cause} ({type(cause).__name__}); "
                f"{kept}, untouched: {CONTINUE.format(run=self.root.parent)}"
            ) from exc

    def wait(self) -> Path:
        """Wait for the files, then state.json last, flush, rename into place, prune."""
        if self.done is not None:
            return self.done
        d, tmp = self.d, self.tmp
        started = time.perf_counter()
        with self.errors():
            if self.future is not None:
                self.future.result()  # the writer thread's error, if any, is raised here
            torch.save(self.rng, tmp / f"rng_rank{d.rank}.pt")
            d.barrier()
            if d.is_main:
                files = {f.name: f.stat().st_size for f in sorted(tmp.iterdir()) if f.is_file()}
                record = {
                    **self.state,
                    "step": self.step,
                    "world_size": d.world,
                    "files": files,
                    "stall_s": round(self.stall_s, 4),  # training waited this long for it
                    **({"wait_s": round(time.perf_counter() - started, 4)} if self.future else {}),
                }
                (tmp / "state.json").write_text(json.dumps(record, indent=2) + "\n")
                _fsync_tree(tmp)
                if self.final.exists():
                    shutil.rmtree(self.final)
                os.replace(tmp, self.final)
        d.barrier()
        if d.is_main:
            keep = f"step_{self.protect:07d}" if self.protect is not None else None
            for old in checkpoint_dirs(self.root)[: -self.keep_last]:
                if old.name != keep:
                    shutil.rmtree(old, ignore_errors=True)
        self.done = self.final
        return self.final


def _root_cause(exc: BaseException) -> BaseException:
    """DCP wraps each rank's error (with its traceback) in a CheckpointException."""
    if isinstance(exc, CheckpointException) and exc.failures:
        first = next(iter(exc.failures.values()))
        return first[0] if isinstance(first, tuple) else first
    return exc


def _options(trainable_only: bool) -> StateDictOptions:
    # a missing trained tensor still fails: dcp.load refuses keys the checkpoint lacks
    return StateDictOptions(ignore_frozen_params=trainable_only, strict=not trainable_only)


def load_checkpoint(
    path: Path,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    d: Dist | None = None,
    trainable_only: bool = False,
) -> dict[str, Any]:
    """Restore model, optimizer and RNG in place, resharding to this world size.

    Returns state.json's contents.
    """
    d = d or Dist()
    try:
        state = json.loads((path / "state.json").read_text())
        options = _options(trainable_only)
        model_sd, optim_sd = get_state_dict(model, optimizer, options=options)
        target = {"model": model_sd, "optim": optim_sd}
        dcp.load(target, checkpoint_id=str(path), no_dist=not d.enabled)
        set_state_dict(
            model,
            optimizer,
            model_state_dict=target["model"],
            optim_state_dict=target["optim"],
            options=options,
        )
        rng = path / f"rng_rank{d.rank}.pt"
        set_rng_state(
            torch.load(rng if rng.exists() else path / "rng_rank0.pt", weights_only=False)
        )
    except (OSError, ValueError, RuntimeError, KeyError, CheckpointException) as exc:
        raise CheckpointError(f"checkpoint {path} cannot be loaded: {_root_cause(exc)}") from exc
    return state


def load_newest(
    root: Path,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    at_step: Callable[[int], None],
    d: Dist,
    trainable_only: bool = False,
) -> tuple[Path | None, dict[str, Any]]:
    """The newest checkpoint that loads, newest first: one that fails to load (damaged in a
    way its sizes do not show) is named and the one before it is tried."""
    for ckpt in reversed(checkpoint_dirs(root)):
        at_step(int(ckpt.name.removeprefix("step_")))  # e.g. the optimizer groups it needs
        try:
            return ckpt, load_checkpoint(ckpt, model, optimizer, d, trainable_only)
        except CheckpointError as exc:
            print(f"warning: {exc}; trying the one before it", file=sys.stderr)
    if root.is_dir() and any(p.name.startswith("step_") for p in root.iterdir()):
        raise CheckpointError(
            f"no checkpoint in {root} is whole (see the warnings above): move them aside to "
            "start the run again from step 0"
        )
    return None, {}


class Checkpointer:
    """A run's checkpoints: when one is due (``checkpoint.every_steps``, the last step, a
    stop asked for), one write in flight at a time (``checkpoint.async_save``), and the
    loads a resume or the forgetting budget's best step needs. The loop asks ``due``."""

    def __init__(
        self,
        root: Path,
        section: CheckpointSection,
        last_step: int,
        model: torch.nn.Module,
        optimizer: torch.optim.Optimizer,
        d: Dist,
        trainable_only: bool = False,  # LoRA: the frozen base is the base's
    ) -> None:
        self.root, self.section, self.last_step = root, section, last_step
        self.model, self.optimizer, self.d = model, optimizer, d
        self.trainable_only = trainable_only
        self.pending: PendingCheckpoint | None = None  # a write still in flight

    def due(self, step: int, stopping: bool = False) -> bool:
        return step % self.section.every_steps == 0 or step == self.last_step or stopping

    def save(self, step: int, state: dict[str, Any], protect: int | None = None) -> None:
        """Write step ``step`` (in the background with async_save); ``protect``: a step
        whose checkpoint outlives keep_last (the budget's best)."""
        self.wait()  # one write in flight at a time
        self.pending = start_checkpoint(
            self.root,
            step,
            self.model,
            self.optimizer,
            state,
            keep_last=self.section.keep_last,
            d=self.d,
            trainable_only=self.trainable_only,
            background=self.section.async_save,
            protect=protect,
        )
        if not self.section.async_save:
            self.pending.wait()

    def wait(self) -> None:
        """The write in flight, if any, whole and visible."""
        if self.pending is not None:
            self.pending.wait()

    def newest(self, at_step: Callable[[int], None]) -> tuple[Path | None, dict[str, Any]]:
        """Load the newest checkpoint that loads (``load_newest``): its path and state."""
        return load_newest(
            self.root, self.model, self.optimizer, at_step, self.d, self.trainable_only
        )

    def load(self, step: int) -> dict[str, Any]:
        """Load step ``step``'s checkpoint (the budget's best) into the model and optimizer."""
        return load_checkpoint(
            self.root / f"step_{step:07d}", self.model, self.optimizer, self.d, self.trainable_only
        )
