"""Sharded tokenization: a source cut into many units reads back as the stream one pass
gives (same tokens, windows, held-out split and skip log), on a pool as inline, resumes
per unit after a crash, and caches from before the sharded format still read."""

from __future__ import annotations

import json
import random
from pathlib import Path

import numpy as np
import pytest

from steep.data.executor import LocalExecutor
from steep.data.mixture import Mixture
from steep.data.shards import ShardWriter
from steep.data.tokenize import _open_source, tokenize_source, tokenizer_meta
from steep.data.tokensource import TokenStream, Windows
from steep.model.io import byte_tokenizer

UNIT = 2_000  # bytes: the corpus below makes dozens of units


def _corpus(path: Path, n: int = 300) -> Path:
    """Records of varied length, with bad ones among them (they are skipped, and logged)."""
    rng = random.Random(0)
    lines = []
    for i in range(n):
        if i % 37 == 5:
            lines.append("{not json")
        elif i % 41 == 7:
            lines.append(json.dumps({"text": "   "}))
        else:
            words = " ".join(
                rng.choice(["alpha", "beta", "gamma", "héllo", "日本"])
                for _ in range(rng.randint(1, 60))
            )
            lines.append(json.dumps({"text": f"doc {i}: {words}"}, ensure_ascii=False))
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def _stream(s: TokenStream) -> np.ndarray:
    return s.read(0, s.num_tokens)


def _tokenize(corpus: Path, cache: Path, **kw):
    return tokenize_source("d", [str(corpus)], byte_tokenizer(), cache, heldout_fraction=0.1, **kw)


@pytest.fixture()
def corpus(tmp_path: Path) -> Path:
    return _corpus(tmp_path / "d.jsonl")


def test_many_units_read_back_as_one_pass(tmp_path: Path, corpus: Path):
    one = _tokenize(corpus, tmp_path / "one")
    many = _tokenize(corpus, tmp_path / "many", unit_bytes=UNIT)
    assert one.info["units"] == 1 and many.info["units"] > 10
    assert many.train.shards > 10 and many.heldout.shards > 1
    for a, b in ((one.train, many.train), (one.heldout, many.heldout)):
        assert a.num_tokens == b.num_tokens and len(a) == len(b)
        assert np.array_equal(_stream(a), _stream(b))
        assert all(np.array_equal(a.document(i), b.document(i)) for i in range(len(a)))
    wa, wb = Windows(one.train, 16), Windows(many.train, 16)
    assert len(wa) == len(wb)
    # every window, those that straddle a shard edge included
    assert all(np.array_equal(wa.get(j), wb.get(j)) for j in range(len(wa)))
    assert (one.dir / "skipped.jsonl").read_bytes() == (many.dir / "skipped.jsonl").read_bytes()
    assert many.info["skipped_by_reason"] == one.info["skipped_by_reason"]
    assert sum(many.info["skipped_by_reason"].values()) == many.info["skipped"] > 0
    # the unit size spreads the work; it is not part of what was tokenized
    assert one.dir.name == many.dir.name
    assert [p.name for p in (tmp_path / "many").iterdir()] == [many.dir.name]  # no leftovers


def test_a_pool_gives_what_inline_gives(tmp_path: Path, corpus: Path):
    inline = _tokenize(corpus, tmp_path / "a", unit_bytes=UNIT)
    pooled = _tokenize(corpus, tmp_path / "b", unit_bytes=UNIT, executor=LocalExecutor(2))
    assert inline.info["splits"] == pooled.info["splits"]  # shard lists included
    for split in ("train", "heldout"):
        for entry in inline.info["splits"][split]["shards"]:
            for f in ("tokens.bin", "index.npy"):
                a = (inline.dir / entry["path"] / f).read_bytes()
                assert a == (pooled.dir / entry["path"] / f).read_bytes()


def test_a_killed_tokenization_resumes_per_unit(tmp_path: Path, corpus: Path):
    calls = {"n": 0}

    def crash_after_some(what: str, done: int, total: int) -> None:
        calls["n"] += 1
        if calls["n"] == 8:
            raise KeyboardInterrupt  # as a kill would, between two units' batches

    with pytest.raises(KeyboardInterrupt):
        _tokenize(corpus, tmp_path / "c", unit_bytes=UNIT, progress=crash_after_some)
    partial = next((tmp_path / "c").glob(".*.partial"))
    finished = sorted(p.name for p in (partial / "units").iterdir())
    assert 0 < len(finished) < 20
    stamps = {n: (partial / "units" / n).stat().st_mtime_ns for n in finished}

    resumed = _tokenize(corpus, tmp_path / "c", unit_bytes=UNIT)
    fresh = _tokenize(corpus, tmp_path / "fresh", unit_bytes=UNIT)
    assert not partial.exists()
    assert resumed.info["splits"] == fresh.info["splits"]
    assert np.array_equal(_stream(resumed.train), _stream(fresh.train))
    assert (resumed.dir / "skipped.jsonl").read_bytes() == (
        fresh.dir / "skipped.jsonl"
    ).read_bytes()
    # finished units were not redone: their markers (moved with the partial folder into the
    # source) are the ones written before the crash
    assert {n: (resumed.dir / "units" / n).stat().st_mtime_ns for n in finished} == stamps
    assert not [p for p in resumed.dir.rglob(".*") if p.is_dir()]  # no half-written unit


