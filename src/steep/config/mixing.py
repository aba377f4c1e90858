"""The mix over time: ``data.phases`` (weights that change on schedule) and
``train.forgetting_budget`` (the general regression a run may reach before it acts).

Here rather than in ``schema`` so the run config stays readable. These sections and
checks read only what they are given (phases, weights, steps, roles), never the whole
``RunConfig``: ``schema`` builds the config from them and calls the checks from its
validators, and ``schema.phase_weights`` / ``schema.budget_sets`` answer for a config.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator, model_validator

from steep.artifacts.scores import Role
from steep.config.strict import Strict

_Strict = Strict


class PhaseSection(_Strict):
    """One stretch of the run with its own weights; it ends where the next one begins."""

    name: str | None = Field(None, description="default phase1, phase2, ...")
    until_step: int | None = Field(None, ge=1, description="the phase ends after this step")
    until_fraction: float | None = Field(
        None, gt=0, le=1, description="the phase ends at this fraction of train.steps"
    )
    weights: dict[str, float] = Field(
        default_factory=dict,
        description="source -> weight in this phase (>= 0); a source not named keeps its "
        "data.sources weight",
    )

    @field_validator("weights")
    @classmethod
    def _non_negative(cls, v: dict[str, float]) -> dict[str, float]:
        bad = {k: w for k, w in v.items() if w < 0}
        if bad:
            raise ValueError(f"phase weights must be >= 0, got {bad}")
        return v

    @model_validator(mode="after")
    def _one_end(self) -> PhaseSection:
        if self.until_step is not None and self.until_fraction is not None:
            raise ValueError("give until_step or until_fraction, not both")
        return self


class ForgettingBudgetSection(_Strict):
    """Keep the general regression under a bound while training (``steep.train.budget``)."""

    max_regression: float = Field(
        gt=0, description="mean relative loss increase over `sets` vs step 0 (0.01 = 1%)"
    )
    sets: list[str] | None = Field(
        None, description="eval sets whose mean regression counts; default: the general ones"
    )
    action: Literal["replay", "lr", "stop"] = Field(
        "replay",
        description="replay: raise the general sources' share; lr: lower the LR; stop: end "
        "with the best checkpoint within the budget",
    )
    replay_step: float = Field(0.1, gt=0, le=1, description="share added to replay per action")
    max_replay_share: float = Field(
        0.9, gt=0, le=1, description="replay actions never raise the general share above this"
    )
    lr_factor: float = Field(0.5, gt=0, lt=1, description="lr action: LR multiplier x this")
    min_lr_multiplier: float = Field(0.05, gt=0, le=1, description="lr actions stop here")
    on_bound: Literal["continue", "stop"] = Field(
        "continue",
        description="when the action has reached its bound and the budget is still exceeded",
    )


def phase_name(i: int, phase: PhaseSection) -> str:
    return phase.name or f"phase{i + 1}"


def fraction_step(steps: int, fraction: float) -> int:
    """The step a fraction of the run ends at, rounded as the WSD decay's start is (so
    ``until_fraction: 1 - train.decay_fraction`` is exactly where the decay begins)."""
    return steps - round(steps * round(1 - fraction, 12))  # 1 - 0.9 is 0.0999...98


def phase_ends(phases: list[PhaseSection], steps: int) -> list[int]:
    """The step each phase ends after; the last one ends with the run."""
    ends = []
    for p in phases:
        if p.until_step is not None:
            ends.append(p.until_step)
        elif p.until_fraction is not None:
            ends.append(fraction_step(steps, p.until_fraction))
        else:
            ends.append(steps)
    return ends


def phase_table(
    phases: list[PhaseSection], weights: dict[str, float], steps: int
) -> list[tuple[str, int, list[float]]]:
    """(name, first step, weight per source) of every phase; ``weights`` (source -> weight,
    in the sources' order) is what a phase that does not name a source gives it."""
    out, start = [], 0
    for i, (p, end) in enumerate(zip(phases, phase_ends(phases, steps), strict=True)):
        out.append((phase_name(i, p), start, [p.weights.get(n, w) for n, w in weights.items()]))
        start = end
    return out


def phases_problem(
    phases: list[PhaseSection], weights: dict[str, float], steps: int, domain_share: float | None
) -> str | None:
    """What is wrong with ``data.phases`` against the sources' ``weights`` (source ->
    weight) and train.steps, or None."""
    if not phases:
        return None
    if domain_share is not None:
        return (
            "data.phases and data.domain_share both set the mix: give each phase its weights "
            "(data.domain_share applies to a run without phases)"
        )
    names = list(weights)
    seen: set[str] = set()
    start = 0
    for i, (p, end) in enumerate(zip(phases, phase_ends(phases, steps), strict=True)):
        label = f"data.phases[{i}] ('{phase_name(i, p)}')"
        if phase_name(i, p) in seen:
            return f"{label}: the name is used by an earlier phase"
        seen.add(phase_name(i, p))
        unknown = sorted(set(p.weights) - set(names))
        if unknown:
            return f"{label}: weights for unknown sources {unknown}; the sources are {names}"
        if i < len(phases) - 1 and p.until_step is None and p.until_fraction is None:
            return f"{label}: every phase but the last needs until_step or until_fraction"
        if end > steps:
            return f"{label} ends after step {end}, past the run's train.steps={steps}"
        if end <= start:
            return (
                f"{label} ends after step {end}, not after the previous phase's end (step "
                f"{start}): phases must follow each other without overlap"
            )
        if i == len(phases) - 1 and end != steps:
            return (
                f"{label} ends after step {end} but the run has {steps} steps: the phases must "
                "cover the run (leave the last phase's until unset to run to the end)"
            )
        if sum(p.weights.get(n, w) for n, w in weights.items()) <= 0:
            return f"{label}: every weight is 0; at least one source must have weight > 0"
        start = end
    return None


def budget_set_names(
    budget: ForgettingBudgetSection | None, set_roles: dict[str, Role | None]
) -> list[str]:
    """The eval sets the forgetting budget reads: the named ones, else the general ones of
    ``set_roles`` (eval set -> role)."""
    if budget is None:
        return []
    if budget.sets is not None:
        return list(budget.sets)
    return sorted(n for n, role in set_roles.items() if role == "general")


def budget_problem(
    budget: ForgettingBudgetSection | None,
    set_roles: dict[str, Role | None],
    source_roles: set[Role],
) -> str | None:
    """A budget on sets that are not evaluated, or with nothing to act on, or None."""
    if budget is None:
        return None
    evaluated = sorted(set_roles)
    sets = budget_set_names(budget, set_roles)
    if not sets:
        return (
            "train.forgetting_budget has no sets: no general eval set is evaluated (give a "
            f"general source a heldout_fraction, or name sets); evaluated: {evaluated or 'none'}"
        )
    missing = sorted(set(sets) - set(evaluated))
    if missing:
        return (
            f"train.forgetting_budget.sets names {missing}, which are not evaluated; the "
            f"evaluated sets are {evaluated or 'none'}"
        )
    if budget.action == "replay" and not {"general", "domain"} <= source_roles:
        return (
            "train.forgetting_budget.action=replay needs a general (replay) source and a "
            "domain one to take share from; use action: lr or stop"
        )
    return None
