"""Data parallelism on CPU: 2 processes on the gloo backend under torchrun, FSDP2, DCP.

The claims: the loss curve does not depend on the number of ranks for the same global
batch; a rank dying stops the job instead of hanging it; the run resumes on another world
size from the last complete checkpoint, with the data order continuing exactly; the chunked
loss under FSDP2 equals the whole logits.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
import yaml
from transformers import AutoModelForCausalLM

from steep.config import ConfigError, parse_config
from steep.train.checkpoint import checkpoint_dirs
from steep.train.loop import train
from steep.train.parallel import init_distributed
from tests.conftest import make_tiny_model, tiny_config, two_ranks_corpora

ROOT = Path(__file__).parent.parent
STEPS = 12


def _records(run_dir: Path, kind: str) -> list[dict]:
    lines = (run_dir / "metrics.jsonl").read_text().splitlines()
    return [r for r in map(json.loads, lines) if r["kind"] == kind]


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(ROOT / "src"), "OMP_NUM_THREADS": "1"}


def _torchrun(nproc: int, *args: str, timeout: float = 240) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone"]
    cmd += ["--nproc-per-node", str(nproc), *args]
    return subprocess.run(
        cmd, env=_env(), capture_output=True, text=True, timeout=timeout, cwd=ROOT
    )


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """A tiny base, two corpora, and the reference: the same run on one process."""
    root = tmp_path_factory.mktemp("dist")
    corpora = two_ranks_corpora(root)
    base = make_tiny_model(root / "base")

    def config(name: str) -> Path:
        raw = tiny_config(root / name, corpora, base, steps=STEPS, global_batch_tokens=512)
        raw["checkpoint"] = {"every_steps": 4, "keep_last": 3}
        path = root / f"{name}.yaml"
        path.write_text(yaml.safe_dump(raw))
        return path

    os.environ["STEEP_HOME"] = str(root / "home")
    ref = train(parse_config(yaml.safe_load(config("one").read_text())))
    return {"root": root, "config": config, "ref": ref.run_dir}


def _chunked(setup: dict, name: str, loss_chunk: int | None) -> Path:
    """``name``'s config with ``train.loss_chunk``."""
    path = setup["config"](name)
    raw = yaml.safe_load(path.read_text())
    raw["train"]["loss_chunk"] = loss_chunk
    path.write_text(yaml.safe_dump(raw))
    return path


@pytest.fixture(scope="module")
def two(setup: dict) -> Path:
    """The run on 2 ranks, its loss in chunks of 48 of a micro-batch's 128 positions (as
    rank 0's log says: the line a user reads); its folder."""
    proc = _torchrun(2, "-m", "steep", "train", str(_chunked(setup, "two", 48)))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "loss: logits 48 positions at a time" in proc.stdout, proc.stdout
    return setup["root"] / "two" / "run"


@pytest.fixture(scope="module")
def crashed(setup: dict) -> dict:
    """The run on 2 ranks with whole logits, rank 1 SIGKILLed in step 10: torchrun's
    result, the folder, and the steps logged before the crash."""
    crash = setup["root"] / "crash.py"
    crash.write_text(
        textwrap.dedent(
            """
            import os, signal, sys
            import steep.train.loop as loop
            from steep.cli import main

            real = loop.clip_grad_norm
            calls = {"n": 0}

            def dying(model, max_norm):
                calls["n"] += 1
                if calls["n"] == 10 and os.environ["RANK"] == "1":
                    os.kill(os.getpid(), signal.SIGKILL)
                return real(model, max_norm)

            loop.clip_grad_norm = dying
            sys.exit(main(sys.argv[1:]))
            """
        )
    )
    config = _chunked(setup, "crash", None)
    proc = _torchrun(2, str(crash), "train", str(config), timeout=180)
    run = setup["root"] / "crash" / "run"
    return {"proc": proc, "run": run, "before": _records(run, "train")}


