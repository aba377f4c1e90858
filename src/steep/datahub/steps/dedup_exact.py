"""``exact_dedup``: drop documents whose (normalised) text was seen earlier in the corpus."""

from __future__ import annotations

import hashlib
import json
import re
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import ClassVar

import numpy as np
from pydantic import Field

from steep.data.executor import Executor
from steep.datahub.steps.base import CorpusStep, register
from steep.datahub.steps.dedup_common import (
    _check_rows,
    _firsts_of_runs,
    _IdLog,
    _key_base,
    _shard_rows,
    _Spill,
    spill_all,
)
from steep.datahub.steps.drops import U64, write_drops

_WS = re.compile(r"\s+")


def exact_normal_form(text: str) -> str:
    """Lowercase and collapse runs of whitespace to one space (ends stripped)."""
    return _WS.sub(" ", text.lower()).strip()


@register
class ExactDedup(CorpusStep):
    """Drop documents whose text (optionally normalised) was seen earlier in the corpus.

    Hash: blake2b-128 of the UTF-8 text, after ``exact_normal_form`` when ``normalize``.
    State is disk-backed, not an in-RAM dict: stage 1 writes (hash, key) rows, 24 bytes a
    document, into ``partitions`` files per shard (chosen by the hash); stage 2 sorts one
    partition at a time, so peak memory is about 24 bytes x documents / partitions (~56 with
    the sort's index and sorted copies) plus the drops found. Empty documents are hashed too (the first is kept).
    """

    kind: ClassVar[str] = "exact_dedup"
    normalize: bool = True
    partitions: int = Field(default=16, ge=1, le=256)

    def write_drops(
        self, shards: list[Path], workdir: Path, out: Path, executor: Executor | None = None
    ) -> None:
        root = Path(workdir) / "exact_dedup"
        shutil.rmtree(root, ignore_errors=True)
        ids, spill = self._state(root)
        spill_all(self, shards, root, executor)

        def pairs() -> Iterator[tuple[np.ndarray, np.ndarray]]:
            """(dropped, kept) keys, one partition at a time: memory is one partition."""
            for p in range(self.partitions):
                rows = spill.load(p, len(shards))
                if len(rows) < 2:
                    continue
                hi, lo, keys = rows[:, 0], rows[:, 1], rows[:, 2]
                order = np.lexsort((lo, hi))  # stable: keys stay ascending within a hash
                hi, lo, keys = hi[order], lo[order], keys[order]
                new_run = np.ones(len(keys), dtype=bool)
                new_run[1:] = (hi[1:] != hi[:-1]) | (lo[1:] != lo[:-1])
                yield _firsts_of_runs(new_run, keys)

        write_drops(pairs(), ids.path, len(shards), "exact_dedup.duplicate", "same text as {}", out)

    def _state(self, root: Path) -> tuple[_IdLog, _Spill]:
        return _IdLog(root / "ids"), _Spill(root / "parts", self.partitions, width=3)

    def spill_shard(self, shard: int, path: Path, root: Path) -> int:
        """Stage 1 for one shard (``dedup_common.run_spill``); returns its rows."""
        return self._spill_shard(shard, path, *self._state(root))

    def _spill_shard(self, shard: int, path: Path, ids: _IdLog, spill: _Spill) -> int:
        base = _key_base(shard)
        files = spill.open_shard(shard)
        try:
            with ids.open(shard) as id_file:
                digests: list[bytes] = []
                n_rows = 0

                def flush(start: int) -> None:
                    if not digests:
                        return
                    hashes = np.frombuffer(b"".join(digests), dtype=U64).reshape(-1, 2)
                    rows = np.empty((len(hashes), 3), dtype=U64)
                    rows[:, :2] = hashes
                    rows[:, 2] = np.arange(base + start, base + start + len(hashes), dtype=U64)
                    part = hashes[:, 0] % np.uint64(self.partitions)
                    for p in np.unique(part):
                        rows[part == p].tofile(files[int(p)])
                    digests.clear()

                start = 0
                for row, doc_id, text in _shard_rows(path):
                    id_file.write(json.dumps(doc_id, ensure_ascii=False) + "\n")
                    norm = exact_normal_form(text) if self.normalize else text
                    digests.append(
                        hashlib.blake2b(
                            norm.encode("utf-8", "surrogatepass"), digest_size=16
                        ).digest()
                    )
                    n_rows = row + 1
                    if len(digests) >= 8192:
                        flush(start)
                        start = n_rows
                flush(start)
                _check_rows(n_rows, path)
        finally:
            for f in files:
                f.close()
        return n_rows
