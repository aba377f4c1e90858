"""The Data Hub's outputs on a fixed corpus, pinned: the speed work on language ID, the
Gopher rules and MinHash (#34 part 2) must not change a tag, a verdict or a byte.

The corpus is made here from the standard library's help topics (English prose and code)
and a few paragraphs in other languages, with the cases each rule exists for: pasted
repeats, near and exact duplicates, emails, shouting, short and symbol-only documents.
The digests cover every kept document (id, text, meta incl. language tags and scores) in
shard order, every exclusion row, and the manifest's funnel, counts and languages; they
were recorded with the code before the speed work. If a change to a rule is meant to
change outputs, re-record them and say so in the commit.
"""

from __future__ import annotations

import hashlib
import json
import pydoc_data.topics
import random
from pathlib import Path

import pytest

from steep.data.executor import LocalExecutor
from steep.datahub.catalog import Catalog, DatasetVersion
from steep.datahub.exclusions import read_exclusions
from steep.datahub.ingest import add_dataset
from steep.datahub.pipeline import load_recipe, prepare
from steep.datahub.steps.base import read_docs
from tests.test_langid import SNIPPETS

INLINE = LocalExecutor(1)


def _corpus() -> list[str]:
    rng = random.Random(34)
    topics = [t for _, t in sorted(pydoc_data.topics.topics.items())][:90]
    vocab = sorted({w for t in topics[:20] for w in t.split()})
    docs = list(topics)
    for t in topics[:30]:  # resampled copies, as benchmarks/datahub_scale.py makes them
        words = t.split(" ")
        for _ in range(len(words) // 4):
            words[rng.randrange(len(words))] = rng.choice(vocab)
        docs.append(" ".join(words))
    for t in topics[30:45]:  # near-duplicates: 5 words changed
        words = t.split(" ")
        for _ in range(5):
            words[rng.randrange(len(words))] = "changed"
        docs.append(" ".join(words))
    docs += topics[45:50]  # exact duplicates
    paras = [p for p in topics[50].split("\n\n") if p.strip()]
    docs.append("\n\n".join(paras + paras + paras))  # pasted three times
    docs.append(" ".join(topics[51].split()[:60]) + " " + "buy cheap pills now " * 40)
    for _, text in sorted(SNIPPETS.items()):
        docs.append("\n".join([text] * 3))
        docs.append(text.upper())
        docs.append(f"{text}\n\nWrite to anna.nguyen@example.org or 203.0.113.9, or 8.8.8.8.")
    docs += ["", "1234 5678 !!! ??? 99.5%", "+------+------+\n| a | b |\n" * 20, "short line"]
    docs.append("```python\n" + topics[52] + "\n```\n" + SNIPPETS["vi"])
    return docs


def _digest(rows: list) -> str:
    blob = json.dumps(rows, sort_keys=True, ensure_ascii=False, default=str)
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()[:16]


def _outputs(version: DatasetVersion) -> dict:
    """Digests of what a version holds; input paths (a temporary folder) by file name."""
    docs = [
        [d.id, d.text, {**d.meta, "source": Path(d.meta["source"]).name}]
        for s in version.shards
        for d in read_docs(s)
    ]
    excl = [
        {**r, "path": r["path"] and Path(r["path"]).name}
        for r in read_exclusions(version.exclusions)
    ]
    m = version.manifest
    return {
        "docs": _digest(docs),
        "exclusions": _digest(excl),
        "manifest": _digest([m.get(k) for k in ("documents", "bytes", "languages", "funnel")]),
        "funnel": [
            (f["step"], f["docs_in"], f["docs_out"], f.get("dropped")) for f in m.get("funnel", [])
        ],
    }


@pytest.fixture(scope="module")
def added(tmp_path_factory: pytest.TempPathFactory) -> DatasetVersion:
    root = tmp_path_factory.mktemp("fixed")
    src = root / "corpus.jsonl"
    src.write_text("".join(json.dumps({"text": t}) + "\n" for t in _corpus()), encoding="utf-8")
    # language ID on, the default
    return add_dataset("fixed", [str(src)], catalog=Catalog(root / "datasets"), executor=INLINE)


PINNED_ADD = {
    "docs": "ac91e6bf456ccd53",
    "exclusions": "e1fbfb9ce4160a3b",
    "manifest": "792b526be7e94527",
    "funnel": [],
}
PINNED = {
    "web": {
        "docs": "8a12e55395272b42",
        "exclusions": "911f1635a629b5e2",
        "manifest": "2352a2c8f0935adb",
        "funnel": [
            ("normalize", 147, 147, {}),
            ("langid", 147, 147, {}),
            ("gopher_quality", 147, 131, {"gopher_quality.too_few_words": 16}),
            ("gopher_repetition", 131, 122, {
                "gopher_repetition.dup_5_gram": 1,
                "gopher_repetition.dup_line_char_frac": 2,
                "gopher_repetition.dup_para_frac": 1,
                "gopher_repetition.top_2_gram": 1,
                "gopher_repetition.dup_line_frac": 4,
            }),
            ("c4", 122, 63, {"c4.too_few_sentences": 51, "c4.curly_bracket": 8}),
            ("fineweb", 63, 59, {"fineweb.char_dup_ratio": 4}),
            ("pii", 59, 59, {}),
            ("exact_dedup", 59, 54, {"exact_dedup.duplicate": 5}),
            ("minhash_dedup", 54, 51, {"minhash_dedup.near_duplicate": 3}),
        ],
    },
    "docs": {
        "docs": "03bd117ff27de1cc",
        "exclusions": "860fa6e4591ea55e",
        "manifest": "ee9e00980c16f518",
        "funnel": [
            ("normalize", 147, 147, {}),
            ("langid", 147, 147, {}),
            ("gopher_quality", 147, 143, {
                "gopher_quality.stop_words": 1,
                "gopher_quality.too_few_words": 2,
                "gopher_quality.mean_word_length": 1,
            }),
            ("gopher_repetition", 143, 138, {
                "gopher_repetition.dup_para_frac": 1,
                "gopher_repetition.dup_line_frac": 4,
            }),
            ("pii", 138, 138, {}),
            ("exact_dedup", 138, 132, {"exact_dedup.duplicate": 6}),
            ("minhash_dedup", 132, 115, {"minhash_dedup.near_duplicate": 17}),
        ],
    },
}  # fmt: skip


def test_add_with_language_id_gives_the_pinned_outputs(added) -> None:
    assert _outputs(added) == PINNED_ADD


@pytest.mark.parametrize("recipe", ["web", "docs"])
def test_prepare_gives_the_pinned_outputs(added, recipe: str) -> None:
    catalog = Catalog(added.path.parents[1])
    out = prepare(
        added.ref, load_recipe(recipe), into=f"fixed-{recipe}", catalog=catalog, executor=INLINE
    )
    assert _outputs(out) == PINNED[recipe]
