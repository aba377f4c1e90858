import math

import pytest

from steep.train.schedule import Schedule


def test_cosine_warmup_then_floor():
    s = Schedule("cosine", max_lr=1.0, total_steps=101, warmup_steps=10, min_lr_ratio=0.1)
    assert s.lr(0) == pytest.approx(0.1)
    assert s.lr(9) == pytest.approx(1.0)
    assert s.lr(10) == pytest.approx(1.0)
    assert s.lr(100) == pytest.approx(0.1)
    mid = 10 + 45  # halfway through the decay
    assert s.lr(mid) == pytest.approx(0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * 0.5)))
    lrs = [s.lr(i) for i in range(10, 101)]
    assert all(a >= b for a, b in zip(lrs, lrs[1:], strict=False))


def test_wsd_plateau_then_linear_decay():
    s = Schedule(
        "wsd", max_lr=2.0, total_steps=100, warmup_steps=5, min_lr_ratio=0.0, decay_fraction=0.2
    )
    assert s.lr(4) == pytest.approx(2.0)
    assert all(s.lr(i) == 2.0 for i in range(5, 80))
    assert s.lr(80) == pytest.approx(2.0 * (1 - 1 / 20))
    assert s.lr(99) == pytest.approx(0.0)


def test_constant_and_bad_warmup():
    s = Schedule("constant", max_lr=0.5, total_steps=10, warmup_steps=2)
    assert [s.lr(i) for i in range(4)] == [0.25, 0.5, 0.5, 0.5]
    with pytest.raises(ValueError, match="warmup"):
        Schedule("cosine", max_lr=1.0, total_steps=10, warmup_steps=10)
