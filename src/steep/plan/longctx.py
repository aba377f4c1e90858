"""Long sequences in ``steep plan``: what one sequence costs a GPU, the longest
``data.seq_len`` that fits as configured, and over how many GPUs context parallelism
would have to split a sequence that does not.

FSDP2 shards weights, gradients and optimizer state over the GPUs but never a sequence:
each GPU holds its micro-batch's activations whole (and its loss logits, a chunk of them
under ``train.loss_chunk``, one GPU or FSDP2 alike), so past some length more GPUs do not
help. Context parallelism splits the sequence instead (each of k GPUs
holds seq/k positions of every layer, the keys and values pass round a ring); its memory
per GPU is the plan's at ``seq_len / k`` on the same GPUs, the static state sharded over
all of them. steep refuses ``train.context_parallel`` today (``steep.config.context``
says why): these numbers say what it would take. Torch-free, ``steep.plan.memory``'s
arithmetic.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from steep.config import RunConfig
from steep.config.context import context_problem, scaled_positions
from steep.plan.context import base_context
from steep.plan.memory import activation_bytes, memory, micro_batches
from steep.plan.shapes import Shape

STEP = 512  # the longest fit is searched in multiples of this many positions
MAX_CP = 64  # context-parallel degrees tried: 2, 4, ... up to this


@dataclass
class ContextPlan:
    """The plan's context block (bytes per GPU for one micro-batch)."""

    seq_len: int
    base_positions: int | None  # what the base knows (None: unknown before it loads)
    covered: int | None  # with model.rope_scaling
    base_source: str
    activations_no_ac: float
    activations_full_ac: float
    logits_whole: float  # the loss's logits at backward's start, every position at once
    logits_chunked: float  # ... with train.loss_chunk: auto (one GPU or FSDP2 alike)
    longest_fit: int | None  # longest seq_len that fits as configured; None: none / unknown
    cp_needed: int | None  # GPUs per sequence under context parallelism; None: fits, or none
    problem: str | None  # steep train's refusal of this seq_len (context_problem)

    def dump(self) -> dict[str, Any]:
        return asdict(self)


def _at(config: RunConfig, seq: int, gpus: int) -> RunConfig:
    """``config`` at ``seq`` positions, the same micro-batches per step (what memory reads)."""
    accum = micro_batches(config, gpus)
    new = config.model_copy(deep=True)
    new.data.seq_len = seq
    new.train.global_batch_tokens = seq * config.train.micro_batch_size * gpus * accum
    return new


def _peak(config: RunConfig, shape: Shape, gpus: int, cpu: bool) -> float:
    return memory(config, shape, gpus, [], cpu).peak


def context_plan(
    config: RunConfig,
    shape: Shape,
    gpus: int,
    usable: float | None,
    cpu: bool,
    home: Path | None = None,
) -> ContextPlan:
    """The context block of a plan on ``gpus`` devices with ``usable`` bytes each (None:
    no device, no fit)."""
    seq = config.data.seq_len
    known = base_context(config.model, home)
    scaling = config.model.rope_scaling
    covered = scaled_positions(scaling, known.positions) if known.positions else None
    problem = context_problem(seq, known.positions, known.source, scaling)
    here = _at(config, seq, gpus)
    vocab_positions = config.train.micro_batch_size * seq * shape.vocab
    chunk = _at(config, seq, gpus)
    chunk.train.loss_chunk = "auto"
    longest = cp = None
    if usable is not None:

        def fits(s: int) -> bool:
            return _peak(_at(config, s, gpus), shape, gpus, cpu) <= usable

        lo, hi = 0, seq // STEP  # the longest multiple of STEP that fits (memory grows with s)
        while lo < hi:
            mid = (lo + hi + 1) // 2
            lo, hi = (mid, hi) if fits(mid * STEP) else (lo, mid - 1)
        longest = seq if fits(seq) else (lo * STEP or None)
        if longest != seq:
            cp = _cp_needed(config, shape, gpus, usable, cpu)
    return ContextPlan(
        seq_len=seq,
        base_positions=known.positions,
        covered=covered if scaling else None,
        base_source=known.source,
        activations_no_ac=sum(activation_bytes(here, shape, "none", gpus, cpu)),
        activations_full_ac=sum(activation_bytes(here, shape, "full", gpus, cpu)),
        logits_whole=12.0 * vocab_positions,
        logits_chunked=memory(chunk, shape, gpus, [], cpu).logits,
        longest_fit=longest,
        cp_needed=cp,
        problem=problem,
    )


def _cp_needed(config: RunConfig, shape: Shape, gpus: int, usable: float, cpu: bool) -> int | None:
    """The fewest GPUs per sequence (a power of two) whose shards fit, each holding
    seq/k positions, the static state sharded over max(gpus, k) GPUs."""
    seq = config.data.seq_len
    k = 2
    # torch's head-tail split: 2k equal chunks; shards under STEP positions are not worth it
    while k <= MAX_CP and seq % (2 * k) == 0 and seq // k >= STEP:
        n = max(gpus, k)
        if _peak(_at(config, seq // k, n), shape, n, cpu) <= usable:
            return k
        k *= 2
    return None
