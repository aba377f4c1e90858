"""``steep plan``: memory per device, FLOPs, step time and days of a run, before any work.

Torch-free, so it answers at once: ``steep plan`` prints it (``steep.plan.text``), ``steep
launch`` and the studio's New-run page show its line, and ``fit_problem`` is what
``steep train`` asks before it loads the weights. The arithmetic is ``steep.plan.memory``'s; the
shape of the model comes from ``shapes`` and the device from ``devices``.

A device fits the run when the peak plus 1 GiB (CUDA context and kernels' workspaces; on
CPU the Python process) is within 95% of its memory (the allocator's fragmentation); on
CPU the ranks share the machine's RAM. The step time divides the FLOPs the hardware runs
by GPUs x dense bf16 peak x the assumed MFU (0.4 by default: torchtitan's Llama 3.1 8B on
8 H100 at seq 8192 reaches 5,762 tokens/s a GPU, 34%). When it does not fit, the plan
tries each change that lowers the peak (a micro-batch of 1, the chunked loss, an eval
batch of 1, activation checkpointing, 8-bit AdamW, LoRA, QLoRA, CPU offload), the fewest
of them together when none is enough alone, and the fewest GPUs that fit as it is.
"""

from __future__ import annotations

import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from steep.config import RunConfig
from steep.errors import ConfigError
from steep.plan.devices import KNOWN, Device, cpu_device, find_device, local_gpu
from steep.plan.flops import step_seconds
from steep.plan.longctx import ContextPlan, context_plan
from steep.plan.measured import Measured, measured_throughput
from steep.plan.memory import (
    Memory,
    chunk_in_use,
    flops_per_token,
    fsdp2,
    memory,
    micro_batches,
    trainable_params,
)
from steep.plan.shapes import Shape, model_shape

GIB = 2**30
RESERVE_GIB = 1.0  # CUDA context, cuBLAS / NCCL workspaces; on CPU the Python process
HEADROOM = 0.95  # of a device's memory: the caching allocator's fragmentation
DEFAULT_MFU = 0.4


@dataclass
class Suggestion:
    change: str  # what to do, as the user types it
    peak_gib: float
    fits: bool
    step_s: float | None = None


@dataclass
class Plan:
    config_name: str
    shape: Shape
    device: Device | None
    gpus: int
    mfu: float
    memory: Memory
    params: int
    trainable: int
    micro_tokens: int  # micro_batch_size x seq_len
    accum: int  # micro-batches per device and step
    chunk: int | None  # loss positions at once; None: whole logits
    sharded: bool  # FSDP2
    flops_step: float  # model FLOPs per optimizer step (all GPUs)
    hw_flops_step: float  # what the hardware runs: + recomputation
    steps: int
    global_tokens: int
    method: str
    precision: str
    optimizer: str
    checkpointing: str
    offload: str
    notes: list[str] = field(default_factory=list)
    suggestions: list[Suggestion] = field(default_factory=list)
    measured: Measured | None = None  # a CPU's speed from an earlier run of this shape
    context: ContextPlan | None = None  # one sequence's cost, the longest that fits

    @property
    def peak_gib(self) -> float:
        return self.memory.peak / GIB

    @property
    def usable_gib(self) -> float | None:
        if self.device is None:
            return None
        share = self.device.memory_gib / (self.gpus if self.device.kind == "cpu" else 1)
        return share * HEADROOM - RESERVE_GIB

    @property
    def fits(self) -> bool | None:
        usable = self.usable_gib
        return None if usable is None else self.peak_gib <= usable

    @property
    def step_s(self) -> float | None:
        peak = self.device.peak_tflops if self.device else None
        if not peak:
            return self.global_tokens / self.measured.tokens_per_s if self.measured else None
        return step_seconds(self.hw_flops_step, self.gpus, peak * 1e12, self.mfu)

    def to_dict(self) -> dict[str, Any]:
        step = self.step_s
        mem = {k: v / GIB for k, v in asdict(self.memory).items() if isinstance(v, float)}
        return {
            "config": self.config_name,
            "model": self.shape.dump(),
            "device": asdict(self.device) if self.device else None,
            "gpus": self.gpus,
            "mfu": self.mfu,
            "method": self.method,
            "precision": self.precision,
            "optimizer": self.optimizer,
            "activation_checkpointing": self.checkpointing,
            "offload": self.offload,
            "fsdp2": self.sharded,
            "params": self.params,
            "trainable_params": self.trainable,
            "micro_batch_tokens": self.micro_tokens,
            "grad_accum": self.accum,
            "loss_chunk": self.chunk,
            "memory_gib": {
                **mem,
                "peak": self.peak_gib,
                "peak_phase": self.memory.peak_phase,
                "phases": {k: v / GIB for k, v in self.memory.phases.items()},
            },
            "usable_gib": self.usable_gib,
            "fits": self.fits,
            "flops_per_step": self.flops_step,
            "hardware_flops_per_step": self.hw_flops_step,
            "step_s": step,
            "tokens_per_day": self.global_tokens / step * 86400 if step else None,
            "days": self.steps * step / 86400 if step else None,
            "measured": asdict(self.measured) if self.measured else None,
            "notes": self.notes,
            "suggestions": [asdict(s) for s in self.suggestions],
            "context": self.context.dump() if self.context else None,
        }


