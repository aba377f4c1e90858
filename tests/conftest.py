"""Shared fixtures: tiny random models and small corpora made in the test, no downloads."""

from __future__ import annotations

import json
import random
import shutil
from pathlib import Path

import pytest
import torch
from transformers import AutoModelForCausalLM, LlamaConfig, LlamaForCausalLM

from steep.model.io import byte_tokenizer
from steep.train.checkpoint import checkpoint_dirs
from steep.train.loop import resume_run

TINY_LLAMA = dict(
    hidden_size=32,
    intermediate_size=64,
    num_hidden_layers=2,
    num_attention_heads=4,
    num_key_value_heads=2,
    max_position_embeddings=256,
    tie_word_embeddings=True,
)

WORDS_A = [
    "def",
    "return",
    "class",
    "import",
    "lambda",
    "yield",
    "async",
    "await",
    "self",
    "None",
    "True",
    "False",
]
WORDS_B = [
    "the",
    "river",
    "mountain",
    "city",
    "king",
    "people",
    "history",
    "north",
    "village",
    "winter",
    "song",
]


def write_jsonl(path: Path, texts: list[str]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        for t in texts:
            f.write(json.dumps({"text": t}) + "\n")
    return path


def synthetic_docs(words: list[str], n_docs: int, seed: int, words_per_doc: int = 60) -> list[str]:
    """Two word pools give two 'domains' a tiny model can tell apart within a few steps."""
    rng = random.Random(seed)
    return [" ".join(rng.choice(words) for _ in range(words_per_doc)) + "." for _ in range(n_docs)]


def two_ranks_corpora(root: Path) -> dict[str, Path]:
    """Two small-vocabulary domains, 200 documents each: enough windows for 2 ranks."""
    return {
        "domain": write_jsonl(root / "data" / "domain.jsonl", synthetic_docs(["def", "x"], 200, 1)),
        "general": write_jsonl(
            root / "data" / "general.jsonl", synthetic_docs(["the", "river", "king"], 200, 2)
        ),
    }


@pytest.fixture
def corpora(tmp_path: Path) -> dict[str, Path]:
    return {
        "domain": write_jsonl(tmp_path / "data" / "domain.jsonl", synthetic_docs(WORDS_A, 120, 1)),
        "general": write_jsonl(
            tmp_path / "data" / "general.jsonl", synthetic_docs(WORDS_B, 120, 2)
        ),
    }


def make_tiny_model(path: Path, seed: int = 0) -> Path:
    """A random tiny Llama + byte tokenizer saved as a plain HF directory."""
    tok = byte_tokenizer()
    torch.manual_seed(seed)
    cfg = LlamaConfig(vocab_size=len(tok), eos_token_id=tok.eos_token_id, **TINY_LLAMA)
    LlamaForCausalLM(cfg).save_pretrained(path)
    tok.save_pretrained(path)
    return path


@pytest.fixture
def tiny_model(tmp_path: Path) -> Path:
    return make_tiny_model(tmp_path / "tiny-base")


# The files that take longest, longest first (docs/test-durations.md). pytest-xdist gives
# whole files to its workers in collection order (`make test` passes --no-loadscope-reorder;
# xdist's default puts files with fewer tests last, which were these): started first, the
# suite ends on short files instead of one worker finishing a long one while the other idles.
SLOW_FILES_FIRST = (
    "test_slurm.py",
    "test_studio_workflow.py",
    "test_distributed.py",
    "test_multinode.py",
    "test_studio_browser.py",
    "test_faults_disk.py",
    "test_sweep.py",
    "test_train.py",
    "test_trackers.py",
    "test_train_features.py",
    "test_ray.py",
    "test_gguf_export.py",
    "test_studio_browser_merge.py",
    "test_studio_browser_models.py",
    "test_sweep_predict.py",
    "test_allocator.py",
    "test_examples.py",
    "test_eval_run_windows.py",
    "test_studio_browser_data.py",
    "test_studio_browser_setup.py",
    "test_studio_browser_watch.py",
    "test_formats_browser.py",
    "test_gpu_proof.py",
)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    order = {name: i for i, name in enumerate(SLOW_FILES_FIRST)}
    items.sort(key=lambda item: order.get(item.path.name, len(order)))  # stable: files whole


@pytest.fixture(autouse=True)
def _steep_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    home = tmp_path / "steep-home"
    monkeypatch.setenv("STEEP_HOME", str(home))
    return home


def tiny_config(tmp_path: Path, corpora: dict[str, Path], base: Path, **train) -> dict:
    """A run config dict for a tiny model; tests tweak it."""
    return {
        "run": {"name": "t", "out_dir": str(tmp_path / "run"), "seed": 0},
        "model": {"base": str(base), "base_max_lr": 1e-2},
        "data": {
            "seq_len": 64,
            "sources": [
                {
                    "name": "domain",
                    "paths": [str(corpora["domain"])],
                    "weight": 1,
                    "heldout_fraction": 0.1,
                },
                {
                    "name": "general",
                    "paths": [str(corpora["general"])],
                    "weight": 1,
                    "heldout_fraction": 0.1,
                },
            ],
        },
        "train": {
            "steps": 12,
            "global_batch_tokens": 256,
            "micro_batch_size": 2,
            "lr_fraction": 0.3,
            "warmup_steps": 2,
            "precision": "fp32",
            **train,
        },
        "eval": {"every_steps": 4, "max_windows": 4},
        "checkpoint": {"every_steps": 4, "keep_last": 2},
    }


def _train_records(run_dir: Path, kind: str) -> list[dict]:
    lines = (run_dir / "metrics.jsonl").read_text().splitlines()
    return [r for r in map(json.loads, lines) if r["kind"] == kind]


def resume_matches(run: Path, tmp_path: Path) -> None:
    """Drop the last checkpoint of a finished run, resume it, and compare with the original."""
    copy = tmp_path / "resumed"
    shutil.copytree(run, copy)
    last = checkpoint_dirs(copy / "checkpoints")[-1]
    shutil.rmtree(last)
    shutil.rmtree(copy / "model")
    result = resume_run(copy)
    a, b = _train_records(run, "train"), _train_records(copy, "train")
    assert [r["step"] for r in b] == [r["step"] for r in a]
    for ra, rb in zip(a, b, strict=True):
        assert rb["loss"] == ra["loss"]  # exact: the same arithmetic in the same order
    ids = torch.randint(0, 256, (2, 20))
    with torch.no_grad():
        la = AutoModelForCausalLM.from_pretrained(run / "model")(ids).logits
        lb = AutoModelForCausalLM.from_pretrained(result.model_dir)(ids).logits
    assert torch.equal(la, lb)