def test_two_ranks_match_one(setup, two):
    one = setup["ref"]
    a, b = _records(one, "train"), _records(two, "train")
    assert [r["step"] for r in b] == list(range(1, STEPS + 1))
    for ra, rb in zip(a, b, strict=True):
        assert rb["loss"] == pytest.approx(ra["loss"], abs=1e-5)
        assert rb["grad_norm"] == pytest.approx(ra["grad_norm"], rel=1e-4)
        assert rb["tokens_by_source"] == ra["tokens_by_source"]  # same mixture, same order
        assert rb["tokens_per_s_per_device"] == pytest.approx(rb["tokens_per_s"] / 2)
    for ea, eb in zip(_records(one, "eval"), _records(two, "eval"), strict=True):
        for name in ea["sets"]:
            assert eb["sets"][name]["loss"] == pytest.approx(ea["sets"][name]["loss"], abs=1e-5)
    # the sharded model gathers into the same plain HF model
    ids = torch.randint(0, 256, (2, 24))
    with torch.no_grad():
        la = AutoModelForCausalLM.from_pretrained(one / "model")(ids).logits
        lb = AutoModelForCausalLM.from_pretrained(two / "model")(ids).logits
    assert torch.allclose(la, lb, atol=1e-4)
    lineage = json.loads((two / "model" / "steep.json").read_text())
    assert lineage["world_size"] == 2
    ckpt = checkpoint_dirs(two / "checkpoints")[-1]
    assert {"__0_0.distcp", "__1_0.distcp", "rng_rank0.pt", "rng_rank1.pt"} <= {
        p.name for p in ckpt.iterdir()
    }


def test_chunked_loss_under_fsdp2_matches_whole_logits(two, crashed):
    """The chunked loss runs as a forward method of FSDP2's root (its embeddings, norm and
    head gathered by the root's hooks): the same losses and gradients as whole logits on
    2 ranks (the crash run's steps before rank 1 dies)."""
    assert "loss: whole logits (train.loss_chunk null)" in crashed["proc"].stdout
    whole, chunked = crashed["before"], _records(two, "train")
    assert len(whole) >= 8  # its checkpoint at step 8 was written
    for ra, rb in zip(whole, chunked[: len(whole)], strict=True):
        assert rb["loss"] == pytest.approx(ra["loss"], abs=1e-5)
        assert rb["grad_norm"] == pytest.approx(ra["grad_norm"], rel=1e-4)


def test_rank_crash_stops_job_and_resumes_on_one_rank(setup, crashed):
    """Rank 1 is SIGKILLed in step 10; the job ends; 1 process resumes and continues exactly."""
    proc = crashed["proc"]
    assert proc.returncode != 0  # it stopped (within the timeout) instead of hanging
    run = setup["root"] / "crash" / "run"
    assert [p.name for p in checkpoint_dirs(run / "checkpoints")] == [
        "step_0000004",
        "step_0000008",
    ]
    # a checkpoint that lost one rank's shard is never loaded: resume falls back to step 4
    (run / "checkpoints" / "step_0000008" / "__1_0.distcp").unlink()
    assert [p.name for p in checkpoint_dirs(run / "checkpoints")] == ["step_0000004"]

    resumed = subprocess.run(
        [sys.executable, "-m", "steep", "train", "--resume", str(run)],
        env=_env(),
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert "resumed from step_0000004 (written by 2 ranks)" in resumed.stdout
    a, b = _records(setup["ref"], "train"), _records(run, "train")
    assert [r["step"] for r in b] == list(range(1, STEPS + 1))
    for ra, rb in zip(a, b, strict=True):
        assert rb["loss"] == pytest.approx(ra["loss"], abs=1e-5)
        assert rb["tokens_by_source"] == ra["tokens_by_source"]


def test_lora_on_two_ranks_matches_one(setup):
    """FSDP2 shards the frozen base and the adapters alike; the merged model is the same."""
    lora = {"method": "lora", "lora": {"rank": 4, "alpha": 8}}
    paths = {}
    for name in ("lora1", "lora2"):
        raw = yaml.safe_load(setup["config"](name).read_text())
        raw["train"].update(lora, steps=4)
        paths[name] = setup["root"] / f"{name}.yaml"
        paths[name].write_text(yaml.safe_dump(raw))
    one = train(parse_config(yaml.safe_load(paths["lora1"].read_text()))).run_dir
    proc = _torchrun(2, "-m", "steep", "train", str(paths["lora2"]))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    two = setup["root"] / "lora2" / "run"
    for ra, rb in zip(_records(one, "train"), _records(two, "train"), strict=True):
        assert rb["loss"] == pytest.approx(ra["loss"], abs=1e-5)
    ids = torch.randint(0, 256, (2, 24))
    with torch.no_grad():
        la = AutoModelForCausalLM.from_pretrained(one / "model")(ids).logits
        lb = AutoModelForCausalLM.from_pretrained(two / "model")(ids).logits
    assert torch.allclose(la, lb, atol=1e-4)
    assert (two / "adapter" / "adapter_config.json").exists()
    assert json.loads((two / "model" / "steep.json").read_text())["method"]["name"] == "lora"


def test_batch_that_does_not_split_fails_before_start(setup, monkeypatch):
    raw = yaml.safe_load(setup["config"]("odd").read_text())
    raw["train"]["global_batch_tokens"] = 384  # 3 micro-batches of 2 x 64: not 2 ranks' worth
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "0")
    with pytest.raises(ConfigError, match=r"does not split across 2 ranks.*256 \(below\)"):
        init_distributed(parse_config(raw))


