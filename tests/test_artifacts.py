"""The on-disk contracts and the one definition of the scores (steep.artifacts)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from steep.artifacts import fmt, scores
from steep.artifacts.lineage import Lineage, LineageError, read_lineage, record_eval, write_lineage
from steep.artifacts.manifest import ManifestError, read_manifest
from steep.artifacts.metrics import eval_record, parse_record, read_metrics, train_record
from steep.config import SourceSection, source_role


@pytest.mark.parametrize("base", [0, 0.0, math.nan, math.inf, None, "2.0", True])
def test_a_baseline_that_cannot_divide_gives_none(base) -> None:
    assert scores.rel_change(2.0, base) is None
    assert scores.improvement(base, 2.0) is None
    assert fmt.pct(scores.rel_change(2.0, base)) == fmt.MISSING
    assert fmt.change_pct(scores.rel_change(2.0, base)) == "n/a"


def test_relative_change_and_headline() -> None:
    assert scores.rel_change(1.5, 2.0) == pytest.approx(-0.25)
    assert scores.rel_change(-1.0, -2.0) == pytest.approx(0.5)  # divided by |base|
    head = scores.loss_headline(
        {"Domain_docs": 2.0, "wiki": 4.0, "other": 1.0, "zero": 0.0},
        {"Domain_docs": 1.5, "wiki": 4.04, "other": 0.5, "zero": 1.0},
        {"Domain_docs": "domain", "wiki": "general", "zero": "general"},
    )
    assert head.domain_gain == pytest.approx(0.25) and head.domain == ["Domain_docs"]
    assert head.general_regression == pytest.approx(0.01) and head.general == ["wiki"]
    assert scores.headline({}, {}).empty and scores.mean([None, math.nan]) is None


def test_roles_agree_between_the_config_and_a_saved_lineage() -> None:
    """One rule for a source's role: config and steep.json readers used to differ on case."""
    for name, role in [("Domain_docs", None), ("domain", None), ("wiki", None), ("x", "domain")]:
        src = SourceSection(name=name, paths=["a.jsonl"], role=role)
        lin = Lineage(config={"data": {"sources": [{"name": name, "role": role}]}})
        assert lin.roles()[name] == source_role(src) == scores.source_role(name, role)


def test_eval_record_keeps_a_zero_baseline_unknown(tmp_path: Path) -> None:
    rec = eval_record(4, 100, {"a": 1.0, "b": 2.0}, {"a": 0.0, "b": 4.0})
    assert rec["sets"]["a"]["rel_change"] is None
    assert rec["sets"]["b"]["rel_change"] == pytest.approx(-0.5)
    path = tmp_path / "metrics.jsonl"
    bad = {"kind": "eval", "step": "x", "sets": {}}  # wrong type: skipped, not a crash
    path.write_text("\n".join(json.dumps(r) for r in (rec, bad)) + "\n")
    trains, evals = read_metrics(path)
    assert trains == [] and [e["step"] for e in evals] == [4]


def test_train_record_has_the_contract_shape_and_order(tmp_path: Path) -> None:
    """The loop's train record: TrainRecord's fields in the order metrics.jsonl has always
    had them, throughput per device from the ranks, the mix's fields last."""
    rec = train_record(
        7, 7 * 512, 2.5, 1e-4, 0.75, 1000.0, 4, None, 1.5, {"a": 3000, "b": 584},
        phase="main", tokens_by_phase={"main": {"a": 3000, "b": 584}},
    )  # fmt: skip
    assert list(rec) == [
        "kind", "step", "tokens", "loss", "lr", "grad_norm", "tokens_per_s",
        "tokens_per_s_per_device", "mfu", "peak_mem_gib", "tokens_by_source", "phase",
        "tokens_by_phase",
    ]  # fmt: skip
    assert rec["kind"] == "train" and rec["tokens_per_s_per_device"] == 250.0
    assert parse_record(rec) == rec
    path = tmp_path / "metrics.jsonl"
    path.write_text(json.dumps({**rec, "time": 1.0}) + "\n")
    trains, evals = read_metrics(path)
    assert evals == [] and trains[0]["step"] == 7 and trains[0]["phase"] == "main"


def test_lineage_round_trip_keeps_unknown_fields(tmp_path: Path) -> None:
    old = {"kind": "cpt", "base": {"source": "x", "extra": 1}, "future_field": [1, 2], "x": None}
    (tmp_path / "steep.json").write_text(json.dumps(old))
    lin = read_lineage(tmp_path)
    assert lin is not None and lin.base_source == "x" and lin.format_version == 1
    write_lineage(tmp_path, lin)
    assert json.loads((tmp_path / "steep.json").read_text()) == {"format_version": 1, **old}
    assert record_eval(tmp_path, {"headline": {"domain_gain": 0.1}, "samples": ["s"]})
    again = json.loads((tmp_path / "steep.json").read_text())
    assert again["eval"] == {"headline": {"domain_gain": 0.1}} and again["future_field"] == [1, 2]
    assert read_lineage(tmp_path / "nowhere") is None


def test_damaged_contracts_name_file_and_field(tmp_path: Path) -> None:
    (tmp_path / "steep.json").write_text(json.dumps({"metrics": {"step": "late"}}))
    with pytest.raises(LineageError, match=r"steep.json: metrics.step: "):
        read_lineage(tmp_path)
    (tmp_path / "steep.json").write_text("{ cut")
    with pytest.raises(LineageError, match="not valid JSON"):
        read_lineage(tmp_path)
    assert not record_eval(tmp_path, {"headline": {}})  # left alone, not overwritten
    assert (tmp_path / "steep.json").read_text() == "{ cut"
    (tmp_path / "manifest.json").write_text(json.dumps({"documents": "many"}))
    with pytest.raises(ManifestError, match=r"manifest.json: documents: "):
        read_manifest(tmp_path)


def test_formatters() -> None:
    assert fmt.pct(0.01234) == "+1.23%" and fmt.pct(None, missing="-") == "-"
    assert fmt.change_pct(-0.109) == "-10.9%" and fmt.change_pct(0.0) == "0.00%"
    assert fmt.num(1234, ",") == "1,234" and fmt.num(math.nan) == fmt.MISSING
    assert fmt.cell("a|b\n  c") == "a\\|b c"
    assert fmt.text_table([["a", "bb"], ["ccc", "d"]], rule=True).splitlines()[1] == "---  --"


def test_only_steep_errors_become_one_line(monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    """A user error prints one line and exits 2; a bug (a bare ValueError) keeps its
    traceback: the CLI used to swallow every ValueError into one line."""
    import steep.cli.data as data_cli
    from steep.cli import main

    assert main(["data", "show", "no such!"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("steep data: error: dataset name 'no such!'") and "\n" not in err

    def bug(args) -> int:
        raise ValueError("a bug inside steep")

    monkeypatch.setattr(data_cli, "cmd_list", bug)
    with pytest.raises(ValueError, match="a bug inside steep"):
        main(["data", "list"])
