"""Mixes that change during a real (tiny) run: phases, a change on resume, the budget."""

from __future__ import annotations

import json
import shutil

import pytest
import yaml

from steep.artifacts.lineage import read_lineage
from steep.artifacts.metrics import read_events, read_metrics
from steep.config import ConfigError, parse_config
from steep.train.checkpoint import checkpoint_dirs
from steep.train.loop import resume_run, train
from steep.train.mixcontrol import MixtureChangedError

from .conftest import resume_matches, tiny_config, write_jsonl


def _per_step(run) -> list[dict[str, int]]:
    """Tokens each source gave in each step."""
    train_recs, _ = read_metrics(run / "metrics.jsonl")
    out, before = [], {}
    for r in train_recs:
        now = r["tokens_by_source"]
        out.append({k: v - before.get(k, 0) for k, v in now.items()})
        before = now
    return out


def _cut(run, tmp_path, name="cut"):
    """A copy of a finished run as if killed after its second-to-last checkpoint."""
    copy = tmp_path / name
    shutil.copytree(run, copy)
    shutil.rmtree(checkpoint_dirs(copy / "checkpoints")[-1])
    shutil.rmtree(copy / "model")
    return copy


def test_a_phased_run_anneals_on_the_domain_reports_tokens_per_phase_and_resumes_exactly(
    tmp_path, corpora, tiny_model
):
    cfg = tiny_config(tmp_path, corpora, tiny_model, steps=12)
    cfg["data"]["phases"] = [
        {"name": "mix", "until_fraction": 0.75},
        {"name": "anneal", "weights": {"general": 0}},
    ]
    cfg["checkpoint"] = {"every_steps": 5, "keep_last": 2}  # resume inside the anneal
    run = train(parse_config(cfg)).run_dir
    steps = _per_step(run)
    assert all(s["domain"] == s["general"] == 128 for s in steps[:9])  # 4 sequences of 64
    assert all(s == {"domain": 256, "general": 0} for s in steps[9:])
    train_recs, _ = read_metrics(run / "metrics.jsonl")
    assert [r["phase"] for r in train_recs] == ["mix"] * 9 + ["anneal"] * 3
    assert train_recs[-1]["tokens_by_phase"] == {
        "mix": {"domain": 9 * 128, "general": 9 * 128},
        "anneal": {"domain": 3 * 256, "general": 0},
    }
    events = [
        (e["step"], e["phase"]) for e in read_events(run / "metrics.jsonl") if e["event"] == "phase"
    ]
    assert events == [(0, "mix"), (9, "anneal")]  # the steps done before it began
    lin = read_lineage(run / "model")
    assert lin.tokens_by_phase["anneal"] == {"domain": 768, "general": 0}
    report = (run / "report.md").read_text()
    assert "phase anneal" in report and "domain 100.0%, general 0.0%" in report
    resume_matches(run, tmp_path)


def test_a_changed_mix_on_resume_is_refused_unless_asked_then_kept_sources_continue(
    tmp_path, corpora, tiny_model, capsys
):
    from steep.cli import main

    run = train(parse_config(tiny_config(tmp_path, corpora, tiny_model))).run_dir
    cut = _cut(run, tmp_path)  # resumes from step 8
    with pytest.raises(ConfigError, match="add --allow-mixture-change"):
        resume_run(cut, overrides=["data.sources.0.weight=3"])
    with pytest.raises(ConfigError, match=r"only data\.\* keys"):
        resume_run(cut, overrides=["train.steps=20"], allow_mixture_change=True)

    # an edited config.yaml is caught by the checkpoint's own record of the mix
    edited = yaml.safe_load((cut / "config.yaml").read_text())
    edited["data"]["sources"][0]["weight"] = 3
    (cut / "config.yaml").write_text(yaml.safe_dump(edited))
    with pytest.raises(MixtureChangedError, match=r"phase 'all': 'domain' weight 1 -> 3"):
        resume_run(cut)
    assert main(["train", "--resume", str(cut)]) == 2
    assert "--allow-mixture-change" in capsys.readouterr().err

    assert main(["train", "--resume", str(cut), "--allow-mixture-change"]) == 0
    steps = _per_step(cut)
    assert steps[:8] == _per_step(run)[:8]
    assert all(s == {"domain": 192, "general": 64} for s in steps[8:])  # 3:1 from step 8 on
    change = [e for e in read_events(cut / "metrics.jsonl") if e["event"] == "mixture_change"]
    assert [(e["step"], e["changed"]) for e in change] == [
        (8, ["phase 'all': 'domain' weight 1 -> 3"])
    ]
    lin = read_lineage(cut / "model")
    assert lin.mixture_changes[0]["step"] == 8
    card = (cut / "model" / "README.md").read_text()
    assert "domain' weight 1 -> 3" in card


