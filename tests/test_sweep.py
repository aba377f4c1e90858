"""steep sweep: grid planning, bad keys, resume, the pick, and data.domain_share."""

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

from steep.cli import main
from steep.config import ConfigError, effective_weights, eval_set_roles, parse_config
from steep.data.mixture import Mixture
from steep.sweep import (
    Spec,
    SweepError,
    open_sweep,
    parse_grid,
    plan,
    point_ids,
    run_sweep,
    scheduler,  # the point runner: tests stand in for `steep train`
)
from steep.sweep.pareto import Scored, pareto_front, recommend
from tests.conftest import tiny_config


def _config_file(tmp_path: Path, corpora, base: Path, **changes) -> Path:
    raw = tiny_config(tmp_path, corpora, base)
    del raw["run"]["out_dir"]  # the sweep gives every point its own
    raw["train"]["steps"] = 4
    raw["train"]["threads"] = 1  # a tiny model: more threads only wait on each other
    for key, value in changes.items():
        section, field = key.split("__")
        raw[section][field] = value
    path = tmp_path / "base.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def _records(run_dir: Path, kind: str) -> list[dict]:
    lines = (run_dir / "metrics.jsonl").read_text().splitlines()
    return [r for r in map(json.loads, lines) if r["kind"] == kind]


# --------------------------------------------------------------------------- end to end


def test_sweep_grid_pick_and_resume(tmp_path, corpora, tiny_model, capsys):
    cfg = _config_file(tmp_path, corpora, tiny_model)
    grid = parse_grid(["train.lr_fraction=0.1,1.0", "data.domain_share=0.25,0.75"])
    spec = Spec(str(cfg), grid, budget_tokens=1024)  # 4 steps of 256 tokens
    out = tmp_path / "sweep"
    result = run_sweep(spec, out)
    assert not result.failed and result.finished == 4

    data = json.loads((out / "sweep.json").read_text())
    ids = [p["id"] for p in data["points"]]
    assert ids == [
        "lr_fraction=0.1,domain_share=0.25",
        "lr_fraction=0.1,domain_share=0.75",
        "lr_fraction=1.0,domain_share=0.25",
        "lr_fraction=1.0,domain_share=0.75",
    ]
    for p in data["points"]:
        run = out / p["run_dir"]
        assert p["status"] == "finished" and p["steps"] == 4
        assert (run / "model" / "steep.json").exists() and (out / p["log"]).exists()
        share = float(p["values"]["data.domain_share"])
        by_source = _records(run, "train")[-1]["tokens_by_source"]
        assert by_source == {"domain": share * 4 * 256, "general": (1 - share) * 4 * 256}
        final = _records(run, "eval")[-1]["sets"]
        assert p["domain_gain"] == pytest.approx(-final["domain"]["rel_change"])
        assert p["general_regression"] == pytest.approx(final["general"]["rel_change"])

    # the pick agrees with the numbers: largest gain among points within 1% regression
    within = [p for p in data["points"] if p["general_regression"] <= 0.01]
    rec = data["recommendation"]
    if within:
        assert rec["id"] == max(within, key=lambda p: p["domain_gain"])["id"]
    else:
        assert rec["id"] is None and "no point keeps" in rec["reason"]
    assert set(rec["pareto_front"]) <= set(ids) and rec["pareto_front"]
    md = (out / "results.md").read_text()
    assert "| # | lr_fraction | domain_share |" in md and "pareto.png" in md
    # its general set is held-out replay: the table's regression is said to mislead
    assert "- **warning**: no general eval set is independent of the training data" in md
    assert (out / "pareto.png").read_bytes()[:4] == b"\x89PNG"
    printed = capsys.readouterr().out
    assert "[4/4] lr_fraction=1.0,domain_share=0.75: finished" in printed
    assert "warning: no general eval set is independent" in printed

    # resume: one point lost its model (resumes from its checkpoint), one crashed before
    # its first checkpoint (starts again); the two finished ones are not touched
    resumed, restarted = out / "points" / ids[1], out / "points" / ids[2]
    shutil.rmtree(resumed / "model")
    shutil.rmtree(restarted / "model")
    shutil.rmtree(restarted / "checkpoints")
    before = {i: (out / "points" / i / "metrics.jsonl").stat().st_mtime_ns for i in ids}
    result = run_sweep(spec, out)
    assert not result.failed and result.finished == 4
    for i in (ids[0], ids[3]):
        assert (out / "points" / i / "metrics.jsonl").stat().st_mtime_ns == before[i]
    assert "--resume" in (out / "logs" / f"{ids[1]}.log").read_text()
    assert (resumed / "model" / "steep.json").exists()
    assert [e["step"] for e in _records(restarted, "eval")] == [0, 4]  # one clean run
    printed = capsys.readouterr().out
    assert printed.count("already finished, skipped") == 2