def test_slow_tokenizing_on_rank_0_does_not_time_out_the_others(tmp_path: Path) -> None:
    """Rank 0 tokenizes a source and prepares for longer than train.dist_timeout_s (10 s;
    12 s at least, on any machine); rank 1 waits on a file with its own bound and prints
    what rank 0 is doing; the run trains. Before,
    rank 1 sat in a barrier and gloo gave up after 10 s ("Timed out waiting 10000ms")."""
    words = ["the", "river", "king", "city"]
    many = tmp_path / "data" / "many.jsonl"
    many.parent.mkdir(parents=True)
    # rank 0's tokenizing writes the progress file rank 1 reads; the floor below, not the
    # size, keeps rank 0 past the timeout (1.5M documents cost ~16 CPU s to write and tokenize)
    with open(many, "w", encoding="utf-8") as f:
        for i in range(30_000):
            f.write(json.dumps({"text": f"{words[i % 4]} {words[(i // 4) % 4]} {i}"}) + "\n")
    corpora = {"domain": many, "general": many}
    base = make_tiny_model(tmp_path / "base")
    raw = tiny_config(tmp_path, corpora, base, steps=2, warmup_steps=1, global_batch_tokens=512)
    raw["data"]["sources"] = raw["data"]["sources"][:1]
    raw["data"]["sources"][0]["heldout_fraction"] = 0.01
    raw["train"]["dist_timeout_s"] = 10
    raw["eval"] = {"every_steps": 2, "max_windows": 2}
    cfg = tmp_path / "slow.yaml"
    cfg.write_text(yaml.safe_dump(raw))
    # however fast this machine tokenizes, rank 0's preparing outlasts the timeout: it
    # stays in it (the progress file left as tokenizing last wrote it) for 12 s at least
    floor = tmp_path / "at_least.py"
    floor.write_text(
        textwrap.dedent(
            """
            import os, sys, time
            import steep.train.build as build
            from steep.cli import main

            real = build.build_inputs

            def at_least_12_s(*args, **kwargs):
                began = time.monotonic()
                inputs = real(*args, **kwargs)
                if os.environ["RANK"] == "0":
                    time.sleep(max(0.0, 12 - (time.monotonic() - began)))
                return inputs

            build.build_inputs = at_least_12_s
            sys.exit(main())
            """
        )
    )
    env_home = {"STEEP_HOME": str(tmp_path / "home")}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2"]
    proc = subprocess.run(
        [*cmd, str(floor), "train", str(cfg)],
        env={**_env(), **env_home},
        capture_output=True,
        text=True,
        timeout=400,
        cwd=ROOT,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    run = tmp_path / "run"
    ready = json.loads((run / ".inputs.ready").read_text())
    assert ready["ok"] and ready["seconds"] > 10  # rank 0 really outlasted the timeout
    assert "rank 0 is tokenizing domain:" in proc.stdout + proc.stderr
    assert [r["step"] for r in _records(run, "train")] == [1, 2]
