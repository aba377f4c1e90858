import bz2
import gzip
import json
import re
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import zstandard
from tokenizers import Tokenizer, models, pre_tokenizers, trainers
from transformers import PreTrainedTokenizerFast

from steep.data.documents import SkipLog, read_documents
from steep.data.mixture import Mixture
from steep.data.shards import Shard, ShardError
from steep.data.tokenize import tokenize_source
from steep.data.tokensource import Windows
from steep.model.io import byte_tokenizer, tokenizer_fingerprint


def test_readers_handle_formats_and_bad_records(tmp_path: Path):
    good = {"text": "hello world"}
    lines = [
        json.dumps(good),
        "{not json",
        json.dumps({"text": ""}),
        json.dumps({"body": "x"}),
        json.dumps(["a list"]),
    ]
    (tmp_path / "a.jsonl").write_bytes(
        ("\n".join(lines) + "\n").encode() + b'{"text": "\xff\xfe"}\n'
    )
    with gzip.open(tmp_path / "b.jsonl.gz", "wt") as f:
        f.write(json.dumps({"text": "gz doc"}) + "\n")
    (tmp_path / "c.jsonl.zst").write_bytes(
        zstandard.ZstdCompressor().compress((json.dumps({"text": "zst doc"}) + "\n").encode())
    )
    (tmp_path / "d.txt.bz2").write_bytes(bz2.compress(b"a plain text file"))
    (tmp_path / "e.txt").write_bytes(b"\x89PNG\x00\x00binary")
    pq.write_table(pa.table({"text": ["pq one", None, "pq two"]}), tmp_path / "f.parquet")
    skips = SkipLog()
    docs = list(read_documents([tmp_path], skips))
    assert sorted(d.text for d in docs) == sorted(
        ["hello world", "gz doc", "zst doc", "a plain text file", "pq one", "pq two"]
    )
    by_line = {(Path(s.path).name, s.line): s.reason for s in skips.skips}
    assert by_line[("a.jsonl", 2)].startswith("malformed JSON")
    assert by_line[("a.jsonl", 3)] == "empty document"
    assert "bad field" in by_line[("a.jsonl", 4)]
    assert "expected an object" in by_line[("a.jsonl", 5)]
    assert by_line[("a.jsonl", 6)].startswith("invalid UTF-8")
    assert by_line[("f.parquet", 2)].startswith("bad field")
    assert any(n == "e.txt" and ("binary" in r or "UTF-8" in r) for (n, _), r in by_line.items())
    assert "records skipped" in skips.summary()


def test_missing_path_and_empty_folder(tmp_path: Path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        list(read_documents([tmp_path / "nope.jsonl"], SkipLog()))
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="no text files"):
        list(read_documents([tmp_path / "empty"], SkipLog()))


def test_shard_round_trip_and_split(tmp_path: Path, corpora):
    tok = byte_tokenizer()
    ts = tokenize_source(
        "domain", [str(corpora["domain"])], tok, tmp_path / "cache", heldout_fraction=0.2
    )
    assert ts.train.meta["dtype"] == "uint16"
    assert ts.heldout is not None and 0 < len(ts.heldout) < len(ts.train)
    texts = [json.loads(line)["text"] for line in corpora["domain"].read_text().splitlines()]
    eos = tok.eos_token_id
    decoded = set()
    for shard in (ts.train, ts.heldout):
        for i in range(len(shard)):
            doc = shard.document(i)
            assert doc[-1] == eos  # separator after every document
            decoded.add(tok.decode(doc[:-1].tolist()))
    assert decoded == set(texts)  # every document once, in one split or the other
    again = tokenize_source(
        "domain", [str(corpora["domain"])], tok, tmp_path / "cache", heldout_fraction=0.2
    )
    assert again.dir == ts.dir  # cached


def test_windows_tile_the_stream(tmp_path: Path, corpora):
    ts = tokenize_source("d", [str(corpora["domain"])], byte_tokenizer(), tmp_path / "c")
    w = Windows(ts.train, 16)
    assert len(w) == (ts.train.num_tokens - 1) // 16
    assert np.array_equal(w.get(1)[0], w.get(0)[-1])  # window j+1 starts where j's target ends


def _tiny_bpe() -> PreTrainedTokenizerFast:
    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.train_from_iterator(
        ["some words to learn a few merges from"] * 20,
        trainers.BpeTrainer(vocab_size=60, special_tokens=["<unk>", "</s>"]),
    )
    return PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="</s>", unk_token="<unk>")


def test_tokenizer_mismatch_is_refused(tmp_path: Path, corpora):
    ts = tokenize_source("d", [str(corpora["domain"])], byte_tokenizer(), tmp_path / "c")
    other = _tiny_bpe()
    with pytest.raises(ShardError, match="re-tokenize"):
        ts.train.check_tokenizer(tokenizer_fingerprint(other), "'tiny-bpe'")
    ts.train.check_tokenizer(tokenizer_fingerprint(byte_tokenizer()), "bytes")  # same: fine


def test_damaged_shard_is_refused(tmp_path: Path, corpora):
    ts = tokenize_source("d", [str(corpora["domain"])], byte_tokenizer(), tmp_path / "c")
    shard = ts.dir / ts.info["splits"]["train"]["shards"][0]["path"]
    with open(shard / "tokens.bin", "ab") as f:
        f.write(b"\x00")
    with pytest.raises(ShardError, match="damaged"):
        Shard.open(shard)


class _FakeWindows:
    """A window set of n windows whose content is the window index (for ordering tests)."""

    def __init__(self, n: int):
        self.n = n

    def __len__(self) -> int:
        return self.n

    def get(self, j: int) -> np.ndarray:
        return np.array([j, j], dtype=np.int64)


