"""What ``steep models merge`` is asked, checked before any model is read: torch-free, so
the studio's merge action refuses bad numbers with the command's own lines
(``steep.studio.model_actions``)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from steep.errors import UsageError
from steep.model.mergekit_run import DENSITY_METHODS, MERGEKIT_METHODS, require_mergekit

LINEAR, CHAT_VECTOR = "linear", "chat-vector"
METHODS = (LINEAR, CHAT_VECTOR, *MERGEKIT_METHODS)  # the last four through mergekit


@dataclass
class MergeSpec:
    """What ``steep models merge`` was asked: the models, the method and its numbers."""

    model: Path
    base: Path | None = None
    alphas: list[float] = field(default_factory=lambda: [0.0, 0.25, 0.5, 0.75, 1.0])
    method: str = LINEAR
    instruct: Path | None = None
    weight: float = 1.0
    max_regression: float | None = None
    allow_extrapolation: bool = False
    density: float | None = None  # ties, dare_ties: the share of each delta kept

    def check(self, saving: bool = False) -> None:
        """Refuse bad numbers in one line before any model is read (``saving``: with
        ``--save``, which needs one point or a bound to pick one)."""
        if self.method not in METHODS:
            raise UsageError(f"--method {self.method!r}: use one of {', '.join(METHODS)}")
        if self.method in MERGEKIT_METHODS:
            require_mergekit(self.method)
        if self.density is not None and (
            self.method not in DENSITY_METHODS or not 0.0 < self.density <= 1.0
        ):
            raise UsageError(
                f"--density {self.density:g}: a fraction in (0, 1], for --method "
                f"{' or '.join(DENSITY_METHODS)}"
            )
        if self.method == CHAT_VECTOR and (self.instruct is None or self.base is None):
            raise UsageError("--method chat-vector needs --instruct INSTRUCT and --base BASE")
        if self.method != CHAT_VECTOR and self.instruct is not None:
            raise UsageError("--instruct applies to --method chat-vector")
        if not self.alphas:
            raise UsageError("--alphas: give at least one alpha, e.g. 0,0.5,1")
        for a in self.alphas:
            if not math.isfinite(a):
                raise UsageError(f"--alphas: {a} is not a number")
            if not 0.0 <= a <= 1.0 and not self.allow_extrapolation:
                raise UsageError(
                    f"--alphas: {a:g} is outside [0, 1] (an extrapolation past a parent); "
                    "add --allow-extrapolation to score it anyway"
                )
        if self.max_regression is not None and not math.isfinite(self.max_regression):
            raise UsageError("--max-regression: give a fraction, e.g. 0.02 for 2%")
        if saving and len(self.points) > 1 and self.max_regression is None:
            raise UsageError(
                "--save with several alphas needs --max-regression to pick one (or give one alpha)"
            )

    @property
    def points(self) -> list[float]:
        """The numbers a curve is scored at: the alphas, or the chat vector's one weight."""
        return [self.weight] if self.method == CHAT_VECTOR else sorted(set(self.alphas))

    @property
    def key(self) -> str:
        return "weight" if self.method == CHAT_VECTOR else "alpha"


def pick(curve: list[dict[str, Any]], key: str, bound: float | None) -> float | None:
    """The largest alpha whose general regression is within ``bound``; None when none is
    (or no bound was given)."""
    if bound is None:
        return None
    within = [
        p[key]
        for p in curve
        if p["general_regression"] is not None and p["general_regression"] <= bound
    ]
    return max(within) if within else None


def parse_alphas(text: str) -> list[float]:
    """``0,0.25,0.5``: the alphas as numbers (their range is ``MergeSpec.check``'s)."""
    try:
        return [float(x) for x in str(text).split(",") if x.strip()]
    except ValueError:
        raise UsageError(f"--alphas {text!r}: give numbers separated by commas") from None
