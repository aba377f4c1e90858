"""Model size in a sweep's law: which points differ in size, which of the law's size
parameters a fit can judge, and the step-0 loss at a size no point ran.

A sweep spans sizes when its points' models have different parameter counts (random-init
shapes under a ``model.*`` grid key, or a family of bases). The count comes from
``steep.plan.shapes`` (the one place steep counts a model's parameters), without loading
the model. Three sizes or more: the law's size term (D-CPT Law's N term, see
``steep.sweep.law``) is fitted and a larger model can be predicted; two: its amplitude is
fitted with the exponent held, and only the swept sizes are predicted; one: size is held
fixed, and the output says so.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from steep.config import RunConfig
from steep.sweep.law import SIZE_PARAMS
from steep.sweep.state import SweepError

MIN_SIZES = 3  # distinct model sizes before the fit may predict another
SIZE_PREFIX = "model."  # grid keys that change the model (and so, maybe, its size)
FIXED_NOTE = "model size is held fixed: the sweep has one model, the law is not fitted in size"


def point_params(cfg: RunConfig) -> int | None:
    """The parameter count of ``cfg``'s model, or None when steep cannot tell it."""
    from steep.plan.shapes import model_shape  # deferred: not needed by single-size fits

    try:
        return int(model_shape(cfg.model).params())
    except Exception:  # noqa: BLE001 - an unknown shape only means no size term
        return None


@dataclass(frozen=True)
class Sizes:
    """The parameter counts the sweep's points ran, and the fit's reference (the largest)."""

    seen: tuple[int, ...]

    @property
    def ref(self) -> float:
        return float(max(self.seen)) if self.seen else 1.0

    @property
    def fitted(self) -> bool:
        """Whether the law has a size term at all (more than one size)."""
        return len(self.seen) > 1

    def fixed(self) -> dict[int, float]:
        """The size parameters the fit holds: all with one size, the exponent with two."""
        d, nu = SIZE_PARAMS
        if len(self.seen) >= MIN_SIZES:
            return {}
        if len(self.seen) == 2:
            return {nu: 0.5}
        return {d: 0.0, nu: 0.5}

    def rel(self, params: int | None) -> float:
        return 1.0 if params is None or not self.fitted else params / self.ref

    def check_target(self, params: int | None) -> None:
        """A size to predict at needs ``MIN_SIZES`` swept sizes; a swept one is always fine."""
        if params is None or params in self.seen:
            return
        if len(self.seen) < MIN_SIZES:
            have = ", ".join(f"{n:,}" for n in self.seen) or "none known"
            raise SweepError(
                f"--at-size {params:,}: the sweep spans {len(self.seen)} model size(s) "
                f"({have} parameters); fitting in size needs at least {MIN_SIZES}"
            )

    def note(self, target: int | None) -> str:
        if not self.fitted:
            return FIXED_NOTE
        seen = ", ".join(f"{n:,}" for n in self.seen)
        how = (
            "size term fitted (D-CPT Law's N term, Que et al. 2024)"
            if len(self.seen) >= MIN_SIZES
            else f"size amplitude fitted with its exponent held (fewer than {MIN_SIZES} sizes: "
            "only the swept sizes are predicted)"
        )
        at = (
            f"; predicted at {target:,} parameters ({target / self.ref:.1f}x the largest "
            "swept), its step-0 loss from a power law of the swept sizes' step-0 losses"
            if target is not None and target not in self.seen
            else ""
        )
        return f"model sizes swept: {seen} parameters: {how}{at}"

    def dump(self, target: int | None) -> dict[str, Any]:
        return {"fitted": self.fitted, "params_seen": list(self.seen), "target_params": target}


def sizes_of(params: list[int | None]) -> Sizes:
    """The distinct sizes of the points (an unknown size counts as none)."""
    known = {p for p in params if p is not None}
    if len(known) > 1 and None in params:
        raise SweepError(
            "the sweep's points differ in model size but steep cannot count the parameters "
            "of every point's model; one law cannot fit them"
        )
    return Sizes(tuple(sorted(known)))


def base_at(bases: list[dict[str, float]], params: list[int | None], at: int | None):
    """Each set's step-0 loss for a model of ``at`` parameters: the mean over the points of
    that size (of all points when one size or ``at`` is None), else a power law in N fitted
    on every point's (N, step-0 loss)."""
    sets = list(bases[0])
    same = [b for b, n in zip(bases, params, strict=True) if at is None or n == at]
    if same:
        return {s: float(np.mean([b[s] for b in same])) for s in sets}
    x = np.log([float(n) for n in params if n is not None])
    out = {}
    for s in sets:
        y = np.log([b[s] for b in bases])
        slope, icpt = np.polyfit(x, y, 1)
        out[s] = float(np.exp(icpt + slope * np.log(float(at))))
    return out


def drop_size_keys(values: dict[str, str]) -> dict[str, str]:
    """A grid point's values without the keys that set the model (a prediction at another
    size is of no swept model)."""
    return {k: v for k, v in values.items() if not k.startswith(SIZE_PREFIX)}
