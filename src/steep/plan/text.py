"""``steep plan``'s words: the table a person reads, and the one line launch and the studio show."""

from __future__ import annotations

from steep.artifacts.fmt import duration, memory_size
from steep.plan.estimate import GIB, HEADROOM, RESERVE_GIB, Plan
from steep.plan.longctx import MAX_CP, STEP


def _unit(plan: Plan) -> tuple[str, float]:
    return ("GiB", GIB) if plan.memory.peak >= GIB / 4 else ("MiB", 2**20)


def _count(n: float) -> str:
    for unit, size in (("T", 1e12), ("B", 1e9), ("M", 1e6), ("k", 1e3)):
        if n >= size:
            return f"{n / size:.3g}{unit}"
    return f"{n:.0f}"


def verdict(plan: Plan) -> str:
    if plan.fits is None:
        return "fit unknown (no device memory)"
    room = f"{memory_size(plan.peak_gib)} of {plan.usable_gib:.1f} GiB usable"
    return f"fits ({room})" if plan.fits else f"does not fit ({room})"


def where(plan: Plan) -> str:
    d = plan.device
    if d is None:
        return f"{plan.gpus} device(s)"
    peak = f"{d.peak_tflops:g} TFLOP/s bf16, " if d.peak_tflops else ""
    return f"{plan.gpus} x {d.name} ({peak}{d.memory_gib:g} GiB)"


def summary_line(plan: Plan) -> str:
    """One line: memory per device, the verdict, the step time and the days."""
    if plan.device is None:
        return f"{memory_size(plan.peak_gib)} per device (--gpu NAME: the fit and the time)"
    line = f"{memory_size(plan.peak_gib)} per device on {where(plan)}: {verdict(plan)}"
    if plan.step_s:
        line += f"; {time_line(plan)}"
    if plan.suggestions:
        first = next((s for s in plan.suggestions if s.fits), plan.suggestions[0])
        line += f"; try {first.change} ({memory_size(first.peak_gib)})"
    return line


def rate(plan: Plan) -> str:
    """Where the step time comes from: the MFU assumed, or the tokens/s measured here."""
    if plan.device is not None and plan.device.peak_tflops:
        return f"at {plan.mfu:.0%} MFU"
    m = plan.measured
    return f"measured on this machine ({m.tokens_per_s:,.0f} tokens/s, run {m.run})" if m else ""


def time_line(plan: Plan) -> str:
    """How long the run takes, and from what; or why that is unknown and how to know it."""
    step = plan.step_s
    if step:
        return f"~{duration(step)} a step {rate(plan)}, {duration(plan.steps * step)} for {plan.steps:,} steps"
    if plan.device is not None and plan.device.kind == "cpu":
        return (
            "unknown: no earlier run of this shape on this CPU; train a few steps "
            "(--set train.steps=5) and the plan uses their tokens/s"
        )
    return "unknown: give --peak-tflops (the device's peak)"


