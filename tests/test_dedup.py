"""Exact and MinHash dedup steps: small parquet shards written in the test."""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pytest
from pydantic import ValidationError

from steep.datahub.steps.base import STEP_TYPES, Doc, Drop, write_docs
from steep.datahub.steps.dedup_common import _components
from steep.datahub.steps.dedup_exact import ExactDedup
from steep.datahub.steps.minhash import (
    MinhashDedup,
    _permutations,
    _permute,
    minhash_signature,
    minhash_words,
    shingle_hashes,
)

VOCAB = [f"w{i}" for i in range(400)]


def text_of(seed: int, n_words: int = 300) -> str:
    rng = random.Random(seed)
    return " ".join(rng.choice(VOCAB) for _ in range(n_words))


def edit_runs(text: str, seed: int, runs: list[tuple[int, int]]) -> str:
    """Replace each (start, length) run of words with fresh words (not in VOCAB)."""
    rng = random.Random(seed)
    words = text.split()
    for start, length in runs:
        for i in range(start, start + length):
            words[i] = f"x{rng.randrange(10**9)}"
    return " ".join(words)


def shards_of(tmp_path: Path, *groups: list[Doc]) -> list[Path]:
    tmp_path.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, docs in enumerate(groups):
        path = tmp_path / f"shard-{i:05d}.parquet"
        write_docs(path, docs)
        paths.append(path)
    return paths


def jaccard(a: str, b: str, n: int = 5) -> float:
    def grams(t: str) -> set[tuple[str, ...]]:
        w = minhash_words(t)
        return {tuple(w[i : i + n]) for i in range(len(w) - n + 1)}

    ga, gb = grams(a), grams(b)
    return len(ga & gb) / len(ga | gb)


def share_band(a: str, b: str, cfg: MinhashDedup) -> bool:
    sa, sb = minhash_signature(a, cfg), minhash_signature(b, cfg)
    rows = cfg.hashes_per_bucket
    return any(
        np.array_equal(sa[i * rows : (i + 1) * rows], sb[i * rows : (i + 1) * rows])
        for i in range(cfg.num_buckets)
    )


# ---------------------------------------------------------------- exact


def test_steps_registered_and_strict():
    assert STEP_TYPES["exact_dedup"] is ExactDedup
    assert STEP_TYPES["minhash_dedup"] is MinhashDedup
    with pytest.raises(ValidationError, match="n_gram"):
        MinhashDedup(n_gram=5)
    with pytest.raises(ValidationError, match="num_buckets"):
        MinhashDedup(num_buckets=0)


def test_exact_dedup_drops_later_copies_across_shards(tmp_path):
    a, b, c = text_of(1, 50), text_of(2, 50), text_of(3, 50)
    shards = shards_of(
        tmp_path,
        [Doc("s0:0", a), Doc("s0:1", b), Doc("s0:2", a)],
        [Doc("s1:0", c), Doc("s1:1", b), Doc("s1:2", a), Doc("s1:3", "")],
    )
    work = tmp_path / "work"
    drops = ExactDedup().select_drops(shards, work)
    assert drops == {
        "s0:2": Drop("exact_dedup.duplicate", "same text as s0:0"),
        "s1:1": Drop("exact_dedup.duplicate", "same text as s0:1"),
        "s1:2": Drop("exact_dedup.duplicate", "same text as s0:0"),
    }
    # disk-backed partitions and id lists exist
    assert (work / "exact_dedup" / "ids" / "s00001.txt").read_text().count("\n") == 4
    assert len(list((work / "exact_dedup" / "parts").iterdir())) == ExactDedup().partitions


def test_exact_dedup_normalize(tmp_path):
    docs = [
        Doc("a", "Hello   World\nthis is  a test"),
        Doc("b", "hello world this is a test  "),
        Doc("c", "HELLO WORLD\tTHIS IS A TEST"),
        Doc("d", "hello world, this is a test"),  # punctuation differs: not exact
    ]
    shards = shards_of(tmp_path, docs[:2], docs[2:])
    drops = ExactDedup().select_drops(shards, tmp_path / "w1")
    assert set(drops) == {"b", "c"}
    assert drops["c"].detail == "same text as a"
    assert ExactDedup(normalize=False).select_drops(shards, tmp_path / "w2") == {}


def test_exact_dedup_single_partition_and_rerun(tmp_path):
    docs = [Doc(str(i), f"doc {i % 7}") for i in range(40)]
    shards = shards_of(tmp_path, docs[:15], docs[15:])
    step = ExactDedup(partitions=1)
    first = step.select_drops(shards, tmp_path / "w")
    assert sorted(first, key=int) == [str(i) for i in range(7, 40)]
    assert first["20"].detail == "same text as 6"
    assert step.select_drops(shards, tmp_path / "w") == first  # stale workdir is replaced


# ---------------------------------------------------------------- minhash building blocks


