"""Data for long context: a source's length rule (a filter, upsampling within the source),
tokens by document-length bucket, the warning when nothing fills a window, packing with
document masking at a long seq_len, and resume across the rule and the window length."""

from __future__ import annotations

import contextlib
import io
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from transformers import LlamaConfig, LlamaForCausalLM

from steep.config import parse_config
from steep.config.lengths import LengthSection
from steep.data.doclength import LengthView, SourceLengths, bucket_labels, window_problem
from steep.data.mixture import Mixture
from steep.data.tokenize import tokenize_source
from steep.data.tokensource import Windows
from steep.errors import ConfigError
from steep.model.io import byte_tokenizer
from steep.train.forward import document_positions, lm_loss
from steep.train.loop import resume_run, train
from tests.conftest import TINY_LLAMA, resume_matches, tiny_config, write_jsonl
from tests.test_longctx_eval import _scaled_base

SEP = 256


def _docs(lengths: list[int], seed: int = 0) -> list[str]:
    rng = np.random.default_rng(seed)
    return ["".join(chr(97 + int(c)) for c in rng.integers(0, 26, n)) for n in lengths]


def _stream(tmp_path: Path, lengths: list[int]):
    path = write_jsonl(tmp_path / "src.jsonl", _docs(lengths))
    return tokenize_source("s", [str(path)], byte_tokenizer(), tmp_path / "cache").train


def test_a_view_reads_the_kept_documents_then_the_long_ones_again(tmp_path: Path) -> None:
    lengths = [50, 400, 20, 900, 120]  # bytes; each document also has its separator
    stream = _stream(tmp_path, lengths)
    docs = [stream.document(i) for i in range(len(lengths))]
    rule = LengthSection(min_tokens=100, upsample_tokens=402, upsample_times=3)
    view = LengthView(stream, rule)
    want = np.concatenate([docs[1], docs[3], docs[4], docs[3], docs[3]])
    assert view.num_tokens == len(want) and len(view) == 5
    assert (view.read(0, view.num_tokens) == want).all()
    assert (view.read(395, 1500) == want[395:1500]).all()  # across document edges
    w = Windows(view, 64)
    assert len(w) == (len(want) - 1) // 64 and (w.get(3) == want[192:257]).all()
    assert view.buckets() == {"<256": {"documents": 1, "tokens": 121},
                              "256-512": {"documents": 1, "tokens": 401},
                              "512-1K": {"documents": 3, "tokens": 3 * 901}}  # fmt: skip
    held = LengthView(stream, rule, upsample=False)  # held-out: filtered, never repeated
    assert held.num_tokens == len(docs[1]) + len(docs[3]) + len(docs[4])


def test_the_rule_is_checked_and_said_in_words() -> None:
    with pytest.raises(ValueError, match="upsample_tokens"):
        LengthSection(upsample_times=2)
    with pytest.raises(ValueError, match="upsample_tokens"):
        LengthSection(upsample_tokens=1000)
    rule = LengthSection(min_tokens=64, upsample_tokens=4096, upsample_times=2)
    assert rule.describe() == "documents of 64+ tokens, those of 4096+ tokens x2"
    assert bucket_labels()[:3] == ["<256", "256-512", "512-1K"] and bucket_labels()[-1] == "128K+"


def test_no_document_to_fill_a_window_is_said_with_the_lengths(tmp_path: Path) -> None:
    stream = _stream(tmp_path, [30, 60, 90, 120])
    lengths = SourceLengths(stream, None)
    assert lengths.buckets == {"<256": {"documents": 4, "tokens": 31 + 61 + 91 + 121}}
    line = window_problem("short", lengths, 256)
    assert line is not None and "source 'short' has no document of 257+ tokens" in line
    assert "4 documents, median 76, p90" in line and "longest 121 tokens" in line
    assert window_problem("short", lengths, 100) is None


def test_a_changed_rule_restarts_that_source_and_a_kept_one_goes_on(tmp_path: Path) -> None:
    stream = _stream(tmp_path, [300] * 20)
    windows = [Windows(stream, 32), Windows(stream, 32)]
    a = Mixture(["a", "b"], windows, [1, 1], seed=0, layouts=["every document"] * 2)
    a.take(10)
    state = a.state_dict()
    b = Mixture(["a", "b"], windows, [1, 1], seed=0, layouts=["every document", "x2"])
    with pytest.raises(ValueError, match="source 'b' reads x2 \\(was every document\\)"):
        b.load_state_dict(state)
    changes = b.load_state_dict(state, allow_change=True)
    assert changes and b.counts.tolist() == [5, 0] and b.keys[1] != a.keys[1]