# --------------------------------------------------------------------------- bad input


def _no_runs(*args, **kwargs):
    raise AssertionError("a training run started")


def test_unknown_grid_key_fails_before_any_run(tmp_path, corpora, tiny_model, monkeypatch):
    cfg = _config_file(tmp_path, corpora, tiny_model)
    monkeypatch.setattr(subprocess, "run", _no_runs)
    out = tmp_path / "sweep"
    spec = Spec(str(cfg), parse_grid(["train.lr_fraction=0.1", "train.lr_fractoin=0.1,0.3"]))
    with pytest.raises(ConfigError) as e:
        run_sweep(spec, out)
    msg = str(e.value)
    assert "--grid train.lr_fractoin=0.1" in msg and "Did you mean 'lr_fraction'" in msg
    assert "warmup_steps" in msg  # the valid keys at that level are listed
    assert not out.exists()


def test_cli_bad_grid_exits_2_naming_valid_keys(tmp_path, corpora, tiny_model, capsys):
    cfg = _config_file(tmp_path, corpora, tiny_model)
    assert main(["sweep", str(cfg), "--grid", "data.domain_shar=0.25,0.5"]) == 2
    err = capsys.readouterr().err
    assert "steep sweep: error" in err and "data.domain_shar" in err
    assert "Valid fields here:" in err and "domain_share" in err
    assert main(["sweep", str(cfg), "--grid", "train.lr_fraction"]) == 2
    assert "expected KEY=V1,V2" in capsys.readouterr().err


def test_bad_value_budget_and_unscorable(tmp_path, corpora, tiny_model):
    cfg = _config_file(tmp_path, corpora, tiny_model)
    with pytest.raises(ConfigError, match=r"(?s)--grid train.lr_fraction=20.*less than or equal"):
        plan(Spec(str(cfg), parse_grid(["train.lr_fraction=0.1,20"])))
    with pytest.raises(ConfigError, match="less than one step"):
        plan(Spec(str(cfg), parse_grid(["train.lr_fraction=0.1"]), budget_tokens=100))
    with pytest.raises(ConfigError, match=r"warmup \(2 steps\) must be shorter.*warmup_steps"):
        plan(Spec(str(cfg), parse_grid(["train.lr_fraction=0.1"]), budget_tokens=512))
    with pytest.raises(ConfigError, match="do not also put it in the grid"):
        plan(Spec(str(cfg), parse_grid(["train.steps=2,4"]), budget_tokens=1024))
    no_general = _config_file(tmp_path, corpora, tiny_model)
    raw = yaml.safe_load(no_general.read_text())
    raw["data"]["sources"][1]["heldout_fraction"] = 0
    no_general.write_text(yaml.safe_dump(raw))
    with pytest.raises(ConfigError, match="no general eval set"):
        plan(Spec(str(no_general), parse_grid(["train.lr_fraction=0.1"])))


def test_grid_parsing_and_ids():
    with pytest.raises(ConfigError, match="given twice"):
        parse_grid(["train.lr_fraction=0.1", "train.lr_fraction=0.3"])
    with pytest.raises(ConfigError, match="expected KEY=V1,V2"):
        parse_grid(["train.lr_fraction=0.1,"])
    with pytest.raises(ConfigError, match="sets each point's run directory"):
        parse_grid(["run.out_dir=a,b"])
    axes = parse_grid(["data.sources.0.weight=1,2", "data.sources.1.weight=3"])
    assert point_ids(axes, [("1", "3"), ("2", "3")]) == [
        "data.sources.0.weight=1,data.sources.1.weight=3",
        "data.sources.0.weight=2,data.sources.1.weight=3",
    ]
    assert point_ids(parse_grid(["model.base=a/b"]), [("a/b",)]) == ["base=a_b"]


