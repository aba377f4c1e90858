"""The training loop, in phases that read top to bottom: folder, build, restore, the step
loop, finish.

``train`` runs them; ``fit`` is the step loop and ``train_step`` one optimizer step. Each
phase lives in a module named for its job (``build``, ``restore``, ``finish``), and the side
jobs decide their own "when": the loop asks ``run.evaluator.due(step)`` and
``run.checkpointer.due(step)``, and hands each eval to the mix, whose forgetting budget
judges it.
"""

from __future__ import annotations

import math
import shutil
import time
from pathlib import Path

import torch
from tqdm import tqdm

from steep.artifacts.metrics import train_record
from steep.artifacts.runstatus import failure_text
from steep.config import RunConfig
from steep.model.base_lr import resolve_max_lr
from steep.plan.flops import mfu
from steep.train.build import Run, build, open_folder, run_folder
from steep.train.finish import RunResult, finish
from steep.train.forward import lm_loss
from steep.train.optim import set_lr
from steep.train.parallel import Dist, destroy, init_distributed, set_gradient_sync
from steep.train.prefetch import Prefetcher
from steep.train.preflight import forgetting_warning
from steep.train.restore import restore
from steep.train.runfolder.create import resume_config
from steep.train.runfolder.state import (
    RunCancelled,
    RunState,
    RunStopped,
    cancel_asked,
    preemptible,
    restore_signals,
    stop_asked,
    stop_on_sigterm,
    stop_signal,
)
from steep.train.runtime import peak_memory_gib
from steep.workspace import steep_home

__all__ = ["RunResult", "resume_run", "train"]


def train(
    config: RunConfig,
    run_dir: Path | None = None,
    resume: bool = False,
    allow_data_change: bool = False,
    force: bool = False,
    allow_mixture_change: bool = False,
) -> RunResult:
    """Train ``config`` into ``run_dir`` (None: a new folder; ``resume``: go on from its
    newest checkpoint). Here: the process group, the signals, status.json's last word and
    the lock's release; the phases are in ``_train``."""
    d = init_distributed(config)  # one process, or one of torchrun's; checks the batch split
    status = RunState(enabled=d.is_main)  # status.json: running, done, failed (the hub reads it)
    discard = False
    previous = stop_on_sigterm()
    try:
        allow = (allow_data_change, allow_mixture_change)
        return _train(config, d, run_dir, resume, status, allow, force)
    except BaseException as raised:
        exc = raised
        broke = not isinstance(exc, (RunCancelled, RunStopped))
        if cancel_asked() and broke:  # SIGTERM broke a library
            exc = RunCancelled(f"cancelled (SIGTERM), which broke {type(raised).__name__}")
        # a start that failed (bad data, a config training refuses) leaves no run folder to
        # mistake for a run; under torchrun the folder stays (other ranks read rank 0's
        # failure from it), as does every run that got as far as its first record
        discard = status.created and not status.started and not d.enabled
        stopped = isinstance(exc, RunStopped)  # SIGUSR1/SIGTERM: checkpointed, to be resumed
        if stopped or isinstance(exc, RunCancelled) and not d.enabled:
            status.set("cancelled", str(exc))
        elif isinstance(exc, RunCancelled):  # torchrun also stops every rank when one fails
            status.set("failed", "stopped by SIGTERM (a rank failed, or the job was cancelled)")
        elif not discard:
            status.set("failed", failure_text(exc))
        if exc is raised:
            raise
        raise exc from raised
    finally:
        restore_signals(previous)
        if status.lock is not None:
            status.lock.release()
        if discard and status.run_dir is not None:
            shutil.rmtree(status.run_dir, ignore_errors=True)
        destroy()


def _train(
    config: RunConfig,
    d: Dist,
    run_dir: Path | None,
    resume: bool,
    status: RunState,
    allow: tuple[bool, bool] = (False, False),
    force: bool = False,
) -> RunResult:
    """The phases, in order; ``allow``: (a data change, a mixture change) on resume."""
    home = steep_home()
    run_dir = run_folder(config, d, run_dir, home)
    lr = resolve_max_lr(config)  # before any slow work: refuse to guess early
    caveat = forgetting_warning(config)  # in the log now and in report.md at the end
    open_folder(config, d, run_dir, resume, status)  # the lock, config.yaml, status.json
    run = build(config, d, run_dir, home, status, lr, caveat, force)
    restore(run, resume, allow)  # a checkpoint, or step 0's eval of the base
    best = fit(run)
    return finish(run, best)


