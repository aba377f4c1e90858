"""Load a base model (HF directory, GGUF file, hub id, or random init) and save results.

Everything steep trains is a plain ``transformers`` causal LM in fp32; a GGUF base is
dequantized once by transformers' own GGUF reader and cached as safetensors, because a
GGUF-loaded model cannot be saved again and re-reading GGUF costs time on every run.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from transformers import (
    AutoConfig,
    AutoModelForCausalLM,
    AutoTokenizer,
    PreTrainedModel,
    PreTrainedTokenizerBase,
    PreTrainedTokenizerFast,
)

from steep.artifacts.atomic import aside_dir, replace_dir, umask_permissions
from steep.artifacts.fingerprint import file_sha256, tokenizer_fingerprint
from steep.artifacts.lineage import Lineage, lineage_text
from steep.config import ModelSection
from steep.config.locate import ModelLoadError, resolve_base
from steep.model.basenames import (
    gguf_names,
    gguf_of,
    lineage_of,
)
from steep.model.rope import apply_rope
from steep.workspace import LINEAGE_FILE, Workspace, converted_gguf_name


@dataclass
class LoadedBase:
    model: PreTrainedModel
    tokenizer: PreTrainedTokenizerBase
    info: dict[str, Any] = field(default_factory=dict)  # lineage: what was loaded, from where


# --- tokenizers ----------------------------------------------------------------------------


def byte_tokenizer() -> PreTrainedTokenizerFast:
    """A 257-token byte-level tokenizer (256 bytes + EOS): no download, covers any text."""
    from tokenizers import (  # deferred: only where a tokenizer is built
        Tokenizer,
        decoders,
        models,
        pre_tokenizers,
    )

    vocab = {ch: i for i, ch in enumerate(sorted(pre_tokenizers.ByteLevel.alphabet()))}
    tok = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    tok.decoder = decoders.ByteLevel()
    tok.add_special_tokens(["<|endoftext|>"])
    return PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|endoftext|>")


def load_tokenizer(spec: str) -> PreTrainedTokenizerBase:
    if spec == "bytes":
        return byte_tokenizer()
    try:
        return AutoTokenizer.from_pretrained(spec)
    except Exception as exc:  # transformers raises many types for a missing tokenizer
        raise ModelLoadError(
            f"no usable tokenizer in {spec}: {exc}. A base directory needs tokenizer.json or "
            "tokenizer_config.json; set model.tokenizer to another directory or 'bytes'"
        ) from None


# --- loading -------------------------------------------------------------------------------


def load_base(
    cfg: ModelSection, home: Path, seed: int = 0, load: dict[str, Any] | None = None
) -> LoadedBase:
    """Return the fp32 model and tokenizer the run will start from (``load``: more
    ``from_pretrained`` arguments, e.g. QLoRA's 4-bit quantization)."""
    if cfg.random_init is not None:
        loaded = _random_model(cfg, seed)
    else:
        assert cfg.base is not None
        base = resolve_base(cfg.base)
        path = Path(base)
        if (gguf := gguf_of(cfg)) is not None:
            converted = gguf_to_hf(gguf, Workspace(home).base_models)
            loaded = _load_hf_dir(converted, str(gguf), load, cfg)
        elif path.exists():
            loaded = _load_hf_dir(path, str(path), load, cfg)
        elif path.is_absolute() or base.startswith("."):
            raise ModelLoadError(f"model.base: {base} does not exist")
        else:
            loaded = _load_hf_dir(Path(base), f"hub:{base}", load, cfg)
    if cfg.tokenizer:
        loaded.tokenizer = load_tokenizer(cfg.tokenizer)
        loaded.info["tokenizer"] = cfg.tokenizer
    vocab = loaded.model.get_input_embeddings().weight.shape[0]
    if len(loaded.tokenizer) > vocab:
        raise ModelLoadError(
            f"tokenizer has {len(loaded.tokenizer)} tokens but the model's embedding has only "
            f"{vocab} rows: they do not belong together"
        )
    loaded.info["tokenizer_sha256"] = tokenizer_fingerprint(loaded.tokenizer)
    return loaded


def run_tokenizer(cfg: ModelSection, home: Path) -> PreTrainedTokenizerBase:
    """The tokenizer a run with this model section trains with, without loading weights
    (``steep data tokenize --config`` fills the cache the run then reads)."""
    if cfg.tokenizer:
        return load_tokenizer(cfg.tokenizer)
    assert cfg.base is not None  # the config allows no base only with model.tokenizer
    if (gguf := gguf_of(cfg)) is not None:
        return load_tokenizer(str(gguf_to_hf(gguf, Workspace(home).base_models)))
    return load_tokenizer(resolve_base(cfg.base))


def _random_model(cfg: ModelSection, seed: int) -> LoadedBase:
    values = dict(cfg.random_init or {})
    model_type = values.pop("model_type", "llama")
    tokenizer = load_tokenizer(cfg.tokenizer or str(cfg.base))
    values.setdefault("vocab_size", len(tokenizer))
    values.setdefault("eos_token_id", tokenizer.eos_token_id)
    try:
        config = AutoConfig.for_model(model_type, **values)
    except ValueError as exc:
        raise ModelLoadError(f"model.random_init: {exc}") from None
    before = apply_rope(config, cfg, "model.random_init")
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    info = {"source": "random_init", "random_init": {"model_type": model_type, **values}}
    return LoadedBase(model, tokenizer, _rope_info(info, before, config))


def _rope_info(info: dict[str, Any], before: int | None, config: Any) -> dict[str, Any]:
    """Lineage of a scaled base: the positions it knew and the RoPE it trains with."""
    if before is not None:
        info["positions_before_rope"] = before
        info["rope_parameters"] = dict(config.rope_parameters)
    return info


def _load_hf_dir(
    path: Path, origin: str, load: dict[str, Any] | None, cfg: ModelSection
) -> LoadedBase:
    """Load a plain HF causal LM with the config's RoPE settings applied before the model
    is built; ``origin`` is what the user named (for lineage)."""
    local = path.exists()
    if local and not (path / "config.json").exists():
        raise ModelLoadError(f"{path} is not a Hugging Face model directory (no config.json)")
    try:
        config = AutoConfig.from_pretrained(str(path))
        before = apply_rope(config, cfg, origin)
        model = AutoModelForCausalLM.from_pretrained(
            str(path), config=config, dtype=torch.float32, **(load or {})
        )
    except OSError as exc:
        raise ModelLoadError(f"cannot load model from {origin}: {exc}") from None
    tokenizer = load_tokenizer(str(path))
    info: dict[str, Any] = _rope_info({"source": origin, "path": str(path)}, before, config)
    lineage = lineage_of(path) if local else None
    if lineage is not None:
        info["lineage"] = lineage.dump()
    return LoadedBase(model, tokenizer, info)


def gguf_to_hf(gguf: Path, cache_root: Path) -> Path:
    """Dequantize a GGUF checkpoint into a cached plain HF directory; reuse it next time."""
    if not gguf.is_file():
        raise ModelLoadError(f"GGUF file not found: {gguf}")
    target = cache_root / converted_gguf_name(gguf)
    if (target / LINEAGE_FILE).exists():
        return target
    names = gguf_names(gguf)
    print(f"converting {gguf.name} to safetensors (once) -> {target}", flush=True)
    tokenizer = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    quantized = AutoModelForCausalLM.from_pretrained(
        str(gguf.parent), gguf_file=gguf.name, dtype=torch.float32
    )
    # transformers refuses to save a GGUF-loaded model: rebuild a plain one from its config
    config = quantized.config.to_dict()
    config.pop("quantization_config", None)
    config.pop("_name_or_path", None)
    plain_config = AutoConfig.for_model(**config)
    model = AutoModelForCausalLM.from_config(plain_config, dtype=torch.float32)
    model.load_state_dict(quantized.state_dict())
    lineage = Lineage(
        kind="base", converted_from=str(gguf), gguf_sha256=file_sha256(gguf), base_names=names
    )
    save_hf(model, tokenizer, target, lineage)
    return target


# --- saving --------------------------------------------------------------------------------


def save_hf(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    out_dir: Path,
    lineage: Lineage,
    state_dict: dict[str, torch.Tensor] | None = None,
) -> Path:
    """Write a plain HF directory + steep.json atomically: a crash leaves no half model.

    ``state_dict`` (clean HF names, e.g. gathered from FSDP shards) replaces ``model``'s own
    weights; the saved model is rebuilt as the plain class so no wrapper leaks into it.
    """
    out_dir = Path(out_dir)
    if state_dict is not None:
        model = _plain_model(model.config, state_dict)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = aside_dir(out_dir)
    try:
        model.save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)
        (tmp / LINEAGE_FILE).write_text(lineage_text(lineage), encoding="utf-8")
        umask_permissions(tmp)  # readable by the studio and a server, as the umask says
        replace_dir(tmp, out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out_dir


def _plain_model(config: Any, state_dict: dict[str, torch.Tensor]) -> PreTrainedModel:
    """The HF class for ``config`` holding ``state_dict``, built without allocating twice."""
    with torch.device("meta"):
        plain = AutoModelForCausalLM.from_config(config)
    plain.load_state_dict(state_dict, strict=False, assign=True)
    plain.tie_weights()
    missing = [k for k, v in plain.state_dict().items() if v.is_meta]
    if missing:
        raise ModelLoadError(f"cannot save: weights missing from the state dict: {missing[:5]}")
    return plain
