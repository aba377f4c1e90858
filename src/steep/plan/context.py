"""The context a base knows, without loading it: for ``data.seq_len``'s check before a run.

Found as ``steep.plan.shapes`` finds a shape, first that answers: ``model.random_init``'s
values; the base's ``config.json`` (a local folder, a GGUF base's converted folder, a hub
id in the Hugging Face cache); a GGUF's own metadata (``{arch}.context_length``); the
table below. Torch-free, so ``steep validate``, ``steep plan`` and the studio's checks read
it in milliseconds; training checks the loaded model again (``steep.model.rope``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from steep.artifacts.ggufmeta import GgufMetadata
from steep.config import ModelSection
from steep.config.context import NOT_ROTARY, covered_positions, rotary_of
from steep.plan.shapes import base_config_file, gguf_path, known_key, resolved_base
from steep.workspace import steep_home

# normalised name (steep.plan.shapes.known_key) -> max_position_embeddings of its config.json
KNOWN_CONTEXT: dict[str, int] = {
    "llama-2-7b": 4096,
    "llama-2-13b": 4096,
    "llama-2-70b": 4096,
    "llama-3-8b": 8192,
    "llama-3-70b": 8192,
    "llama-3.1-8b": 131072,  # llama3 scaling: factor 8 over 8,192
    "llama-3.1-70b": 131072,
    "llama-3.1-405b": 131072,
    "llama-3.2-1b": 131072,  # llama3 scaling: factor 32 over 8,192
    "llama-3.2-3b": 131072,
    "smollm2-135m": 8192,
    "smollm2-360m": 8192,
    "smollm2-1.7b": 8192,
    "mistral-7b": 32768,
    "qwen2.5-0.5b": 32768,
    "qwen2.5-1.5b": 32768,
    "qwen2.5-3b": 32768,
}


@dataclass(frozen=True)
class BaseContext:
    """What a base's config says about positions: ``positions`` it covers (None: unknown
    until it loads), whether they are ``rotary`` (None: unknown), its model type, and
    where this came from (a file, for the messages)."""

    positions: int | None
    rotary: bool | None
    model_type: str
    source: str


def _from_config(cfg: dict[str, Any], source: str) -> BaseContext:
    text = {**cfg, **(cfg.get("text_config") or {})}
    raw = text.get("max_position_embeddings") or text.get("n_positions")
    rope = text.get("rope_parameters") or text.get("rope_scaling")
    positions = covered_positions(raw, rope) if isinstance(raw, int) else None
    return BaseContext(positions, rotary_of(cfg), str(text.get("model_type", "")), source)


def _from_gguf(path: Path) -> BaseContext:
    meta = GgufMetadata(path)
    arch = str(meta.get("general.architecture") or "llama")
    positions = meta.get(f"{arch}.context_length")
    rope = meta.get(f"{arch}.rope.freq_base") or meta.get(f"{arch}.rope.dimension_count")
    rotary = True if rope is not None else (False if arch in NOT_ROTARY else None)
    return BaseContext(positions if isinstance(positions, int) else None, rotary, arch, path.name)


def base_context(model: ModelSection, home: Path | None = None) -> BaseContext:
    """The base's context and position kind, as far as files tell without loading it."""
    if model.random_init is not None:
        values = model.random_init
        kind = str(values.get("model_type", "llama"))
        return _from_config({"model_type": kind, **values}, "model.random_init")
    found = base_config_file(model, home or steep_home())
    if found is not None:
        try:
            return _from_config(json.loads(found.read_text(encoding="utf-8")), str(found))
        except (OSError, ValueError):
            return BaseContext(None, None, "", str(found))  # unreadable: the load will say
    gguf = gguf_path(model)
    if gguf is not None and gguf.is_file():
        return _from_gguf(gguf)
    key = known_key(resolved_base(model))
    if key in KNOWN_CONTEXT:
        return BaseContext(KNOWN_CONTEXT[key], True, "llama", f"steep's table ({key})")
    return BaseContext(None, None, "", str(model.base))
