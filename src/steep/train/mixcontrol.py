"""The mix during a run: its phases, a change asked for on resume, the forgetting budget.

The loop asks this for the LR multiplier and the fields of each train record, hands it
every eval, and stores its state in each checkpoint; the decisions themselves live in
``steep.data.mixture`` (who fills the next sequence) and ``steep.train.budget`` (when to
act), both small and tested on their own.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from steep.config import RunConfig, eval_set_roles, source_role
from steep.config.schema import budget_sets
from steep.data.mixture import Mixture
from steep.errors import ConfigError
from steep.train.budget import STATE_KEY, ForgettingBudget
from steep.train.checkpoint import checkpoint_dirs
from steep.train.evaluate import EvalSet


class MixtureChangedError(ConfigError):
    """A resume found another mix than its checkpoint trained with."""


def unbaselined_sets(root: Path, sets: list[EvalSet]) -> list[EvalSet]:
    """Eval sets the newest checkpoint has no step-0 loss for (an added source's held-out
    split): the loop measures the base on them before it loads the checkpoint."""
    dirs = checkpoint_dirs(root)
    if not dirs:
        return []
    baseline = json.loads((dirs[-1] / "state.json").read_text()).get("baseline", {})
    return [s for s in sets if s.name not in baseline]


class MixControl:
    def __init__(self, config: RunConfig, mixture: Mixture, quiet: bool = False):
        self.config, self.mixture, self.quiet = config, mixture, quiet  # quiet: not rank 0
        mixture.boosted = np.asarray([source_role(s) == "general" for s in config.data.sources])
        section = config.train.forgetting_budget
        self.budget = (
            ForgettingBudget(section, budget_sets(config), eval_set_roles(config))
            if section is not None
            else None
        )
        self.changes: list[dict[str, Any]] = []  # resumes that changed the mix
        self._phase = -1  # the phase of the last step logged (-1: none yet)

    def resume(self, state: dict[str, Any], step: int, allow_change: bool) -> list[str]:
        """Continue the checkpoint's mixture and budget; a changed mix needs ``allow_change``."""
        was = state["mixture"].get("seq_len")
        if was is not None and was != self.mixture.seq_len:
            raise ConfigError(
                f"data.seq_len={self.mixture.seq_len} differs from the checkpoint's {was}: a "
                f"resume keeps its window length (the mixture's position counts windows of "
                f"{was}). To go on at the new length, start a second stage from this run's "
                "model (model.base: RUN/model, data.seq_len: the new length; see "
                "docs/long-context.md)"
            )
        try:
            lines = self.mixture.load_state_dict(state["mixture"], allow_change)
        except ValueError as exc:
            raise MixtureChangedError(
                f"{exc}. Resume with the mix it trained with, or pass --allow-mixture-change "
                "to go on with the new one (kept sources continue where they were, new ones "
                "start at their beginning; the change is recorded)"
            ) from None
        self.changes = list(state.get("mixture_changes", []))
        if lines:
            self.changes.append({"step": step, "changed": lines, "phases": self.mixture.describe()})
        if self.budget is not None and state.get(STATE_KEY):
            self.budget = ForgettingBudget(
                self.budget.section, self.budget.sets, self.budget.roles, state[STATE_KEY]
            )
            self.mixture.boost = self.budget.state.boost
        self._phase = self.mixture.phase_index(max(0, self.mixture.position - 1))
        return lines

    @property
    def lr_multiplier(self) -> float:
        return self.budget.state.lr_multiplier if self.budget is not None else 1.0

    @property
    def stop(self) -> bool:
        return self.budget is not None and self.budget.state.stop

    @property
    def best_step(self) -> int | None:
        return self.budget.state.best_step if self.budget is not None else None

    @property
    def phased(self) -> bool:
        return len(self.mixture.phases) > 1

    def step_fields(self, seq_len: int) -> dict[str, Any]:
        """What a train record adds: the phase it drew in and, phased, tokens per phase."""
        phase = self.mixture.phases[self.mixture.phase_index(self.mixture.position - 1)]
        out: dict[str, Any] = {"phase": phase.name}
        if self.phased or self.changes:
            out["tokens_by_phase"] = self.mixture.tokens_by_phase(seq_len)
        return out

    def events(self, step: int, resumed_change: list[str] | None = None) -> list[dict[str, Any]]:
        """Event records for this step: a phase that began, a change made on resume."""
        out = []
        if resumed_change:
            out.append({"kind": "event", "event": "mixture_change", "step": step,
                        "changed": resumed_change, "phases": self.mixture.describe()})  # fmt: skip
        now = self.mixture.phase_index(max(0, self.mixture.position - 1))
        if self.phased and now != self._phase:
            p = self.mixture.phases[now]
            weights = dict(
                zip(self.mixture.names, self.mixture.shares_of(now).tolist(), strict=True)
            )
            begun = p.start // self.config.sequences_per_step  # the steps done before it
            out.append({"kind": "event", "event": "phase", "step": begun, "phase": p.name,
                        "shares": weights})  # fmt: skip
        self._phase = now
        return out

    def after_eval(
        self, step: int, losses: dict[str, float], baseline: dict[str, float], checkpointed: bool
    ) -> list[dict[str, Any]]:
        """Let the budget judge this eval; apply what it decides; its event, if it acted."""
        if self.budget is None:
            return []
        mix = self.mixture
        general = float(mix.shares[mix.boosted].sum())
        decision = self.budget.check(step, losses, baseline, general, checkpointed)
        if decision.action == "replay":
            mix.set_boost(self.budget.state.boost)
        if decision.action is None:
            return []
        if not self.quiet:
            print(f"forgetting budget at step {step}: {decision.reason}")
        return [decision.record(self.budget.section.max_regression)]

    def state(self) -> dict[str, Any]:
        """What a checkpoint keeps of the mix."""
        out: dict[str, Any] = {
            "mixture": self.mixture.state_dict(),
            "mixture_changes": self.changes,
        }
        if self.budget is not None:
            out[STATE_KEY] = self.budget.state_dict()
        return out

    def lineage(self, seq_len: int) -> dict[str, Any]:
        """steep.json's fields: tokens per phase, changes on resume, the budget's actions."""
        out: dict[str, Any] = {"mixture_changes": self.changes}
        if self.phased or self.changes:
            out["tokens_by_phase"] = self.mixture.tokens_by_phase(seq_len)
        if self.budget is not None:
            st = self.budget.state
            out["forgetting_budget"] = {
                **self.budget.section.model_dump(mode="json"),
                "sets": self.budget.sets,
                "actions": st.actions,
                "best_step": st.best_step,
                "stopped": st.stop,
                "lr_multiplier": st.lr_multiplier,
                "replay_boost": st.boost,
            }
        return out

    def report_notes(self) -> dict[str, str]:
        """Lines for report.md's notes."""
        mix = self.mixture
        notes = {}
        for i, p in enumerate(mix.phases):
            key = "mixture" if not self.phased else f"phase {p.name}"
            end = mix.phases[i + 1].start if i + 1 < len(mix.phases) else None
            where = f" (sequences {p.start:,}-{end:,})" if end is not None and self.phased else ""
            shares = mix.shares_of(i, boosted=False)
            notes[key] = (
                ", ".join(f"{n} {s:.1%}" for n, s in zip(mix.names, shares, strict=True)) + where
            )
        for c in self.changes:
            notes[f"mixture change at step {c['step']}"] = "; ".join(c["changed"])
        if self.budget is not None:
            st, cfg = self.budget.state, self.budget.section
            acted = "; ".join(f"step {a['step']}: {a['reason']}" for a in st.actions) or "none"
            notes["forgetting budget"] = (
                f"max {cfg.max_regression:.2%} on {', '.join(self.budget.sets)}, action "
                f"{cfg.action}; actions: {acted}"
            )
        return notes
