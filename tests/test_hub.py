"""Model Hub: the registry over a real workspace made once per module (two tiny runs, one
chained on the other, and an eval), plus hand-made broken folders for the edge cases."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from transformers import AutoModelForCausalLM

from steep.cli import main
from steep.config import parse_config
from steep.data.executor import LocalExecutor
from steep.datahub.ingest import add_dataset
from steep.hub import CARD_MARK, Hub, HubError, training_change
from steep.train.loop import train

from .conftest import WORDS_A, WORDS_B, make_tiny_model, synthetic_docs, write_jsonl


def _config(home: Path, name: str, base: Path, sources: list[dict], steps: int) -> dict:
    return {
        "run": {"name": name, "out_dir": str(home / "runs" / name), "seed": 0},
        "model": {"base": str(base), "base_max_lr": 1e-2},
        "data": {"seq_len": 64, "sources": sources},
        "train": {
            "steps": steps,
            "global_batch_tokens": 256,
            "micro_batch_size": 2,
            "lr_fraction": 0.3,
            "warmup_steps": 1,
            "precision": "fp32",
        },
        "eval": {"every_steps": 2, "max_windows": 2},
        "checkpoint": {"every_steps": 100, "keep_last": 1},
    }


@pytest.fixture(scope="module")
def ws(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A workspace: dataset dom@1, run 'a' (tiny base -> model a, evaluated), run 'b' (a -> b)."""
    root = tmp_path_factory.mktemp("hub")
    home = root / "steep-home"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("STEEP_HOME", str(home))
        dom = write_jsonl(root / "domain.jsonl", synthetic_docs(WORDS_A, 80, 1))
        gen = write_jsonl(root / "general.jsonl", synthetic_docs(WORDS_B, 80, 2))
        add_dataset("dom", [str(dom)], langid=False, executor=LocalExecutor(1))
        base = make_tiny_model(root / "tiny-base")
        sources = [
            {"name": "domain", "dataset": "dom", "weight": 1, "heldout_fraction": 0.1},
            {"name": "general", "paths": [str(gen)], "weight": 2, "heldout_fraction": 0.1},
        ]
        a = train(parse_config(_config(home, "a", base, sources, steps=4)))
        b = train(parse_config(_config(home, "b", a.model_dir, sources, steps=2)))
        held_dom = write_jsonl(root / "held-dom.jsonl", synthetic_docs(WORDS_A, 8, 3))
        held_gen = write_jsonl(root / "held-gen.jsonl", synthetic_docs(WORDS_B, 8, 4))
        argv = ["eval", str(a.model_dir), "--sets", f"code={held_dom}", f"wiki={held_gen}"]
        argv += ["--domain", "code", "--general", "wiki", "--seq-len", "64", "--device", "cpu"]
        assert main(argv) == 0
    return {"home": home, "a": a.model_dir, "b": b.model_dir, "base": base, "general": gen}


@pytest.fixture
def hub(ws: dict[str, Path], monkeypatch: pytest.MonkeyPatch) -> Hub:
    monkeypatch.setenv("STEEP_HOME", str(ws["home"]))
    return Hub()


