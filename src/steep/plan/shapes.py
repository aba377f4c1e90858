"""A model's shape (vocabulary, widths, layers) without loading it: for ``steep plan``.

Found, first that answers: ``model.random_init`` (its values; transformers' defaults for
the model type fill what it leaves out); the base's ``config.json`` when ``model.base`` is
a local folder (a steep model folder is one); a GGUF base's converted folder in the
workspace, else the GGUF's own metadata; a hub id's ``config.json`` in the Hugging Face
cache; the table of known bases below. Nothing here imports torch or transformers unless a
``random_init`` leaves sizes out (transformers knows the model type's defaults).

Parameters are counted for a decoder of Llama's form: embeddings, per layer q/k/v/o
projections, a gated MLP (gate, up, down; two matrices for GPT-style models), two norms,
a final norm and an untied head. A mixture of experts (``num_local_experts``) holds every
expert's MLP and computes ``num_experts_per_tok`` of them.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from steep.artifacts.ggufmeta import GgufMetadata
from steep.config import ModelSection
from steep.config.locate import ModelLoadError, resolve_base
from steep.errors import ConfigError
from steep.workspace import Workspace, converted_gguf_name, steep_home

NON_GATED = ("gpt2", "gpt_neox", "gptj", "opt", "phi", "starcoder2", "bloom", "falcon")


@dataclass(frozen=True)
class Shape:
    vocab: int
    hidden: int
    layers: int
    heads: int
    kv_heads: int
    head_dim: int
    intermediate: int
    tied: bool = False
    gated: bool = True  # SwiGLU-style MLP: three matrices
    qkv_bias: bool = False
    experts: int = 1  # MLPs per layer (mixture of experts)
    active_experts: int = 1  # MLPs each token runs
    source: str = ""  # where the shape came from, for the plan's header

    @property
    def q_dim(self) -> int:
        return self.heads * self.head_dim

    @property
    def kv_dim(self) -> int:
        return self.kv_heads * self.head_dim

    def linears(self) -> dict[str, tuple[int, int]]:
        """(in, out) of each linear layer of one decoder layer's attention and one MLP."""
        h, i = self.hidden, self.intermediate
        out = {
            "q_proj": (h, self.q_dim),
            "k_proj": (h, self.kv_dim),
            "v_proj": (h, self.kv_dim),
            "o_proj": (self.q_dim, h),
            "up_proj": (h, i),
            "down_proj": (i, h),
        }
        if self.gated:
            out["gate_proj"] = (h, i)
        return out

    def attention_params(self) -> int:
        bias = (self.q_dim + 2 * self.kv_dim) if self.qkv_bias else 0
        names = ("q_proj", "k_proj", "v_proj", "o_proj")
        return sum(a * b for n, (a, b) in self.linears().items() if n in names) + bias

    def mlp_params(self) -> int:
        """One expert's MLP."""
        names = ("gate_proj", "up_proj", "down_proj")
        return sum(a * b for n, (a, b) in self.linears().items() if n in names)

    def layer_params(self) -> int:
        router = self.hidden * self.experts if self.experts > 1 else 0
        return self.attention_params() + self.experts * self.mlp_params() + router + 2 * self.hidden

    @property
    def embedding(self) -> int:
        return self.vocab * self.hidden

    def params(self) -> int:
        head = 0 if self.tied else self.embedding
        return self.embedding + head + self.layers * self.layer_params() + self.hidden

    def matmul_params(self) -> int:
        """What ``steep.train.flops.flops_per_token`` counts: every parameter but the input
        embedding (a lookup), the tied head's matmul included; active experts only."""
        idle = (self.experts - self.active_experts) * self.mlp_params() * self.layers
        return self.params() - self.embedding + (self.embedding if self.tied else 0) - idle

    def dump(self) -> dict[str, Any]:
        return asdict(self)


