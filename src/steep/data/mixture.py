"""A deterministic, resumable mixture of sources, weighted in tokens.

Every training sequence comes whole from one source. Which source fills sequence k is
decided by a largest-deficit rule: pick the source whose realised count lags its target
share the most. That keeps every source within one sequence of its weight at every prefix
of training, not just on average (random sampling drifts by sqrt(k)). The seed only
permutes the windows inside each source, once per epoch, so changing it changes the order
and never the ratio. The permutation is a keyed bijection (``steep.data.permutation``),
not a table, so it costs no memory however big the source.

The weights can change during a run: at configured phase boundaries (``data.phases``), when
a resume changes the mix on purpose, or when the forgetting budget raises the replay share.
Each change starts a new *segment*: the largest-deficit rule counts from the segment's
start, so the shares track the new weights from there, and each source keeps its own
position in its window order, so nothing is repeated or skipped across a change.

The state is the count of sequences taken from each source (and where the segment began);
any sequence can be rebuilt from it, so resuming after a crash repeats and skips nothing.
"""

from __future__ import annotations

import bisect
from collections.abc import Sequence
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


@dataclass(frozen=True)
class Phase:
    """Weights that hold from sequence ``start`` (sequences drawn so far) to the next phase."""

    name: str
    start: int
    weights: tuple[float, ...]  # one per source, >= 0, at least one > 0


def normalise(weights: Sequence[float]) -> np.ndarray:
    w = np.asarray(weights, dtype=np.float64)
    if w.min() < 0 or w.sum() <= 0:
        raise ValueError(f"weights must be >= 0 with a positive sum, got {list(weights)}")
    return w / w.sum()


def shift_share(shares: np.ndarray, group: np.ndarray, delta: float) -> np.ndarray:
    """``shares`` with the ``group`` sources' total raised by ``delta`` (capped at 1); each
    side keeps its inner proportions (a group with no share yet splits its part evenly)."""
    if delta == 0 or not group.any() or group.all():
        return shares
    inside = float(shares[group].sum())
    target = min(1.0, inside + delta)
    out = shares.copy()
    if inside > 0:
        out[group] = shares[group] * (target / inside)
    else:
        out[group] = target / int(group.sum())
    rest = 1.0 - inside
    out[~group] = shares[~group] * ((1.0 - target) / rest) if rest > 0 else 0.0
    return out


