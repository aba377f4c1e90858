"""End-to-end runs of the loop on a tiny random Llama (seconds each)."""

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from transformers import AutoModelForCausalLM

from steep.config import parse_config
from steep.errors import DataError
from steep.train.checkpoint import CheckpointError, checkpoint_dirs, load_checkpoint
from steep.train.loop import train
from tests import held_steep
from tests.conftest import tiny_config


def _records(run_dir: Path, kind: str) -> list[dict]:
    """Complete lines only: a run still writing may leave its last line half-written."""
    lines = (run_dir / "metrics.jsonl").read_text().split("\n")[:-1]
    return [r for r in map(json.loads, lines) if r["kind"] == kind]


def test_run_end_to_end(tmp_path, corpora, tiny_model):
    cfg = parse_config(tiny_config(tmp_path, corpora, tiny_model, steps=16))
    result = train(cfg)
    run = result.run_dir
    evals = _records(run, "eval")
    assert [e["step"] for e in evals] == [0, 4, 8, 12, 16]
    assert evals[0]["sets"]["domain"]["rel_change"] == 0.0
    assert result.final["domain"] < result.baseline["domain"]  # it learnt the domain
    assert evals[-1]["sets"]["domain"]["rel_change"] < 0
    trains = _records(run, "train")
    assert len(trains) == 16
    last = trains[-1]
    assert last["tokens_by_source"] == {"domain": 16 * 128, "general": 16 * 128}  # exact 1:1
    assert {"loss", "lr", "grad_norm", "tokens_per_s"} <= set(last)
    assert (run / "config.yaml").exists() and (run / "report.md").exists()
    assert list((run / "tensorboard").glob("events.out.tfevents.*"))
    assert len(checkpoint_dirs(run / "checkpoints")) == 2  # keep_last
    lineage = json.loads((result.model_dir / "steep.json").read_text())
    assert lineage["data"][0]["files"][0]["sha256"]
    assert lineage["metrics"]["final"]["domain"] == pytest.approx(result.final["domain"])
    assert lineage["format_version"] == 1 and lineage["kind"] == "cpt"
    assert json.loads((run / "status.json").read_text())["state"] == "done"


def test_saved_model_matches_in_memory(tmp_path, corpora, tiny_model):
    cfg = parse_config(tiny_config(tmp_path, corpora, tiny_model, steps=4))
    result = train(cfg)
    ids = torch.randint(0, 256, (2, 20))
    reloaded = AutoModelForCausalLM.from_pretrained(result.model_dir).eval()
    ckpt = checkpoint_dirs(result.run_dir / "checkpoints")[-1]
    fresh = AutoModelForCausalLM.from_pretrained(tiny_model).eval()
    load_checkpoint(ckpt, fresh, torch.optim.AdamW(fresh.parameters()))  # the final weights
    with torch.no_grad():
        assert torch.equal(reloaded(ids).logits, fresh(ids).logits)
        base = AutoModelForCausalLM.from_pretrained(tiny_model).eval()
        assert not torch.allclose(reloaded(ids).logits, base(ids).logits)  # it did change


def test_too_little_data_says_how_much(tmp_path, corpora, tiny_model):
    cfg = parse_config(tiny_config(tmp_path, corpora, tiny_model, steps=5000))
    with pytest.raises(DataError, match=r"source 'domain' has [\d,]+ training tokens"):
        train(cfg)


def test_unknown_base_needs_base_max_lr(tmp_path, corpora, tiny_model):
    raw = tiny_config(tmp_path, corpora, tiny_model)
    del raw["model"]["base_max_lr"]
    with pytest.raises(ValueError, match="base_max_lr"):
        train(parse_config(raw))


def test_base_without_tokenizer(tmp_path, corpora, tiny_model):
    for f in tiny_model.glob("tokenizer*"):
        f.unlink()
    from steep.model.io import ModelLoadError

    with pytest.raises(ModelLoadError, match="no usable tokenizer"):
        train(parse_config(tiny_config(tmp_path, corpora, tiny_model)))