def _llama(v: int, h: int, n: int, heads: int, kv: int, i: int, tied: bool, hd: int = 0) -> Shape:
    return Shape(v, h, n, heads, kv, hd or h // heads, i, tied)


# normalised name -> shape, from each model's config.json on the Hugging Face hub
KNOWN: dict[str, Shape] = {
    "llama-2-7b": _llama(32000, 4096, 32, 32, 32, 11008, False),
    "llama-2-13b": _llama(32000, 5120, 40, 40, 40, 13824, False),
    "llama-2-70b": _llama(32000, 8192, 80, 64, 8, 28672, False),
    "llama-3-8b": _llama(128256, 4096, 32, 32, 8, 14336, False),
    "llama-3-70b": _llama(128256, 8192, 80, 64, 8, 28672, False),
    "llama-3.1-8b": _llama(128256, 4096, 32, 32, 8, 14336, False),
    "llama-3.1-70b": _llama(128256, 8192, 80, 64, 8, 28672, False),
    "llama-3.1-405b": _llama(128256, 16384, 126, 128, 8, 53248, False),
    "llama-3.2-1b": _llama(128256, 2048, 16, 32, 8, 8192, True, 64),
    "llama-3.2-3b": _llama(128256, 3072, 28, 24, 8, 8192, True, 128),
    "smollm2-135m": _llama(49152, 576, 30, 9, 3, 1536, True),
    "smollm2-360m": _llama(49152, 960, 32, 15, 5, 2560, True),
    "smollm2-1.7b": _llama(49152, 2048, 24, 32, 32, 8192, True),
    "mistral-7b": _llama(32768, 4096, 32, 32, 8, 14336, False),  # v0.3; v0.1 has 32000
    "qwen2.5-0.5b": Shape(151936, 896, 24, 14, 2, 64, 4864, True, qkv_bias=True),
    "qwen2.5-1.5b": Shape(151936, 1536, 28, 12, 2, 128, 8960, True, qkv_bias=True),
    "qwen2.5-3b": Shape(151936, 2048, 36, 16, 2, 128, 11008, True, qkv_bias=True),
    "qwen2.5-7b": Shape(152064, 3584, 28, 28, 4, 128, 18944, False, qkv_bias=True),
    "qwen2.5-14b": Shape(152064, 5120, 48, 40, 8, 128, 13824, False, qkv_bias=True),
}


def known_key(name: str) -> str | None:
    """'meta-llama/Llama-3.1-8B-Instruct' -> 'llama-3.1-8b'; None when not in the table."""
    key = name.strip().rstrip("/").split("/")[-1].lower()
    key = re.sub(r"[\s_]+", "-", key).removeprefix("meta-")
    key = re.sub(r"^llama(\d)", r"llama-\1", key)
    for known in sorted(KNOWN, key=len, reverse=True):
        if key == known or (key.startswith(known) and key[len(known)] in "-."):
            return known
    return None


def _resolve(base: str) -> str:
    """``pkg://PACKAGE/FILE`` -> the file inside the installed package, as the job finds it
    (a package not installed, or a path leaving it, stays a name and sizes nothing)."""
    try:
        return resolve_base(base)
    except ModelLoadError:
        return base


def _first(cfg: dict[str, Any], *keys: str) -> Any:
    for key in keys:
        if cfg.get(key) is not None:
            return cfg[key]
    return None


def from_hf_config(cfg: dict[str, Any], source: str) -> Shape:
    """A shape from a config.json's values (Llama, Mistral, Qwen, Gemma, OLMo, GPT-style)."""
    cfg = {**cfg, **(cfg.get("text_config") or {})}  # a multimodal config nests the LM's
    hidden = _first(cfg, "hidden_size", "n_embd", "d_model")
    layers = _first(cfg, "num_hidden_layers", "n_layer", "num_layers")
    heads = _first(cfg, "num_attention_heads", "n_head")
    vocab = cfg.get("vocab_size")
    if not all(isinstance(x, int) for x in (hidden, layers, heads, vocab)):
        raise ConfigError(
            f"{source}: not a decoder config steep can plan (needs vocab_size, hidden_size, "
            "num_hidden_layers and num_attention_heads)"
        )
    kv = _first(cfg, "num_key_value_heads", "multi_query_group_num") or heads
    head_dim = cfg.get("head_dim") or hidden // heads
    inter = _first(cfg, "intermediate_size", "n_inner", "ffn_dim") or 4 * hidden
    experts = _first(cfg, "num_local_experts", "num_experts") or 1
    active = _first(cfg, "num_experts_per_tok") or 1
    model_type = str(cfg.get("model_type", "llama"))
    return Shape(
        vocab=vocab,
        hidden=hidden,
        layers=layers,
        heads=heads,
        kv_heads=kv,
        head_dim=head_dim,
        intermediate=(_first(cfg, "moe_intermediate_size") or inter) if experts > 1 else inter,
        tied=bool(cfg.get("tie_word_embeddings", model_type in NON_GATED)),
        gated=model_type not in NON_GATED,
        qkv_bias=bool(cfg.get("attention_bias")) or model_type.startswith("qwen2"),
        experts=experts,
        active_experts=min(active, experts),
        source=source,
    )


def _random_init(model: ModelSection) -> Shape:
    values = dict(model.random_init or {})
    values.setdefault("model_type", "llama")
    if "vocab_size" not in values:
        values["vocab_size"] = _tokenizer_size(model.tokenizer or model.base or "")
    needed = ("hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size")
    if any(k not in values for k in needed) or "tie_word_embeddings" not in values:
        # deferred: transformers (and torch) load only for a random_init that leaves sizes
        # to the model type's defaults
        from transformers import AutoConfig

        try:
            values = AutoConfig.for_model(**values).to_dict()
        except ValueError as exc:
            raise ConfigError(f"model.random_init: {exc}") from None
    return from_hf_config(values, "model.random_init")


def _tokenizer_size(spec: str) -> int:
    """len(tokenizer) for 'bytes' (257) or a folder's tokenizer.json, as random_init uses."""
    if spec == "bytes":
        return 257
    path = Path(_resolve(spec)) / "tokenizer.json"
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        raise ConfigError(
            f"model.random_init has no vocab_size and {path} cannot be read: "
            "set model.random_init.vocab_size"
        ) from None
    ids = list((data.get("model") or {}).get("vocab", {}).values())
    ids += [t.get("id", 0) for t in data.get("added_tokens", [])]
    return max(ids, default=-1) + 1


def _hf_cache_config(repo: str) -> Path | None:
    """config.json of a hub id in the Hugging Face cache (any snapshot), or None."""
    if repo.count("/") != 1:
        return None
    hub = os.environ.get("HF_HUB_CACHE") or os.environ.get("HUGGINGFACE_HUB_CACHE")
    root = Path(hub) if hub else Path(os.environ.get("HF_HOME", "~/.cache/huggingface")) / "hub"
    folder = root.expanduser() / f"models--{repo.replace('/', '--')}" / "snapshots"
    found = sorted(folder.glob("*/config.json"), key=lambda p: p.stat().st_mtime)
    return found[-1] if found else None


def _gguf(path: Path, home: Path) -> Shape:
    try:
        converted = Workspace(home).base_models / converted_gguf_name(path) / "config.json"
    except OSError:
        raise ConfigError(f"model.base: GGUF file not found: {path}") from None
    if converted.is_file():
        return from_hf_config(json.loads(converted.read_text()), str(converted))
    if (key := known_key(path.name)) is not None:
        return _known(key, f"{path.name}: steep's table ({key})")
    meta = GgufMetadata(path)  # only a GGUF base in no table reads its metadata
    get = meta.get

    arch = get("general.architecture") or "llama"
    heads = get(f"{arch}.attention.head_count")
    return from_hf_config(
        {
            "model_type": arch,
            "vocab_size": get(f"{arch}.vocab_size") or len(get("tokenizer.ggml.tokens") or []),
            "hidden_size": get(f"{arch}.embedding_length"),
            "num_hidden_layers": get(f"{arch}.block_count"),
            "num_attention_heads": heads,
            "num_key_value_heads": get(f"{arch}.attention.head_count_kv") or heads,
            "intermediate_size": get(f"{arch}.feed_forward_length"),
            "tie_word_embeddings": "output.weight" not in meta.tensors,
        },
        f"{path.name} (GGUF metadata)",
    )


def _known(key: str, source: str) -> Shape:
    return Shape(**{**KNOWN[key].dump(), "source": source})


def resolved_base(model: ModelSection) -> str:
    """``model.base`` as the job finds it (a ``pkg://`` file inside its package)."""
    assert model.base is not None  # the schema wants a base or a random_init
    return _resolve(model.base)


def gguf_path(model: ModelSection) -> Path | None:
    """The GGUF file a config's base names, or None when the base is not a GGUF."""
    base = resolved_base(model)
    if model.gguf_file or base.endswith(".gguf"):
        return Path(base) / model.gguf_file if model.gguf_file else Path(base)
    return None


def base_config_file(model: ModelSection, home: Path) -> Path | None:
    """The base's config.json without loading it: a local folder's, a GGUF's converted
    folder's in the workspace, a hub id's in the Hugging Face cache; None when none is here."""
    if (gguf := gguf_path(model)) is not None:
        try:
            converted = Workspace(home).base_models / converted_gguf_name(gguf) / "config.json"
        except OSError:  # no such GGUF: its own check says so
            return None
        return converted if converted.is_file() else None
    base = resolved_base(model)
    if (Path(base) / "config.json").is_file():
        return Path(base) / "config.json"
    if Path(base).is_absolute() or base.startswith("."):
        return None
    return _hf_cache_config(base)


def model_shape(model: ModelSection, home: Path | None = None) -> Shape:
    """The shape of the model a config trains; ConfigError saying what to give when unknown."""
    if model.random_init is not None:
        return _random_init(model)
    base = resolved_base(model)
    path = Path(base)
    if (gguf := gguf_path(model)) is not None:
        return _gguf(gguf, home or steep_home())
    if (path / "config.json").is_file():
        return from_hf_config(json.loads((path / "config.json").read_text()), str(path))
    if path.is_absolute() or base.startswith("."):
        raise ConfigError(f"model.base: {base} has no config.json (not a model folder)")
    if (cached := _hf_cache_config(base)) is not None:
        return from_hf_config(json.loads(cached.read_text()), f"{base} (Hugging Face cache)")
    if (key := known_key(base)) is not None:
        return _known(key, f"{base}: steep's table ({key})")
    raise ConfigError(
        f"model.base {base}: the plan needs the model's shape and finds no config.json (not a "
        "local folder, not in the Hugging Face cache, not in steep's table): pass "
        "--model-config CONFIG.json, or fetch it: huggingface-cli download "
        f"{base} config.json"
    )


def shape_from_file(path: Path) -> Shape:
    """``steep plan --model-config``: a config.json given by hand."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ConfigError(f"--model-config {path}: cannot read a JSON config: {exc}") from None
    return from_hf_config(data, str(path))
