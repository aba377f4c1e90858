"""``minhash_dedup``: near-duplicate removal with MinHash LSH, and the MinHash machinery."""

from __future__ import annotations

import hashlib
import json
import re
import shutil
from functools import lru_cache
from itertools import chain
from pathlib import Path
from typing import ClassVar

import numpy as np
from pydantic import Field

from steep.data.executor import Executor
from steep.datahub.steps.base import CorpusStep, register
from steep.datahub.steps.dedup_common import (
    _check_rows,
    _components,
    _firsts_of_runs,
    _IdLog,
    _key_base,
    _shard_rows,
    _Spill,
    spill_all,
)
from steep.datahub.steps.drops import U64, write_drops
from steep.datahub.steps.text import _ASCII_NON_WORD

_P61 = (1 << 61) - 1
_P = np.uint64(_P61)
_M29 = np.uint64((1 << 29) - 1)
_M32 = np.uint64((1 << 32) - 1)
_S3, _S29, _S32, _S61 = (np.uint64(n) for n in (3, 29, 32, 61))
_WORD = re.compile(r"\w+")
_CHUNK = 2048  # shingles per permutation block: (112, 2048) uint64 = 1.8 MiB per buffer


def minhash_words(text: str) -> list[str]:
    """The normalised tokenisation: lowercase word characters; punctuation is dropped.
    (ASCII text splits at C speed on its non-word characters: the same runs of ``\\w``.)"""
    text = text.lower()
    if text.isascii():
        return text.translate(_ASCII_NON_WORD).split()
    return _WORD.findall(text)


def _mix64(x: np.ndarray) -> np.ndarray:
    """splitmix64's finaliser, in place on a uint64 array (wraparound is intended)."""
    x ^= x >> np.uint64(30)
    x *= np.uint64(0xBF58476D1CE4E5B9)
    x ^= x >> np.uint64(27)
    x *= np.uint64(0x94D049BB133111EB)
    x ^= x >> np.uint64(31)
    return x


class _WordHashes(dict):
    """word -> 64-bit blake2b of its UTF-8 bytes, memoised (bounded; cleared when full)."""

    limit = 1 << 20

    def __missing__(self, word: str) -> int:
        if len(self) >= self.limit:
            self.clear()
        value = int.from_bytes(
            hashlib.blake2b(word.encode("utf-8", "surrogatepass"), digest_size=8).digest(),
            "little",
        )
        self[word] = value
        return value


_word_hashes = _WordHashes()


def _chain(w: np.ndarray, n: int) -> np.ndarray:
    """Hash of each window of ``n`` consecutive word hashes (len(w) - n + 1 windows)."""
    count = len(w) - n + 1
    h = w[:count].copy()
    for j in range(1, n):
        _mix64(h)
        h ^= w[j : j + count]
    _mix64(h)
    h &= _P  # 61 bits; the one value equal to the prime is as good as any other
    return h


def _batch_shingles(docs_words: list[list[str]], n_grams: int) -> tuple[np.ndarray, np.ndarray]:
    """Shingle hashes of several documents (each with at least one word), concatenated.

    Returns (shingles, starts): document i's shingles begin at ``starts[i]``. One pass of
    numpy over the whole batch: every window of the concatenated words is hashed, then the
    windows inside each document are gathered. A document with fewer than ``n_grams``
    words gets one shingle of all its words.
    """
    counts = np.fromiter(map(len, docs_words), dtype=np.int64, count=len(docs_words))
    total = int(counts.sum())
    w = np.fromiter(
        map(_word_hashes.__getitem__, chain.from_iterable(docs_words)), dtype=U64, count=total
    )
    word_starts = np.zeros(len(counts), dtype=np.int64)
    np.cumsum(counts[:-1], out=word_starts[1:])
    n_shingles = np.maximum(counts - n_grams + 1, 1)
    starts = np.zeros(len(counts), dtype=np.int64)
    np.cumsum(n_shingles[:-1], out=starts[1:])
    padded = np.zeros(total + n_grams - 1, dtype=U64)  # windows past the end are unused
    padded[:total] = w
    windows = _chain(padded, n_grams)
    offsets = np.arange(int(n_shingles.sum()), dtype=np.int64)
    offsets += np.repeat(word_starts - starts, n_shingles)
    shingles = windows[offsets]
    for i in np.flatnonzero(counts < n_grams).tolist():  # short documents: one shingle
        shingles[starts[i]] = _chain(w[word_starts[i] : word_starts[i] + counts[i]], counts[i])[0]
    return shingles, starts


