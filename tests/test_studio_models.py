"""The Model Hub pages and actions through the API: one sign convention, the card as
HTML, the config as YAML, the eval hint from the job's own argv, and the actions
(export, evaluate, push, generate) as CLI commands run as jobs, one per model at a time.

Models here are folders written by hand (no training); the jobs run a held command
(``model_jobs.STEEP_COMMAND``) where the test needs one still running. The real commands
run in tests/test_studio_browser_models.py.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import pytest

pytest.importorskip("fastapi", reason="studio extra not installed: pip install -e '.[studio]'")

from fastapi.testclient import TestClient  # noqa: E402

from steep.cli import main  # noqa: E402
from steep.model.gguf_convert import DIRECT, QUANTIZED  # noqa: E402
from steep.studio import model_actions, model_jobs  # noqa: E402
from steep.studio.app import Settings, create_app  # noqa: E402

CHANGE = {"X-Steep-Request": "1"}


def _model(home: Path, name: str = "m", eval_sets: dict | None = None) -> Path:
    """A model folder in the workspace: a run's config (a domain and a general source,
    held out), its step-0 and final losses, and what an eval report wrote."""
    folder = home / "models" / name
    folder.mkdir(parents=True)
    (folder / "config.json").write_text(
        json.dumps(
            {
                "model_type": "llama",  # a 7B's shape: no weights are read here
                "vocab_size": 32000,
                "hidden_size": 4096,
                "num_hidden_layers": 32,
                "num_attention_heads": 32,
                "intermediate_size": 11008,
                "max_position_embeddings": 4096,
            }
        )
    )
    sources = [
        {"name": "domain", "paths": ["/d.jsonl"], "heldout_fraction": 0.1},
        {"name": "general", "paths": ["/g.jsonl"], "heldout_fraction": 0.1},
    ]
    lineage = {
        "kind": "cpt",
        "config": {"data": {"sources": sources, "eval_sets": eval_sets or {}}},
        "metrics": {
            "step": 8,
            "baseline": {"domain": 4.0, "general": 2.0},
            "final": {"domain": 3.0, "general": 2.2},
        },
    }
    (folder / "steep.json").write_text(json.dumps(lineage))
    return folder


def _eval_report(folder: Path) -> None:
    """bpb: domain 1.0 -> 0.9 (better), general 2.0 -> 2.1 (worse)."""
    report = {
        "headline": {"metric": "bpb", "domain_gain": 0.1, "general_regression": 0.05, "domain": ["domain"], "general": ["general"]},
        "sets": {
            "domain": {"role": "domain", "base": {"bpb": 1.0}, "adapted": {"bpb": 0.9}, "improvement": 0.1},
            "general": {"role": "general", "base": {"bpb": 2.0}, "adapted": {"bpb": 2.1}, "improvement": -0.05},
        },
    }  # fmt: skip
    (folder / "eval").mkdir()
    (folder / "eval" / "eval.json").write_text(json.dumps(report))


def client(home: Path) -> TestClient:
    return TestClient(create_app(Settings(home=home, run_jobs=False)))


def test_the_model_page_uses_one_sign_convention_and_renders_card_and_yaml(
    _steep_home: Path,
) -> None:
    _eval_report(_model(_steep_home))
    page = client(_steep_home).get("/models/m").text
    # training's held-out loss: 4 -> 3 is -25%, 2 -> 2.2 is +10%
    assert "-25.0%" in page and "+10.0%" in page
    # the eval: per set and per role, the change of bits per byte: domain -10%, general +5%
    head = page[page.index('id="eval-headline"') :]
    assert (
        "domain sets <strong>-10.0%</strong>" in head
        and "general sets <strong>+5.0%</strong>" in head
    )
    sets = page[page.index('id="eval-sets"') : page.index("</table>", page.index('id="eval-sets"'))]
    assert "-10.0%" in sets and "+5.0%" in sets and "+10.0%" not in sets and "-5.0%" not in sets
    assert "improvement" not in page and "negative is better" in page
    # the model card as HTML (no raw markdown), the config as YAML
    card = page[page.index('id="model-card"') :]
    assert "<table>" in card and "<h1>" in card and "| set |" not in card
    assert "data:\n  sources:\n  - name: domain" in page and '"sources": [' not in page


def test_the_eval_hint_is_the_command_the_evaluate_job_runs(_steep_home: Path) -> None:
    folder = _model(_steep_home, eval_sets={"extra": ["/e.jsonl"]})
    c = client(_steep_home)
    page = c.get("/models/m").text
    argv = model_actions.eval_argv(c.get("/api/models/m").json())
    assert argv == ["eval", str(folder.resolve()), "--sets", "extra=/e.jsonl"]
    assert f"<code>{model_jobs.cli_line(argv)}</code>" in page and "--model" not in page


def test_models_list_falls_back_to_training_per_role(_steep_home: Path, capsys) -> None:
    """An eval that scored no role (run windows only, samples only) used to hide the
    domain gain the training run measured: the list showed '-'."""
    folder = _model(_steep_home)
    lineage = json.loads((folder / "steep.json").read_text())
    lineage["eval"] = {
        "headline": {"metric": "bpb", "domain_gain": None, "general_regression": None},
        "sets": {},
    }
    (folder / "steep.json").write_text(json.dumps(lineage))
    assert main(["models", "list"]) == 0
    row = next(line for line in capsys.readouterr().out.splitlines() if line.startswith("m "))
    assert "+25.0%" in row and "+10.0%" in row  # gain 25% (4 -> 3), regression 10% (2 -> 2.2)
    page = client(_steep_home).get("/models").text
    assert "domain -25.0%, general +10.0%" in page  # the studio's list, as changes


def _held(gate: Path) -> list[str]:
    """A steep stand-in that prints a progress line and waits for ``gate``."""
    script = (
        "import os, sys, time; print('progress 1/2', flush=True); end = time.time() + 120\n"
        f"while not os.path.exists({str(gate)!r}) and time.time() < end: time.sleep(0.05)"
    )
    return [sys.executable, "-c", script]


def _until(c: TestClient, job_id: int, ok, what: str) -> dict:
    deadline = time.monotonic() + 60
    while True:
        job = c.get(f"/api/model-jobs/{job_id}").json()
        if ok(job):
            return job
        assert time.monotonic() < deadline, f"waited 60 s for {what}: {job}"
        time.sleep(0.05)


def test_actions_on_one_model_run_one_at_a_time(
    _steep_home: Path, tmp_path: Path, monkeypatch
) -> None:
    _model(_steep_home, eval_sets={"extra": ["/e.jsonl"]})
    gate = tmp_path / "go"
    monkeypatch.setattr(model_jobs, "STEEP_COMMAND", _held(gate))
    c = client(_steep_home)
    first = c.post("/api/models/m/export", json={"dest": "exports/m"}, headers=CHANGE).json()
    assert (
        first["command"]
        == f"steep models export m {(_steep_home / 'exports' / 'm').resolve()} --format hf"
    )
    _until(c, first["id"], lambda j: j["progress"] == "progress 1/2", "the first job's progress")
    second = c.post("/api/models/m/evaluate", json={}, headers=CHANGE)
    assert second.status_code == 409
    assert (
        second.json()["error"]
        == f"model m: export (job {first['id']}) is still running; wait for it to finish"
    )
    gate.touch()
    _until(c, first["id"], lambda j: j["status"] == "done", "the first job to end")
    again = c.post("/api/models/m/evaluate", json={}, headers=CHANGE)
    assert again.status_code == 200 and again.json()["command"].startswith("steep eval ")


def test_bad_action_input_is_refused_in_one_line(_steep_home: Path, monkeypatch) -> None:
    folder = _model(_steep_home)
    (_steep_home / "exports" / "old").mkdir(parents=True)
    c = client(_steep_home)

    def refused(action: str, body: dict) -> str:
        r = c.post(f"/api/models/m/{action}", json=body, headers=CHANGE)
        assert r.status_code == 400, r.text
        assert "\n" not in r.json()["error"]
        return r.json()["error"]

    assert "already exists" in refused("export", {"dest": "exports/old"})
    assert "outside the workspace" in refused("export", {"dest": "/tmp/elsewhere"})
    assert "outside the workspace" in refused("export", {"dest": "../x"})
    assert "unknown GGUF quantization 'q9'" in refused(
        "export", {"dest": "e", "format": "gguf", "quant": "q9"}
    )
    assert "org/name" in refused("push", {"repo_id": "not a repo"})
    monkeypatch.setattr(model_actions, "available_memory_bytes", lambda: 8 << 30)
    line = refused("generate", {"prompt": "hi", "max_new_tokens": 8})
    assert line == (
        f"generating from {folder.name} needs about 26.1 GiB of memory (steep plan: float32 "
        "weights and KV cache) but this machine has 8.0 GiB available"
    )
    page = c.get("/models/m").text  # the GGUF picker offers the types the CLI takes
    assert all(f'<option value="{q}">' in page for q in DIRECT + QUANTIZED)


def test_steep_eval_refuses_a_negative_temperature(capsys) -> None:
    """The generate box's temperature is `steep eval --temperature` (0: greedy)."""
    assert main(["eval", "any-model", "--prompts", "p.txt", "--temperature", "-1"]) != 0
    assert "--temperature -1: give 0 (greedy) or more" in capsys.readouterr().err
    argv = model_actions.generate_argv("/m", 8, 0.7)
    assert argv[:2] == ["eval", "/m"] and argv[argv.index("--temperature") + 1] == "0.7"