def test_checkpoint_write_failure_keeps_last_good(tmp_path, corpora, tiny_model, monkeypatch):
    import steep.train.checkpoint as ck

    real_save = ck.torch.save
    calls = {"n": 0}

    def failing_save(obj, path, *a, **k):
        if not isinstance(path, str | Path):  # DCP's own in-memory use
            return real_save(obj, path, *a, **k)
        calls["n"] += 1
        if calls["n"] > 1:  # the first checkpoint's RNG file is written, the next one fails
            raise OSError(28, "No space left on device")
        return real_save(obj, path, *a, **k)

    monkeypatch.setattr(ck.torch, "save", failing_save)
    cfg = parse_config(tiny_config(tmp_path, corpora, tiny_model, steps=12))
    with pytest.raises(CheckpointError, match=r"No space left.*step_0000004.*untouched"):
        train(cfg)
    ckpts = checkpoint_dirs(tmp_path / "run" / "checkpoints")
    assert [p.name for p in ckpts] == ["step_0000004"]
    assert not list((tmp_path / "run" / "checkpoints").glob(".step_*"))


def _cli(*args: str, env: dict) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "steep", *args]
    return subprocess.Popen(
        cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )


def test_sigkill_and_resume_matches_uninterrupted(tmp_path, corpora, tiny_model):
    """Kill a CLI run with SIGKILL mid-way, resume it, compare with a run never stopped."""
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parent.parent / "src")}
    steps = 24
    configs = {}
    for name in ("straight", "killed"):
        raw = tiny_config(tmp_path / name, corpora, tiny_model, steps=steps)
        raw["checkpoint"] = {"every_steps": 5, "keep_last": 2}
        raw["eval"]["every_steps"] = 6
        path = tmp_path / f"{name}.yaml"
        path.write_text(yaml.safe_dump(raw))
        configs[name] = path
    gates = tmp_path / "gates"
    held_steep.hold(gates, 20)  # the killed run cannot get past step 20 before the kill
    with open(tmp_path / "killed.log", "w") as log:  # a file: a pipe unread would fill
        killed = subprocess.Popen(
            held_steep.argv("train", str(configs["killed"])),
            env={**env, held_steep.ENV: str(gates)}, stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip
    killed_dir = tmp_path / "killed" / "run"
    # the reference in this process meanwhile (one torch import fewer than a third CLI run)
    train(parse_config(yaml.safe_load(configs["straight"].read_text())))

    def past_a_checkpoint() -> bool:  # past the one at step 10: wherever it is in 13..20
        done = (killed_dir / "metrics.jsonl").exists() and len(_records(killed_dir, "train"))
        return done >= 13 or held_steep.is_held(gates, 20)

    held_steep.wait_until("step 13", past_a_checkpoint, killed)
    killed.send_signal(signal.SIGKILL)
    killed.wait()
    assert killed.returncode == -signal.SIGKILL
    assert 13 <= len(_records(killed_dir, "train")) <= 20 < steps
    resumed = _cli("train", "--resume", str(killed_dir), env=env)
    out, _ = resumed.communicate(timeout=180)
    assert resumed.returncode == 0, out
    assert "resumed from step_" in out
    a = _records(tmp_path / "straight" / "run", "train")
    b = _records(killed_dir, "train")
    assert [r["step"] for r in b] == list(range(1, steps + 1))  # no step lost or logged twice
    for ra, rb in zip(a, b, strict=True):
        assert rb["loss"] == pytest.approx(ra["loss"], abs=1e-5)
        assert rb["tokens_by_source"] == ra["tokens_by_source"]
    ea = {e["step"]: e["sets"] for e in _records(tmp_path / "straight" / "run", "eval")}
    eb = {e["step"]: e["sets"] for e in _records(killed_dir, "eval")}
    assert ea.keys() == eb.keys()
    for s in ea:
        for name in ea[s]:
            assert eb[s][name]["loss"] == pytest.approx(ea[s][name]["loss"], abs=1e-5)