class Mixture:
    def __init__(
        self,
        names: list[str],
        windows: list[Windows],
        weights: Sequence[float],
        seed: int,
        phases: list[Phase] | None = None,
        layouts: list[str] | None = None,
        seq_len: int | None = None,
    ):
        if not (len(names) == len(windows) == len(weights)) or not names:
            raise ValueError("a mixture needs one name, window set and weight per source")
        self.names = names
        self.windows = windows
        # which documents each source's windows cut (its length rule): a changed one is
        # another window order, so the source starts again (``load_state_dict``)
        self.layouts = layouts or ["every document"] * len(names)
        self.seq_len = seq_len
        self.phases = phases or [Phase("all", 0, tuple(float(w) for w in weights))]
        if self.phases[0].start != 0 or any(len(p.weights) != len(names) for p in self.phases):
            raise ValueError("phases start at sequence 0 and give one weight per source")
        self._starts = [p.start for p in self.phases]
        self._phase_shares = [normalise(p.weights) for p in self.phases]
        self.seed = seed
        self.counts = np.zeros(len(names), dtype=np.int64)  # sequences drawn per source
        self.phase_counts = np.zeros((len(self.phases), len(names)), dtype=np.int64)
        self.keys = list(range(len(names)))  # each source's permutation key: stays with it
        self.boost = 0.0  # extra share for the boosted sources (the forgetting budget)
        self.boosted = np.zeros(len(names), dtype=bool)
        self.order = ORDER
        self._segment = (0, np.zeros(len(names), dtype=np.int64), 0)  # position, counts, phase
        self._perms: dict[int, tuple[int, KeyedPermutation | np.ndarray]] = {}

    @property
    def position(self) -> int:
        return int(self.counts.sum())

    def phase_index(self, position: int | None = None) -> int:
        pos = self.position if position is None else position
        return bisect.bisect_right(self._starts, pos) - 1

    def shares_of(self, phase: int, boosted: bool = True) -> np.ndarray:
        """The shares phase ``phase`` draws with, after any boost (or as configured)."""
        shares = self._phase_shares[phase]
        return shift_share(shares, self.boosted, self.boost) if boosted else shares

    @property
    def shares(self) -> np.ndarray:
        """The shares the next sequence is drawn with."""
        return self.shares_of(self.phase_index())

    def restart_segment(self) -> None:
        """Track the current shares from here on (after a change of weights)."""
        self._segment = (self.position, self.counts.copy(), self.phase_index())

    def set_boost(self, boost: float, boosted: np.ndarray | None = None) -> None:
        """Raise the ``boosted`` sources' share by ``boost`` from the next sequence on."""
        if boosted is not None:
            self.boosted = np.asarray(boosted, dtype=bool)
        self.boost = float(boost)
        self.restart_segment()

    def pick_source(self) -> int:
        """Largest deficit against the target share since the segment began; ties go to the
        earlier source."""
        pos = self.position
        if self.phase_index(pos) != self._segment[2]:  # a phase boundary: its weights now
            self.restart_segment()
        start, at_start, phase = self._segment
        deficit = self.shares_of(phase) * (pos - start + 1) - (self.counts - at_start)
        return int(np.argmax(deficit))

    def _window(self, source: int, epoch: int, offset: int) -> int:
        """Window ``offset`` of the source's shuffled order in this epoch."""
        held = self._perms.get(source)
        if held is None or held[0] != epoch:
            n, key = len(self.windows[source]), [self.seed, self.keys[source], epoch]
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
        self.phase_counts[self._segment[2], i] += 1
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

    def tokens_by_phase(self, seq_len: int) -> dict[str, dict[str, int]]:
        """Tokens drawn from each source in each phase so far (phases not reached left out)."""
        return {
            p.name: {n: int(c) * seq_len for n, c in zip(self.names, row, strict=True)}
            for p, row in zip(self.phases, self.phase_counts, strict=True)
            if row.any()
        }

    def sequences_needed(self, total_sequences: int) -> np.ndarray:
        """Sequences each source gives over a run of ``total_sequences`` (no boost)."""
        ends = [*self._starts[1:], total_sequences]
        need = np.zeros(len(self.names))
        for start, end, shares in zip(self._starts, ends, self._phase_shares, strict=True):
            span = max(0, min(end, total_sequences) - start)
            need += np.ceil(shares * span)
        return need

    def epochs_needed(self, total_sequences: int) -> dict[str, float]:
        """How many passes over each source a run of ``total_sequences`` would make."""
        need = self.sequences_needed(total_sequences)
        return {
            n: float(k) / max(1, len(w))
            for n, k, w in zip(self.names, need, self.windows, strict=True)
        }

    def describe(self) -> list[dict]:
        """The configured phases by source name: what a resume compares."""
        return [
            {
                "name": p.name,
                "start": p.start,
                "weights": dict(zip(self.names, p.weights, strict=True)),
            }
            for p in self.phases
        ]

    def state_dict(self) -> dict:
        position, at_start, phase = self._segment
        return {
            "counts": self.counts.tolist(),
            "names": list(self.names),
            "seed": self.seed,
            "order": self.order,
            "keys": list(self.keys),
            "phases": self.describe(),
            "phase_counts": {
                p.name: dict(zip(self.names, row.tolist(), strict=True))
                for p, row in zip(self.phases, self.phase_counts, strict=True)
            },  # fmt: skip
            "segment": {"start": position, "counts": at_start.tolist(), "phase": phase},
            "boost": self.boost,
            "layouts": dict(zip(self.names, self.layouts, strict=True)),
            "seq_len": self.seq_len,
        }

    def changes_from(self, state: dict) -> list[str]:
        """What differs between a checkpoint's mixture and this one, one line each (empty:
        the same). Checkpoints from before phases were recorded compare by names only."""
        before, now = list(state["names"]), list(self.names)
        lines = [f"source '{n}' added" for n in now if n not in before]
        lines += [f"source '{n}' removed" for n in before if n not in now]
        for n, (was, is_) in self._relaid(state).items():
            lines.append(f"source '{n}' reads {is_} (was {was}): it starts again")
        if "phases" not in state:
            return lines or ([] if before == now else [f"sources reordered: {before} -> {now}"])
        old = {p["name"]: p for p in state["phases"]}
        new = {p["name"]: p for p in self.describe()}
        for name in sorted(set(old) | set(new)):
            a, b = old.get(name), new.get(name)
            if a is None or b is None:
                lines.append(f"phase '{name}' {'added' if a is None else 'removed'}")
                continue
            if a["start"] != b["start"]:
                lines.append(f"phase '{name}' starts at sequence {a['start']} -> {b['start']}")
            for src in sorted(set(a["weights"]) & set(b["weights"])):
                if not np.isclose(a["weights"][src], b["weights"][src]):
                    was, is_ = a["weights"][src], b["weights"][src]
                    lines.append(f"phase '{name}': '{src}' weight {was:g} -> {is_:g}")
        return lines

    def _relaid(self, state: dict) -> dict[str, tuple[str, str]]:
        """Kept sources whose length rule changed: (was, is), by name."""
        old = state.get("layouts") or {}
        now = dict(zip(self.names, self.layouts, strict=True))
        return {n: (old.get(n, "every document"), now[n]) for n in now
                if n in state["names"] and old.get(n, "every document") != now[n]}  # fmt: skip

    def load_state_dict(self, state: dict, allow_change: bool = False) -> list[str]:
        """Continue from a checkpoint's state. A changed mixture is refused unless
        ``allow_change``: then kept sources continue where they were, new ones start at
        their beginning, and the shares are tracked from this position. Returns the changes."""
        changes = self.changes_from(state)
        if changes and not allow_change:
            raise ValueError(f"the checkpoint's mixture differs: {'; '.join(changes)}")
        before = list(state["names"])
        relaid = self._relaid(state)  # other windows: these start again, as new sources
        before_kept = [n for n in before if n not in relaid]
        old_counts = {n: c for n, c in zip(before, state["counts"], strict=True) if n not in relaid}
        every_key = dict(zip(before, state.get("keys", range(len(before))), strict=True))
        old_keys = {n: every_key[n] for n in before_kept}
        fresh = max(every_key.values(), default=-1) + 1  # a relaid source gets a new key too
        self.keys = []
        for n in self.names:
            if n not in old_keys:
                old_keys[n], fresh = fresh, fresh + 1
            self.keys.append(int(old_keys[n]))
        self.counts = np.asarray([old_counts.get(n, 0) for n in self.names], dtype=np.int64)
        saved = state.get("phase_counts", {})
        for i, p in enumerate(self.phases):
            row = saved.get(p.name, {})
            self.phase_counts[i] = [int(row.get(n, 0)) for n in self.names]
        if not saved and len(self.phases) == 1:  # from before phases: all in the one phase
            self.phase_counts[0] = self.counts
        self.seed = int(state["seed"])
        self.order = state.get("order", "table")
        self.boost = float(state.get("boost", 0.0))
        self._perms.clear()
        seg = state.get("segment")
        if changes:
            self.restart_segment()  # the new weights are tracked from here
        elif seg is None:  # before segments: tracked from the start, as it was
            self._segment = (0, np.zeros(len(self.names), dtype=np.int64), 0)
        else:
            at = np.asarray(seg["counts"], dtype=np.int64)
            self._segment = (int(seg["start"]), at, int(seg["phase"]))
        return changes