def _dump(db: Path) -> dict[str, list[tuple]]:
    with sqlite3.connect(db) as con:
        tables = [r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type='table'")]
        return {t: sorted(map(tuple, con.execute(f"SELECT * FROM {t}"))) for t in tables}


def test_training_registers_run_model_and_dataset(hub: Hub, ws: dict[str, Path]) -> None:
    runs = {r["name"]: r for r in hub.runs()}
    assert set(runs) == {"a", "b"}
    a = runs["a"]
    assert a["status"] == "done" and a["path"] == str((ws["home"] / "runs" / "a").resolve())
    assert a["datasets"] == ["dom@1"]  # a bare dataset name resolves to its version
    assert [(s["source"], s["weight"]) for s in a["sources"]] == [("domain", 1), ("general", 2)]
    assert a["lr_fraction"] == 0.3 and a["steps"] == 4 and a["model"] == "a"
    assert a["metrics"]["step"] == 4 and a["metrics"]["eval"]["step"] == 4
    assert set(a["metrics"]["eval"]["sets"]) == {"domain", "general"}
    assert hub.run("a")["config"]["train"]["steps"] == 4

    models = {m["name"]: m for m in hub.models()}
    assert set(models) == {"a", "b"}
    assert models["a"]["run"] == "a" and models["a"]["kind"] == "cpt"
    assert models["a"]["final"]["domain"] < models["a"]["metrics"]["baseline"]["domain"]
    # b has no eval report: its change comes from the run's own step-0-vs-end eval losses
    assert models["b"]["eval"] is None
    change = training_change(models["b"])
    base, final = models["b"]["metrics"]["baseline"], models["b"]["final"]
    assert change["domain_gain"] == pytest.approx(
        (base["domain"] - final["domain"]) / base["domain"]
    )
    gen = (final["general"] - base["general"]) / base["general"]
    assert change["general_regression"] == pytest.approx(gen)

    (ds,) = hub.datasets()
    assert ds["ref"] == "dom@1" and ds["documents"] == 80 and ds["used_by"] == ["a", "b"]
    assert isinstance(ds["funnel"], list)
    assert hub.dataset("dom")["ref"] == hub.dataset("dom@1")["ref"] == "dom@1"
    with pytest.raises(HubError, match="no run named 'zzz'"):
        hub.run("zzz")


def test_lineage_edges(hub: Hub, ws: dict[str, Path]) -> None:
    b = hub.run("b")
    assert b["base_path"] == str(ws["a"].resolve()) and b["base_model"] == "a"
    assert hub.run("a")["base_model"] is None  # its base lies outside the registry
    assert hub.dependents("a") == ["b"] and hub.dependents("b") == []
    a = hub.model("a")
    assert a["dependents"] == ["b"]
    assert a["lineage"]["run_dir"] == str(ws["home"] / "runs" / "a")
    assert a["eval_report"]["headline"]["domain"] == ["code"]
    assert a["eval"]["report"] == str(ws["a"].resolve() / "eval" / "eval.json")


def test_model_card_has_lineage_and_eval_numbers(hub: Hub, ws: dict[str, Path]) -> None:
    card = (ws["a"] / "README.md").read_text()
    head = json.loads((ws["a"] / "steep.json").read_text())["eval"]["headline"]
    assert CARD_MARK in card and card.startswith("---\nlibrary_name: transformers")
    assert f"domain sets **{-100 * head['domain_gain']:+.2f}%**" in card  # one sign: change
    assert f"general sets **{100 * head['general_regression']:+.2f}%**" in card
    code = json.loads((ws["a"] / "eval" / "eval.json").read_text())["sets"]["code"]
    assert f"{code['adapted']['bpb']:.4f}" in card and f"{code['base']['bpb']:.4f}" in card
    assert "dom@1" in card and "| 0.3 |" in card and "| 1,024 |" in card  # 4 x 256 tokens
    from steep.model.io import file_sha256

    assert file_sha256(ws["general"])[:16] in card
    seen = json.loads((ws["a"] / "steep.json").read_text())["tokens_by_source"]
    assert f"| {seen['domain']:,} |" in card  # tokens trained on, per source
    manifest = ws["home"] / "datasets" / "dom" / "v1" / "manifest.json"
    assert f"manifest {file_sha256(manifest)[:16]}" in card
    assert "## Evaluation" not in (ws["b"] / "README.md").read_text()  # b was not evaluated


def test_export_round_trip(hub: Hub, ws: dict[str, Path], tmp_path: Path) -> None:
    dest = tmp_path / "out" / "exported"
    assert main(["models", "export", "a", str(dest)]) == 0
    assert {"config.json", "steep.json", "README.md", "model.safetensors"} <= {
        p.name for p in dest.iterdir()
    }
    assert not [p for p in dest.parent.iterdir() if p.name.startswith(".")]
    ids = torch.randint(0, 256, (1, 16))
    with torch.no_grad():
        got = AutoModelForCausalLM.from_pretrained(dest).eval()(ids).logits
        want = AutoModelForCausalLM.from_pretrained(ws["a"]).eval()(ids).logits
    assert torch.equal(got, want)
    assert main(["models", "export", "a", str(dest)]) == 2  # refuses to overwrite


def test_sync_is_idempotent_and_rebuilds(hub: Hub, ws: dict[str, Path]) -> None:
    hub.sync()
    before = _dump(hub.path)
    hub.sync()
    hub.sync()
    assert _dump(hub.path) == before
    names = ([r["name"] for r in hub.runs()], [m["name"] for m in hub.models()])
    rebuilt = Hub(ws["home"] / "copy")  # an empty registry over the same folders
    for sub in ("runs", "datasets"):
        (rebuilt.home / sub).symlink_to(ws["home"] / sub)
    assert sorted(r["name"] for r in rebuilt.runs()) == sorted(names[0])
    assert sorted(m["name"] for m in rebuilt.models()) == sorted(names[1])
    assert all(r["status"] == "done" for r in rebuilt.runs())
    assert rebuilt.dependents("a") == ["b"]


def test_concurrent_syncs_agree(ws: dict[str, Path], tmp_path: Path) -> None:
    """Several processes (here threads, each with its own connections) syncing one registry."""
    from concurrent.futures import ThreadPoolExecutor

    home = tmp_path / "shared"
    home.mkdir()
    for sub in ("runs", "datasets"):
        (home / sub).symlink_to(ws["home"] / sub)
    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(lambda _: sorted(m["name"] for m in Hub(home).models()), range(8)))
    assert all(r == ["a", "b"] for r in results)
    assert len(Hub(home).runs()) == 2