def test_permutation_is_exact_mod_mersenne_prime():
    p = (1 << 61) - 1
    a_lo, a_hi, b = _permutations(1, 112)
    rng = np.random.default_rng(0)
    h = rng.integers(0, p, size=300, dtype=np.uint64)
    h[:3] = [0, 1, p - 1]
    x = _permute(h, a_lo, a_hi, b)
    a = [int(lo) + (int(hi) << 32) for lo, hi in zip(a_lo[:, 0], a_hi[:, 0], strict=True)]
    assert all(0 < ai < p for ai in a)
    for i in range(0, 112, 7):
        expected = [(a[i] * int(v) + int(b[i, 0])) % p for v in h]
        assert x[i].tolist() == expected


def test_shingles_tokenise_and_short_docs():
    assert minhash_words("Hello, World! It's 2024.") == ["hello", "world", "it", "s", "2024"]
    w = ["the", "cat", "sat", "on", "the", "mat", "today"]
    h = shingle_hashes(w, 5)
    assert len(h) == 3 and len(set(h.tolist())) == 3
    # same 5-gram at another position hashes the same; word order matters
    assert shingle_hashes(["x", *w], 5)[1:].tolist() == h.tolist()
    assert shingle_hashes(w[:5][::-1], 5)[0] != h[0]
    # fewer words than n_grams: one shingle of all words; none: no shingles
    assert len(shingle_hashes(["only", "three", "words"], 5)) == 1
    assert len(shingle_hashes([], 5)) == 0
    assert (shingle_hashes(w, 5) < (1 << 61) - 1).all()


def test_signature_estimates_jaccard_and_depends_on_seed():
    cfg = MinhashDedup()
    a = text_of(5, 400)
    b = edit_runs(a, 1, [(20, 15), (150, 15), (300, 15)])
    sa, sb = minhash_signature(a, cfg), minhash_signature(b, cfg)
    assert sa.shape == (112,) and sa.dtype == np.uint64
    estimate = float((sa == sb).mean())
    assert abs(estimate - jaccard(a, b)) < 0.15
    assert np.array_equal(minhash_signature(a, cfg), sa)  # deterministic
    assert not np.array_equal(minhash_signature(a, MinhashDedup(seed=2)), sa)
    assert (minhash_signature("", cfg) == np.iinfo(np.uint64).max).all()


def test_threshold_of_default_banding():
    cfg = MinhashDedup()
    assert cfg.num_perm == 112
    assert 0.65 < cfg.threshold() < 0.75
    assert cfg.detection_probability(cfg.threshold()) == pytest.approx(0.5)
    assert cfg.detection_probability(0.9) > 0.99
    assert cfg.detection_probability(0.3) < 0.001


def test_components_keep_smallest_node():
    u = np.array([5, 1, 9, 20, 30], dtype=np.uint64)
    v = np.array([9, 2, 7, 21, 21], dtype=np.uint64)
    nodes, labels = _components(u, v)
    got = dict(zip(nodes.tolist(), labels.tolist(), strict=True))
    assert got == {1: 1, 2: 1, 5: 5, 7: 5, 9: 5, 20: 20, 21: 20, 30: 20}
    # a long chain given in the worst order still resolves to its head
    chain = np.arange(200, dtype=np.uint64)
    nodes, labels = _components(chain[1:][::-1], chain[:-1][::-1])
    assert (labels == 0).all()


# ---------------------------------------------------------------- minhash step


def test_minhash_finds_near_duplicates_and_keeps_same_topic_docs(tmp_path):
    a = text_of(10)
    a_near = edit_runs(a, 2, [(40, 3), (140, 3), (240, 3)])  # 3% of the words changed
    other = text_of(11)  # same vocabulary, different text
    assert jaccard(a, a_near) > 0.8 and jaccard(a, other) < 0.05
    shards = shards_of(
        tmp_path,
        [Doc("s0:0", a), Doc("s0:1", other), Doc("s0:2", "")],
        [Doc("s1:0", text_of(12)), Doc("s1:1", a_near), Doc("s1:2", "short one")],
    )
    drops = MinhashDedup().select_drops(shards, tmp_path / "work")
    assert drops == {"s1:1": Drop("minhash_dedup.near_duplicate", "similar to s0:0")}


def test_minhash_transitive_cluster_keeps_first(tmp_path):
    cfg = MinhashDedup()
    a = text_of(20)
    b = edit_runs(a, 3, [(30, 14)])
    c = edit_runs(b, 4, [(150, 14), (250, 14)])
    # A~B and B~C are linked directly; A and C only through B
    assert share_band(a, b, cfg) and share_band(b, c, cfg)
    assert not share_band(a, c, cfg)
    shards = shards_of(tmp_path, [Doc("c", c)], [Doc("a0", text_of(21)), Doc("b", b)])
    # corpus order: c first, so c is the kept head
    drops = cfg.select_drops(shards, tmp_path / "w1")
    assert drops == {"b": Drop("minhash_dedup.near_duplicate", "similar to c")}
    shards = shards_of(
        tmp_path / "o", [Doc("a", a)], [Doc("x", text_of(22)), Doc("c", c)], [Doc("b", b)]
    )
    drops = cfg.select_drops(shards, tmp_path / "w2")
    assert set(drops) == {"b", "c"}
    assert {d.detail for d in drops.values()} == {"similar to a"}