# --- devices -------------------------------------------------------------------------------


def resolve_device(
    config: RunConfig,
    name: str | None,
    peak_tflops: float | None = None,
    memory_gib: float | None = None,
) -> Device:
    """The device to plan for: ``name`` (the table, or overrides for one not in it), else
    what ``steep train`` would use here (this machine's GPU, or its CPU)."""
    if name is None:
        found = None if config.train.device == "cpu" else local_gpu()
        if found is None:
            if config.train.device == "cuda":
                raise ConfigError(
                    "train.device is cuda but this machine shows no GPU: plan for one with "
                    f"--gpu NAME ({', '.join(KNOWN)})"
                )
            device = cpu_device()
        else:
            device = find_device(found[0]) or Device(found[0], None, round(found[1], 1))
    else:
        device = find_device(name)
        if device is None and (peak_tflops is None or memory_gib is None):
            raise ConfigError(
                f"GPU {name!r} is not in steep's table ({', '.join(KNOWN)}): give its dense "
                "bf16 peak and memory, --peak-tflops X --memory-gib Y"
            )
        device = device or Device(name, None, 0.0)
    peak = peak_tflops or config.train.peak_tflops or device.peak_tflops
    return Device(device.name, peak, memory_gib or device.memory_gib, device.kind)


def launch_device(name: str | None) -> Device | None:
    """For ``steep launch`` (often on a login node): the named GPU, else this machine's,
    else None (the plan then gives memory and FLOPs, not the fit)."""
    if name is not None:
        device = find_device(name)
        if device is None:
            raise ConfigError(
                f"GPU {name!r} is not in steep's table ({', '.join(KNOWN)}): see the plan with "
                "steep plan CONFIG --gpu NAME --peak-tflops X --memory-gib Y"
            )
        return device
    found = local_gpu()
    if found is None:
        return None
    return find_device(found[0]) or Device(found[0], None, round(found[1], 1))


# --- the plan ------------------------------------------------------------------------------