def test_list_and_show_cli(hub: Hub, capsys: pytest.CaptureFixture) -> None:
    assert main(["models", "list"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("NAME") and "\na " in out and "\nb " in out
    assert "training run's" in out  # b's change is labelled as the run's own eval loss
    assert main(["models", "show", "a"]) == 0
    out = capsys.readouterr().out
    assert "used by  b" in out and "dom@1" in out and "domain gain" in out
    assert main(["models", "show", "a", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["name"] == "a"
    assert main(["models", "show", "nope"]) == 2
    assert "no model named 'nope'" in capsys.readouterr().err


# --- hand-made workspaces ----------------------------------------------------------------


def _fake_run(home: Path, name: str, base: Path | str) -> Path:
    run = home / "runs" / name
    run.mkdir(parents=True)
    (run / "config.yaml").write_text(
        f"model:\n  base: {base}\ntrain:\n  steps: 3\n  lr_fraction: 0.1\n"
        "data:\n  sources:\n  - {name: d, dataset: dom@2, weight: 1}\n"
    )
    return run


def test_rm_refuses_with_dependents_unless_forced(_steep_home: Path, capsys) -> None:
    home = _steep_home
    model = make_tiny_model(home / "models" / "m1")
    _fake_run(home, "r1", model)
    hub = Hub()
    assert hub.run("r1")["datasets"] == ["dom@2"]
    assert hub.dependents("m1") == ["r1"]
    assert main(["models", "rm", "m1"]) == 2
    assert "base of run(s) r1" in capsys.readouterr().err and model.is_dir()
    assert main(["models", "rm", "m1", "--force"]) == 0
    assert not model.exists() and not list((home / "models").iterdir())
    assert [m["name"] for m in hub.models()] == []
    assert hub.run("r1")["base_model"] is None
    make_tiny_model(home / "models" / "m2")
    hub.remove_model("m2")  # no dependents: no force needed
    assert not (home / "models" / "m2").exists()


def test_half_and_corrupt_run_dirs_do_not_crash_list(_steep_home: Path, capsys) -> None:
    home = _steep_home
    (home / "runs" / "empty").mkdir(parents=True)  # not a run yet: ignored
    bad = home / "runs" / "bad-yaml"
    bad.mkdir()
    (bad / "config.yaml").write_text("model: [unclosed\n")
    half = _fake_run(home, "half", "hub-id/does-not-exist")
    metrics = half / "metrics.jsonl"
    metrics.write_text('{"kind": "train", "step": 1, "loss": 2.0}\nnot json\n{"kind": "tr')
    broken_model = make_tiny_model(half / "model")
    (broken_model / "steep.json").write_text("{ truncated")
    (home / "datasets" / "x" / "v1").mkdir(parents=True)
    (home / "datasets" / "x" / "v1" / "manifest.json").write_text("[]")

    hub = Hub()
    runs = {r["name"]: r for r in hub.runs()}
    assert set(runs) == {"bad-yaml", "half"}
    assert runs["bad-yaml"]["status"] == "unknown" and "unreadable" in runs["bad-yaml"]["error"]
    assert runs["half"]["status"] == "unknown" and runs["half"]["base_path"] is None
    assert runs["half"]["metrics"] == {
        "step": 1,
        "loss": 2.0,
        "lr": None,
        "tokens": None,
        "tokens_per_s": None,
        "time": None,
        "bad_lines": 1,
    }
    with open(metrics, "a") as f:  # the cut line completes: read on, not from the top
        f.write('ain", "step": 2, "loss": 1.5}\n')
    assert hub.run("half")["metrics"]["step"] == 2 and hub.run("half")["metrics"]["bad_lines"] == 1
    (model,) = hub.models()
    assert model["kind"] is None and "unreadable" in model["error"]
    assert not (broken_model / "README.md").exists()  # no card from a lineage we cannot read
    (ds,) = hub.datasets()
    assert ds["ref"] == "x@1" and "not a JSON object" in ds["error"]
    assert main(["models", "list"]) == 0 and "half" in capsys.readouterr().out
    import shutil

    shutil.rmtree(half)
    assert [r["name"] for r in hub.runs()] == ["bad-yaml"] and hub.models() == []


def test_run_status_running_failed_and_dead_process(
    _steep_home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    hub = Hub()
    run = _fake_run(_steep_home, "live", "x")
    hub.register_run(run, "running")
    assert hub.run("live")["status"] == "running"  # this process: alive
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    with hub.connect() as con:
        con.execute("UPDATE runs SET pid = ? WHERE name = 'live'", (int(dead),))
    row = hub.run("live")
    assert row["status"] == "failed" and "ended without finishing" in row["error"]
    with pytest.raises(HubError, match="run status 'weird'"):
        hub.register_run(run, "weird")

    # a start that fails (too little data for the steps) leaves no run folder, so no row
    base = make_tiny_model(tmp_path / "base")
    data = write_jsonl(tmp_path / "d.jsonl", synthetic_docs(WORDS_A, 20, 5))
    sources = [{"name": "d", "paths": [str(data)], "heldout_fraction": 0.1}]
    with pytest.raises(Exception, match="training tokens"):
        train(parse_config(_config(_steep_home, "toolong", base, sources, steps=5000)))
    assert not (_steep_home / "runs" / "toolong").exists()
    with pytest.raises(HubError, match="toolong"):
        hub.run("toolong")


def test_push_offline_fails_with_a_clear_message(
    _steep_home: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    make_tiny_model(_steep_home / "models" / "m")
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")  # nothing listens on the discard port
    monkeypatch.setenv("HF_TOKEN", "hf_dummy")
    assert main(["models", "push", "m", "someone/m"]) == 2
    err = capsys.readouterr().err
    assert "cannot push 'm'" in err and "someone/m" in err and "127.0.0.1:9" in err

    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(HubError, match="HF_HUB_OFFLINE is set"):
        Hub().push_model("m", "someone/m")