def test_a_source_added_on_resume_starts_at_its_beginning_with_its_own_baseline(
    tmp_path, corpora, tiny_model
):
    from .conftest import WORDS_A, synthetic_docs

    run = train(parse_config(tiny_config(tmp_path, corpora, tiny_model))).run_dir
    cut = _cut(run, tmp_path)
    extra = write_jsonl(tmp_path / "data" / "extra.jsonl", synthetic_docs(WORDS_A, 60, 9))
    cfg = yaml.safe_load((cut / "config.yaml").read_text())
    cfg["data"]["sources"].append(
        {"name": "extra", "paths": [str(extra)], "weight": 2, "heldout_fraction": 0.1}
    )
    new = tmp_path / "more.yaml"
    new.write_text(yaml.safe_dump(cfg))
    resume_run(cut, new_data=new, allow_mixture_change=True)
    steps = _per_step(cut)
    assert all(s == {"domain": 64, "general": 64, "extra": 128} for s in steps[8:])
    state = json.loads((checkpoint_dirs(cut / "checkpoints")[-1] / "state.json").read_text())
    assert state["mixture"]["counts"] == [20, 20, 8]  # domain, general went on; extra from 0
    _, evals = read_metrics(cut / "metrics.jsonl")
    assert "extra" in evals[-1]["sets"] and "extra" in state["baseline"]
    lin = read_lineage(cut / "model")
    assert "source 'extra' added" in lin.mixture_changes[0]["changed"]
    assert (
        yaml.safe_load((cut / "config.yaml").read_text())["data"]["sources"][2]["name"] == "extra"
    )


def _budgeted(tmp_path, corpora, tiny_model, **budget):
    """A run whose 'other' eval set (digits, which the domain text lacks) gets worse as the
    model learns letters: forgetting a tiny model shows within a few steps."""
    digits = write_jsonl(
        tmp_path / "data" / "digits.jsonl",
        [" ".join(str((i * 7919 + j * 104729) % 100000) for j in range(40)) for i in range(30)],
    )
    cfg = tiny_config(tmp_path, corpora, tiny_model, steps=12)
    cfg["data"]["eval_sets"] = {"other": [str(digits)]}
    cfg["data"]["eval_roles"] = {"other": "general"}
    cfg["data"]["sources"][1]["weight"] = 0.25  # domain 80%: general 20%
    cfg["train"]["forgetting_budget"] = {"sets": ["other"], **budget}
    return cfg


def test_the_budget_raises_replay_when_forgetting_exceeds_it_and_a_resume_repeats_it(
    tmp_path, corpora, tiny_model
):
    cfg = _budgeted(tmp_path, corpora, tiny_model, max_regression=0.001, replay_step=0.3)
    run = train(parse_config(cfg)).run_dir
    acts = [e for e in read_events(run / "metrics.jsonl") if e["event"] == "forgetting_budget"]
    assert [(a["step"], a["action"]) for a in acts][:2] == [(4, "replay"), (8, "replay")]
    assert acts[0]["regression"] > 0.001 and "general share 20.0% -> 50.0%" in acts[0]["reason"]
    steps = _per_step(run)
    # 16 sequences of 64 in 4 steps: 20% of them, then 50%, each within one sequence
    assert sum(s["general"] for s in steps[:4]) in (192, 256)
    assert 7 * 64 <= sum(s["general"] for s in steps[4:8]) <= 9 * 64
    lin = read_lineage(run / "model")
    assert lin.forgetting_budget["actions"][0]["step"] == 4
    assert "forgetting budget" in (run / "report.md").read_text()
    resume_matches(run, tmp_path)  # the actions after step 8 are taken again, the same