def make_plan(
    config: RunConfig,
    gpus: int = 1,
    device: Device | None = None,
    mfu: float = DEFAULT_MFU,
    shape: Shape | None = None,
    home: Path | None = None,
    config_name: str = "",
    suggest: bool = True,
) -> Plan:
    """The plan of ``config`` on ``gpus`` x ``device`` (None: memory and FLOPs only)."""
    if gpus < 1:
        raise ConfigError(f"--gpus must be 1 or more, got {gpus}")
    if not 0 < mfu <= 1:
        raise ConfigError(f"--mfu must be a fraction in (0, 1], got {mfu:g}")
    shape = shape or model_shape(config.model, home)
    notes: list[str] = []
    t = config.train
    cpu = device.kind == "cpu" if device is not None else t.device == "cpu"
    mem = memory(config, shape, gpus, notes, cpu)
    sharded = fsdp2(config, gpus)
    model_flops, hw_flops = flops_per_token(config, shape)
    if t.method == "lora":
        notes.append(
            "LoRA under FSDP2: the frozen base stays fp32 (one dtype per sharded group)"
            if sharded
            else "LoRA: frozen linears in bf16 under bf16 autocast; adapters, embeddings fp32"
        )
    if t.method == "qlora" and sharded:
        notes.append("QLoRA runs in one process only: steep refuses it under torchrun")
    if device is not None and device.kind == "gpu" and t.device == "cpu":
        notes.append("train.device is cpu: the run would not use this GPU")
    plan = Plan(
        config_name=config_name,
        shape=shape,
        device=device,
        gpus=gpus,
        mfu=mfu,
        memory=mem,
        params=shape.params(),
        trainable=trainable_params(config, shape),
        micro_tokens=t.micro_batch_size * config.data.seq_len,
        accum=micro_batches(config, gpus),
        chunk=chunk_in_use(config, shape),
        sharded=sharded,
        flops_step=model_flops * t.global_batch_tokens,
        hw_flops_step=hw_flops * t.global_batch_tokens,
        steps=t.steps,
        global_tokens=t.global_batch_tokens,
        method=t.method,
        precision=t.precision,
        optimizer=t.optimizer,
        checkpointing=t.activation_checkpointing,
        offload=t.offload,
        notes=notes,
    )
    if device is not None and device.kind == "cpu" and not device.peak_tflops:
        plan.measured = measured_throughput(config, home)
    if suggest and plan.fits is False:
        plan.suggestions = suggestions(config, plan, home)
    if suggest:  # the top-level plan only: the suggestions' plans need no context block
        usable = plan.usable_gib * GIB if plan.usable_gib is not None else None
        plan.context = context_plan(config, shape, gpus, usable, cpu, home)
        if plan.context.problem:
            notes.append(f"steep train refuses this: {plan.context.problem}")
    return plan


# the --set values, and where steep runs them: anywhere, on one GPU only (QLoRA), or on
# several under torchrun (offload, FSDP2's); tried one at a time, then added up in this
# order (the cheapest first: a smaller batch costs nothing, LoRA changes the recipe)
CHANGES: list[tuple[dict[str, Any], str]] = [
    ({"train.micro_batch_size": 1}, "any"),
    ({"train.loss_chunk": "auto"}, "any"),
    ({"eval.batch_size": 1}, "any"),
    ({"train.activation_checkpointing": "full"}, "any"),
    ({"train.optimizer": "adamw8bit"}, "any"),
    ({"train.method": "lora"}, "any"),
    ({"train.method": "qlora"}, "one gpu"),
    ({"train.offload": "cpu"}, "gpus"),
]


def _with(config: RunConfig, values: dict[str, Any]) -> RunConfig | None:
    """A copy of ``config`` with dotted ``values`` set; None when nothing changes."""
    new = config.model_copy(deep=True)
    changed = False
    for key, value in values.items():
        section, _, name = key.partition(".")
        part = getattr(new, section)
        if getattr(part, name) != value:
            setattr(part, name, value)
            changed = True
    return new if changed else None


