"""Held-out loss on fixed windows: the same tokens at every eval, so curves are comparable.

Windows are spread evenly over the held-out stream (not just its start) so one long
document does not stand in for the whole set.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass

import numpy as np
import torch
from tqdm import tqdm

from steep.data.tokensource import TokenStream, Windows
from steep.errors import DataError
from steep.train.forward import lm_loss


@dataclass
class EvalSet:
    name: str
    windows: np.ndarray  # (n, seq_len + 1) int64

    @property
    def tokens(self) -> int:
        return int(self.windows.shape[0] * (self.windows.shape[1] - 1))


class EvalBar:
    """The progress of one eval: a bar on the terminal (rank 0) with its ETA, and the same
    count passed to ``report`` (status.json's phase, which the studio shows)."""

    def __init__(
        self, desc: str, enabled: bool, report: Callable[[int, int], None] | None = None
    ) -> None:
        self.desc, self.enabled, self.report = desc, enabled, report
        self.bar: tqdm | None = None

    def __call__(self, done: int, total: int) -> None:
        if self.enabled and self.bar is None:
            self.bar = tqdm(
                total=total, desc=self.desc, unit="window", leave=False, dynamic_ncols=True
            )
        if self.bar is not None:
            self.bar.update(done - self.bar.n)
            if done >= total:
                self.bar.close()
        if self.report is not None:
            self.report(done, total)


def window_rule(seq_len: int, max_windows: int, precision: str, masked: bool) -> str:
    """How training reads a held-out set, in words (report.md, ``steep eval --run-windows``).

    It differs from ``steep eval``'s per-document rule (``steep.model.heldout``): windows
    cross document edges and no BOS is added, so the two losses on one text differ."""
    edges = "attention masked at" if masked else "attention across"
    return (
        f"up to {max_windows} fixed windows of {seq_len} predicted tokens per set, spread "
        f"evenly over its token stream (documents joined by the separator, {edges} their "
        f"edges, no BOS); mean loss in nats per token; {precision}"
    )


def fixed_windows(name: str, stream: TokenStream, seq_len: int, max_windows: int) -> EvalSet:
    w = Windows(stream, seq_len)
    if len(w) == 0:
        raise DataError(
            f"eval set '{name}' ({stream.path}) has {stream.num_tokens} tokens, fewer than one "
            f"window of seq_len + 1 = {seq_len + 1}: add held-out text or lower data.seq_len"
        )
    idx = np.unique(np.linspace(0, len(w) - 1, min(max_windows, len(w))).round().astype(int))
    return EvalSet(name, np.stack([w.get(int(i)) for i in idx]))


@torch.no_grad()
def evaluate(
    model: torch.nn.Module,
    sets: list[EvalSet],
    batch_size: int,
    device: torch.device,
    autocast: AbstractContextManager,
    separator_id: int | None = None,
    chunk: int | str | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> dict[str, float]:
    """Mean next-token loss per set (nats/token); ``separator_id`` masks across documents.

    Under FSDP every rank runs the same windows (each forward is a collective); the result
    is identical on all ranks. ``progress(done, total)`` hears of every batch, in windows
    over all sets: a step-0 eval of a real base takes minutes and must not look hung.
    """
    was_training = model.training
    model.eval()
    out: dict[str, float] = {}
    total, done = sum(len(s.windows) for s in sets), 0
    for s in sets:
        loss_sum, count = 0.0, 0
        for i in range(0, len(s.windows), batch_size):
            batch = torch.from_numpy(s.windows[i : i + batch_size]).to(device)
            with autocast:
                loss = lm_loss(model, batch, separator_id, reduction="sum", chunk=chunk)
            loss_sum += float(loss)
            count += batch[:, 1:].numel()
            done += len(batch)
            if progress is not None:
                progress(done, total)
        out[s.name] = loss_sum / count
    model.train(was_training)
    return out


@dataclass
class Evaluator:
    """In-training eval: when it is due (every ``eval.every_steps`` and the last step) and
    one rule for every loss the run measures (step 0's baseline, a resume's new baseline,
    each eval), so the loop asks it instead of computing the cadence itself."""

    model: torch.nn.Module
    batch_size: int
    device: torch.device
    autocast: Callable[[], AbstractContextManager]  # a fresh context per eval
    every_steps: int
    last_step: int
    separator_id: int | None = None
    chunk: int | str | None = None

    def due(self, step: int) -> bool:
        return step % self.every_steps == 0 or step == self.last_step

    def __call__(
        self, sets: list[EvalSet], progress: Callable[[int, int], None] | None = None
    ) -> dict[str, float]:
        return evaluate(
            self.model, sets, self.batch_size, self.device, self.autocast(),
            self.separator_id, self.chunk, progress,
        )  # fmt: skip