def fit(run: Run) -> int | None:
    """The step loop, from ``run.step`` to train.steps: a step, its record, then what is
    due (an eval and the budget's verdict on it, a checkpoint, a stop SIGUSR1 asked for).
    Returns the budget's best step when the budget stopped the run, else None."""
    config, d, mix = run.config, run.d, run.mix
    steps, seq_len = config.train.steps, config.data.seq_len
    batch_tokens = config.train.global_batch_tokens
    prefetch = Prefetcher(run.inputs.mixture.load, run.runtime.device)  # reads ahead, pins
    bar = tqdm(
        total=steps,
        initial=run.step,
        desc="train",
        unit="step",
        dynamic_ncols=True,
        disable=not d.is_main,
    )
    # a SIGTERM here (scancel, a preemption) checkpoints this step on every rank, then stops
    with preemptible(config.train.preempt_grace_s):
        while run.step < steps:
            started = time.perf_counter()
            lr = run.schedule.lr(run.step) * mix.lr_multiplier  # < 1 after the budget's lr actions
            loss_sum, grad_norm = train_step(run, prefetch, lr)
            run.step += 1
            step = run.step

            # with SIGUSR1 (or SIGTERM) on any rank, every rank checkpoints this step, stops
            summed, stops = d.sum([loss_sum.item(), float(stop_asked())])
            train_loss, stopping = summed / (run.accum * d.world), stops > 0
            tok_s = batch_tokens / (time.perf_counter() - started)
            record = train_record(
                step, step * batch_tokens, loss=train_loss, lr=lr, grad_norm=grad_norm,
                tokens_per_s=tok_s, world=d.world,
                mfu=mfu(tok_s, run.flops_token, run.peak_flops, d.world),
                peak_mem_gib=peak_memory_gib(run.runtime.device),
                tokens_by_source=run.inputs.mixture.tokens_by_source(seq_len),
                **mix.step_fields(seq_len),  # the phase, tokens per phase
            )  # fmt: skip
            run.log(record, *mix.events(step))  # and a phase that began with this step
            if run.status.shown:
                run.status.phase(None)  # training: the metrics say the rest
            bar.update(1)
            bar.set_postfix(loss=f"{train_loss:.3f}", lr=f"{lr:.2e}", tok_s=f"{tok_s:.0f}")
            if not math.isfinite(train_loss):
                raise FloatingPointError(
                    f"train loss is {train_loss} at step {step}: "
                    "lower train.lr_fraction or check the data"
                )
            save_now = run.checkpointer.due(step, stopping)
            if run.evaluator.due(step):
                run.log(*mix.after_eval(step, run.eval_and_log(), run.baseline, save_now))
                if mix.stop:  # the budget says stop: the run ends with its best checkpoint
                    break
            if save_now:
                run.checkpointer.save(step, run.checkpoint_state(), protect=mix.best_step)
            if stopping:  # the checkpoint is on disk: a resume (a requeued job) goes on from it
                run.checkpointer.wait()
                raise RunStopped(step, stop_signal())
    bar.close()
    prefetch.close()
    run.checkpointer.wait()
    return mix.best_step if mix.stop else None


def train_step(run: Run, prefetch: Prefetcher, lr: float) -> tuple[torch.Tensor, float]:
    """One optimizer step on this rank's slice of the global batch: (the micro-batches'
    summed loss, on the device; the gradient norm before clipping)."""
    model, d, accum, micro = run.model, run.d, run.accum, run.config.train.micro_batch_size
    set_lr(run.optimizer, lr, run.lr_scales)
    run.warm.set_step(run.step)  # embeddings-only for the first train.embedding_warmup_steps
    draws = run.inputs.mixture.draw(run.config.sequences_per_step)  # the global batch
    mine = draws[d.rank * run.per_rank : (d.rank + 1) * run.per_rank]  # this rank's slice
    # summed on the device in float64: no host sync per micro-batch, and the same sum
    # a Python float gave (one .item() per step, in fit)
    loss_sum = torch.zeros((), dtype=torch.float64, device=run.runtime.device)
    parts = [mine[i * micro : (i + 1) * micro] for i in range(accum)]
    for i, batch in enumerate(prefetch.batches(parts)):  # the next one read meanwhile
        set_gradient_sync(model, i == accum - 1)
        with run.runtime.autocast():
            loss = lm_loss(model, batch, run.separator, chunk=run.chunk)
        (loss / accum).backward()  # FSDP averages over ranks: the global mean
        loss_sum += loss.detach().double()
    run.warm.mask_grads()  # in the warm stage, old embedding rows stay as they are
    grad_norm = clip_grad_norm(model, run.config.train.grad_clip)
    run.optimizer.step()
    run.optimizer.zero_grad(set_to_none=True)
    return loss_sum, grad_norm


def resume_run(
    run_dir: Path,
    allow_data_change: bool = False,
    force: bool = False,
    new_data: Path | None = None,
    overrides: list[str] | None = None,
    allow_mixture_change: bool = False,
) -> RunResult:
    """Continue a run from its own resolved config.yaml and newest complete checkpoint;
    ``new_data`` (a config whose data section replaces the run's) and ``overrides``
    (``data.*`` keys) change its mix, which ``allow_mixture_change`` must allow."""
    config = resume_config(run_dir, new_data, overrides, allow_mixture_change)
    return train(config, run_dir, True, allow_data_change, force, allow_mixture_change)


def clip_grad_norm(model: torch.nn.Module, max_norm: float | None) -> float:
    """Clip to ``max_norm`` (none: just measure); the norm over all ranks' shards."""
    norm = torch.nn.utils.clip_grad_norm_(model.parameters(), max_norm or math.inf)
    if hasattr(norm, "full_tensor"):  # a DTensor under FSDP2
        norm = norm.full_tensor()
    return float(norm)