@pytest.mark.parametrize("weights", [[1, 1], [3, 1], [0.5, 0.3, 0.2]])
def test_mixture_ratio_exact_at_every_prefix(weights):
    m = Mixture(
        [f"s{i}" for i in range(len(weights))], [_FakeWindows(50) for _ in weights], weights, seed=0
    )
    shares = np.asarray(weights) / sum(weights)
    for k in range(1, 400):
        m.next()
        assert np.all(np.abs(m.counts - shares * k) < 1.0 + 1e-9), (k, m.counts)


def test_seed_changes_order_not_ratio_and_epochs_cover_all():
    a = Mixture(["x", "y"], [_FakeWindows(30), _FakeWindows(30)], [2, 1], seed=0)
    b = Mixture(["x", "y"], [_FakeWindows(30), _FakeWindows(30)], [2, 1], seed=1)
    da = [a.next() for _ in range(45)]
    db = [b.next() for _ in range(45)]
    assert [d.source for d in da] == [d.source for d in db]
    assert [d.window for d in da] != [d.window for d in db]
    assert sorted(d.window for d in da if d.source == 0) == list(range(30))  # one epoch, no repeats


def test_mixture_state_resumes_exactly():
    a = Mixture(["x", "y"], [_FakeWindows(7), _FakeWindows(5)], [1, 1], seed=3)
    for _ in range(9):
        a.next()
    b = Mixture(["x", "y"], [_FakeWindows(7), _FakeWindows(5)], [1, 1], seed=3)
    b.load_state_dict(json.loads(json.dumps(a.state_dict())))
    rest_a = [(d.source, d.window) for d in (a.next() for _ in range(20))]
    rest_b = [(d.source, d.window) for d in (b.next() for _ in range(20))]
    assert rest_a == rest_b


def test_document_separator_must_be_a_real_token():
    from steep.data.tokenize import tokenizer_meta

    tok = byte_tokenizer()
    tok.unk_token = "<|endoftext|>"  # as in SmolLM2, where the EOS doubles as unk
    meta = tokenizer_meta(tok, "<|endoftext|>")
    assert meta["separator_id"] == tok.convert_tokens_to_ids("<|endoftext|>")
    with pytest.raises(ValueError, match=re.escape("'<|nope|>' is not a token")):
        tokenizer_meta(tok, "<|nope|>")


def test_hf_encoder_matches_the_tokenizer_call():
    from steep.data.tokengine import hf_encoder
    from steep.model.io import byte_tokenizer

    tok = byte_tokenizer()
    texts = ["plain text", "Tiếng Việt có dấu", "a<|endoftext|>b", "", "tab\there"] * 5
    encode = hf_encoder(tok)
    assert encode(texts) == tok(texts, add_special_tokens=False)["input_ids"]
    assert encode(texts[:3]) == tok(texts[:3], add_special_tokens=False)["input_ids"]


def test_hf_encoder_falls_back_when_python_preprocessing_differs():
    """A tokenizer class that rewrites text before the Rust call keeps its own path."""
    from steep.data.tokengine import hf_encoder
    from steep.model.io import byte_tokenizer

    tok = byte_tokenizer()

    class Lowering(type(tok)):
        def __call__(self, texts, **kw):
            return super().__call__([t.lower() for t in texts], **kw)

    lowering = Lowering(tokenizer_object=tok.backend_tokenizer, eos_token="<|endoftext|>")
    encode = hf_encoder(lowering)
    texts = ["MiXeD Case", "UPPER"]
    assert encode(texts) == tok([t.lower() for t in texts], add_special_tokens=False)["input_ids"]
    assert encode(["ABC"]) == tok(["abc"], add_special_tokens=False)["input_ids"]


@pytest.mark.parametrize("suffix", [".gz", ".bz2", ".zst"])
def test_a_truncated_archive_is_reported_not_silently_short(tmp_path: Path, suffix: str):
    """All three compressions say 'truncated archive' and keep what came before the cut;
    .zst used to end quietly, losing its last documents without a word."""
    import zstandard

    rng = np.random.default_rng(0)  # text that does not compress away: the cut lands mid-file
    lines = "".join(
        json.dumps({"text": f"document {i} " + rng.bytes(150).hex()}) + "\n" for i in range(4000)
    )
    raw = lines.encode()
    packed = {
        ".gz": gzip.compress(raw),
        ".bz2": bz2.compress(raw, compresslevel=1),  # 100 kB blocks: the cut keeps some
        ".zst": zstandard.ZstdCompressor().compress(raw),
    }[suffix]
    whole, cut = tmp_path / f"whole.jsonl{suffix}", tmp_path / f"cut.jsonl{suffix}"
    whole.write_bytes(packed)
    cut.write_bytes(packed[: len(packed) * 2 // 3])
    skips = SkipLog()
    assert len(list(read_documents([whole], skips))) == 4000 and not skips.skips
    got = list(read_documents([cut], skips))
    assert 0 < len(got) < 4000  # what came before the cut is kept
    assert len(skips.skips) == 1 and "truncated archive" in skips.skips[0].reason


def test_zst_with_several_frames_reads_them_all(tmp_path: Path):
    import zstandard

    c = zstandard.ZstdCompressor()
    frames = [c.compress((json.dumps({"text": f"frame {i}"}) + "\n").encode()) for i in range(3)]
    (tmp_path / "multi.jsonl.zst").write_bytes(b"".join(frames))
    skips = SkipLog()
    texts = [d.text for d in read_documents([tmp_path / "multi.jsonl.zst"], skips)]
    assert texts == ["frame 0", "frame 1", "frame 2"] and not skips.skips
