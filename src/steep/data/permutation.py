"""A shuffled order of n windows that needs no table: a keyed bijection on [0, n).

A source of 1T tokens at seq 8192 has ~1.2e8 windows; an int64 permutation of them is 1 GB
on every rank, rebuilt each epoch. Instead, window ``i`` of an epoch is ``pi(i)`` for a
Feistel network keyed by (seed, source, epoch): a bijection on the smallest power of four
at least n, and cycle-walking (apply it again until the value falls below n) makes it one
on [0, n) (at most a few walks on average, since the domain is under 4n). O(1) memory,
deterministic on every platform (integer arithmetic, keys from numpy's SeedSequence), and
the same ``i`` always maps to the same window, so a resumed run picks up mid-epoch.
"""

from __future__ import annotations

import numpy as np

ROUNDS = 6
_M64 = (1 << 64) - 1


def _mix(x: int) -> int:
    """splitmix64's finaliser: every input bit moves every output bit."""
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & _M64
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & _M64
    return x ^ (x >> 31)


class KeyedPermutation:
    def __init__(self, n: int, key: list[int]) -> None:
        if n < 1:
            raise ValueError("a permutation needs n >= 1")
        self.n = n
        bits = max(2, (n - 1).bit_length())
        self.half = (bits + 1) // 2  # two equal halves: the domain is 4**half >= n
        self.mask = (1 << self.half) - 1
        state = np.random.SeedSequence(key).generate_state(ROUNDS, dtype=np.uint64)
        self.keys = [int(k) for k in state]

    def _once(self, x: int) -> int:
        left, right = x >> self.half, x & self.mask
        for k in self.keys:
            left, right = right, left ^ (_mix(right ^ k) & self.mask)
        return (left << self.half) | right

    def __call__(self, i: int) -> int:
        if not 0 <= i < self.n:
            raise IndexError(f"{i} outside 0..{self.n - 1}")
        x = self._once(i)
        while x >= self.n:
            x = self._once(x)
        return x
