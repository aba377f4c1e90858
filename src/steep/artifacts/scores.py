"""The headline numbers, defined once: relative change, domain gain, general regression.

Training (metrics.jsonl), the run report, the hub, model cards, sweeps and ``steep eval``
all score with these functions, so a number means the same thing wherever it is shown.

The rule for a baseline that cannot divide: a missing, zero or non-finite baseline (or
value) gives **None** ("unknown"), never 0.0 and never NaN. None is left out of means; a
mean of nothing is None. JSON files carry it as ``null``; formatters show it as "–".

Signs: a relative change is ``(value - base) / |base|``, so for a loss or bits per byte a
negative change is better. ``domain gain`` is the mean improvement on domain-role sets and
``general regression`` the mean worsening on general-role sets, both as fractions of the
base (0.25 = 25% better; 0.01 = 1% worse).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

Role = Literal["domain", "general"]
# how every table of a change is read (model card, studio): the sign of ``rel_change``
CHANGE_LEGEND = "change = (model - base) / base: negative is better (lower loss, bits per byte)"
ROLES: tuple[Role, ...] = ("domain", "general")


def finite(x: Any) -> bool:
    """A real number (not bool, not NaN or inf)."""
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def rel_change(value: Any, base: Any) -> float | None:
    """``(value - base) / |base|``; None when either is missing or not finite, or base is 0."""
    if not finite(value) or not finite(base) or base == 0:
        return None
    return (value - base) / abs(base)


def improvement(base: Any, value: Any, higher_is_better: bool = False) -> float | None:
    """Relative change in the good direction: > 0 is better, whichever way the metric points."""
    rel = rel_change(value, base)
    if rel is None:
        return None
    return rel if higher_is_better else -rel


def mean(values: Iterable[Any]) -> float | None:
    """Mean of the finite values; None when there are none."""
    vals = [float(v) for v in values if finite(v)]
    return sum(vals) / len(vals) if vals else None


def source_role(name: str, role: str | None = None) -> Role:
    """A source's role: its own ``role``, else from the name (``domain*``, any case: domain)."""
    if role in ROLES:
        return role  # type: ignore[return-value]
    return "domain" if name.lower().startswith("domain") else "general"


@dataclass(frozen=True)
class Headline:
    """Domain gain and general regression, with the sets that went into each."""

    domain_gain: float | None
    general_regression: float | None
    domain: list[str] = field(default_factory=list)
    general: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @property
    def empty(self) -> bool:
        return self.domain_gain is None and self.general_regression is None


def headline(improvements: Mapping[str, float | None], roles: Mapping[str, str | None]) -> Headline:
    """From per-set improvements (> 0 better) and roles: mean gain on domain sets, mean
    worsening on general sets. Sets without a role, or without a number, are left out."""
    dom = [n for n, v in improvements.items() if roles.get(n) == "domain" and finite(v)]
    gen = [n for n, v in improvements.items() if roles.get(n) == "general" and finite(v)]
    gain = mean(improvements[n] for n in dom)
    better = mean(improvements[n] for n in gen)
    # 0.0 - x, not -x: no change reads +0.00%, never -0.00%
    return Headline(gain, 0.0 - better if better is not None else None, dom, gen)


def loss_headline(
    base: Mapping[str, Any], final: Mapping[str, Any], roles: Mapping[str, str | None]
) -> Headline:
    """The headline of a loss-like metric (lower is better), from its base and final values."""
    return headline({n: improvement(base.get(n), v) for n, v in final.items()}, roles)


def role_changes(head: Mapping[str, Any] | None) -> dict[Role, float | None]:
    """A headline of a lower-is-better metric (loss, bits per byte) as relative changes,
    the sign every report table uses (``rel_change``: negative is better): the mean change
    on the domain sets is ``-domain_gain``, on the general sets ``+general_regression``."""
    head = head or {}
    gain, regression = head.get("domain_gain"), head.get("general_regression")
    return {
        "domain": -gain if finite(gain) else None,
        "general": regression if finite(regression) else None,
    }