def test_out_dir_of_another_sweep_is_refused(tmp_path, corpora, tiny_model):
    cfg = _config_file(tmp_path, corpora, tiny_model)
    first = Spec(str(cfg), parse_grid(["train.lr_fraction=0.1,0.3"]))
    open_sweep(first, plan(first), tmp_path / "sw", 0.01)
    other = Spec(str(cfg), parse_grid(["data.domain_share=0.5"]))
    with pytest.raises(SweepError, match="holds another sweep"):
        open_sweep(other, plan(other), tmp_path / "sw", 0.01)


# --------------------------------------------------------------------------- runner logic

# Stands in for `steep train`: writes the files a finished run leaves (or fails), fast.
_FAKE_TRAIN = """
import json, os, sys
from pathlib import Path
run, domain, general = Path(sys.argv[1]), float(sys.argv[2]), float(sys.argv[3])
print(f"on-gpu:{os.environ.get('CUDA_VISIBLE_DEVICES')}")
if domain != domain:
    print("boom: out of memory"); sys.exit(3)
run.mkdir(parents=True, exist_ok=True)
recs = [{"kind": "eval", "step": 0, "sets": {"domain": {"loss": 2.0}, "general": {"loss": 2.0}}},
        {"kind": "eval", "step": 4, "sets": {"domain": {"loss": 2 * (1 + domain)},
                                             "general": {"loss": 2 * (1 + general)}}}]
(run / "metrics.jsonl").write_text("".join(json.dumps(r) + "\\n" for r in recs))
(run / "model").mkdir()
(run / "model" / "steep.json").write_text("{}")
"""


def _fake_command(changes: dict[str, tuple[float, float]]):
    def command(config, point, run_dir, resume):
        domain, general = changes[point["id"]]
        return [sys.executable, "-c", _FAKE_TRAIN, str(run_dir), str(domain), str(general)]

    return command


def test_failed_point_is_recorded_and_others_go_on(tmp_path, corpora, tiny_model, monkeypatch):
    cfg = _config_file(tmp_path, corpora, tiny_model)
    changes = {
        "lr_fraction=0.1": (-0.10, 0.004),
        "lr_fraction=0.3": (float("nan"), 0.0),  # crashes
        "lr_fraction=1.0": (-0.30, 0.05),
    }
    monkeypatch.setattr(scheduler, "_command", _fake_command(changes))
    spec = Spec(str(cfg), parse_grid(["train.lr_fraction=0.1,0.3,1.0"]))
    result = run_sweep(spec, tmp_path / "sw")
    assert result.failed == ["lr_fraction=0.3"]
    assert result.recommendation.id == "lr_fraction=0.1"
    assert "1 exceeded the budget: lr_fraction=1.0 (+5.0%)" in result.recommendation.reason
    data = json.loads((tmp_path / "sw" / "sweep.json").read_text())
    failed = data["points"][1]
    assert failed["status"] == "failed" and failed["returncode"] == 3
    assert "boom" in (tmp_path / "sw" / failed["log"]).read_text()
    assert "see logs/lr_fraction=0.3.log" in (tmp_path / "sw" / "results.md").read_text()
    assert main(["sweep", "--resume", str(tmp_path / "sw")]) == 1  # still failing: exit 1


