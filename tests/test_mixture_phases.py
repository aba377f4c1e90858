"""Mixture phases, changes of mix and the replay boost, on the mixture alone (no model)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from steep.config import ConfigError, parse_config
from steep.config.mixing import fraction_step
from steep.config.schema import phase_weights
from steep.data.mixture import Mixture, Phase, shift_share
from steep.data.permutation import KeyedPermutation
from steep.train.schedule import Schedule

from .test_data import _FakeWindows as _Windows


def _phased(sizes=(40, 40, 40), seed=0) -> Mixture:
    names = ["domain", "web", "code"]
    phases = [
        Phase("warm", 0, (1.0, 1.0, 0.0)),
        Phase("main", 30, (1.0, 3.0, 1.0)),
        Phase("anneal", 90, (4.0, 1.0, 0.0)),
    ]
    return Mixture(names, [_Windows(n) for n in sizes], phases[0].weights, seed, phases)


def test_each_phase_tracks_its_own_weights_from_its_start_within_one_sequence():
    m = _phased()
    starts = {0: np.zeros(3), 30: None, 90: None}
    for k in range(120):
        if k in starts and starts[k] is None:
            starts[k] = m.counts.copy()
        m.next()
        start = max(s for s in starts if s <= k)
        shares = np.asarray(m.phases[m.phase_index(k)].weights) / sum(
            m.phases[m.phase_index(k)].weights
        )
        since = m.counts - starts[start]
        assert np.all(np.abs(since - shares * (k - start + 1)) < 1.0 + 1e-9), (k, since)
    by_phase = m.tokens_by_phase(1)
    assert by_phase["warm"] == {"domain": 15, "web": 15, "code": 0}
    assert sum(by_phase["main"].values()) == 60 and by_phase["main"]["code"] == 12
    assert sum(by_phase["anneal"].values()) == 30 and by_phase["anneal"]["domain"] == 24
    assert {n: sum(p[n] for p in by_phase.values()) for n in m.names} == m.tokens_by_source(1)


def test_no_window_is_repeated_or_skipped_across_phase_changes():
    m = _phased(sizes=(25, 60, 12))
    draws = [m.next() for _ in range(120)]
    for i, n in enumerate((25, 60, 12)):
        got = [(d.epoch, d.window) for d in draws if d.source == i]
        # exactly the source's own order, epoch after epoch, as if it had been alone
        want = [(k // n, KeyedPermutation(n, [0, i, k // n])(k % n)) for k in range(len(got))]
        assert got == want


@pytest.mark.parametrize("at", [1, 29, 30, 31, 89, 90, 100])
def test_resume_at_any_position_is_exact(at):
    a = _phased()
    for _ in range(at):
        a.next()
    b = _phased()
    assert b.load_state_dict(json.loads(json.dumps(a.state_dict()))) == []
    rest = [(d.source, d.window) for d in (a.next() for _ in range(40))]
    assert rest == [(d.source, d.window) for d in (b.next() for _ in range(40))]
    assert a.tokens_by_phase(1) == b.tokens_by_phase(1)


def test_a_changed_weight_is_refused_unless_allowed_and_then_positions_continue():
    a = Mixture(["x", "y"], [_Windows(50), _Windows(50)], [1, 1], seed=3)
    for _ in range(20):
        a.next()
    state = json.loads(json.dumps(a.state_dict()))
    b = Mixture(["x", "y"], [_Windows(50), _Windows(50)], [3, 1], seed=3)
    with pytest.raises(ValueError, match=r"phase 'all': 'x' weight 1 -> 3"):
        b.load_state_dict(state)
    assert b.load_state_dict(state, allow_change=True) == ["phase 'all': 'x' weight 1 -> 3"]
    assert b.counts.tolist() == [10, 10]
    after = [b.next() for _ in range(40)]
    xs = [d.window for d in after if d.source == 0]
    assert len(xs) == 30  # 3:1 from the change on, not a catch-up of the whole run
    assert xs == [KeyedPermutation(50, [3, 0, 0])(k) for k in range(10, 40)]


def test_an_added_source_starts_at_its_beginning_and_a_removed_one_frees_its_share():
    a = Mixture(["x", "y"], [_Windows(50), _Windows(50)], [1, 1], seed=3)
    for _ in range(20):
        a.next()
    state = json.loads(json.dumps(a.state_dict()))
    b = Mixture(["new", "y"], [_Windows(30), _Windows(50)], [1, 1], seed=3)
    changes = b.load_state_dict(state, allow_change=True)
    assert "source 'new' added" in changes and "source 'x' removed" in changes
    assert b.counts.tolist() == [0, 10]
    draws = [b.next() for _ in range(10)]
    news = [d.window for d in draws if d.source == 0]
    assert news == [KeyedPermutation(30, [3, 2, 0])(k) for k in range(5)]  # a fresh key
    ys = [d.window for d in draws if d.source == 1]
    assert ys == [KeyedPermutation(50, [3, 1, 0])(k) for k in range(10, 15)]  # y's own key


def test_old_checkpoints_without_phases_resume_as_they_were():
    a = Mixture(["x", "y"], [_Windows(7), _Windows(5)], [2, 1], seed=3)
    for _ in range(9):
        a.next()
    old = {k: v for k, v in a.state_dict().items() if k in ("counts", "names", "seed", "order")}
    b = Mixture(["x", "y"], [_Windows(7), _Windows(5)], [2, 1], seed=3)
    assert b.load_state_dict(old) == []
    assert [(d.source, d.window) for d in (a.next() for _ in range(20))] == [
        (d.source, d.window) for d in (b.next() for _ in range(20))
    ]
    renamed = Mixture(["x", "z"], [_Windows(7), _Windows(5)], [2, 1], seed=3)
    with pytest.raises(ValueError, match="source 'z' added; source 'y' removed"):
        renamed.load_state_dict(old)


def test_shift_share_raises_one_group_and_keeps_inner_proportions():
    shares = np.array([0.5, 0.3, 0.2])
    group = np.array([False, True, True])
    out = shift_share(shares, group, 0.2)
    assert np.allclose(out, [0.3, 0.42, 0.28]) and np.isclose(out.sum(), 1)
    assert np.allclose(shift_share(np.array([1.0, 0.0]), np.array([False, True]), 0.1), [0.9, 0.1])


def test_a_boost_is_tracked_from_where_it_is_set():
    m = Mixture(["domain", "web"], [_Windows(99), _Windows(99)], [1, 1], seed=0)
    m.boosted = np.array([False, True])
    for _ in range(20):
        m.next()
    m.set_boost(0.25)
    before = m.counts.copy()
    for _ in range(40):
        m.next()
    assert (m.counts - before).tolist() == [10, 30]


def _config(phases, steps=100, **data):
    return parse_config(
        {
            "model": {"base": "tiny-base", "base_max_lr": 1e-3},
            "data": {
                "seq_len": 8,
                "sources": [
                    {"name": "domain", "paths": ["d"], "weight": 1},
                    {"name": "web", "paths": ["w"], "weight": 1},
                ],
                "phases": phases,
                **data,
            },
            "train": {"steps": steps, "global_batch_tokens": 16, "schedule": "wsd"},
        }
    )


def test_phases_in_the_config_become_steps_and_a_fraction_meets_the_wsd_decay():
    cfg = _config([{"until_fraction": 0.8}, {"name": "anneal", "weights": {"web": 0}}], steps=37)
    sched = Schedule("wsd", 1.0, 37, 1, decay_fraction=0.2)
    first_decay = next(s for s in range(37) if sched.lr(s) < 1.0)
    assert phase_weights(cfg) == [("phase1", 0, [1, 1]), ("anneal", first_decay, [1, 0])]
    assert fraction_step(37, 0.8) == first_decay
    for steps in (15, 25, 37, 1000):  # x.5 ties round as the schedule's own do
        for decay in (0.1, 0.2, 0.3):
            wsd = Schedule("wsd", 1.0, steps, 0, decay_fraction=decay)
            start = next(s for s in range(steps) if wsd.lr(s) < 1.0)
            assert fraction_step(steps, 1 - decay) == start, (steps, decay)


@pytest.mark.parametrize(
    ("phases", "data", "msg"),
    [
        ([{"until_step": 50}, {"until_step": 40}], {}, "without overlap"),
        ([{"until_step": 50}, {"until_step": 90}], {}, "must cover the run"),
        ([{"until_step": 50, "weights": {"dom": 2}}, {}], {}, r"unknown sources \['dom'\]"),
        ([{}, {"until_step": 90}], {}, "needs until_step or until_fraction"),
        ([{"until_step": 120}, {}], {}, "past the run's train.steps=100"),
        ([{"until_step": 50, "weights": {"domain": 0, "web": 0}}, {}], {}, "every weight is 0"),
        ([{"until_step": 50}, {}], {"domain_share": 0.5}, "both set the mix"),
        ([{"until_step": 50, "name": "a"}, {"name": "a"}], {}, "used by an earlier phase"),
    ],
)
def test_bad_phases_say_what_is_wrong(phases, data, msg):
    with pytest.raises(ConfigError, match=msg):
        _config(phases, **data)


def test_a_budget_on_sets_that_are_not_evaluated_is_refused():
    base = {
        "model": {"base": "tiny-base", "base_max_lr": 1e-3},
        "data": {
            "seq_len": 8,
            "sources": [
                {"name": "domain", "paths": ["d"], "heldout_fraction": 0.1},
                {"name": "web", "paths": ["w"], "heldout_fraction": 0},
            ],
        },
        "train": {"steps": 10, "global_batch_tokens": 16},
    }
    with pytest.raises(ConfigError, match="no general eval set is evaluated"):
        parse_config(
            {**base, "train": {**base["train"], "forgetting_budget": {"max_regression": 0.01}}}
        )
    budget = {"max_regression": 0.01, "sets": ["wiki"]}
    with pytest.raises(ConfigError, match=r"names \['wiki'\], which are not evaluated"):
        parse_config({**base, "train": {**base["train"], "forgetting_budget": budget}})
