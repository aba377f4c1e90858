"""End-to-end speed of ``minhash_dedup`` (and ``exact_dedup``) on synthetic documents.

Writes N synthetic documents (words drawn from a Zipf-like vocabulary, ~5% planted
exact copies and ~10% near-duplicates) to a few parquet shards in a temporary folder, runs each step's
``select_drops`` and prints documents/s and MB/s of text.

    .venv/bin/python benchmarks/dedup_speed.py [--docs 2000] [--words 300] [--shards 4]
"""

from __future__ import annotations

import argparse
import platform
import random
import tempfile
import time
from pathlib import Path

from steep.datahub.steps.base import Doc, write_docs
from steep.datahub.steps.dedup import ExactDedup, MinhashDedup


def synthetic(n_docs: int, n_words: int, seed: int = 0) -> list[Doc]:
    rng = random.Random(seed)
    vocab = [f"w{i}" for i in range(20000)]
    weights = [1 / (i + 1) for i in range(len(vocab))]
    docs: list[Doc] = []
    for i in range(n_docs):
        roll = rng.random()
        if i > 10 and roll < 0.05:  # exact copy of an earlier document
            words = docs[rng.randrange(len(docs))].text.split()
        elif i > 10 and roll < 0.15:  # near-duplicate of an earlier document
            words = docs[rng.randrange(len(docs))].text.split()
            at = rng.randrange(len(words) - 5)
            words[at : at + 5] = rng.choices(vocab, k=5)
        else:
            words = rng.choices(vocab, weights=weights, k=n_words)
        docs.append(Doc(f"bench:{i}", " ".join(words)))
    return docs


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--docs", type=int, default=2000)
    ap.add_argument("--words", type=int, default=300)
    ap.add_argument("--shards", type=int, default=4)
    args = ap.parse_args()

    docs = synthetic(args.docs, args.words)
    mb = sum(len(d.text.encode()) for d in docs) / 1e6
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        per = -(-len(docs) // args.shards)
        shards = []
        for s in range(args.shards):
            path = root / f"shard-{s:05d}.parquet"
            write_docs(path, docs[s * per : (s + 1) * per])
            shards.append(path)
        print(
            f"{platform.processor() or platform.machine()}, {args.docs} docs x {args.words} words, {mb:.1f} MB"
        )
        for step in (MinhashDedup(), ExactDedup()):
            work = root / f"work-{step.kind}"
            work.mkdir()
            t0 = time.perf_counter()
            drops = step.select_drops(shards, work)
            dt = time.perf_counter() - t0
            print(
                f"{step.kind:14s} {dt:6.2f} s  {len(docs) / dt:8.0f} docs/s  "
                f"{mb / dt:6.2f} MB/s  dropped {len(drops)}"
            )


if __name__ == "__main__":
    main()