def render(plan: Plan) -> str:
    """The table ``steep plan`` prints."""
    s, m = plan.shape, plan.memory
    unit, size = _unit(plan)

    def _gib(n: float) -> str:
        return f"{n / size:,.2f}"

    chunk = f"chunks of {plan.chunk:,} positions" if plan.chunk else "whole logits"
    lines = [
        f"steep plan: {plan.config_name}" if plan.config_name else "steep plan",
        f"model     {_count(plan.params)} parameters ({_count(plan.trainable)} train), "
        f"{s.layers} layers x {s.hidden}, {s.heads}/{s.kv_heads} heads, vocab {s.vocab:,} "
        f"[{s.source}]",
        f"run       {plan.method}, {plan.precision}, {plan.optimizer}"
        f"{', FSDP2' if plan.sharded else ''}{', offload cpu' if plan.offload == 'cpu' else ''}"
        f" on {where(plan)}",
        f"batch     {plan.accum} micro-batch(es) of {plan.micro_tokens:,} tokens per device "
        f"and step; {plan.global_tokens:,} tokens per step; loss: {chunk}",
        "",
        f"memory per device                 {unit}",
        f"  weights                   {_gib(m.weights):>10}",
        f"  gradients                 {_gib(m.gradients):>10}",
        f"  optimizer state           {_gib(m.optimizer):>10}",
        f"  activations, AC {plan.checkpointing:<9} {_gib(m.activations):>10}"
        f"   (no AC {_gib(m.activations_no_ac)}, full AC {_gib(m.activations_full_ac)})",
        f"  loss logits               {_gib(m.logits):>10}",
        f"  {'gathered by FSDP2' if plan.sharded else 'bf16 weight copies':<24}"
        f"  {_gib(m.transient):>10}",
        f"  peak ({m.peak_phase + ')':<19} {_gib(m.peak):>10}   {verdict(plan)}",
    ]
    if m.host:
        lines.append(f"  host memory (offloaded)   {_gib(m.host):>10}   per GPU")
    moments = ", ".join(f"{k} {_gib(v)}" for k, v in m.phases.items())
    lines += [
        f"  (peak: weights + optimizer state + the largest moment of a step: {moments}; "
        f"usable: {HEADROOM:.0%} of the memory less {RESERVE_GIB:g} GiB)",
        "",
        "compute",
        f"  FLOPs per step            {plan.flops_step:.3g} (model; "
        f"{plan.hw_flops_step:.3g} with recomputation)",
    ]
    step = plan.step_s
    if step:
        per_day = plan.global_tokens / step * 86400
        lines += [
            f"  step time                 {duration(step)} {rate(plan)}",
            f"  tokens per day            {_count(per_day)} "
            f"({plan.global_tokens / step / plan.gpus:,.0f} tokens/s per device)",
            f"  {plan.steps:,} steps               {duration(plan.steps * step)}",
        ]
    else:
        lines.append(f"  step time                 {time_line(plan)}")
    lines += context_lines(plan)
    lines += [f"note: {n}" for n in plan.notes]
    if plan.suggestions:
        lines += ["", "what would fit (peak per device):"]
        for sug in sorted(plan.suggestions, key=lambda x: not x.fits):  # what fits first
            time = f", {duration(sug.step_s)} a step" if sug.step_s else ""
            tag = "fits" if sug.fits else "still too much"
            lines.append(f"  {sug.peak_gib:>8.1f} GiB  {tag + time:<34} {sug.change}")
    return "\n".join(lines)


LONG = 4096  # from this seq_len on, the plan shows what one sequence costs


def context_lines(plan: Plan) -> list[str]:
    """The context block (``steep.plan.longctx``): shown for a long ``data.seq_len``, a
    RoPE scaling, or a length that does not fit."""
    c = plan.context
    if c is None or not (c.seq_len >= LONG or c.covered or c.longest_fit != c.seq_len):
        return []
    known = f"the base knows {c.base_positions:,}" if c.base_positions else "base context unknown"
    if c.covered:
        known += f", {c.covered:,} with model.rope_scaling"
    lines = [
        "",
        f"context   seq_len {c.seq_len:,} ({known} [{c.base_source}])",
        f"  one sequence's activations {memory_size(c.activations_no_ac / GIB)} "
        f"without AC, {memory_size(c.activations_full_ac / GIB)} with full AC; "
        f"loss logits {memory_size(c.logits_whole / GIB)} whole, "
        f"{memory_size(c.logits_chunked / GIB)} with train.loss_chunk auto",
    ]
    if plan.usable_gib is None:
        return lines
    if c.longest_fit == c.seq_len:
        lines.append("  fits per GPU as configured")
        return lines
    longest = f"{c.longest_fit:,}" if c.longest_fit else f"none (not even {STEP})"
    lines.append(
        f"  longest seq_len that fits per GPU as configured: {longest}; FSDP2 shards the "
        "weights and optimizer over the GPUs, never a sequence, so more GPUs do not help"
    )
    if c.cp_needed:
        lines.append(
            f"  context parallelism over {c.cp_needed} GPUs per sequence would fit it "
            f"({max(plan.gpus, c.cp_needed)} GPUs at least; train.context_parallel is not "
            "in steep yet, see docs/context-extension.md)"
        )
    else:
        lines.append(
            f"  context parallelism up to {MAX_CP} GPUs per sequence would not fit it either"
        )
    return lines
