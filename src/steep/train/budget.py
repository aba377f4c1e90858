"""The forgetting budget: at each eval, act when general regression exceeds its bound.

A small controller with no torch in it: it reads an eval's losses against the step-0
baseline and returns what to do. Its whole state (the replay boost, the LR multiplier, the
best checkpoint within the budget, the actions so far) goes into every checkpoint, and each
decision depends only on the evals, so a resumed run takes the same actions at the same
steps as one that never stopped.

Regression is the mean relative loss increase over the budget's sets, the same number
``steep.artifacts.scores`` reports as general regression. Actions never undo themselves:
once the replay share is raised it stays raised (lowering it again would invite
oscillation on noisy evals).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from steep.artifacts.scores import loss_headline, mean, rel_change
from steep.config.mixing import ForgettingBudgetSection

STATE_KEY = "budget"  # in a checkpoint's state.json


@dataclass
class BudgetState:
    boost: float = 0.0  # share added to the general sources by replay actions
    lr_multiplier: float = 1.0  # the schedule's LR x this
    best_step: int | None = None  # the checkpointed eval within budget with most domain gain
    best_gain: float | None = None
    stop: bool = False  # the run should end now
    bound_reached: bool = False  # the action cannot go further (said once)
    actions: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class Decision:
    """One eval's verdict: the numbers and, when over budget, what was done."""

    step: int
    regression: float
    sets: dict[str, float]
    action: str | None = None  # replay, lr, stop, bound
    reason: str = ""
    before: dict[str, float] = field(default_factory=dict)
    after: dict[str, float] = field(default_factory=dict)

    def record(self, max_regression: float) -> dict[str, Any]:
        """As a metrics.jsonl event (``steep.artifacts.metrics``)."""
        return {
            "kind": "event",
            "event": "forgetting_budget",
            "step": self.step,
            "action": self.action,
            "reason": self.reason,
            "regression": self.regression,
            "max_regression": max_regression,
            "sets": self.sets,
            "before": self.before,
            "after": self.after,
        }


class ForgettingBudget:
    def __init__(
        self,
        section: ForgettingBudgetSection,
        sets: list[str],
        roles: dict[str, str | None],
        state: dict[str, Any] | None = None,
    ):
        self.section, self.sets, self.roles = section, sets, roles
        self.state = BudgetState(**state) if state else BudgetState()

    def state_dict(self) -> dict[str, Any]:
        return asdict(self.state)

    def check(
        self,
        step: int,
        losses: dict[str, float],
        baseline: dict[str, float],
        general_share: float,
        checkpointed: bool,
    ) -> Decision:
        """Judge the eval at ``step``. ``general_share``: the general sources' share now
        (after any boost); ``checkpointed``: a checkpoint is written at this step."""
        cfg, st = self.section, self.state
        per_set = {n: rel_change(losses[n], baseline.get(n, losses[n])) for n in self.sets}
        regression = mean(v for v in per_set.values() if v is not None) or 0.0
        sets = {n: float(v) for n, v in per_set.items() if v is not None}
        d = Decision(step, float(regression), sets)
        if regression <= cfg.max_regression:
            gain = loss_headline(baseline, losses, self.roles).domain_gain
            better = st.best_gain is None or (gain is not None and gain >= st.best_gain)
            if checkpointed and step > 0 and better:
                st.best_step, st.best_gain = step, gain
            return d
        over = f"general regression {regression:.2%} > budget {cfg.max_regression:.2%}"
        if cfg.action == "stop":
            d.action, st.stop = "stop", True
            where = f"checkpoint step {st.best_step}" if st.best_step else "no checkpoint"
            d.reason = f"{over}: stopping; best within budget: {where}"
        elif cfg.action == "replay":
            room = max(0.0, cfg.max_replay_share - general_share)
            add = min(cfg.replay_step, room)
            if add > 1e-9:
                d.action = "replay"
                d.before, d.after = {"boost": st.boost}, {"boost": st.boost + add}
                st.boost += add
                d.reason = f"{over}: general share {general_share:.1%} -> {general_share + add:.1%}"
            else:
                self._bound(d, over, f"general share at its bound {cfg.max_replay_share:.0%}")
        else:
            new = max(cfg.min_lr_multiplier, st.lr_multiplier * cfg.lr_factor)
            if new < st.lr_multiplier - 1e-12:
                d.action = "lr"
                d.before, d.after = {"lr_multiplier": st.lr_multiplier}, {"lr_multiplier": new}
                d.reason = f"{over}: LR multiplier {st.lr_multiplier:g} -> {new:g}"
                st.lr_multiplier = new
            else:
                self._bound(d, over, f"LR multiplier at its bound {cfg.min_lr_multiplier:g}")
        if d.action is not None:
            st.actions.append(d.record(cfg.max_regression))
        return d

    def _bound(self, d: Decision, over: str, bound: str) -> None:
        """The action can go no further: say so once, then continue or stop (on_bound)."""
        st = self.state
        if self.section.on_bound == "stop":
            d.action, st.stop = "stop", True
            d.reason = f"{over}; {bound}: stopping (on_bound: stop)"
        elif not st.bound_reached:
            d.action = "bound"
            d.reason = f"{over}; {bound}: the budget cannot be met, training goes on"
        st.bound_reached = True
