"""The forgetting budget's controller on its own: evals in, decisions out."""

from __future__ import annotations

import json

import pytest

from steep.config.mixing import ForgettingBudgetSection
from steep.train.budget import ForgettingBudget

ROLES = {"domain": "domain", "web": "general", "wiki": "general"}
BASE = {"domain": 3.0, "web": 2.0, "wiki": 2.0}


def _budget(**kw) -> ForgettingBudget:
    section = ForgettingBudgetSection(max_regression=0.02, **kw)
    return ForgettingBudget(section, ["web", "wiki"], ROLES)


def _losses(domain: float, general_rise: float) -> dict[str, float]:
    return {"domain": domain, "web": 2.0 * (1 + general_rise), "wiki": 2.0 * (1 + general_rise)}


def test_within_budget_nothing_happens_and_the_best_checkpoint_is_the_most_gain():
    b = _budget()
    assert b.check(10, _losses(2.8, 0.01), BASE, 0.5, True).action is None
    assert b.check(20, _losses(2.5, 0.015), BASE, 0.5, False).action is None  # no checkpoint
    assert b.check(30, _losses(2.9, 0.0), BASE, 0.5, True).action is None
    assert b.state.best_step == 10  # 30 gained less than 10; 20 had no checkpoint
    assert b.check(40, _losses(2.4, 0.0), BASE, 0.5, True).action is None
    assert b.state.best_step == 40


def test_replay_raises_the_general_share_by_steps_up_to_its_bound_then_says_so_once():
    b = _budget(replay_step=0.1, max_replay_share=0.75)
    d = b.check(10, _losses(2.5, 0.05), BASE, 0.5, True)
    assert d.action == "replay" and d.regression == pytest.approx(0.05)
    assert d.reason == "general regression 5.00% > budget 2.00%: general share 50.0% -> 60.0%"
    assert b.state.boost == pytest.approx(0.1)
    assert b.check(20, _losses(2.5, 0.05), BASE, 0.6, True).action == "replay"
    d = b.check(30, _losses(2.5, 0.05), BASE, 0.7, True)
    assert d.action == "replay" and d.after["boost"] == pytest.approx(0.25)  # only to 75%
    d = b.check(40, _losses(2.5, 0.05), BASE, 0.75, True)
    assert d.action == "bound" and "cannot be met, training goes on" in d.reason
    assert b.check(50, _losses(2.5, 0.05), BASE, 0.75, True).action is None  # said once
    assert not b.state.stop
    assert [a["action"] for a in b.state.actions] == ["replay", "replay", "replay", "bound"]


def test_lr_halves_to_its_floor_and_on_bound_stop_ends_the_run():
    b = _budget(action="lr", lr_factor=0.5, min_lr_multiplier=0.2, on_bound="stop")
    assert b.check(10, _losses(2.5, 0.03), BASE, 0.5, True).action == "lr"
    assert b.state.lr_multiplier == 0.5
    b.check(20, _losses(2.5, 0.03), BASE, 0.5, True)
    assert b.state.lr_multiplier == 0.25
    b.check(30, _losses(2.5, 0.03), BASE, 0.5, True)
    assert b.state.lr_multiplier == 0.2
    d = b.check(40, _losses(2.5, 0.03), BASE, 0.5, True)
    assert d.action == "stop" and b.state.stop and "on_bound: stop" in d.reason


def test_stop_names_the_best_checkpoint_within_budget():
    b = _budget(action="stop")
    b.check(10, _losses(2.7, 0.01), BASE, 0.5, True)
    d = b.check(20, _losses(2.4, 0.03), BASE, 0.5, True)
    assert d.action == "stop" and b.state.stop and b.state.best_step == 10
    assert d.reason.endswith("best within budget: checkpoint step 10")


def test_the_state_round_trips_so_a_resume_decides_the_same():
    evals = [(10, _losses(2.8, 0.03)), (20, _losses(2.6, 0.01)), (30, _losses(2.5, 0.04))]
    whole = _budget()
    decisions = [whole.check(s, e, BASE, 0.5, True).action for s, e in evals]
    part = _budget()
    part.check(*evals[0], BASE, 0.5, True)
    resumed = ForgettingBudget(
        part.section, part.sets, ROLES, json.loads(json.dumps(part.state_dict()))
    )
    rest = [resumed.check(s, e, BASE, 0.5, True).action for s, e in evals[1:]]
    assert decisions == ["replay", None, "replay"] and rest == decisions[1:]
    assert resumed.state_dict() == whole.state_dict()
