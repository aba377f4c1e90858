"""`steep eval --run-windows` reproduces the losses a run logged (#17 finding 11): the
in-run eval and `steep eval` read one text by different rules, and both outputs say so."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from steep.cli import main
from steep.config import parse_config
from steep.train.loop import train
from tests.conftest import tiny_config


@pytest.mark.parametrize("precision", ["fp32", "bf16-autocast"])
def test_run_windows_reproduce_the_run_s_own_eval_losses(
    tmp_path: Path, corpora, tiny_model, capsys, precision: str
) -> None:
    raw = tiny_config(tmp_path, corpora, tiny_model, steps=4, precision=precision)
    news = tmp_path / "news.jsonl"
    news.write_text(corpora["general"].read_text())  # any text: an extra eval set
    raw["data"]["eval_sets"] = {"extra": [str(news)]}
    raw["eval"] = {"every_steps": 4, "max_windows": 3, "batch_size": 2}
    result = train(parse_config(raw))
    logged = [json.loads(x) for x in (result.run_dir / "metrics.jsonl").read_text().splitlines()]
    evals = [r for r in logged if r["kind"] == "eval"]
    step0, final = evals[0]["sets"], evals[-1]["sets"]
    report = (result.run_dir / "report.md").read_text()
    assert "**eval rule**: up to 3 fixed windows of 64 predicted tokens per set" in report

    capsys.readouterr()
    out = tmp_path / "eval"
    assert main(["eval", str(result.model_dir), "--run-windows", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    block = json.loads((out / "eval.json").read_text())["run_windows"]
    assert set(block["sets"]) == {"domain", "general", "extra"}
    for name, row in block["sets"].items():
        assert row["adapted"] == pytest.approx(final[name]["loss"], abs=1e-6), name
        assert row["base"] == pytest.approx(step0[name]["loss"], abs=1e-6), name
        assert row["windows"] == 3
    assert block["max_abs_diff"] < 1e-6
    assert block["rule"].endswith(f"mean loss in nats per token; {precision}")
    assert "[run windows] rule: up to 3 fixed windows" in printed
    md = (out / "eval.md").read_text()
    assert "## The run's eval sets, as training read them (t)" in md
    assert "Largest difference from the run's own metrics.jsonl:" in md


def test_steep_eval_says_how_it_reads_a_set(tmp_path: Path, corpora, tiny_model) -> None:
    result = train(parse_config(tiny_config(tmp_path, corpora, tiny_model, steps=1)))
    out = tmp_path / "eval"
    argv = ["eval", str(result.model_dir), "--sets", f"d={corpora['domain']}", "--out", str(out)]
    assert main([*argv, "--seq-len", "32"]) == 0
    settings = json.loads((out / "eval.json").read_text())["settings"]
    assert settings["set_rule"] == (
        "each document alone, after a BOS (else EOS); every token predicted, in rolling "
        "windows of up to 32 tokens; loss per token and bits per UTF-8 byte; float32"
    )
    md = (out / "eval.md").read_text()
    assert "Read as: each document alone" in md and "see `--run-windows`" in md
