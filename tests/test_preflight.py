"""One preflight (validate, sweep, studio, launch) and one `steep train` command line."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from steep.cli import main
from steep.config import ConfigError, load_config, parse_config
from steep.launch.command import train_command
from steep.launch.torchrun import rank_layout, torchrun_command
from steep.model.base_lr import UnknownBaseLR, resolve_max_lr
from steep.studio import runner
from steep.studio.jobs import Job
from steep.sweep import Spec, parse_grid, plan, scheduler
from steep.train.preflight import PreflightError, preflight

SMOKE = Path(__file__).resolve().parents[1] / "examples" / "smoke.yaml"
# smoke.yaml: 40 steps, warmup 4, global batch 1024 = seq 128 x micro 4 x 2, base_max_lr 1e-2


def _error(capsys: pytest.CaptureFixture[str], command: str) -> str:
    captured = capsys.readouterr()
    assert captured.out == ""
    prefix = f"steep {command}: error: "
    assert captured.err.startswith(prefix)
    return captured.err.removeprefix(prefix).rstrip("\n")


# --------------------------------------------------------------------------- validate


def test_validate_checks_data_and_names_the_source(tmp_path, capsys):
    missing = tmp_path / "nowhere" / "domain.jsonl"
    argv = ["validate", str(SMOKE), "--set", f"data.sources.0.paths=[{missing}]"]
    assert main(argv) == 2
    message = _error(capsys, "validate")
    assert message == (
        f"data.sources.0.paths (source 'domain'): data path does not exist: {missing}"
    )


def test_validate_prints_the_resolved_facts(capsys):
    assert main(["validate", str(SMOKE)]) == 0
    ok, warning = capsys.readouterr().out.splitlines()[-2:]
    assert ok == (
        "# ok: max LR 0.003 = 0.3 x model.base_max_lr 0.01; 40 steps x 1,024 tokens = "
        "40,960 tokens; warmup 4 steps; 2 micro-batches per step on each of 1 rank"
    )
    assert warning.startswith("# warning: no general eval set is independent")


def test_forgetting_is_warned_about_until_a_general_set_is_independent(tmp_path, capsys):
    """Before (#17 finding 7): general regression was measured on held-out replay with no
    word, and a sweep's 1% regression budget could never bite."""
    config = load_config(SMOKE)
    general = config.data.sources[1].paths[0]
    replay_only = preflight(config).warnings
    assert replay_only == [
        "no general eval set is independent of the training data: general regression is "
        "measured on general: text from the replay the run trains on, which understates "
        "forgetting. Add text the run never trains on: data.eval_sets: {NAME: [FILES]} or "
        "{NAME: {dataset: NAME@V}} (the New run form's eval sets) with "
        "data.eval_roles: {NAME: general}"
    ]
    # an eval set of the replay's own file is not independent either
    same = load_config(
        SMOKE, [f"data.eval_sets={{again: [{general}]}}", "data.eval_roles={again: general}"]
    )
    assert preflight(same).warnings == [replay_only[0].replace("on general:", "on general, again:")]
    news = tmp_path / "news.jsonl"
    news.write_text('{"text": "Bushfires near Sydney forced hundreds from their homes."}\n')
    fixed = load_config(
        SMOKE, [f"data.eval_sets={{news: [{news}]}}", "data.eval_roles={news: general}"]
    )
    assert preflight(fixed).warnings == []
    # a set without the general role is reported, not scored: it does not count
    unscored = load_config(SMOKE, [f"data.eval_sets={{news: [{news}]}}"])
    assert preflight(unscored).warnings == replay_only


def test_every_problem_is_listed_one_line_each(tmp_path):
    config = load_config(
        SMOKE,
        [
            f"data.sources.1.paths=[{tmp_path / 'gone.jsonl'}]",
            f"data.eval_sets={{extra: [{tmp_path / 'empty'}]}}",
            "train.steps=4",
        ],
    )
    (tmp_path / "empty").mkdir()
    with pytest.raises(PreflightError) as err:
        preflight(config, world_size=3, layout=rank_layout(1, 3), home=tmp_path)
    problems = err.value.problems
    assert str(err.value).splitlines() == problems and len(problems) == 4
    assert problems[0].startswith("train.warmup_steps: warmup (4 steps) must be shorter")
    assert problems[1].startswith("train.global_batch_tokens=1024 does not split across 3 ranks")
    assert problems[2].startswith("data.sources.1.paths (source 'general'): data path does not")
    assert problems[3].startswith(f"data.eval_sets.extra: folder {tmp_path / 'empty'} holds no")
    assert isinstance(err.value, ConfigError)


def test_dataset_refs_resolve_in_the_catalog_of_home(tmp_path):
    raw = {
        "model": {"base": "/m", "base_max_lr": 1e-3},
        "data": {"sources": [{"name": "web", "dataset": "web@2"}]},
        "train": {"steps": 10, "global_batch_tokens": 1024},
    }
    with pytest.raises(PreflightError, match=r"^data.sources.0.dataset \(source 'web'\): no data"):
        preflight(parse_config(raw), home=tmp_path)
    version = tmp_path / "datasets" / "web" / "v2"
    version.mkdir(parents=True)
    (version / "manifest.json").write_text(json.dumps({"name": "web", "version": 2}))
    facts = preflight(parse_config(raw), home=tmp_path)
    assert facts.datasets == {"web": "web@2"} and facts.max_lr == pytest.approx(1e-4)
    assert (facts.total_tokens, facts.grad_accum, facts.warmup_steps) == (10_240, 2, 1)


# --------------------------------------------------------------------------- one message


def test_launch_and_validate_report_a_bad_split_with_the_same_text(capsys):
    assert main(["launch", str(SMOKE), "--gpus-per-node", "3"]) == 2
    from_launch = _error(capsys, "launch")
    assert main(["validate", str(SMOKE), "--gpus-per-node", "3"]) == 2
    from_validate = _error(capsys, "validate")
    with pytest.raises(PreflightError) as err:
        preflight(load_config(SMOKE), world_size=3, layout=rank_layout(1, 3))
    assert from_launch == from_validate == str(err.value)
    assert "1536" in from_launch and "(1 node(s) x 3 GPU(s))" in from_launch


def test_sweep_and_validate_reject_a_bad_warmup_with_the_same_message(capsys):
    assert main(["validate", str(SMOKE), "--set", "train.steps=4"]) == 2
    line = _error(capsys, "validate")
    assert line.startswith("train.warmup_steps: warmup (4 steps) must be shorter than the run")
    spec = Spec(str(SMOKE), parse_grid(["train.lr_fraction=0.1,0.2"]), ["train.steps=4"])
    with pytest.raises(ConfigError) as err:
        plan(spec)
    assert str(err.value) == f"point lr_fraction=0.1: {line}"


def test_unknown_base_lr_is_one_message_everywhere(tmp_path, capsys):
    argv = ["--set", "model.random_init=null", "--set", "model.base_max_lr=null"]
    argv += ["--set", "model.base=my-own-model"]
    assert main(["validate", str(SMOKE), *argv]) == 2
    line = _error(capsys, "validate")
    assert line.startswith("model.base: no published peak LR known for 'my-own-model'")
    assert main(["launch", str(SMOKE), "--gpus-per-node", "2", *argv]) == 2
    assert _error(capsys, "launch") == line


# --------------------------------------------------------------------------- max LR


def test_resolve_max_lr_lives_with_the_table(tmp_path):
    import steep.train.loop

    assert steep.train.loop.resolve_max_lr is resolve_max_lr  # the loop calls this one
    base = {
        "data": {"sources": [{"name": "d", "paths": ["x"]}]},
        "train": {"steps": 5, "global_batch_tokens": 512},
    }
    given = parse_config({**base, "model": {"base": "/m", "base_max_lr": 2e-4}})
    assert resolve_max_lr(given) == (pytest.approx(2e-5), "model.base_max_lr 0.0002")
    table = parse_config({**base, "model": {"base": "HuggingFaceTB/SmolLM2-135M"}})
    assert resolve_max_lr(table) == (
        pytest.approx(3e-4),
        "smollm2-135m peak 0.003 (SmolLM2 paper)",
    )
    derived = tmp_path / "extended"
    derived.mkdir()
    lineage = {"base_peak_lr": {"value": 1e-3, "source": "model.base_max_lr"}}
    (derived / "steep.json").write_text(json.dumps(lineage))
    carried = parse_config({**base, "model": {"base": str(derived)}})
    max_lr, source = resolve_max_lr(carried)
    assert max_lr == pytest.approx(1e-4) and source.startswith("base peak 0.001 from ")
    with pytest.raises(UnknownBaseLR):
        resolve_max_lr(parse_config({**base, "model": {"base": "my-own-model"}}))


def test_preflight_does_not_make_config_import_torch():
    code = (
        "import sys, steep.config; assert 'torch' not in sys.modules, 'config loads torch'; "
        "import steep.train.preflight"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


# --------------------------------------------------------------------------- one command line


def test_train_command_argv():
    assert train_command("c.yaml", ["a=1", "b=x y"], run_dir="/r", python="py") == [
        "py", "-m", "steep", "train", "c.yaml", "--set", "a=1", "--set", "b=x y", "--out", "/r",
    ]  # fmt: skip
    assert train_command("c.yaml") == [sys.executable, "-m", "steep", "train", "c.yaml"]
    assert train_command(None, resume="/r") == [sys.executable, "-m", "steep", "train"] + [
        "--resume",
        "/r",
    ]
    with pytest.raises(ValueError):
        train_command("c.yaml", ["a=1"], resume="/r")


def _job(tmp_path: Path, nproc: int) -> Job:
    return Job(
        1, "j", "queued", "", tmp_path / "run", tmp_path / "job", nproc, None, None, None,
        None, None, None, None, 0.0, None, None,
    )  # fmt: skip


def test_sweep_and_studio_runners_use_the_one_builder(tmp_path):
    config = str(SMOKE)
    run_dir = tmp_path / "points" / "p"
    point = {"overrides": ["train.lr_fraction=0.1", "train.steps=8"]}
    fresh = scheduler._command(config, point, run_dir, resume=False)
    sets = [*point["overrides"], f"run.out_dir='{run_dir}'"]
    assert fresh == train_command(config, sets, run_dir=run_dir)
    assert scheduler._command(config, point, run_dir, resume=True) == train_command(
        None, resume=run_dir
    )

    one = _job(tmp_path, 1)
    assert runner.train_command(one) == train_command(one.config_path)
    four = _job(tmp_path, 4)
    many = runner.train_command(four)
    assert many == torchrun_command(str(four.config_path), [], gpus_per_node=4, torchrun=many[0])
    assert many[many.index("-m") :] == train_command(four.config_path)[1:]
    assert (
        torchrun_command(config, ["a=1"], gpus_per_node=2)[-6:]
        == train_command(config, ["a=1"])[1:]
    )


def test_a_run_the_plan_says_cannot_fit_is_refused_before_the_weights_load(
    tmp_path, corpora, tiny_model, monkeypatch
):
    from steep.train import build, loop
    from tests.conftest import tiny_config

    raw = tiny_config(tmp_path, corpora, tiny_model, device="cpu")
    raw["model"] = {
        "random_init": {"hidden_size": 8192, "num_hidden_layers": 80, "num_attention_heads": 64},
        "tokenizer": str(tiny_model),
        "base_max_lr": 1e-4,
    }
    loaded = []
    monkeypatch.setattr(build, "load_base", lambda *a, **k: loaded.append(1) or 1 / 0)
    with pytest.raises(ConfigError, match="the plan says this run needs .* GiB.*--force"):
        loop.train(parse_config(raw))
    assert not loaded and not (tmp_path / "run").exists()
    with pytest.raises(ZeroDivisionError):  # --force goes on to load the weights
        loop.train(parse_config(raw), force=True)
    assert loaded
