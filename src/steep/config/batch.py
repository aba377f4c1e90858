"""How a global batch splits: ``train.global_batch_tokens`` = ``data.seq_len`` x
``train.micro_batch_size`` x micro-batches a rank runs (gradient accumulation) x ranks.

One arithmetic for the config's own check (one process), the preflight and torchrun's
ranks, ``steep plan`` and the training loop, so each says the same numbers. Torch-free.
"""

from __future__ import annotations

from dataclasses import dataclass

from steep.errors import ConfigError


@dataclass(frozen=True)
class BatchSplit:
    global_tokens: int
    seq_len: int
    micro: int  # sequences in one micro-batch
    ranks: int
    accum: int  # micro-batches each rank runs per optimizer step (rounded down)
    divides: bool  # every rank runs the same whole number of micro-batches

    @property
    def per_rank(self) -> int:
        """Sequences each rank reads per optimizer step."""
        return self.micro * self.accum

    @property
    def per_step(self) -> int:
        """Sequences in one optimizer step, all ranks."""
        return self.per_rank * self.ranks

    @property
    def unit(self) -> int:
        """The tokens one micro-batch on every rank takes: the global batch's step size."""
        return self.seq_len * self.micro * self.ranks

    def problem(self, layout: str = "") -> str | None:
        """Why it does not split, with the nearest sizes that do; None when it does.
        ``layout`` describes the ranks (nodes x GPUs) for the message."""
        if self.divides:
            return None
        total, unit = self.global_tokens, self.unit
        below, above = total // unit * unit, (total // unit + 1) * unit
        nearest = f"{below} (below) or {above} (above)" if below else f"{above} (the smallest)"
        return (
            f"train.global_batch_tokens={total} does not split across {self.ranks} ranks"
            f"{f' ({layout})' if layout else ''}: it must be a multiple of "
            f"data.seq_len x train.micro_batch_size x ranks = {self.seq_len} x {self.micro} x "
            f"{self.ranks} = {unit}. Nearest valid global_batch_tokens: {nearest}, "
            f"e.g. --set train.global_batch_tokens={above}"
        )

    def check(self, layout: str = "") -> int:
        """Micro-batches per rank and step; ConfigError when the global batch does not split
        (the ranks' collectives would fall out of step)."""
        problem = self.problem(layout)
        if problem:
            raise ConfigError(problem)
        return self.accum


def batch_split(global_tokens: int, seq_len: int, micro: int, ranks: int = 1) -> BatchSplit:
    """The split of ``global_tokens`` into micro-batches of ``micro`` x ``seq_len`` on
    ``ranks`` ranks (``RunConfig.batch_split`` passes a config's)."""
    unit = seq_len * micro * ranks
    return BatchSplit(
        global_tokens, seq_len, micro, ranks, global_tokens // unit, global_tokens % unit == 0
    )
