"""Corpus-level deduplication: exact (content hash) and near-duplicate (MinHash LSH).

Both steps read the shards in order and keep the first occurrence (by shard order, then
row order). A document is named inside the steps by a 64-bit *key*, ``shard << 32 | row``,
so sorting keys sorts documents in corpus order and "the smallest key" means "the first".
Each shard's ids are written in stage 1 to ``ids/s#####.txt`` (one JSON string per line,
row order); only the ids of dropped documents and of the documents they point to are read
back at the end.

Memory is bounded by disk-backed, partitioned state in ``workdir``; stage 1 (hashing every
document, the expensive part) runs per shard as executor tasks:

- ``exact_dedup``: each document's 128-bit hash and key (24 bytes) go to one of
  ``partitions`` files per shard, chosen by the hash. Stage 2 loads one partition at a
  time (24 bytes x documents / partitions), sorts it and drops every document after the
  first of each run of equal hashes.
- ``minhash_dedup``: per band, 16 bytes per document (band hash, key), sorted per shard
  with an index of ``ranges`` slices of the hash space. Stage 2 loads one range of one
  band at a time (16 bytes x documents / ranges), sorts it and links every document of a
  run of equal band hashes to the first of the run. Stage 3 folds each band's links into
  the clusters found so far (state: one edge per clustered document, 16 bytes each: the
  one part that grows with the corpus, with its near-duplicates).
- The decision goes to one drop file per shard (``drops``), through two disk-backed
  passes, so neither the driver nor a shard's task holds the corpus' drops.
"""

from __future__ import annotations

from steep.datahub.steps.dedup_exact import ExactDedup, exact_normal_form
from steep.datahub.steps.minhash import (
    MinhashDedup,
    minhash_signature,
    minhash_words,
    shingle_hashes,
)

__all__ = [
    "ExactDedup",
    "MinhashDedup",
    "exact_normal_form",
    "minhash_signature",
    "minhash_words",
    "shingle_hashes",
]