def shingle_hashes(words: list[str], n_grams: int) -> np.ndarray:
    """64-bit hashes (reduced below 2**61 - 1) of the word n-grams, in order.

    A document with fewer than ``n_grams`` words (but at least one) gives one shingle of
    all its words; no words gives an empty array.
    """
    if not words:
        return np.empty(0, dtype=U64)
    return _batch_shingles([words], n_grams)[0]


@lru_cache(maxsize=8)
def _permutations(seed: int, k: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(a_lo, a_hi, b), each (k, 1): a in [1, p), b in [0, p), p = 2**61 - 1.

    Drawn from blake2b of (seed, i), so they are the same in every process and with every
    numpy version.
    """
    a, b = [], []
    for i in range(k):
        d = hashlib.blake2b(f"steep.minhash:{seed}:{i}".encode(), digest_size=16).digest()
        a.append(int.from_bytes(d[:8], "little") % (_P61 - 1) + 1)
        b.append(int.from_bytes(d[8:], "little") % _P61)
    a_arr = np.array(a, dtype=U64).reshape(k, 1)
    return a_arr & _M32, a_arr >> np.uint64(32), np.array(b, dtype=U64).reshape(k, 1)


class _Permuter:
    """Exact ``(a * h + b) mod (2**61 - 1)`` for h < 2**61, into reused (k, chunk) buffers.

    The 122-bit product is split into 32-bit halves so no uint64 operation overflows:
    a*h = hh*2**64 + mid*2**32 + ll, and modulo the Mersenne prime 2**61 = 1, so
    2**64 = 8 and mid*2**32 = (mid >> 29) + (mid mod 2**29) * 2**32. Six terms each below
    2**61 sum below 2**64; one fold and one conditional subtraction finish the reduction.
    Every operation writes into preallocated buffers: fresh multi-MB temporaries cost more
    (page faults) than the arithmetic.
    """

    def __init__(self, params: tuple[np.ndarray, np.ndarray, np.ndarray], chunk: int) -> None:
        self.a_lo, self.a_hi, self.b = params
        k = self.a_lo.shape[0]
        self.x, self.t, self.u = (np.empty((k, chunk), dtype=U64) for _ in range(3))
        self.h_lo, self.h_hi = np.empty(chunk, dtype=U64), np.empty(chunk, dtype=U64)

    def __call__(self, h: np.ndarray) -> np.ndarray:
        n = len(h)
        x, t, u = self.x[:, :n], self.t[:, :n], self.u[:, :n]
        h_lo = np.bitwise_and(h, _M32, out=self.h_lo[:n])
        h_hi = np.right_shift(h, _S32, out=self.h_hi[:n])
        np.multiply(self.a_lo, h_lo, out=x)  # ll < 2**64
        np.right_shift(x, _S61, out=t)
        np.bitwise_and(x, _P, out=x)
        np.add(x, t, out=x)  # ll folded
        np.multiply(self.a_hi, h_hi, out=t)  # hh < 2**58
        np.left_shift(t, _S3, out=t)
        np.add(x, t, out=x)
        np.add(x, self.b, out=x)
        np.multiply(self.a_hi, h_lo, out=t)
        np.multiply(self.a_lo, h_hi, out=u)
        np.add(t, u, out=t)  # mid < 2**62
        np.bitwise_and(t, _M29, out=u)
        np.left_shift(u, _S32, out=u)
        np.add(x, u, out=x)
        np.right_shift(t, _S29, out=t)
        np.add(x, t, out=x)  # < 2**64
        np.right_shift(x, _S61, out=t)
        np.bitwise_and(x, _P, out=x)
        np.add(x, t, out=x)  # <= p + 3
        np.subtract(x, _P, out=t)  # wraps to a huge value where x < p
        np.minimum(x, t, out=x)
        return x


def _permute(h: np.ndarray, a_lo: np.ndarray, a_hi: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(k, len(h)) exact ``(a * h + b) mod (2**61 - 1)`` (a fresh array; see ``_Permuter``)."""
    return _Permuter((a_lo, a_hi, b), max(len(h), 1))(h).copy()


def _signatures(shingles: np.ndarray, starts: np.ndarray, permute: _Permuter) -> np.ndarray:
    """MinHash signatures (n_docs, k) of documents whose shingles are concatenated.

    ``starts`` are the documents' first positions in ``shingles`` (every document has at
    least one shingle). Permutes blocks of ``_CHUNK`` shingles at a time and takes the
    minimum per document segment within each block.
    """
    k = permute.a_lo.shape[0]
    n_docs = len(starts)
    out = np.full((k, n_docs), np.iinfo(np.uint64).max, dtype=U64)
    for c0 in range(0, len(shingles), _CHUNK):
        c1 = min(c0 + _CHUNK, len(shingles))
        first_doc = int(np.searchsorted(starts, c0, side="right")) - 1
        last_doc = int(np.searchsorted(starts, c1, side="left"))  # exclusive
        seg = np.maximum(starts[first_doc:last_doc], c0) - c0
        vals = np.minimum.reduceat(permute(shingles[c0:c1]), seg, axis=1)
        cols = slice(first_doc, last_doc)
        np.minimum(out[:, cols], vals, out=out[:, cols])
    return out.T


def _band_hashes(sig: np.ndarray, num_buckets: int, rows: int) -> np.ndarray:
    """(n_docs, num_buckets) uint64: each band's ``rows`` values mixed into one hash."""
    bands = sig[:, : num_buckets * rows].reshape(len(sig), num_buckets, rows)
    h = np.full((len(sig), num_buckets), 0x9E3779B97F4A7C15, dtype=U64)
    for r in range(rows):
        h ^= bands[:, :, r]
        _mix64(h)
    return h


def minhash_signature(text: str, cfg: MinhashDedup) -> np.ndarray:
    """The (num_buckets * hashes_per_bucket,) uint64 MinHash signature the step uses.

    Values lie in [0, 2**61 - 1). A text with no words has no shingles: its signature is
    all 2**64 - 1 (the step leaves such documents out of near-dedup).
    """
    h = shingle_hashes(minhash_words(text), cfg.n_grams)
    if len(h) == 0:
        return np.full(cfg.num_perm, np.iinfo(np.uint64).max, dtype=U64)
    permute = _Permuter(_permutations(cfg.seed, cfg.num_perm), min(len(h), _CHUNK))
    return _signatures(h, np.zeros(1, dtype=np.int64), permute)[0].copy()


@register
class MinhashDedup(CorpusStep):
    """Near-duplicate removal with MinHash LSH, as datatrove does it.

    Text -> lowercase word tokens (``\\w+``, punctuation dropped) -> word ``n_grams``
    shingles, each a 64-bit hash -> ``num_buckets * hashes_per_bucket`` (default 14 x 8 =
    112) universal hashes ``(a*h + b) mod (2**61 - 1)``, computed exactly (no wraparound)
    with 32-bit halves, vectorised over a block of shingles x all permutations -> the
    minimum of each is the signature. Two documents share a band (8 consecutive values) with
    probability J**8, so they are linked with probability 1 - (1 - J**8)**14: 50% at
    Jaccard ~0.69 ((1/14)**(1/8) ~ 0.72 is the usual rule of thumb), 92% at 0.8, 21% at 0.6.

    Documents shorter than ``n_grams`` words are hashed as one shingle of all their words;
    documents with no words are left out of near-dedup (exact dedup catches empty copies).

    Stages, all state in ``workdir/minhash_dedup``:

    1. per shard (one executor task each): signatures in batches; per band, (band hash,
       key) uint64 pairs to ``bands/b##/s#####.u64``, sorted by hash, with the start of
       each of ``ranges`` slices of the hash space; ids to ``ids/s#####.txt``.
    2. per band and hash range: load that range from every shard (16 bytes per document
       / ``ranges``: the memory bound; about 40 at the peak of the sort), stable-sort by
       band hash, link each document of a run of equal hashes to the run's first
       (smallest key).
    3. union-find: fold each band's links into the clusters so far; every cluster keeps its
       smallest key (first by shard, then row) and drops the rest.
    """

    kind: ClassVar[str] = "minhash_dedup"
    n_grams: int = Field(default=5, ge=1)
    num_buckets: int = Field(default=14, ge=1)
    hashes_per_bucket: int = Field(default=8, ge=1)
    seed: int = 1
    ranges: int = Field(default=16, ge=1, le=4096)  # of each band, loaded one at a time

    @property
    def num_perm(self) -> int:
        return self.num_buckets * self.hashes_per_bucket

    def threshold(self) -> float:
        """The Jaccard similarity detected with probability 1/2 by this banding."""
        return (1 - 0.5 ** (1 / self.num_buckets)) ** (1 / self.hashes_per_bucket)

    def detection_probability(self, jaccard: float) -> float:
        return 1 - (1 - jaccard**self.hashes_per_bucket) ** self.num_buckets

    def write_drops(
        self, shards: list[Path], workdir: Path, out: Path, executor: Executor | None = None
    ) -> None:
        root = Path(workdir) / "minhash_dedup"
        shutil.rmtree(root, ignore_errors=True)
        ids, spill = self._state(root)
        spill_all(self, shards, root, executor)

        # state: one edge (document -> smallest document of its cluster) per clustered doc
        nodes = np.empty(0, dtype=U64)
        roots = np.empty(0, dtype=U64)
        for band in range(self.num_buckets):
            links = [self._band_links(spill, band, r, len(shards)) for r in range(self.ranges)]
            later = np.concatenate([x for x, _ in links])
            first = np.concatenate([y for _, y in links])
            if len(later) == 0:
                continue
            all_nodes, labels = _components(
                np.concatenate([nodes, later]), np.concatenate([roots, first])
            )
            moved = all_nodes != labels
            nodes, roots = all_nodes[moved], labels[moved]
        reason = "minhash_dedup.near_duplicate"
        write_drops([(nodes, roots)], ids.path, len(shards), reason, "similar to {}", out)

    def _band_links(
        self, spill: _Spill, band: int, part: int, n_shards: int
    ) -> tuple[np.ndarray, np.ndarray]:
        """(document, first document of its run) for the runs of equal hashes in one hash
        range of one band."""
        rows = spill.load(band, n_shards, part)
        if len(rows) < 2:
            return np.empty(0, dtype=U64), np.empty(0, dtype=U64)
        order = np.argsort(rows[:, 0], kind="stable")  # keys stay ascending in a run
        hashes, keys = rows[order, 0], rows[order, 1]
        new_run = np.ones(len(keys), dtype=bool)
        new_run[1:] = hashes[1:] != hashes[:-1]
        return _firsts_of_runs(new_run, keys)

    def _state(self, root: Path) -> tuple[_IdLog, _Spill]:
        return _IdLog(root / "ids"), _Spill(root / "bands", self.num_buckets, width=2)

    def spill_shard(self, shard: int, path: Path, root: Path) -> int:
        """Stage 1 for one shard (``dedup_common.run_spill``): signatures, band hashes."""
        return self._spill_shard(shard, path, *self._state(root))

    def _spill_shard(self, shard: int, path: Path, ids: _IdLog, spill: _Spill) -> int:
        permute = _Permuter(_permutations(self.seed, self.num_perm), _CHUNK)
        base = _key_base(shard)
        files = spill.open_shard(shard)
        batch: list[list[str]] = []
        batch_keys: list[int] = []
        batch_shingles = 0

        def flush() -> None:
            nonlocal batch_shingles
            if not batch:
                return
            shingles, starts = _batch_shingles(batch, self.n_grams)
            sig = _signatures(shingles, starts, permute)
            bands = _band_hashes(sig, self.num_buckets, self.hashes_per_bucket)
            pairs = np.empty((len(batch), 2), dtype=U64)
            pairs[:, 1] = np.array(batch_keys, dtype=U64)
            for b in range(self.num_buckets):
                pairs[:, 0] = bands[:, b]
                pairs.tofile(files[b])
            batch.clear()
            batch_keys.clear()
            batch_shingles = 0

        n_rows = 0
        try:
            with ids.open(shard) as id_file:
                for row, doc_id, text in _shard_rows(path):
                    id_file.write(json.dumps(doc_id, ensure_ascii=False) + "\n")
                    n_rows = row + 1
                    words = minhash_words(text)
                    if not words:
                        continue  # no words: left out of near-dedup
                    batch.append(words)
                    batch_keys.append(base + row)
                    batch_shingles += max(len(words) - self.n_grams + 1, 1)
                    if batch_shingles >= 4 * _CHUNK or len(batch) >= 1024:
                        flush()
                flush()
            _check_rows(n_rows, path)
        finally:
            for f in files:
                f.close()
        spill.finish_shard(shard, self.ranges)
        return n_rows