def test_packed_documents_stay_apart_at_a_long_seq_len() -> None:
    """Document masking at 1,024 positions (RoPE-scaled from 256): the last document of a
    packed window is predicted as it is alone, and the loss is the documents' own."""
    torch.manual_seed(0)
    cfg = {**TINY_LLAMA, "max_position_embeddings": 1024}
    rope = {"rope_type": "linear", "factor": 4.0, "rope_theta": 10000.0}
    model = LlamaForCausalLM(LlamaConfig(vocab_size=257, rope_parameters=rope, **cfg)).eval()
    a, b = torch.randint(0, 256, (1, 700)), torch.randint(0, 256, (1, 324))
    window = torch.cat([a, torch.tensor([[SEP]]), b], dim=1)  # 1,025 tokens: one window
    with torch.no_grad():
        alone = model(input_ids=b, use_cache=False).logits[0]
        pos = document_positions(window, SEP)
        packed = model(input_ids=window, position_ids=pos, use_cache=False).logits[0]
        assert torch.allclose(packed[701:], alone, atol=1e-4)
        total = lm_loss(model, window, SEP, reduction="sum")
        first = lm_loss(model, window[:, :702], reduction="sum")  # a, then its separator
        second = lm_loss(model, window[:, 701:], SEP, reduction="sum")
    assert float(total) == pytest.approx(float(first + second), rel=1e-5)


@pytest.fixture(scope="module")
def long_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """A run past its base's 128 positions (at 256) with an upsampled source and one whose
    documents are all too short for a window."""
    tmp = tmp_path_factory.mktemp("long")
    rng = np.random.default_rng(1)
    docs = {
        "domain": write_jsonl(tmp / "d.jsonl", _docs(list(rng.integers(60, 700, 80)), 1)),
        "general": write_jsonl(tmp / "g.jsonl", _docs([150] * 120, 2)),
    }
    cfg = tiny_config(tmp, docs, _scaled_base(tmp / "base"), steps=4, warmup_steps=1)
    cfg["data"]["seq_len"] = 256
    cfg["data"]["sources"][0]["length"] = {"min_tokens": 100, "upsample_tokens": 400,
                                           "upsample_times": 2}  # fmt: skip
    cfg["train"]["global_batch_tokens"] = 512
    cfg["checkpoint"] = {"every_steps": 2, "keep_last": 2}
    cfg["eval"] = {"every_steps": 2, "max_windows": 2}
    said = io.StringIO()
    with contextlib.redirect_stdout(said):
        train(parse_config(cfg))
    return tmp / "run", said.getvalue()


def test_a_run_reports_tokens_by_document_length_per_source(long_run) -> None:
    run, said = long_run
    assert "warning: source 'general' has no document of 257+ tokens" in said
    assert "documents, median 151, p90 151, p99 151, longest 151 tokens" in said
    assert "source 'domain'" not in said.split("warning:")[-1]
    records = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    event = next(r for r in records if r.get("event") == "data_lengths")
    domain = event["sources"]["domain"]
    assert domain["rule"] == "documents of 100+ tokens, those of 400+ tokens x2"
    upsampled = sum(b["tokens"] for k, b in domain["buckets"].items() if k != "<256")
    assert upsampled > 0 and domain["longest"] <= 701
    lineage = json.loads((run / "model" / "steep.json").read_text())
    assert lineage["data"][0]["length"]["buckets"] == domain["buckets"]
    report = (run / "report.md").read_text()
    assert "## Tokens by document length" in report and "**general** (every document" in report
    assert "## Long context" in report


def test_a_run_past_its_base_context_evaluates_both_ends(long_run) -> None:
    records = [json.loads(x) for x in (long_run[0] / "metrics.jsonl").read_text().splitlines()]
    events = [e for e in records if e.get("event") == "long_context"]
    assert [e["step"] for e in events] == [0, 4]
    first = events[0]
    assert first["old_len"] == 128 and first["seq_len"] == 256
    assert sorted(first["passkey"]["grid"]) == ["128", "256"]
    assert set(first["position_loss"]) == {"domain"}  # general: no document fills 256
    assert first["no_long_documents"] == ["general"]
    assert set(first["short"]) == {"domain", "general"}
    report = (long_run[0] / "report.md").read_text()
    for heading in ("### Passkey retrieval", "### Loss by position", "**step 0**",
                    "### Eval sets at the old length (128)", "**step 4**"):  # fmt: skip
        assert heading in report


def test_resume_with_a_length_rule_is_exact(long_run, tmp_path: Path) -> None:
    resume_matches(long_run[0], tmp_path)


def test_resume_at_another_seq_len_is_refused_naming_the_two_stage_way(
    long_run, tmp_path: Path
) -> None:
    copy = tmp_path / "copy"
    shutil.copytree(long_run[0], copy)
    with pytest.raises(ConfigError, match=r"data.seq_len=128 differs from the checkpoint's 256"):
        resume_run(copy, overrides=["data.seq_len=128"], allow_mixture_change=True)
