"""An eval says how far it is (#28 item 3): the demo's step-0 eval was silent for minutes."""

from __future__ import annotations

import contextlib

import numpy as np
import pytest
import torch
from transformers import LlamaConfig, LlamaForCausalLM

from steep.train.evaluate import EvalBar, EvalSet, evaluate


def _model() -> LlamaForCausalLM:
    torch.manual_seed(0)
    cfg = LlamaConfig(
        vocab_size=64, hidden_size=16, intermediate_size=32, num_hidden_layers=1,
        num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=32,
    )  # fmt: skip
    return LlamaForCausalLM(cfg)


def test_evaluate_reports_every_batch_in_windows_over_all_sets(capsys) -> None:
    rng = np.random.default_rng(0)
    sets = [
        EvalSet("a", rng.integers(0, 64, (5, 9), dtype=np.int64)),
        EvalSet("b", rng.integers(0, 64, (3, 9), dtype=np.int64)),
    ]
    heard: list[tuple[int, int]] = []
    reports: list[tuple[int, int]] = []
    bar = EvalBar("eval step 0", True, lambda done, total: reports.append((done, total)))

    def progress(done: int, total: int) -> None:
        heard.append((done, total))
        bar(done, total)

    model = _model()
    with_bar = evaluate(
        model, sets, 2, torch.device("cpu"), contextlib.nullcontext(), None, None, progress
    )
    plain = evaluate(model, sets, 2, torch.device("cpu"), contextlib.nullcontext())
    assert with_bar == plain  # the bar changes nothing it measures
    assert heard == [(2, 8), (4, 8), (5, 8), (7, 8), (8, 8)]  # batches of 2 within each set
    assert reports == heard
    assert "eval step 0" in capsys.readouterr().err  # tqdm writes to stderr


def test_a_bar_that_is_not_rank_0_prints_nothing(capsys) -> None:
    bar = EvalBar("eval", False)
    bar(1, 2)
    bar(2, 2)
    assert bar.bar is None and capsys.readouterr().err == ""


@pytest.mark.parametrize("total", [1, 3])
def test_the_bar_closes_at_the_end(total: int) -> None:
    bar = EvalBar("eval", True)
    for done in range(1, total + 1):
        bar(done, total)
    assert bar.bar is not None and bar.bar.n == total
    assert bar.bar.disable  # closed: tqdm disables a bar on close
