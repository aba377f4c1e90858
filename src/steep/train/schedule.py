"""Learning-rate schedules as pure functions of the step.

A pure function (rather than a stateful torch scheduler) makes resume trivial: the LR at
step s is recomputed from s, so nothing about the schedule needs saving, and tests can
check exact values.

- ``cosine``: linear warmup to the max LR, then cosine decay to ``min_lr_ratio`` x max.
- ``wsd``: warmup, a stable plateau at the max LR, then a linear decay over the last
  ``decay_fraction`` of steps to the floor (warmup-stable-decay, as in MiniCPM).
- ``constant``: warmup, then the max LR until the end.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from steep.config.schema import TrainSection
from steep.errors import ConfigError


@dataclass(frozen=True)
class Schedule:
    kind: str
    max_lr: float
    total_steps: int
    warmup_steps: int
    min_lr_ratio: float = 0.1
    decay_fraction: float = 0.2

    def __post_init__(self) -> None:
        if self.kind not in ("cosine", "wsd", "constant"):
            raise ConfigError(f"unknown schedule {self.kind!r}: use cosine, wsd or constant")
        if self.warmup_steps >= self.total_steps and self.total_steps > 1:
            raise ConfigError(
                f"warmup ({self.warmup_steps} steps) must be shorter than the run "
                f"({self.total_steps} steps)"
            )

    def lr(self, step: int) -> float:
        """LR for the optimizer update that ends step ``step`` (0-based)."""
        floor = self.max_lr * self.min_lr_ratio
        if step < self.warmup_steps:
            return self.max_lr * (step + 1) / self.warmup_steps
        if self.kind == "constant":
            return self.max_lr
        if self.kind == "cosine":
            span = max(1, self.total_steps - 1 - self.warmup_steps)
            progress = min(1.0, (step - self.warmup_steps) / span)
            return floor + (self.max_lr - floor) * 0.5 * (1 + math.cos(math.pi * progress))
        decay_steps = max(1, round(self.total_steps * self.decay_fraction))
        decay_start = max(self.warmup_steps, self.total_steps - decay_steps)
        if step < decay_start:
            return self.max_lr
        progress = min(1.0, (step - decay_start + 1) / max(1, self.total_steps - decay_start))
        return self.max_lr + (floor - self.max_lr) * progress


def warmup_steps_for(total_steps: int, warmup_steps: int | None, warmup_fraction: float) -> int:
    if warmup_steps is not None:
        return warmup_steps
    return max(1, round(total_steps * warmup_fraction)) if warmup_fraction > 0 else 0


def schedule_for(train: TrainSection, max_lr: float) -> Schedule:
    """The schedule a run's ``train`` section asks for: the loop and the preflight build it
    here, so what the preflight accepts is what training runs."""
    return Schedule(
        kind=train.schedule,
        max_lr=max_lr,
        total_steps=train.steps,
        warmup_steps=warmup_steps_for(train.steps, train.warmup_steps, train.warmup_fraction),
        min_lr_ratio=train.min_lr_ratio,
        decay_fraction=train.decay_fraction,
    )
