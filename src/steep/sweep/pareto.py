"""Pick a sweep point: the Pareto front of domain gain vs general regression, and why.

A CPT recipe trades learning the domain against forgetting general text. The sweep scores
each finished point by two numbers taken against the base model (step 0):

- domain gain: minus the mean relative change of the domain-role eval losses (0.12 = the
  domain loss fell by 12%);
- general regression: the mean relative change of the general-role eval losses
  (0.006 = general loss rose by 0.6%; negative = it improved).

The recommendation is the point with the largest domain gain whose general regression
stays within a budget (1% by default, the regression e-Llama reported), so the rule is one
a reader can check against the table by eye.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from steep.artifacts.fmt import change_pct

DEFAULT_MAX_REGRESSION = 0.01


@dataclass(frozen=True)
class Scored:
    """One finished sweep point's two numbers (fractions, not percent)."""

    id: str
    domain_gain: float
    general_regression: float


@dataclass
class Recommendation:
    id: str | None  # None: no point stays within the budget
    reason: str
    within: list[str] = field(default_factory=list)  # ids within the budget, best first
    over: list[str] = field(default_factory=list)  # ids over the budget
    front: list[str] = field(default_factory=list)  # Pareto front, by rising regression

    def to_json(self) -> dict:
        return {
            "id": self.id,
            "reason": self.reason,
            "within_budget": self.within,
            "over_budget": self.over,
            "pareto_front": self.front,
        }


def pct(x: float, signed: bool = True) -> str:
    """0.0061 -> '+0.61%' (``steep.artifacts.fmt.change_pct``); ``signed=False`` for a budget."""
    text = change_pct(x)
    return text if signed else text.lstrip("+")


def pareto_front(points: Sequence[Scored]) -> list[str]:
    """Ids of the points no other point beats on both axes (more gain, less regression).

    Sorted by rising regression, so consecutive ids trace the front from safe to greedy.
    """
    front = [
        p
        for p in points
        if not any(
            q.domain_gain >= p.domain_gain
            and q.general_regression <= p.general_regression
            and (q.domain_gain > p.domain_gain or q.general_regression < p.general_regression)
            for q in points
        )
    ]
    front.sort(key=lambda p: (p.general_regression, -p.domain_gain))
    return [p.id for p in front]


def recommend(points: Sequence[Scored], max_regression: float) -> Recommendation:
    """The largest domain gain among points with general regression <= ``max_regression``.

    Ties go to the smaller regression, then to the earlier point in grid order. When no
    point qualifies the answer says so and names the one that forgot least.
    """
    points = [
        p for p in points if math.isfinite(p.domain_gain) and math.isfinite(p.general_regression)
    ]
    front = pareto_front(points)
    if not points:
        return Recommendation(None, "no finished point to compare: nothing to recommend")
    order = {p.id: i for i, p in enumerate(points)}
    within = sorted(
        (p for p in points if p.general_regression <= max_regression),
        key=lambda p: (-p.domain_gain, p.general_regression, order[p.id]),
    )
    over = [p for p in points if p.general_regression > max_regression]
    budget = f"general regression <= {pct(max_regression, signed=False)}"
    over_text = ", ".join(f"{p.id} ({pct(p.general_regression)})" for p in over)
    if not within:
        least = min(points, key=lambda p: (p.general_regression, -p.domain_gain, order[p.id]))
        reason = (
            f"no point keeps {budget}: all {len(points)} exceed it. Least regression: "
            f"{least.id} (domain gain {pct(least.domain_gain)}, general regression "
            f"{pct(least.general_regression)}). Try a lower train.lr_fraction or a larger "
            "general share, or raise --max-regression"
        )
        return Recommendation(None, reason, [], [p.id for p in over], front)
    best = within[0]
    reason = (
        f"{best.id}: domain gain {pct(best.domain_gain)}, general regression "
        f"{pct(best.general_regression)} (as in the table: gain above 0 is better, regression "
        f"above 0 is worse) - the largest domain gain of the {len(within)} point"
        f"{'s' if len(within) != 1 else ''} with {budget}"
    )
    if over:
        reason += f"; {len(over)} exceeded the budget: {over_text}"
    return Recommendation(best.id, reason, [p.id for p in within], [p.id for p in over], front)


def plot_pareto(
    points: Sequence[Scored],
    rec: Recommendation,
    max_regression: float,
    path: Path,
    numbers: dict[str, int] | None = None,
) -> Path:
    """Scatter general regression (x) vs domain gain (y), front joined, budget line drawn.

    Points are labelled by number (``numbers``, default 1, 2, ... in the given order) with
    the ids listed beside the plot: full ids on the points overlap as soon as two points
    land close together.
    """
    num = numbers or {p.id: n for n, p in enumerate(points, start=1)}
    # deferred: matplotlib loads only when a plot is drawn
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(11, 5.5), dpi=120)  # outside pyplot: no global state, no GUI
    FigureCanvasAgg(fig)
    ax = fig.add_axes((0.08, 0.11, 0.58, 0.8))
    ax.set_title("Sweep: domain gain vs general regression (against the base model)")
    ax.set_xlabel("general regression (% loss rise; right = more forgetting)")
    ax.set_ylabel("domain gain (% loss fall; up = better)")
    ax.grid(True, alpha=0.3)
    front = set(rec.front)
    xs = {p.id: 100 * p.general_regression for p in points}
    ys = {p.id: 100 * p.domain_gain for p in points}
    others = [p.id for p in points if p.id not in front]
    ax.scatter([xs[i] for i in others], [ys[i] for i in others], color="0.55", label="point")
    if rec.front:
        fx, fy = [xs[i] for i in rec.front], [ys[i] for i in rec.front]
        ax.plot(fx, fy, color="C3", lw=1.2, alpha=0.6)
        ax.scatter(fx, fy, color="C3", zorder=3, label="Pareto front")
    if rec.id is not None:
        ax.scatter(
            [xs[rec.id]],
            [ys[rec.id]],
            s=260,
            marker="*",
            color="gold",
            edgecolor="k",
            zorder=4,
            label="recommended",
        )
    budget_x = 100 * max_regression
    ax.axvline(budget_x, color="C3", ls="--", lw=1.0, label=f"budget {pct(max_regression)}")
    ax.axvline(0.0, color="0.3", lw=0.8)
    ax.axhline(0.0, color="0.3", lw=0.8)
    lo, hi = ax.get_xlim()
    ax.set_xlim(min(lo, budget_x - 0.1 * (hi - lo)), max(hi, budget_x + 0.1 * (hi - lo)))
    ax.axvspan(budget_x, ax.get_xlim()[1], color="C3", alpha=0.06)
    for p in points:
        n = num[p.id]
        offset = (5, 4) if n % 2 else (5, -11)  # alternate sides: neighbours stay legible
        ax.annotate(
            str(n),
            (xs[p.id], ys[p.id]),
            textcoords="offset points",
            xytext=offset,
            fontsize="small",
            color="0.2",
        )
    ax.legend(loc="best", fontsize="small")
    key = [f"{num[p.id]:>2}  {p.id}" for p in points]
    fig.text(0.68, 0.91, "\n".join(key), va="top", ha="left", family="monospace", fontsize=8)
    tmp = path.with_name(f".{path.name}.tmp")
    fig.savefig(tmp, format="png")
    os.replace(tmp, path)  # atomic: a reader never sees half a PNG
    return path