def test_minhash_deterministic_and_stage_files(tmp_path):
    docs = []
    for i in range(30):
        base = text_of(100 + i % 10, 120)
        docs.append(Doc(f"d{i}", base if i < 10 else edit_runs(base, i, [(i, 1)])))
    shards = shards_of(tmp_path, docs[:12], docs[12:20], docs[20:])
    step = MinhashDedup()
    first = step.select_drops(shards, tmp_path / "w1")
    second = step.select_drops(shards, tmp_path / "w2")
    assert first == second
    assert set(first) == {f"d{i}" for i in range(10, 30)}
    assert first["d25"].detail == "similar to d5"

    root = tmp_path / "w1" / "minhash_dedup"
    for band in range(step.num_buckets):
        for s, n_docs in enumerate((12, 8, 10)):
            rows = np.fromfile(root / "bands" / f"b{band:02d}" / f"s{s:05d}.u64", np.uint64)
            rows = rows.reshape(-1, 2)  # (band hash, shard << 32 | row), sorted by hash
            assert len(rows) == n_docs
            assert sorted(rows[:, 1].tolist()) == [(s << 32) + r for r in range(n_docs)]
            assert np.all(np.diff(rows[:, 0].astype(object)) >= 0)
            idx = np.load(root / "bands" / f"b{band:02d}" / f"s{s:05d}.idx.npy")
            assert len(idx) == step.ranges + 1 and idx[0] == 0 and idx[-1] == n_docs
            for r in range(step.ranges):  # each range holds just the hashes of its slice
                lo, hi = (r << 64) // step.ranges, ((r + 1) << 64) // step.ranges
                assert all(lo <= int(h) < hi for h in rows[idx[r] : idx[r + 1], 0])
    assert not (root / "bands" / f"b{step.num_buckets:02d}").exists()
    assert (root / "ids" / "s00002.txt").read_text().splitlines()[0] == '"d20"'
    # the same stage-1 band files in both runs
    other = tmp_path / "w2" / "minhash_dedup" / "bands" / "b03" / "s00001.u64"
    assert other.read_bytes() == (root / "bands" / "b03" / "s00001.u64").read_bytes()


def test_minhash_other_banding_and_ngrams(tmp_path):
    a = text_of(30, 80)
    near = edit_runs(a, 5, [(10, 2)])
    shards = shards_of(tmp_path, [Doc("a", a), Doc("n", near), Doc("o", text_of(31, 80))])
    step = MinhashDedup(n_grams=3, num_buckets=20, hashes_per_bucket=4, seed=7)
    assert set(step.select_drops(shards, tmp_path / "w")) == {"n"}
    assert len(list((tmp_path / "w" / "minhash_dedup" / "bands").iterdir())) == 20


def test_hashing_runs_on_the_pool_and_decides_the_same(tmp_path):
    """Stage 1 (a hash or a MinHash signature per document, the expensive part) runs as
    one task per shard on the executor; the drops are those of one process."""
    from steep.data.executor import LocalExecutor

    docs = []
    for i in range(30):
        base = text_of(100 + i % 10, 120)
        docs.append(Doc(f"d{i}", base if i < 10 else edit_runs(base, i, [(i, 1)])))
    docs += [Doc("e0", "exact copy"), Doc("e1", "Exact   copy")]
    shards = shards_of(tmp_path, docs[:12], docs[12:20], docs[20:])
    for step in (MinhashDedup(), ExactDedup()):
        inline = step.select_drops(shards, tmp_path / f"{step.kind}-1")
        pooled = step.select_drops(shards, tmp_path / f"{step.kind}-2", LocalExecutor(2))
        assert pooled == inline and inline
    # loading a band one hash range at a time (the memory bound) decides the same
    one_range = MinhashDedup(ranges=1).select_drops(shards, tmp_path / "r1")
    assert MinhashDedup(ranges=7).select_drops(shards, tmp_path / "r7") == one_range


def test_drops_are_written_per_shard_for_the_shard_s_task(tmp_path):
    """Each shard's task reads only its own drop file (not a dict of the whole corpus),
    and the file names the kept document even when it lives in another shard."""
    import pyarrow.parquet as pq

    from steep.datahub.steps.drops import DONE, drop_file

    shards = shards_of(
        tmp_path,
        [Doc("a", "one text"), Doc("b", "two text")],
        [Doc("c", "One   text"), Doc("d", "other")],
        [Doc("e", "two text"), Doc("f", "one text")],
    )
    out = tmp_path / "drops"
    ExactDedup().write_drops(shards, tmp_path / "w", out)
    assert (out / DONE).exists()
    per_shard = [pq.read_table(drop_file(out, s)).to_pylist() for s in range(3)]
    assert per_shard[0] == []
    assert per_shard[1] == [
        {"id": "c", "reason": "exact_dedup.duplicate", "detail": "same text as a"}
    ]
    assert [(r["id"], r["detail"]) for r in per_shard[2]] == [
        ("e", "same text as b"),
        ("f", "same text as a"),
    ]
    assert not [p for p in out.iterdir() if p.name.startswith(".")]  # spills cleaned
