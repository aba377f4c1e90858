"""Evals that show a longer context is used: passkey retrieval and loss by position
(``steep eval --passkey``, ``--position-loss``), their report, and their bad input."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from transformers import AutoModelForCausalLM

from steep.cli import main
from steep.errors import DataError, UsageError
from steep.eval import compare
from steep.model.io import byte_tokenizer
from steep.model.passkey import make_prompt, make_prompts, score_passkey
from steep.model.passkey_spec import parse_depths, parse_lengths
from steep.model.positions import document_windows, loss_by_position, text_windows
from steep.studio.model_actions import ActionError, eval_argv
from steep.train.forward import lm_loss
from tests.conftest import WORDS_A, make_tiny_model, synthetic_docs, write_jsonl

CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_tiny_model(tmp_path_factory.mktemp("m") / "tiny")


def test_prompt_is_exactly_its_length_with_the_key_at_its_depth() -> None:
    tok = byte_tokenizer()
    near = make_prompt(tok, 300, 0.0, "12345")
    far = make_prompt(tok, 300, 1.0, "12345")
    for p in (near, far):
        assert len(p.request.ids) == 300
        assert tok.decode(p.request.ids[-p.request.n_scored :]) == " 12345"
    text_near, text_far = tok.decode(near.request.ids[1:]), tok.decode(far.request.ids[1:])
    assert text_near.index("12345") < 120 < 200 < text_far.index("12345")
    a = make_prompts(tok, [128, 200], [0.0, 0.5], trials=3)
    b = make_prompts(tok, [128, 200], [0.0, 0.5], trials=3)
    assert [p.key for p in a] == [p.key for p in b]  # seeded: every model gets the same keys
    assert len({p.key for p in a}) > 1
    with pytest.raises(UsageError, match="at least"):
        make_prompt(tok, 80, 0.5, "12345")


def test_scores_are_greedy_exact_match_and_the_key_loss_by_hand(tiny: Path) -> None:
    tok = byte_tokenizer()
    model = AutoModelForCausalLM.from_pretrained(tiny).eval()
    prompts = make_prompts(tok, [128], [0.5], trials=2)
    grid = score_passkey(model, prompts, 2, CPU)
    cell = grid["128"]["0.5"]
    losses, hits = [], []
    for p in prompts:
        ids = torch.tensor([list(p.request.ids)])
        k = p.request.n_scored
        with torch.no_grad():
            logp = F.log_softmax(model(ids).logits[0, -k - 1 : -1].float(), -1)
        target = ids[0, -k:]
        losses.append(-logp.gather(1, target[:, None]).mean().item())
        with torch.no_grad():  # greedy decoding of the answer, token by token
            out = model.generate(ids[:, :-k], max_new_tokens=k, do_sample=False)
        hits.append(bool((out[0, -k:] == target).all()))
    assert cell["key_loss"] == pytest.approx(np.mean(losses), rel=1e-5)
    assert cell["accuracy"] == np.mean(hits)
    assert cell["trials"] == 2


def test_loss_by_position_is_trainings_loss_at_each_position(tiny: Path) -> None:
    docs = [np.arange(25) % 200, np.arange(8), np.arange(40) % 100]
    w = document_windows(docs, 8, 100)
    assert w.shape == (2 + 0 + 4, 9)  # an 8-token document holds no window of 8 + 1
    assert (w[1] == np.arange(9, 18)).all()  # windows do not overlap and stay in one document
    model = AutoModelForCausalLM.from_pretrained(tiny).eval()
    curve = loss_by_position(model, w, 4, CPU)
    with torch.no_grad():
        whole = float(lm_loss(model, torch.from_numpy(w)))
    assert curve.shape == (8,)
    assert curve.mean() == pytest.approx(whole, rel=1e-5)


def test_a_set_with_no_long_document_is_refused_with_its_lengths() -> None:
    with pytest.raises(
        DataError, match=r"no document has the 129 tokens.*documents, median \d+, p90"
    ):
        text_windows("short", ["a few words", "more words here"], byte_tokenizer(), 128, 4)


def test_flags_parse_and_refuse_in_one_line() -> None:
    assert parse_lengths("4096,1024,1024") == [1024, 4096]
    assert parse_depths("1,0,0.5") == [0.0, 0.5, 1.0]
    for bad in ("", "1k", "100"):
        with pytest.raises(UsageError, match="--passkey"):
            parse_lengths(bad)
    with pytest.raises(UsageError, match="between 0 and 1"):
        parse_depths("0,1.5")


def test_eval_reports_passkey_and_position_loss_and_skips_lengths_past_the_context(
    tmp_path: Path, tiny: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    texts = [" ".join(synthetic_docs(WORDS_A, 6, seed=i)) for i in range(4)]  # long documents
    sets = write_jsonl(tmp_path / "long.jsonl", texts)
    out = tmp_path / "report"
    argv = ["eval", str(tiny), "--no-baseline", "--no-lineage", "--out", str(out)]
    argv += ["--sets", f"long={sets}", "--seq-len", "128", "--position-loss"]
    argv += ["--passkey", "128,200,4096", "--passkey-depths", "0,1", "--passkey-trials", "2"]
    assert main(argv) == 0
    said = capsys.readouterr().out
    assert "passkey lengths 4096 are beyond the model's 256 positions: not run" in said
    result = json.loads((out / "eval.json").read_text())
    block = result["passkey"]["adapted"]
    assert sorted(block["grid"]) == ["128", "200"] and block["skipped"] == [4096]
    assert sorted(block["grid"]["200"]) == ["0", "1"]
    curve = result["position_loss"]["adapted"]["long"]
    assert [b["positions"] for b in curve["buckets"]][:4] == ["0", "1", "2-3", "4-7"]
    assert curve["buckets"][-1]["positions"] == "64-127" and curve["seq_len"] == 128
    md = (out / "eval.md").read_text()
    assert "## Passkey retrieval" in md and "## Loss by position" in md
    assert "| 200 |" in md and "| 64-127 |" in md


def test_only_lengths_past_the_context_is_refused_before_loading(
    tiny: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def refuse(*_a, **_k):
        raise AssertionError("weights were loaded before the input was checked")

    monkeypatch.setattr(compare, "_load_model", refuse)
    assert main(["eval", str(tiny), "--no-baseline", "--passkey", "1024,4096"]) == 2
    err = capsys.readouterr().err
    assert "1024, 4096 are beyond the model's 256 positions" in err
    assert len(err.strip().splitlines()) == 1


def test_studio_eval_action_takes_passkey_lengths_as_the_cli_does(tmp_path: Path) -> None:
    model = {"path": str(tmp_path / "m"), "name": "m", "lineage": {}}
    assert eval_argv(model) is None  # nothing to evaluate on
    argv = eval_argv(model, passkey="4096, 1024")
    assert argv == ["eval", str(tmp_path / "m"), "--passkey", "1024,4096"]
    with pytest.raises(ActionError, match="--passkey '1k'"):
        eval_argv(model, passkey="1k")


def _scaled_base(path: Path) -> Path:
    """A tiny base whose config.json extends 128 positions to 256 by linear RoPE scaling
    (what ``model.rope_scaling`` writes): a run at 256 trains past what it knew."""
    make_tiny_model(path)
    cfg = json.loads((path / "config.json").read_text())
    cfg["rope_parameters"] = {
        **(cfg.get("rope_parameters") or {"rope_theta": 10000.0}),
        "rope_type": "linear",
        "factor": 2.0,  # linear names no original length: 256 positions / 2
    }
    (path / "config.json").write_text(json.dumps(cfg))
    return path