def test_a_budget_that_stops_ends_with_its_best_checkpoint_kept_past_keep_last(
    tmp_path, corpora, tiny_model
):
    import torch
    import torch.distributed.checkpoint as dcp
    from transformers import AutoModelForCausalLM

    # 'other' regresses ~1% by step 4 and ~2.4% by step 8 (seeded, fp32)
    cfg = _budgeted(tmp_path, corpora, tiny_model, max_regression=0.015, action="stop")
    cfg["checkpoint"] = {"every_steps": 2, "keep_last": 1}  # step 4 would be pruned at 6
    run = train(parse_config(cfg)).run_dir
    train_recs, evals = read_metrics(run / "metrics.jsonl")
    assert train_recs[-1]["step"] == 8  # stopped at the eval over budget, not at 12
    acts = [e for e in read_events(run / "metrics.jsonl") if e["event"] == "forgetting_budget"]
    assert [(a["step"], a["action"]) for a in acts] == [(8, "stop")]
    assert acts[0]["reason"].endswith("best within budget: checkpoint step 4")
    lin = read_lineage(run / "model")
    assert lin.metrics.step == 4 and lin.forgetting_budget["best_step"] == 4
    assert lin.metrics.final == {n: m["loss"] for n, m in evals[1]["sets"].items()}
    saved = AutoModelForCausalLM.from_pretrained(run / "model").state_dict()
    want = {k: torch.empty_like(v) for k, v in saved.items() if k != "lm_head.weight"}
    dcp.load({"model": want}, checkpoint_id=str(run / "checkpoints" / "step_0000004"), no_dist=True)
    assert all(torch.equal(saved[k], v) for k, v in want.items())  # model/ is step 4's
    assert json.loads((run / "status.json").read_text())["state"] == "done"


def test_a_mixture_change_resumed_twice_from_its_checkpoint_is_logged_once(
    tmp_path, corpora, tiny_model
):
    """Before (#29.6): the change made on resume from step 8 is written with step 9's
    record but said step 8; killed before the next checkpoint and resumed from step 8
    again (the config now differs from the checkpoint's mix again), it was kept and
    written a second time."""
    cfg = tiny_config(tmp_path, corpora, tiny_model)
    cfg["checkpoint"] = {"every_steps": 4, "keep_last": 10}
    run = train(parse_config(cfg)).run_dir
    cut = _cut(run, tmp_path)  # resumes from step 8
    resume_run(cut, overrides=["data.sources.0.weight=3"], allow_mixture_change=True)
    again = _cut(cut, tmp_path, "again")  # as if killed before its step-12 checkpoint
    resume_run(again, allow_mixture_change=True)
    lines = [json.loads(x) for x in (again / "metrics.jsonl").read_text().splitlines()]
    changes = [r for r in lines if r["kind"] == "event" and r["event"] == "mixture_change"]
    assert [(c["step"], c["changed"]) for c in changes] == [
        (8, ["phase 'all': 'domain' weight 1 -> 3"])
    ]


@pytest.mark.parametrize("until", [0.75, 0.79])  # the anneal begins with step 10, or within it
def test_a_resume_from_a_checkpoint_on_a_phase_boundary_logs_each_phase_once(
    tmp_path, corpora, tiny_model, until
):
    """Before (#29.6): the phase event that began with step 10 says step 9 (the steps done
    before it) but is written after step 10; a resume from step 9 kept it and wrote it
    again, so the studio and trackers saw two phase starts."""
    cfg = tiny_config(tmp_path, corpora, tiny_model, steps=12)
    cfg["data"]["phases"] = [
        {"name": "mix", "until_fraction": until},
        {"name": "anneal", "weights": {"general": 0}},
    ]
    cfg["checkpoint"] = {"every_steps": 3, "keep_last": 10}
    run = train(parse_config(cfg)).run_dir
    cut = tmp_path / "cut"
    shutil.copytree(run, cut)
    for later in checkpoint_dirs(cut / "checkpoints")[3:]:  # keep steps 3, 6 and 9
        shutil.rmtree(later)
    shutil.rmtree(cut / "model")
    resume_run(cut)

    def phase_events(folder):  # the lines as written: read_events keeps one of each
        lines = (folder / "metrics.jsonl").read_text().splitlines()
        recs = [json.loads(line) for line in lines]
        return [
            {k: v for k, v in r.items() if k != "time"}
            for r in recs
            if r["kind"] == "event" and r["event"] == "phase"
        ]

    assert [(e["step"], e["phase"]) for e in phase_events(run)] == [(0, "mix"), (9, "anneal")]
    assert phase_events(cut) == phase_events(run)