def test_the_merge_form_offers_mergekit_methods_and_passes_them_on(
    _steep_home: Path, monkeypatch
) -> None:
    """The model page's merge (#33): every alpha-curve method in the picker; the job runs
    the CLI with --method; without mergekit the refusal is the command's own line."""
    folder = _model(_steep_home)
    page = client(_steep_home).get("/models/m").text
    assert all(f'<option value="{m}">' in page for m in model_actions.MERGE_METHODS)
    assert (
        "ties" in model_actions.MERGE_METHODS and "chat-vector" not in model_actions.MERGE_METHODS
    )
    model = {"name": "m", "path": str(folder), "lineage": {"config": {"data": {}}}}
    argv = model_actions.merge_argv(model, "0,1", None, "", _steep_home, "slerp")
    assert argv[argv.index("--method") + 1] == "slerp"
    assert "--method" not in model_actions.merge_argv(model, "0,1", None, "", _steep_home)
    monkeypatch.setitem(sys.modules, "mergekit", None)  # as if the extra were not installed
    r = client(_steep_home).post(
        "/api/models/m/merge", json={"alphas": "0,1", "method": "ties"}, headers=CHANGE
    )
    assert r.status_code == 400
    assert r.json()["error"] == (
        "--method ties runs through mergekit, not installed: pip install 'steep[merge]'"
    )