def test_a_cache_from_before_shards_still_reads(tmp_path: Path):
    """steep <= 0.2 wrote train/ and heldout/ as one shard each and no source format."""
    tok = byte_tokenizer()
    meta = tokenizer_meta(tok, None)
    out = tmp_path / "d-0123456789abcdef"
    docs = {"train": ["first document", "second one", "third"], "heldout": ["held out"]}
    for split, texts in docs.items():
        w = ShardWriter(out / split, meta, {"source": "d", "split": split})
        for t in texts:
            w.add(tok(t, add_special_tokens=False)["input_ids"])
        w.close()
    counts = {s: {"documents": len(t), "tokens": 0} for s, t in docs.items()}
    (out / "source.json").write_text(json.dumps({"name": "d", "splits": counts, "skipped": 0}))
    ts = _open_source("d", out)
    assert len(ts.train) == 3 and ts.train.shards == 1 and len(ts.heldout) == 1
    assert tok.decode(ts.train.document(1)[:-1].tolist()) == "second one"
    w = Windows(ts.train, 4)
    mix = Mixture(["d"], [w], [1.0], seed=0)
    batch, _ = mix.take(len(w))
    assert batch.shape == (len(w), 5)


def test_mixture_draws_across_every_shard(tmp_path: Path, corpus: Path):
    many = _tokenize(corpus, tmp_path / "m", unit_bytes=UNIT)
    w = Windows(many.train, 8)
    mix = Mixture(["d"], [w], [1.0], seed=1)
    draws = mix.draw(len(w))
    assert sorted(d.window for d in draws) == list(range(len(w)))  # one epoch, each once
    shard_of = np.searchsorted(many.train.starts, [d.window * 8 for d in draws], side="right")
    assert len(set(shard_of.tolist())) == many.train.shards


FORKED_AFTER_THREADS = """
import os, sys
os.environ["TOKENIZERS_PARALLELISM"] = "true"  # as steep's CLI sets it
from pathlib import Path
from steep.data.executor import LocalExecutor
from steep.data.tokenize import tokenize_source
from steep.model.io import byte_tokenizer
tok = byte_tokenizer()
tok.backend_tokenizer.encode_batch_fast(["the parent uses the Rust thread pool"] * 512)
root = Path(sys.argv[1])
src = root / "d.jsonl"
src.write_text("".join('{"text": "doc %d %s"}\\n' % (i, "w " * (i % 50)) for i in range(3000)))
ts = tokenize_source("d", [str(src)], tok, root / "c", unit_bytes=5000, executor=LocalExecutor(2))
print("units", ts.info["units"])
"""


def test_a_pool_forked_after_the_tokenizer_s_threads_ran_does_not_hang(tmp_path: Path):
    """Forked workers inherit tokenizers' thread pool without its threads: before, they
    hung forever in the first batch once the parent had encoded a batch."""
    import subprocess
    import sys

    proc = subprocess.run(
        [sys.executable, "-c", FORKED_AFTER_THREADS, str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert int(proc.stdout.split()[-1]) > 10


def test_a_run_on_many_shards_trains_as_on_one(tmp_path: Path, corpora, tiny_model, monkeypatch):
    """Pre-tokenized in tiny units (several shards per source) or tokenized inside the job
    in one unit: the same run, loss for loss."""
    import yaml

    from steep.cli import main
    from steep.config import parse_config
    from steep.train.loop import train
    from tests.conftest import tiny_config

    def run(home: Path, ahead: bool) -> list[tuple[str, int, float]]:
        monkeypatch.setenv("STEEP_HOME", str(home))
        cfg = tiny_config(tmp_path, corpora, tiny_model, steps=6)
        cfg["run"]["out_dir"] = str(home / "run")
        if ahead:
            path = home / "run.yaml"
            home.mkdir(parents=True)
            path.write_text(yaml.safe_dump(cfg))
            assert main(["data", "tokenize", "--config", str(path), "--unit-mb", "0.004"]) == 0
            for source in (home / "cache" / "tokens").iterdir():
                info = json.loads((source / "source.json").read_text())
                assert len(info["splits"]["train"]["shards"]) > 2, source
        train(parse_config(cfg))
        out = []
        for line in (home / "run" / "metrics.jsonl").read_text().splitlines():
            r = json.loads(line)
            if r["kind"] == "train":
                out.append(("train", r["step"], r["loss"]))
            elif r["kind"] == "eval":
                out += [(name, r["step"], s["loss"]) for name, s in sorted(r["sets"].items())]
        return out

    assert run(tmp_path / "many", ahead=True) == run(tmp_path / "one", ahead=False)
