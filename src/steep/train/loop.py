"""The training loop, top to bottom: model, data, optimizer, schedule; loop; eval; save.

Read ``train`` first: everything it calls lives in a module named for its job.
"""

from __future__ import annotations

import math
import shutil
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from tqdm import tqdm

from steep import __version__
from steep.artifacts import atomic
from steep.artifacts.lineage import Lineage, TrainMetrics
from steep.artifacts.metrics import eval_record
from steep.artifacts.runstatus import failure_text
from steep.config import RunConfig, dump_config
from steep.config.schema import loss_chunk_in_use
from steep.errors import ConfigError, SteepError
from steep.model.base_lr import resolve_max_lr
from steep.model.io import base_names, load_base, save_hf
from steep.train.checkpoint import load_checkpoint, load_newest, start_checkpoint
from steep.train.runfolder.drift import check_drift
from steep.train.evaluate import EvalSet, evaluate, window_rule
from steep.train.flops import device_peak_flops, flops_per_token
from steep.train.runfolder.write_errors import folder_error
from steep.train.forward import lm_loss, use_document_mask
from steep.train.inputs import build_inputs
from steep.train.kernels import apply_liger
from steep.train.runfolder.leftovers import clear_leftovers
from steep.train.lora import apply_method, check_method, merged_model, quantized_load
from steep.train.mixcontrol import MixControl, unbaselined_sets
from steep.train.optim import build_optimizer, check_optimizer, set_lr
from steep.train.parallel import (
    Dist,
    apply_activation_checkpointing,
    check_offload,
    compile_layers,
    destroy,
    full_state_dict,
    init_distributed,
    set_gradient_sync,
    shard_model,
)
from steep.plan.estimate import fit_problem
from steep.plan.flops import mfu
from steep.train.prefetch import Prefetcher
from steep.train.preflight import context_problem, forgetting_warning
from steep.train.rendezvous import Prepare
from steep.train.report import eval_table, format_table, read_metrics, write_report
from steep.train.runfolder.create import new_run_dir, resume_config
from steep.train.runfolder.lock import RunLock, RunLockedError
from steep.train.runfolder.state import (
    RunCancelled,
    RunState,
    RunStopped,
    restore_signals,
    stop_asked,
    stop_on_sigterm,
)
from steep.train.runtime import Runtime, peak_memory_gib, seed_everything
from steep.train.schedule import schedule_for
from steep.train.stages import EmbeddingWarmup, first_new_id
from steep.train.track import Tracker
from steep.train.trackers import check_trackers
from steep.workspace import (
    CHECKPOINTS_DIR,
    CONFIG_FILE,
    METRICS_FILE,
    MODEL_DIR,
    REPORT_FILE,
    steep_home,
)


@dataclass
class RunResult:
    run_dir: Path
    model_dir: Path
    baseline: dict[str, float]
    final: dict[str, float]


