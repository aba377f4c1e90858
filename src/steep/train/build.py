"""Build a run: its folder, then the model, data, optimizer and schedule, held in one ``Run``.

The loop's phases pass this one object (``steep.train.loop``): ``build`` fills it,
``restore`` sets where it starts, the step loop moves it, ``finish`` saves what it made.
Everything that can refuse the run (the method, optimizer, trackers, offload, memory, the
base's context) is checked here before any weights or data load.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from steep.artifacts.metrics import eval_record
from steep.config import RunConfig, dump_config
from steep.config.context import context_parallel_problem
from steep.errors import ConfigError, SteepError
from steep.model.io import LoadedBase, load_base
from steep.model.rope import loaded_context_problem
from steep.plan.estimate import fit_problem
from steep.train.checkpoint import Checkpointer
from steep.train.evaluate import EvalBar, Evaluator
from steep.train.flops import device_peak_flops, flops_per_token
from steep.train.forward import loss_line, use_document_mask
from steep.train.inputs import Inputs, build_inputs
from steep.train.kernels import apply_liger
from steep.train.longctx import LongContextEval, old_context, window_warnings
from steep.train.lora import Adapted, apply_method, check_method, quantized_load
from steep.train.mixcontrol import MixControl
from steep.train.optim import build_optimizer, check_optimizer
from steep.train.parallel import (
    Dist,
    apply_activation_checkpointing,
    check_offload,
    compile_layers,
    shard_model,
)
from steep.train.rendezvous import Prepare
from steep.train.runfolder.create import new_run_dir
from steep.train.runfolder.leftovers import clear_leftovers
from steep.train.runfolder.lock import RunLock, RunLockedError
from steep.train.runfolder.state import RunState
from steep.train.runtime import Runtime, seed_everything
from steep.train.schedule import Schedule, schedule_for
from steep.train.stages import EmbeddingWarmup, first_new_id
from steep.train.track import Tracker
from steep.train.trackers import check_trackers
from steep.workspace import CHECKPOINTS_DIR, CONFIG_FILE


@dataclass
class Run:
    """What one training run built, and where it stands (``step``, ``baseline``)."""

    config: RunConfig
    d: Dist
    home: Path
    run_dir: Path
    status: RunState  # status.json: running, a phase before the first step, done
    max_lr: float
    lr_source: str  # where max_lr came from, in words
    caveat: str | None  # the forgetting warning: in the log and in report.md
    runtime: Runtime
    base: LoadedBase
    model: torch.nn.Module  # what trains: the base, or peft's wrapper (adapted)
    adapted: Adapted | None  # LoRA / QLoRA
    inputs: Inputs
    mix: MixControl  # phases, a change on resume, the forgetting budget
    optimizer: torch.optim.Optimizer
    lr_scales: list[float]  # per param group (the embeddings' LR)
    warm: EmbeddingWarmup
    schedule: Schedule
    separator: int | None  # the document mask's separator id (None: no mask)
    chunk: int | str | None  # train.loss_chunk (None: whole logits)
    flops_token: float
    peak_flops: float | None
    evaluator: Evaluator  # when to eval, and how
    checkpointer: Checkpointer  # when to checkpoint, and how
    step: int = 0  # optimizer steps done
    baseline: dict[str, float] = field(default_factory=dict)  # step 0's eval losses
    data_changes: list[dict[str, Any]] = field(default_factory=list)  # resumes on new data
    tracker: Tracker | None = None  # rank 0 only: metrics.jsonl, TensorBoard, W&B, MLflow
    longctx: LongContextEval | None = None  # past the base's context: step 0's and the end's

    @property
    def per_rank(self) -> int:
        """Sequences this rank reads per optimizer step (steep.config.batch's arithmetic)."""
        return self.config.batch_split(self.d.world).per_rank

    @property
    def accum(self) -> int:
        """Micro-batches this rank runs per optimizer step."""
        return self.config.batch_split(self.d.world).accum

    @property
    def trainable_only(self) -> bool:
        """LoRA: checkpoints and the gathered weights leave the frozen base out."""
        return self.adapted is not None

    def say(self, text: str) -> None:
        """Print once, on rank 0."""
        if self.d.is_main:
            print(text)

    def log(self, *records: dict[str, Any]) -> None:
        """Append to metrics.jsonl (and the trackers); a no-op on the other ranks."""
        for record in records if self.tracker is not None else ():
            self.tracker.log(record)

    def eval_and_log(self, phase: str | None = None) -> dict[str, float]:
        """The eval sets' losses now, logged against the baseline (step 0: themselves).
        A bar shows its progress on rank 0; ``phase`` (before the first step) also puts
        it in status.json for the studio."""
        report = (lambda done, total: self.status.phase(phase, done, total)) if phase else None
        bar = EvalBar(f"eval step {self.step}", self.d.is_main, report)
        losses = self.evaluator(self.inputs.eval_sets, bar)
        tokens = self.step * self.config.train.global_batch_tokens
        self.log(eval_record(self.step, tokens, losses, self.baseline or losses))
        return losses

    def eval_long_context(self) -> None:
        """Passkey, loss by position and the old-length eval, now (a run past its base's
        context only; ``steep.train.longctx``)."""
        if self.longctx is not None:
            self.status.phase(f"long-context eval (step {self.step})")
            event = self.longctx(
                self.model, self.base.tokenizer, self.inputs.eval_sets, self.step,
                self.runtime.device, self.runtime.autocast, self.evaluator,
            )  # fmt: skip
            self.log(event)

    def checkpoint_state(self) -> dict[str, Any]:
        """What a checkpoint keeps beside the model and optimizer (state.json)."""
        return {
            "baseline": self.baseline,
            **self.mix.state(),  # the mixture, its changes, the budget
            "data": self.inputs.identity,  # what a resume must find (train.runfolder.drift)
            "data_changes": self.data_changes,
        }


def run_folder(config: RunConfig, d: Dist, run_dir: Path | None, home: Path) -> Path:
    """The run's folder, named by rank 0 (``run.out_dir`` or a fresh one) for every rank."""
    return Path(d.broadcast(str(run_dir or new_run_dir(config, home)) if d.is_main else None))


def open_folder(config: RunConfig, d: Dist, run_dir: Path, resume: bool, status: RunState) -> None:
    """Rank 0 makes the folder, takes its lock (one writer), clears what a killed run left,
    writes config.yaml (a new run) and status.json; when the lock is refused every rank
    stops with rank 0's reason before touching the folder."""
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
    if why:
        raise refused if refused is not None else RunLockedError(why)
    if d.is_main:
        gone = clear_leftovers(run_dir)
        if gone:
            print(f"removed what a killed run left: {', '.join(sorted(gone))}")
        if not resume:
            (run_dir / CONFIG_FILE).write_text(dump_config(config))
        status.run_dir = run_dir
        status.set("running")


def build(
    config: RunConfig,
    d: Dist,
    run_dir: Path,
    home: Path,
    status: RunState,
    lr: tuple[float, str],
    caveat: str | None,
    force: bool = False,
) -> Run:
    """Check what can refuse the run, then load the base, apply the method, parallelize,
    read the data and make the optimizer and schedule; ``lr``: (max LR, its source)."""
    max_lr, lr_source = lr
    if d.is_main:
        print(f"run {run_dir}\nmax LR {max_lr:.3g} = {config.train.lr_fraction:g} x {lr_source}")
        if caveat:
            print(f"warning: {caveat}")
        if d.enabled:
            print(f"{d.world} ranks, FSDP2 over {config.train.precision}")
    runtime = Runtime.from_config(config.train, d.local_rank)
    check_method(config, runtime.device, d.world)  # peft, CUDA, bitsandbytes: before any weights
    check_optimizer(config)
    check_trackers(config.track)  # wandb, mlflow installed: before any weights load
    check_offload(config, d, runtime.device)
    parallel = context_parallel_problem(config.train.context_parallel)
    if parallel:  # before any weights load
        raise ConfigError(parallel)
    too_big = None if force else fit_problem(config, d.world)  # steep plan's arithmetic
    if too_big:
        raise ConfigError(too_big)
    if d.is_main:
        print(runtime.describe())
    seed_everything(config.run.seed)
    base, model, adapted, flops_token = _model(config, d, run_dir, status, runtime, home)
    status.phase("reading the data")
    with Prepare(d, run_dir, "inputs", config.train.data_wait_s) as prep:

        def progress(what: str, done: int, total: int) -> None:
            prep.progress(what, done, total)  # for the other ranks
            status.phase(what, done, total)  # for the studio

        inputs = build_inputs(config, base.tokenizer, home, not d.is_main, progress)
    mix = MixControl(config, inputs.mixture, quiet=not d.is_main)  # phases, resume, budget
    optimizer, lr_scales = build_optimizer(model, config, max_lr)  # scales: embeddings' LR
    warm = EmbeddingWarmup.from_config(model, optimizer, config, base.info)  # 0 steps: off
    separator = inputs.separator_id if use_document_mask(config, runtime) else None
    chunk = config.train.loss_chunk
    if d.is_main:  # which loss path runs, FSDP2 or not: what the logits cost
        print(loss_line(model, chunk))
    evaluator = Evaluator(
        model, config.eval.batch_size, runtime.device, runtime.autocast,
        config.eval.every_steps, config.train.steps, separator, chunk,
    )  # fmt: skip
    checkpointer = Checkpointer(
        run_dir / CHECKPOINTS_DIR, config.checkpoint, config.train.steps, model, optimizer, d,
        trainable_only=adapted is not None,
    )  # fmt: skip
    return Run(
        config=config,
        d=d,
        home=home,
        run_dir=run_dir,
        status=status,
        max_lr=max_lr,
        lr_source=lr_source,
        caveat=caveat,
        runtime=runtime,
        base=base,
        model=model,
        adapted=adapted,
        inputs=inputs,
        mix=mix,
        optimizer=optimizer,
        lr_scales=lr_scales,
        warm=warm,
        schedule=schedule_for(config.train, max_lr),
        separator=separator,
        chunk=chunk,
        flops_token=flops_token,
        peak_flops=device_peak_flops(runtime.device, config.train.peak_tflops),
        evaluator=evaluator,
        checkpointer=checkpointer,
        longctx=long_context_eval(config, base, inputs, quiet=not d.is_main),
    )


def long_context_eval(
    config: RunConfig, base: LoadedBase, inputs: Inputs, quiet: bool = False
) -> LongContextEval | None:
    """The long-context evals when ``data.seq_len`` is past what the base knew before its
    RoPE scaling (and a warning for each source with no document to fill a window); None
    otherwise."""
    seq_len = config.data.seq_len
    before = base.info.get("positions_before_rope")
    old = before if before and seq_len > before else old_context(base.model.config, seq_len)
    if not old:
        return None
    for line in [] if quiet else window_warnings(inputs.lengths, seq_len):
        print(line)
    return LongContextEval(
        int(old), seq_len, inputs.heldout, config.eval.max_windows, config.eval.batch_size
    )


def _model(
    config: RunConfig, d: Dist, run_dir: Path, status: RunState, runtime: Runtime, home: Path
) -> tuple[LoadedBase, torch.nn.Module, Adapted | None, float]:
    """The base on its device, the method applied (LoRA's adapters, trained new rows) and
    parallelized: (base, the model that trains, the adapters, FLOPs per token)."""
    # rank 0 converts / downloads / tokenizes once, the others read its cache; they wait on
    # a file (train.data_wait_s), not in a collective that would time out
    status.phase("loading the base model")
    qlora = config.train.method == "qlora"
    with Prepare(d, run_dir, "base", config.train.data_wait_s):
        base = load_base(config.model, home, config.run.seed, quantized_load() if qlora else None)
    before = base.info.get("positions_before_rope")  # what the base knew before rope_scaling
    where = f"model {config.model.base or 'random_init'}"
    problem = loaded_context_problem(
        base.model.config, config.model, config.data.seq_len, before, where
    )
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
    return base, model, adapted, flops_token


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