def test_one_point_per_gpu(tmp_path, corpora, tiny_model, monkeypatch):
    cfg = _config_file(tmp_path, corpora, tiny_model)
    ids = ["lr_fraction=0.1", "lr_fraction=0.2", "lr_fraction=0.3", "lr_fraction=0.4"]
    monkeypatch.setattr(scheduler, "_command", _fake_command(dict.fromkeys(ids, (-0.1, 0.0))))
    monkeypatch.setattr(scheduler, "_devices", lambda cfg: ["0", "1"])
    spec = Spec(str(cfg), parse_grid(["train.lr_fraction=0.1,0.2,0.3,0.4"]))
    result = run_sweep(spec, tmp_path / "sw")
    assert not result.failed
    logs = [(tmp_path / "sw" / "logs" / f"{i}.log").read_text() for i in ids]
    seen = {re.search(r"on-gpu:(\d)", log).group(1) for log in logs}
    assert seen == {"0", "1"}


# --------------------------------------------------------------------------- the pick


def test_recommend_and_pareto_front():
    pts = [
        Scored("a", 0.05, 0.001),
        Scored("b", 0.12, 0.006),
        Scored("c", 0.10, 0.008),  # dominated by b
        Scored("d", 0.25, 0.030),
        Scored("e", 0.20, 0.040),  # dominated by d
    ]
    assert pareto_front(pts) == ["a", "b", "d"]
    rec = recommend(pts, 0.01)
    assert rec.id == "b" and rec.within == ["b", "c", "a"] and rec.over == ["d", "e"]
    # the same signs as the table's columns (before: "domain -12.0%" beside "+12.0%")
    assert rec.reason.startswith("b: domain gain +12.0%, general regression +0.60%")
    assert "2 exceeded the budget: d (+3.0%), e (+4.0%)" in rec.reason
    assert recommend(pts, 0.05).id == "d"

    none = recommend(pts[3:], 0.01)
    assert none.id is None and "no point keeps general regression <= 1.0%" in none.reason
    assert "Least regression: d" in none.reason
    assert recommend([], 0.01).id is None


def test_recommend_ties_prefer_less_regression():
    pts = [Scored("x", 0.1, 0.005), Scored("y", 0.1, 0.002), Scored("z", 0.1, 0.002)]
    assert recommend(pts, 0.01).id == "y"


# --------------------------------------------------------------------------- domain_share


def _data(**data):
    base = {
        "model": {"base": "/m", "base_max_lr": 1e-3},
        "data": {
            "sources": [
                {"name": "domain_a", "paths": ["a"], "weight": 1},
                {"name": "shop", "paths": ["s"], "weight": 3, "role": "domain"},
                {"name": "web", "paths": ["w"], "weight": 5},
            ],
            **data,
        },
        "train": {"steps": 1, "global_batch_tokens": 512},
    }
    return parse_config(base)


def test_domain_share_weights_and_realised_shares():
    cfg = _data(domain_share=0.4)
    assert effective_weights(cfg) == pytest.approx([0.1, 0.3, 0.6])
    assert effective_weights(_data()) == [1, 3, 5]  # unset: the weights alone
    sizes = [list(range(1000))] * 3  # stand-ins for token windows: only their count matters
    mix = Mixture(["domain_a", "shop", "web"], sizes, effective_weights(cfg), seed=0)
    mix.draw(200)
    assert mix.counts.tolist() == [20, 60, 120]  # exact at this prefix
    assert np.allclose(mix.shares, [0.1, 0.3, 0.6])


def test_domain_share_needs_both_roles_and_eval_roles_fit():
    with pytest.raises(ConfigError, match=r"data.domain_share=0.5 needs at least one general"):
        parse_config(
            {
                "model": {"base": "/m", "base_max_lr": 1e-3},
                "data": {
                    "sources": [{"name": "domain", "paths": ["a"]}],
                    "domain_share": 0.5,
                },
                "train": {"steps": 1, "global_batch_tokens": 512},
            }
        )
    with pytest.raises(ConfigError, match="data.domain_share"):
        _data(domain_share=1.0)
    with pytest.raises(ConfigError, match=r"eval_roles names \['legal'\]"):
        _data(eval_roles={"legal": "domain"})
    cfg = _data(eval_sets={"legal": ["l"], "misc": ["m"]}, eval_roles={"legal": "domain"})
    assert eval_set_roles(cfg) == {
        "domain_a": "domain",
        "shop": "domain",
        "web": "general",
        "legal": "domain",
        "misc": None,
    }
