"""Report from metrics.jsonl alone: reader robustness, eval table numbers, plots, report.md."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from steep.train.report import eval_table, format_table, plot_run, read_metrics, write_report

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
STEP = 2048  # tokens per step


def _eval(step: int, domain: float, general: float, base=(2.66, 3.10)) -> dict:
    sets = {}
    for name, loss, b in (("domain", domain, base[0]), ("general", general, base[1])):
        sets[name] = {"loss": loss, "ppl": math.exp(loss), "rel_change": (loss - b) / b}
    return {"kind": "eval", "step": step, "tokens": step * STEP, "sets": sets, "time": 1.0 + step}


def _train(step: int, loss: float, tokens_per_s: float = 300.0) -> dict:
    tokens = step * STEP
    return {
        "kind": "train", "step": step, "tokens": tokens, "loss": loss,
        "lr": 3e-4 * min(1.0, step / 5), "grad_norm": 0.8, "tokens_per_s": tokens_per_s,
        "tokens_by_source": {"domain": tokens * 3 // 4, "general": tokens // 4},
        "time": 1.0 + step,
    }  # fmt: skip


def _write(run_dir: Path, records: list[dict], tail: str = "") -> Path:
    run_dir.mkdir(parents=True, exist_ok=True)
    path = run_dir / "metrics.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in records) + tail, encoding="utf-8")
    return path


@pytest.fixture
def run_dir(tmp_path: Path) -> Path:
    """20 steps, evals at 0/10/20, step 10 re-logged by a resume, a crash-cut last line."""
    recs: list[dict] = [_eval(0, 2.66, 3.10)]
    recs += [
        _train(s, 3.0 - 0.02 * s, tokens_per_s=50.0 if s == 1 else 300.0) for s in range(1, 11)
    ]
    recs.append(_eval(10, 2.50, 3.12))
    recs.append({"kind": "heartbeat", "step": 10, "time": 2.0})  # unknown kind: ignored
    recs += [_train(9, 9.9), _train(10, 2.75)]  # resume re-logs steps 9 and 10: last wins
    recs.append(_eval(10, 2.48, 3.11))
    recs += [_train(s, 3.0 - 0.02 * s) for s in range(11, 21)]
    recs.append(_eval(20, 2.37, 3.13))
    _write(tmp_path / "run", recs, tail='{"kind": "train", "step": 21, "loss": 2.5')
    return tmp_path / "run"


def test_read_metrics_dedups_sorts_and_skips_the_cut_line(run_dir: Path) -> None:
    train, evals = read_metrics(run_dir / "metrics.jsonl")
    assert [r["step"] for r in train] == list(range(1, 21))
    assert [r["step"] for r in evals] == [0, 10, 20]
    assert train[8]["loss"] == pytest.approx(9.9)  # the re-logged step 9
    assert train[9]["loss"] == pytest.approx(2.75)
    assert evals[1]["sets"]["domain"]["loss"] == pytest.approx(2.48)  # last occurrence


def test_eval_table_is_relative_to_step_0(run_dir: Path) -> None:
    _, evals = read_metrics(run_dir / "metrics.jsonl")
    rows = {r["set"]: r for r in eval_table(evals)}
    assert list(rows) == ["domain", "general"]
    d, g = rows["domain"], rows["general"]
    assert d["base_loss"] == pytest.approx(2.66)
    assert d["final_loss"] == pytest.approx(2.37)
    assert d["abs_change"] == pytest.approx(-0.29)
    assert d["rel_change"] == pytest.approx((2.37 - 2.66) / 2.66)  # -10.9%
    assert d["final_step"] == 20
    assert g["rel_change"] == pytest.approx((3.13 - 3.10) / 3.10)
    # order of records must not matter: the base is step 0, not the first record given
    assert eval_table(list(reversed(evals))) == eval_table(evals)


def test_format_table_shows_percent_and_final_step(run_dir: Path) -> None:
    _, evals = read_metrics(run_dir / "metrics.jsonl")
    text = format_table(eval_table(evals))
    lines = text.splitlines()
    assert "step 20" in lines[0]
    assert lines[1].split()[:2] == ["set", "step"] and "change %" in lines[1]
    assert "-10.9%" in text
    assert "+0.97%" in text  # general: (3.13 - 3.10) / 3.10
    assert len({len(line) for line in lines[1:3]}) == 1  # header and rule line up
    assert "no eval" in format_table([])


def test_plot_run_writes_pngs(run_dir: Path) -> None:
    paths = plot_run(run_dir)
    names = sorted(p.name for p in paths)
    assert names == ["eval_change.png", "loss.png", "lr.png"]
    for p in paths:
        assert p.parent == run_dir / "plots"
        data = p.read_bytes()
        assert data[:8] == PNG_MAGIC and len(data) > 5_000
    assert not list((run_dir / "plots").glob(".*tmp"))


def test_write_report(run_dir: Path) -> None:
    path = write_report(run_dir, "steep run: test", notes={"base model": "tiny", "max LR": "3e-4"})
    assert path == run_dir / "report.md"
    text = path.read_text(encoding="utf-8")
    assert text.startswith("# steep run: test\n")
    assert "## Summary" in text
    assert "- steps: 20" in text
    assert f"- tokens seen: {20 * STEP:,}" in text
    assert "domain 30,720 (75.0%)" in text and "general 10,240 (25.0%)" in text
    assert "300.0 tokens/s" in text  # step 1 (50 tokens/s, warm-up) is left out
    assert "| domain | 2.6600 | 2.3700 | -0.2900 | -10.9% | gain (loss down) |" in text
    assert "| general | 3.1000 | 3.1300 | +0.0300 | +0.97% | regression (loss up) |" in text
    assert "- **base model**: tiny" in text
    for name in ("loss", "lr", "eval_change"):
        assert f"](plots/{name}.png)" in text
        assert (run_dir / "plots" / f"{name}.png").is_file()
    assert not list(run_dir.glob(".*tmp"))


def test_report_with_only_the_step_0_eval(tmp_path: Path) -> None:
    run = tmp_path / "fresh"
    _write(run, [_eval(0, 2.66, 3.10)])
    path = write_report(run, "fresh run")
    text = path.read_text(encoding="utf-8")
    assert "- steps: 0" in text
    assert "| domain | 2.6600 | 2.6600 | +0.0000 | 0.00% | no change |" in text
    assert "](plots/loss.png)" in text and "](plots/eval_change.png)" in text
    assert "lr.png" not in text  # no train steps, so no LR curve
    assert "step 0" in format_table(eval_table(read_metrics(run / "metrics.jsonl")[1]))


def test_empty_metrics_still_reports(tmp_path: Path) -> None:
    run = tmp_path / "empty"
    _write(run, [], tail='{"kind": "ev')
    assert read_metrics(run / "metrics.jsonl") == ([], [])
    text = write_report(run, "empty").read_text(encoding="utf-8")
    assert "No eval records yet." in text and "## Plots" not in text