def suggestions(config: RunConfig, plan: Plan, home: Path | None = None) -> list[Suggestion]:
    """What to change when ``plan`` does not fit, each with its peak per device: every
    change that lowers the peak alone; the fewest of them together that fit, when none
    fits alone; the fewest GPUs that fit the config as it is."""

    def consider(values: dict[str, Any], gpus: int | None = None) -> Suggestion | None:
        cfg = _with(config, values) if values else config
        n = gpus or plan.gpus
        if cfg is None or not cfg.batch_split(n).divides:
            return None
        other = make_plan(cfg, n, plan.device, plan.mfu, plan.shape, home, suggest=False)
        change = " ".join(f"--set {k}={v}" for k, v in values.items()) or f"--gpus {n}"
        return Suggestion(change, other.peak_gib, bool(other.fits), other.step_s)

    cpu = plan.device is not None and plan.device.kind == "cpu"
    where = "cpu" if cpu else "one gpu" if plan.gpus == 1 else "gpus"
    changes = [values for values, runs in CHANGES if runs in ("any", where)]
    out = [
        s
        for values in changes
        if (s := consider(values)) is not None and s.peak_gib < plan.peak_gib - 0.05
    ]
    if not any(s.fits for s in out):
        together: dict[str, Any] = {}
        best = plan.peak_gib
        for values in changes:  # add up what helps until it fits
            s = consider({**together, **values})
            if s is not None and s.peak_gib < best - 0.05:
                together, best = {**together, **values}, s.peak_gib
                if s.fits:
                    break
        for key in list(together)[:-1]:  # then drop what it fits without
            fewer = {k: v for k, v in together.items() if k != key}
            if (s := consider(fewer)) is not None and s.fits:
                together = fewer
        if len(together) > 1 and (s := consider(together)) is not None:
            out.append(s)
    if not cpu:
        for n in range(plan.gpus + 1, 4097):
            if (s := consider({}, n)) is not None and s.fits:
                out.append(s)
                break
    return out


def _training_gpu() -> tuple[str, float] | None:
    """(name, GiB) of the CUDA device of a process that has imported torch already (the
    training loop's; this module never imports it), or None."""
    torch = sys.modules.get("torch")
    if torch is None or not torch.cuda.is_available():
        return None
    index = torch.cuda.current_device()  # torchrun's rank has set its own
    total = torch.cuda.get_device_properties(index).total_memory
    return torch.cuda.get_device_name(index), total / 2**30


def fit_problem(
    config: RunConfig,
    gpus: int = 1,
    device_name: str | None = None,
    memory_gib: float | None = None,
) -> str | None:
    """Why ``config`` will not fit on ``gpus`` x ``device_name`` (None: the GPU this process
    trains on, else this machine's RAM), as one message with what to change; None when it
    fits or when the plan cannot tell (a model whose shape is unknown offline, a GPU not in
    the table and no ``memory_gib``). For ``steep train`` to call before it loads weights."""
    if device_name is None and memory_gib is None and config.train.device != "cpu":
        device_name, memory_gib = _training_gpu() or (None, None)
    try:
        if device_name is not None and find_device(device_name) is None:
            if not memory_gib:
                return None
            device = Device(device_name, None, memory_gib)
        else:
            device = resolve_device(config, device_name, memory_gib=memory_gib)
        plan = make_plan(config, gpus, device)
    except (ConfigError, OSError, ValueError):  # a shape it cannot read: let training try
        return None
    if plan.fits is not False:
        return None
    where = f"{gpus} x {plan.device.name}" if plan.device else f"{gpus} devices"
    fits = [s for s in plan.suggestions if s.fits]
    closest = min(plan.suggestions, key=lambda s: s.peak_gib, default=None)
    if fits:
        fixes = "; it would fit with " + " or ".join(
            f"{s.change} ({s.peak_gib:.1f} GiB)" for s in fits
        )
    elif closest is not None:
        fixes = (
            f"; no change steep knows makes it fit (closest: {closest.change}, "
            f"{closest.peak_gib:.1f} GiB)"
        )
    else:
        fixes = ""
    return (
        f"the plan says this run needs {plan.peak_gib:.1f} GiB per device and {where} "
        f"gives {plan.usable_gib:.1f} GiB usable{fixes}. `steep plan CONFIG` shows the "
        "breakdown; `steep train --force` starts it anyway"
    )
