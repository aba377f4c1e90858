"""The mixture's window order: a keyed bijection with no table, deterministic, resumable,
and the order an old checkpoint started with is the one it resumes with."""

from __future__ import annotations

import json
import resource

import numpy as np
import pytest

from steep.data.mixture import Mixture
from steep.data.permutation import KeyedPermutation
from tests.test_data import _FakeWindows as _Windows


@pytest.mark.parametrize("n", [1, 2, 3, 5, 16, 17, 100, 257, 1000, 4097])
def test_a_bijection_on_every_size(n: int):
    perm = KeyedPermutation(n, [0, 1, 2])
    out = [perm(i) for i in range(n)]
    assert sorted(out) == list(range(n))
    assert out == [KeyedPermutation(n, [0, 1, 2])(i) for i in range(n)]  # deterministic


def test_keys_give_different_orders_that_look_shuffled():
    n = 1000
    a = [KeyedPermutation(n, [0, 0, 0])(i) for i in range(n)]
    b = [KeyedPermutation(n, [0, 0, 1])(i) for i in range(n)]  # the next epoch
    assert a != b
    assert abs(np.corrcoef(range(n), a)[0, 1]) < 0.1  # no trace of the input order
    assert sum(x == y for x, y in zip(a, b, strict=True)) < 10


def test_a_trillion_token_source_costs_no_memory():
    """1T tokens at seq 8192 is ~1.2e8 windows: a table would be ~1 GB per rank."""
    windows = 1_000_000_000_000 // 8192
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    mix = Mixture(["web", "domain"], [_Windows(windows), _Windows(windows // 3)], [1, 1], seed=0)
    draws = mix.draw(2048)
    grown_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before
    assert grown_kb < 50_000, grown_kb
    assert len({(d.source, d.window) for d in draws}) == 2048
    assert all(0 <= d.window < len(mix.windows[d.source]) for d in draws)


def test_resume_mid_epoch_is_exact_and_old_checkpoints_keep_their_order():
    a = Mixture(["x", "y"], [_Windows(7), _Windows(5)], [1, 1], seed=3)
    for _ in range(9):
        a.next()
    state = json.loads(json.dumps(a.state_dict()))
    assert state["order"] == "keyed"
    b = Mixture(["x", "y"], [_Windows(7), _Windows(5)], [1, 1], seed=3)
    b.load_state_dict(state)
    assert [(d.source, d.window) for d in (a.next() for _ in range(20))] == [
        (d.source, d.window) for d in (b.next() for _ in range(20))
    ]

    # a checkpoint from before keyed order (no "order") resumes in the table order it used
    old_state = {"counts": [2, 2], "names": ["x", "y"], "seed": 3}
    old = Mixture(["x", "y"], [_Windows(7), _Windows(5)], [1, 1], seed=3)
    old.load_state_dict(old_state)
    table = np.random.default_rng([3, 0, 0]).permutation(7)
    nxt = old.next()
    assert nxt.source == 0 and nxt.window == int(table[2])
    assert old.state_dict()["order"] == "table"  # and it stays so at the next checkpoint