def train(
    config: RunConfig,
    run_dir: Path | None = None,
    resume: bool = False,
    allow_data_change: bool = False,
    force: bool = False,
    allow_mixture_change: bool = False,
) -> RunResult:
    d = init_distributed(config)  # one process, or one of torchrun's; checks the batch split
    status = RunState(enabled=d.is_main)  # status.json: running, done, failed (the hub reads it)
    discard = False
    previous = stop_on_sigterm()
    try:
        allow = (allow_data_change, allow_mixture_change)
        return _train(config, d, run_dir, resume, status, allow, force)
    except BaseException as exc:
        # a start that failed (bad data, a config training refuses) leaves no run folder to
        # mistake for a run; under torchrun the folder stays (other ranks read rank 0's
        # failure from it), as does every run that got as far as its first record
        discard = status.created and not status.started and not d.enabled
        stopped = isinstance(exc, RunStopped)  # SIGUSR1: checkpointed, to be resumed
        if stopped or isinstance(exc, RunCancelled) and not d.enabled:
            status.set("cancelled", str(exc))
        elif isinstance(exc, RunCancelled):  # torchrun also stops every rank when one fails
            status.set("failed", "stopped by SIGTERM (a rank failed, or the job was cancelled)")
        elif not discard:
            status.set("failed", failure_text(exc))
        raise
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
    home = steep_home()
    allow_data_change, allow_mixture_change = allow
    run_dir = Path(d.broadcast(str(run_dir or new_run_dir(config, home)) if d.is_main else None))
    max_lr, lr_source = resolve_max_lr(config)  # before any slow work: refuse to guess early
    caveat = forgetting_warning(config)  # in the log now and in report.md at the end
    refused = None
    if d.is_main:
        status.created = not resume and not run_dir.exists()
        run_dir.mkdir(parents=True, exist_ok=True)
        try:
            status.lock = RunLock(run_dir)
            status.lock.acquire()  # one writer per run folder; the kernel frees it on death
        except SteepError as exc:  # held by another process, or the folder is read-only
            status.lock, refused = None, exc
    why = d.broadcast(str(refused) if refused else None)
    if why:  # every rank stops, with rank 0's reason, before touching the folder
        raise refused if refused is not None else RunLockedError(why)
    if d.is_main:
        gone = clear_leftovers(run_dir)
        if gone:
            print(f"removed what a killed run left: {', '.join(sorted(gone))}")
        if not resume:
            (run_dir / CONFIG_FILE).write_text(dump_config(config))
        status.run_dir = run_dir
        status.set("running")
        print(f"run {run_dir}\nmax LR {max_lr:.3g} = {config.train.lr_fraction:g} x {lr_source}")
        if caveat:
            print(f"warning: {caveat}")
        if d.enabled:
            print(f"{d.world} ranks, FSDP2 over {config.train.precision}")

    # --- build: runtime, model, data, optimizer, schedule ---
    runtime = Runtime.from_config(config.train, d.local_rank)
    check_method(
        config, runtime.device, d.world
    )  # peft, CUDA, bitsandbytes: before any weights load
    check_optimizer(config)
    check_trackers(config.track)  # wandb, mlflow installed: before any weights load
    check_offload(config, d, runtime.device)
    too_big = None if force else fit_problem(config, d.world)  # steep plan's arithmetic
    if too_big:
        raise ConfigError(too_big)
    if d.is_main:
        print(runtime.describe())
    seed_everything(config.run.seed)
    wait_s = config.train.data_wait_s
    # rank 0 converts / downloads / tokenizes once, the others read its cache; they wait on
    # a file (train.data_wait_s), not in a collective that would time out
    status.phase("loading the base model")
    qlora = config.train.method == "qlora"
    with Prepare(d, run_dir, "base", wait_s):
        base = load_base(config.model, home, config.run.seed, quantized_load() if qlora else None)
    known = getattr(base.model.config, "max_position_embeddings", None)
    problem = context_problem(config.data.seq_len, known, f"model {config.model.base}")
    if problem:  # past its trained context the base's loss jumps: refuse before any work
        raise ConfigError(problem)
    model = base.model if qlora else base.model.to(runtime.device, runtime.weight_dtype)
    model.train()
    new_rows = first_new_id(base.info)  # a vocabulary extension's rows must train
    adapted = apply_method(model, config, config.train.precision, d.enabled, new_rows)
    flops_token = flops_per_token(model, config.data.seq_len)  # after apply_method: frozen base
    if adapted is not None:
        model = adapted.model  # peft's wrapper: adapters train, the base is frozen
        if d.is_main:
            print(adapted.describe())
    parallelize(model, config, d, runtime)
    status.phase("reading the data")
    with Prepare(d, run_dir, "inputs", wait_s) as prep:

        def progress(what: str, done: int, total: int) -> None:
            prep.progress(what, done, total)  # for the other ranks
            status.phase(what, done, total)  # for the studio

        inputs = build_inputs(config, base.tokenizer, home, not d.is_main, progress)
    mix = MixControl(config, inputs.mixture, quiet=not d.is_main)  # phases, resume, budget
    optimizer, lr_scales = build_optimizer(model, config, max_lr)  # scales: embeddings' LR
    warm = EmbeddingWarmup.from_config(model, optimizer, config, base.info)  # 0 steps: off
    schedule = schedule_for(config.train, max_lr)
    seq_len, micro = config.data.seq_len, config.train.micro_batch_size
    split = config.batch_split(d.world)  # steep.config.batch: the one arithmetic
    per_step, per_rank, accum = split.per_step, split.per_rank, split.accum
    separator = inputs.separator_id if use_document_mask(config, runtime) else None
    chunk = loss_chunk_in_use(config.train.loss_chunk, d.enabled)  # FSDP2: whole logits
    peak = device_peak_flops(runtime.device, config.train.peak_tflops)
    ckpt_root = run_dir / CHECKPOINTS_DIR

    # --- resume: model, optimizer, RNG, mixture position, baseline ---
    step, baseline = 0, {}

    def evaluate_sets(sets: list[EvalSet]) -> dict[str, float]:
        return evaluate(
            model, sets, config.eval.batch_size, runtime.device, runtime.autocast(),
            separator, chunk,
        )  # fmt: skip

    drift = (
        check_drift(ckpt_root, inputs.identity, allow_data_change, allow_mixture_change)
        if resume
        else None
    )
    if drift is not None:  # going on with new data: the base (still loaded) sets a new baseline
        drift["baseline"] = evaluate_sets(inputs.eval_sets)
    unseen = unbaselined_sets(ckpt_root, inputs.eval_sets) if allow_mixture_change else []
    new_baseline = evaluate_sets(unseen) if unseen else {}  # an added source's held-out set
    ckpt, state = (
        load_newest(ckpt_root, model, optimizer, warm.set_step, d, adapted is not None)
        if resume
        else (None, {})
    )
    if resume and ckpt is None and d.is_main:  # killed before its first checkpoint
        print(f"{run_dir} has no checkpoint yet: starting it again from step 0, with its config")
    data_changes: list[dict[str, Any]] = list(state.get("data_changes", []))
    mix_changed: list[str] = []
    if ckpt is not None:
        step, baseline = state["step"], {**state["baseline"], **new_baseline}
        if drift is not None:
            data_changes.append({**drift, "step": step})
            baseline = drift["baseline"]
        mix_changed = mix.resume(state, step, allow_mixture_change)
        if mix_changed and d.is_main:  # the next resume reads the mix it goes on with
            atomic.write_text(run_dir / CONFIG_FILE, dump_config(config))
            print(f"mixture changed at step {step}: {'; '.join(mix_changed)}")
        if d.is_main:
            was = state.get("world_size", 1)
            print(
                f"resumed from {ckpt.name}"
                + (f" (written by {was} ranks)" if was != d.world else "")
            )
    # a resume keeps the records up to the checkpoint; a restart from step 0, none
    kept = (step if ckpt is not None else -1) if resume else None
    status.started = True
    tracker = Tracker(run_dir, resume_step=kept, config=config) if d.is_main else None

    def log(*records: dict[str, Any]) -> None:
        for record in records if tracker is not None else ():
            tracker.log(record)

    def run_eval() -> dict[str, float]:
        losses = evaluate_sets(inputs.eval_sets)
        log(eval_record(step, step * config.train.global_batch_tokens, losses, baseline or losses))
        return losses

    if step == 0:  # the base model is the baseline every later eval is compared with
        status.phase("evaluating the base (step 0)")
        baseline = run_eval()
    log(*mix.events(step, mix_changed))  # a mix changed on resume: its step, what changed
    status.phase(("compiling, then " if config.train.compile else "") + "the first step")

    # --- the loop ---
    prefetch = Prefetcher(inputs.mixture.load, runtime.device)  # reads ahead, pins for CUDA
    pending = None  # a checkpoint still being written (checkpoint.async_save)
    bar = tqdm(
        total=config.train.steps,
        initial=step,
        desc="train",
        unit="step",
        dynamic_ncols=True,
        disable=not d.is_main,
    )
    while step < config.train.steps:
        started = time.perf_counter()
        lr = schedule.lr(step) * mix.lr_multiplier  # < 1 after the budget's lr actions
        set_lr(optimizer, lr, lr_scales)
        warm.set_step(step)  # embeddings-only for the first train.embedding_warmup_steps
        draws = inputs.mixture.draw(per_step)  # the global batch; this rank reads its slice
        mine = draws[d.rank * per_rank : (d.rank + 1) * per_rank]
        # summed on the device in float64: no host sync per micro-batch, and the same sum
        # a Python float gave (one .item() per step, below)
        loss_sum = torch.zeros((), dtype=torch.float64, device=runtime.device)
        parts = [mine[i * micro : (i + 1) * micro] for i in range(accum)]
        for i, batch in enumerate(prefetch.batches(parts)):  # the next one read meanwhile
            set_gradient_sync(model, i == accum - 1)
            with runtime.autocast():
                loss = lm_loss(model, batch, separator, chunk=chunk)
            (loss / accum).backward()  # FSDP averages over ranks: the global mean
            loss_sum += loss.detach().double()
        warm.mask_grads()  # in the warm stage, old embedding rows stay as they are
        grad_norm = clip_grad_norm(model, config.train.grad_clip)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        step += 1

        # with SIGUSR1 on any rank, every rank checkpoints this step and stops
        summed, stops = d.sum([loss_sum.item(), float(stop_asked())])
        train_loss, stopping = summed / (accum * d.world), stops > 0
        elapsed = time.perf_counter() - started
        tok_s = config.train.global_batch_tokens / elapsed
        log(
            {
                "kind": "train",
                "step": step,
                "tokens": step * config.train.global_batch_tokens,
                "loss": train_loss,
                "lr": lr,
                "grad_norm": grad_norm,
                "tokens_per_s": tok_s,
                "tokens_per_s_per_device": tok_s / d.world,
                "mfu": mfu(tok_s, flops_token, peak, d.world),
                "peak_mem_gib": peak_memory_gib(runtime.device),
                "tokens_by_source": inputs.mixture.tokens_by_source(seq_len),
                **mix.step_fields(seq_len),  # the phase, tokens per phase
            }
        )
        log(*mix.events(step))  # a phase that began with this step
        if status.shown:
            status.phase(None)  # training: the metrics say the rest
        bar.update(1)
        bar.set_postfix(loss=f"{train_loss:.3f}", lr=f"{lr:.2e}", tok_s=f"{tok_s:.0f}")
        if not math.isfinite(train_loss):
            raise FloatingPointError(
                f"train loss is {train_loss} at step {step}: "
                "lower train.lr_fraction or check the data"
            )
        save_now = step % config.checkpoint.every_steps == 0 or step == config.train.steps
        save_now = save_now or stopping
        if step % config.eval.every_steps == 0 or step == config.train.steps:
            log(*mix.after_eval(step, run_eval(), baseline, save_now))  # the budget's actions
            if mix.stop:  # the budget says stop: end with its best checkpoint, below
                break
        if save_now:
            if pending is not None:  # one write in flight at a time (checkpoint.async_save)
                pending.wait()
            pending = start_checkpoint(
                ckpt_root,
                step,
                model,
                optimizer,
                {
                    "baseline": baseline,
                    **mix.state(),  # the mixture, its changes, the budget
                    "data": inputs.identity,  # what a resume must find (train.runfolder.drift)
                    "data_changes": data_changes,
                },
                keep_last=config.checkpoint.keep_last,
                d=d,
                trainable_only=adapted is not None,  # LoRA: the frozen base is the base's
                background=config.checkpoint.async_save,
                protect=mix.best_step,  # the budget's best checkpoint outlives keep_last
            )
            if not config.checkpoint.async_save:
                pending.wait()
        if stopping:  # the checkpoint is on disk: a resume (a requeued job) goes on from it
            pending.wait()
            raise RunStopped(step)
    bar.close()
    prefetch.close()
    if pending is not None:
        pending.wait()
    best = mix.best_step if mix.stop else None
    if best is not None:  # stopped by the budget: the model is its best checkpoint's
        load_checkpoint(ckpt_root / f"step_{best:07d}", model, optimizer, d, adapted is not None)

    # --- results: HF model with lineage, report ---
    weights = full_state_dict(model, d, adapted is not None)  # a collective: all ranks
    if not d.is_main:
        return RunResult(run_dir, run_dir / MODEL_DIR, baseline, {})
    assert tracker is not None
    tracker.close()
    _, evals = read_metrics(run_dir / METRICS_FILE)
    kept_eval = [r for r in evals if r["step"] == best] if best is not None else evals[-1:]
    final = {name: m["loss"] for name, m in kept_eval[0]["sets"].items()} if kept_eval else {}
    lineage = Lineage(
        kind="cpt",
        steep_version=__version__,
        created=datetime.now(timezone.utc).isoformat(timespec="seconds"),
        run_dir=str(run_dir),
        base=base.info,
        base_names=base_names(config.model) or base.info.get("lineage", {}).get("base_names", []),
        max_lr=max_lr,
        max_lr_source=lr_source,
        data=inputs.lineage,
        tokens_by_source=inputs.mixture.tokens_by_source(seq_len),
        **mix.lineage(seq_len),  # tokens per phase, mix changes, the budget's actions
        world_size=d.world,
        config=config.model_dump(mode="json"),
        metrics=TrainMetrics(step=best or step, baseline=baseline, final=final),
        data_changes=data_changes,  # empty unless resumed with --allow-data-change
        method=adapted.method if adapted is not None else None,
    )
    try:
        plain = base.model
        if adapted is not None:  # the base reloaded in full precision, the adapters merged in
            plain = merged_model(adapted, config, home, weights, run_dir)
            weights = None
        model_dir = save_hf(plain, base.tokenizer, run_dir / MODEL_DIR, lineage, weights)
    except (OSError, SafetensorError) as exc:  # a full disk, in Python's I/O or in Rust's
        raise folder_error(
            "save the model to", run_dir / MODEL_DIR, exc, run_dir,
            f"checkpoint step_{step:07d} is intact and a resume saves the model again",
        ) from exc  # fmt: skip
    write_report(
        run_dir,
        title=f"steep run: {config.run.name}",
        notes={
            "base model": str(config.model.base or "random init"),
            "max LR": f"{max_lr:.3g} ({config.train.lr_fraction:g} x {lr_source})",
            "schedule": f"{config.train.schedule}, {config.train.steps} steps, warmup "
            f"{schedule.warmup_steps}, floor {config.train.min_lr_ratio:g} x max",
            "batch": f"{config.train.global_batch_tokens:,} tokens/step "
            f"({d.world} ranks x {accum} accumulation x {micro} x {seq_len})",
            **mix.report_notes(),  # shares (after data.domain_share), phases, budget
            "model": str(model_dir),
            "eval rule": window_rule(
                seq_len, config.eval.max_windows, config.train.precision, separator is not None
            ),
            **({"warning": caveat} if caveat else {}),
        },
    )
    tracker.finish(run_dir)  # W&B / MLflow: report, plots, steep.json; then their run ends
    status.set("done")  # last: the model and its report are on disk
    print(format_table(eval_table(evals)))
    print(f"model: {model_dir}\nreport: {run_dir / REPORT_FILE}")
    return RunResult(run_dir, model_dir, baseline, final)


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


def parallelize(model: torch.nn.Module, config: RunConfig, d: Dist, runtime: Runtime) -> None:
    """Kernels, activation checkpointing, compile and FSDP2, in that order (see parallel.py)."""
    if config.model.attention != "sdpa":
        model.set_attn_implementation(config.model.attention)
    if config.train.fused_kernels == "liger":
        apply_liger(model, runtime.device)
    apply_activation_checkpointing(
        model, config.train.activation_checkpointing, config.train.ac_every
    )
    if config.train.compile:
        compile_layers(model)
    if d.enabled:
        shard_model(model, config.train.precision, runtime.device, config.train.offload == "cpu")


def clip_grad_norm(model: torch.nn.Module, max_norm: float | None) -> float:
    """Clip to ``max_norm`` (none: just measure); the norm over all ranks' shards."""
    norm = torch.nn.utils.clip_grad_norm_(model.parameters(), max_norm or math.inf)
    if hasattr(norm, "full_tensor"):  # a DTensor under FSDP2
        norm = norm.full_tensor()
    return float(norm)
