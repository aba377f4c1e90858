"""A deterministic, resumable mixture of sources, weighted in tokens.

Every training sequence comes whole from one source. Which source fills sequence k is
decided by a largest-deficit rule: pick the source whose realised count lags its target
share ``w_i * (k + 1)`` the most. That keeps every source within one sequence of its
weight at every prefix of training, not just on average (random sampling drifts by
sqrt(k)). The seed only permutes the windows inside each source, once per epoch, so
changing it changes the order and never the ratio. The permutation is a keyed bijection
(``steep.data.permutation``), not a table, so it costs no memory however big the source.

The state is the count of sequences taken from each source; any sequence can be rebuilt
from it, so resuming after a crash repeats and skips nothing.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from steep.data.permutation import KeyedPermutation
from steep.data.tokensource import Windows

# how window order is drawn: "keyed" (steep.data.permutation); checkpoints written before it
# have no "order" and keep the table permutation they started with, so a resume never
# changes the order inside an epoch
ORDER = "keyed"


@dataclass
class Draw:
    source: int  # index into the mixture's sources
    window: int  # window index within that source
    epoch: int  # how many full passes over the source came before this one


class Mixture:
    def __init__(self, names: list[str], windows: list[Windows], weights: list[float], seed: int):
        if not (len(names) == len(windows) == len(weights)) or not names:
            raise ValueError("a mixture needs one name, window set and weight per source")
        total = float(sum(weights))
        self.names = names
        self.windows = windows
        self.shares = np.asarray([w / total for w in weights], dtype=np.float64)
        self.seed = seed
        self.counts = np.zeros(len(names), dtype=np.int64)  # sequences drawn per source
        self.order = ORDER
        self._perms: dict[int, tuple[int, KeyedPermutation | np.ndarray]] = {}

    @property
    def position(self) -> int:
        return int(self.counts.sum())

    def pick_source(self) -> int:
        """Largest deficit against the target share; ties go to the earlier source."""
        deficit = self.shares * (self.position + 1) - self.counts
        return int(np.argmax(deficit))

    def _window(self, source: int, epoch: int, offset: int) -> int:
        """Window ``offset`` of the source's shuffled order in this epoch."""
        held = self._perms.get(source)
        if held is None or held[0] != epoch:
            n, key = len(self.windows[source]), [self.seed, source, epoch]
            if self.order == ORDER:
                perm: KeyedPermutation | np.ndarray = KeyedPermutation(n, key)
            else:  # a checkpoint from before keyed order: the O(windows) table it used
                perm = np.random.default_rng(key).permutation(n)
            held = self._perms[source] = (epoch, perm)
        perm = held[1]
        return perm(offset) if isinstance(perm, KeyedPermutation) else int(perm[offset])

    def next(self) -> Draw:
        i = self.pick_source()
        n = len(self.windows[i])
        epoch, offset = divmod(int(self.counts[i]), n)
        self.counts[i] += 1
        return Draw(i, self._window(i, epoch, offset), epoch)

    def draw(self, k: int) -> list[Draw]:
        """Where the next k sequences come from, without reading them.

        Under data parallelism every rank draws the whole global batch (cheap: indices
        only) and reads just its own slice, so all ranks share one sequence of draws and the
        mixture does not depend on the world size.
        """
        return [self.next() for _ in range(k)]

    def load(self, draws: list[Draw]) -> np.ndarray:
        """The drawn sequences as a (k, seq_len + 1) int64 array."""
        return np.stack([self.windows[d.source].get(d.window) for d in draws])

    def take(self, k: int) -> tuple[np.ndarray, list[Draw]]:
        """The next k sequences as a (k, seq_len + 1) int64 array, and where each came from."""
        draws = self.draw(k)
        return self.load(draws), draws

    def tokens_by_source(self, seq_len: int) -> dict[str, int]:
        return {n: int(c) * seq_len for n, c in zip(self.names, self.counts, strict=True)}

    def epochs_needed(self, total_sequences: int) -> dict[str, float]:
        """How many passes over each source a run of ``total_sequences`` would make."""
        return {
            n: float(np.ceil(s * total_sequences)) / max(1, len(w))
            for n, s, w in zip(self.names, self.shares, self.windows, strict=True)
        }

    def state_dict(self) -> dict:
        return {
            "counts": self.counts.tolist(),
            "names": list(self.names),
            "seed": self.seed,
            "order": self.order,
        }

    def load_state_dict(self, state: dict) -> None:
        if list(state["names"]) != list(self.names):
            raise ValueError(
                f"checkpoint mixture has sources {state['names']}, config has {self.names}"
            )
        self.counts = np.asarray(state["counts"], dtype=np.int64)
        self.seed = int(state["seed"])
        self.order = state.get("order", "table")
        self._perms.clear()
